"""The cluster side: :func:`connect` (a client from a spec) and :func:`run_tasks` (a map with faults handled)."""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from pathlib import Path

__all__ = [
    "INSTALL_HINT",
    "WORKER_DEATHS_ALLOWED",
    "import_distributed",
    "check_client",
    "connect",
    "machine_workers",
    "run_tasks",
]

INSTALL_HINT = "pip install 'sdekit[distributed]'"

#: How many workers may die while running one task before Dask gives up on it (``KilledWorker``): the
#: ``distributed.scheduler.allowed-failures`` setting of the clusters :func:`connect` starts. A cluster started
#: elsewhere keeps its own setting (Dask's default is 3).
WORKER_DEATHS_ALLOWED = 3


def import_distributed():
    """The ``distributed`` package, or an ``ImportError`` that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"sdekit's distributed features need dask.distributed, not installed: {INSTALL_HINT}"
        ) from exc
    return distributed


def machine_workers() -> int:
    """Worker processes of a local cluster sized to this machine: one per CPU core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _worker_env(n_workers: int) -> dict:
    """Environment of local worker processes: ``PYTHONPATH`` starts with the folder this sdekit is imported from,
    so that workers run the same sdekit as the caller (a source checkout included); numba's thread pool gets the
    worker's share of the cores (Dask already sets the BLAS/OpenMP pools to one thread), unless
    ``NUMBA_NUM_THREADS`` is set."""
    here = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    env = {"PYTHONPATH": os.pathsep.join([here] + ([path] if path else []))}
    env["NUMBA_NUM_THREADS"] = os.environ.get("NUMBA_NUM_THREADS", str(max(1, machine_workers() // n_workers)))
    return env


def _parse_local(spec: str) -> int:
    head, _, count = spec.partition(":")
    if head != "local":
        raise ValueError(f"client must be a dask Client, a scheduler address or 'local[:N]', got {spec!r}")
    if not count:
        return machine_workers()
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"client={spec!r}: the number of local workers N in 'local:N' must be a positive integer")
    return int(count)


def check_client(client) -> None:
    """``TypeError`` / ``ValueError`` when ``client`` is not a valid :func:`connect` argument (before any work)."""
    distributed = import_distributed()
    if client is None or isinstance(client, distributed.Client):
        return
    if not isinstance(client, str):
        raise TypeError(f"client must be a dask Client, a scheduler address or 'local[:N]', got {client!r}")
    if client == "local" or client.startswith("local:"):
        _parse_local(client)
    elif "://" not in client and ":" not in client:
        raise ValueError(f"client must be a dask Client, a scheduler address or 'local[:N]', got {client!r}")


@contextlib.contextmanager
def connect(client=None):
    """A ``distributed.Client`` for ``client``, closed afterwards when this function opened it.

    ``client``: a ``distributed.Client`` (used as it is, left open); ``None`` or ``"local"`` (a ``LocalCluster``
    of one single-threaded worker process per core); ``"local:N"`` (``N`` worker processes); or a scheduler
    address (``"tcp://host:8786"``, connected to and disconnected from, the cluster left running).
    """
    distributed = import_distributed()
    check_client(client)
    if isinstance(client, distributed.Client):
        yield client
        return
    if client is None or client == "local" or client.startswith("local:"):
        n_workers = machine_workers() if client is None else _parse_local(client)
        import dask

        with (
            dask.config.set({"distributed.scheduler.allowed-failures": WORKER_DEATHS_ALLOWED}),
            warnings.catch_warnings(),
        ):
            # the scheduler's HTTP endpoint (health, metrics) moves to a free port when 8787 is taken: not news
            warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
            cluster = distributed.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env=_worker_env(n_workers),
            )
        try:
            with distributed.Client(cluster) as c:
                yield c
        finally:
            cluster.close()
        return
    with distributed.Client(client) as c:
        yield c


def n_workers(client) -> int:
    """Workers the scheduler knows now (0 when it cannot be asked)."""
    try:
        return len(client.scheduler_info(n_workers=-1).get("workers", {}))
    except TypeError:  # an older distributed without n_workers=
        return len(client.scheduler_info().get("workers", {}))
    except Exception:  # informational only
        return 0


def _reruns(dask_scheduler=None, keys=(), retries=0):
    """On the scheduler: ``{key: times the task was rerun}``, after a worker died under it (``suspicious``) or
    after an exception (the ``retries`` given minus those the scheduler has left)."""
    out = {}
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        if ts is not None:
            out[key] = int(getattr(ts, "suspicious", 0)) + max(0, retries - int(getattr(ts, "retries", 0) or 0))
    return out


class _RerunCounter:
    """Counts reruns of finished tasks in batches (one scheduler call per batch), then lets them go."""

    BATCH = 64

    def __init__(self, client, retries: int):
        self.client = client
        self.retries = retries
        self.pending: list = []
        self.total: int | None = 0

    def add(self, future) -> None:
        self.pending.append(future)
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        keys = [f.key for f in self.pending]
        if self.total is not None:
            try:
                self.total += sum(self.client.run_on_scheduler(_reruns, keys=keys, retries=self.retries).values())
            except Exception:  # a scheduler that refuses run_on_scheduler: unknown
                self.total = None
        self.pending = []


def run_tasks(client, fn, shared, items, on_result, *, retries: int = 0, name: str = "sdekit") -> int | None:
    """Run ``fn(shared, item)`` for every item on the cluster; ``on_result(i, result)`` in completion order.

    ``shared`` goes to the cluster once, as a task of its own (not scattered data), so that when the worker holding
    it dies the scheduler recomputes it instead of failing the tasks that need it. A worker that dies under a task
    gets it rerun elsewhere (up to the scheduler's ``allowed-failures``); an exception raised by ``fn`` cancels the
    tasks not finished and is raised here (after ``retries`` reruns, default none). Returns the number of reruns
    (``None`` when the scheduler could not be asked).
    """
    distributed = import_distributed()
    token = uuid.uuid4().hex[:12]
    shared_future = client.submit(_identity, shared, key=f"{name}-shared-{token}", pure=False)
    futures = {}
    for i, item in enumerate(items):
        f = client.submit(fn, shared_future, item, key=f"{name}-{i}-{token}", retries=retries, pure=False)
        futures[f.key] = (i, f)
    counter = _RerunCounter(client, retries)
    try:
        for future in distributed.as_completed([f for _, f in futures.values()]):
            i, _ = futures.pop(future.key)
            if future.status == "error":
                client.cancel([f for _, f in futures.values()])
                future.result()  # raises the task's exception, with its traceback
            if future.status == "cancelled":  # cancelled by someone else (the client closing)
                raise RuntimeError(f"task {future.key} was cancelled")
            on_result(i, future.result())
            counter.add(future)
        counter.flush()  # before the shared task goes: cancelling it forgets its dependents too
    finally:
        if futures:
            client.cancel([f for _, f in futures.values()])
        client.cancel([shared_future])
    return counter.total


def _identity(x):
    return x
