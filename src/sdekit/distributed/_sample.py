"""Sharded sampling: :func:`sample`."""

from __future__ import annotations

import inspect
import json
import math
import pathlib
import platform
import time
from dataclasses import dataclass

import numpy as np

from .. import _xp
from .._version import __version__
from ..integrate import SAMPLE_OPTIONS, check_sample, solver_with_options, split_options
from ..integrate import sample as sample_one
from ..noise import check_seed
from ..progress import progress_bar
from ..scores import check_cond
from ..sdes import SDE
from ..solution import Solution
from ..solvers import get_solver
from ..validation import integer_at_least, positive_int
from ._client import check_client, connect, n_workers, run_tasks
from ._fingerprint import describe, fingerprint, qualified_name, safe_repr
from ._store import FORMAT, SampleStore, samples_digest

__all__ = ["sample", "REFUSED_OPTIONS", "Moments"]

# where this process imports sdekit from (named in the version-mismatch error)
PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]

#: ``sample`` keyword arguments that make no sense sharded, and why.
REFUSED_OPTIONS = {
    "x_T": "each shard draws its own prior samples from (seed, sample id); to integrate given start states, split "
    "them and call sdekit.solve on each part",
    "sample_ids": "the shards are the ids 0 .. n-1, split by shard_size; to sample other ids, call sdekit.sample "
    "with sample_ids=",
    "save_at": "trajectories are not gathered from the shards; sample the few trajectories you need with "
    "sdekit.sample(..., save_at=...)",
    "callback": "a callback would run on the workers, where its effects are lost",
}


@dataclass
class Moments:
    """Per-component count, mean and sum of squared deviations of samples, mergeable across shards.

    Merged with Chan, Golub and LeVeque's pairwise update, in shard order: the result does not depend on the
    order shards finish in, and equals the moments of the gathered samples to round-off.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        x64 = np.asarray(x, dtype=np.float64)
        mean = x64.mean(axis=0)
        return cls(int(x64.shape[0]), mean, ((x64 - mean) ** 2).sum(axis=0))

    def merge(self, other: Moments) -> Moments:
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return Moments(n, mean, m2)

    @property
    def var(self) -> np.ndarray:
        """Population variance per component (``ddof=0``, like ``np.var``)."""
        return self.m2 / self.count

    def to_json(self) -> dict:
        return {"count": self.count, "shape": list(self.mean.shape), "mean": self.mean.ravel().tolist(),
                "m2": self.m2.ravel().tolist()}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict) -> Moments:
        shape = tuple(d["shape"])
        return cls(int(d["count"]), np.array(d["mean"]).reshape(shape), np.array(d["m2"]).reshape(shape))

    def as_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "var": self.var}


@dataclass(frozen=True)
class _ShardJob:
    """What every shard needs: sent to the cluster once."""

    sde: object
    score: object
    seed: int
    n: int
    shard_size: int
    options: dict
    store: str | None
    version: str

    def bounds(self, index: int) -> tuple:
        start = index * self.shard_size
        return start, min(self.n, start + self.shard_size)


def _run_shard(job: _ShardJob, index: int):
    """On a worker: sample shard ``index``; write it to the store (then return its record) or return it."""
    if __version__ != job.version:
        raise RuntimeError(
            f"the worker runs sdekit {__version__} ({PACKAGE_DIR}), the job was made with {job.version}: "
            "install the same sdekit on every worker"
        )
    start, stop = job.bounds(index)
    t0 = time.perf_counter()
    options = dict(job.options)
    if options.get("cond") is not None:  # the shard's rows of the per-sample conditioning
        options["cond"] = {k: v[start:stop] for k, v in options["cond"].items()}
    sol = sample_one(
        job.sde, job.score, n=stop - start, sample_ids=np.arange(start, stop, dtype=np.int64), seed=job.seed,
        **options,
    )  # fmt: skip
    x = sol.x.detach().cpu().numpy() if _xp.is_torch(sol.x) else np.asarray(sol.x)
    record = {
        "index": index,
        "start": start,
        "stop": stop,
        "nfe": int(sol.nfe),
        "t": sol.t if np.ndim(sol.t) == 0 else None,
        "stats": {k: _json_value(v) for k, v in sol.stats.items()},
        "moments": Moments.of(x).to_json(),
        "sha256": samples_digest(x),
        "wall_time": time.perf_counter() - t0,
    }
    if job.store is not None:
        SampleStore(job.store).write_shard(index, start, x, record, job.n, job.shard_size)
        return record, None
    return record, x


def _json_value(v):
    """A solver stat as JSON (markers are JSON): numbers and strings as they are, anything else as its str."""
    if isinstance(v, np.generic):
        v = v.item()
    return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)


# ----------------------------------------------------------------------------------------------------------
# arguments and configuration
# ----------------------------------------------------------------------------------------------------------
_SAMPLE_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(sample_one).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}


def _check_options(options: dict, n: int) -> None:
    for name, why in REFUSED_OPTIONS.items():
        if options.get(name) is not None:
            raise ValueError(f"sdekit.distributed.sample does not take {name}=: {why}")
    if options.get("cond") is not None:
        check_cond(options["cond"], n)  # one row per sample of the whole job; each shard gets its rows
    _, solver_options = split_options(options)
    solver_with_options(options.get("solver", _SAMPLE_DEFAULTS["solver"]), solver_options, "sdekit.distributed.sample")


def _check_sample(sde, score, n: int, options: dict) -> None:
    """What every shard's ``sdekit.sample`` would refuse (event shape, process, grid, t_end, denoise), refused
    here, before the store is written or a worker started."""
    checked = ("shape", "solver", "steps", "grid", "t_end", "denoise", "process", "device", "dtype")
    kwargs = {k: v for k, v in options.items() if k in checked or k not in SAMPLE_OPTIONS}
    check_sample(sde, score, n=n, **kwargs)


def _configuration(sde, score, seed, n, shard_size, options) -> dict:
    """The job's configuration: ``job`` (compared when a store is reopened) and ``info`` (not compared)."""
    _, solver_options = split_options(options)
    solver = get_solver(options.get("solver", _SAMPLE_DEFAULTS["solver"]), **solver_options)
    given = {}
    for k, v in sorted(options.items()):
        if k == "solver" or k in solver_options:
            continue
        default = _SAMPLE_DEFAULTS.get(k, inspect.Parameter.empty)
        if isinstance(v, (type(None), bool, int, float, str)) and type(v) is type(default) and v == default:
            continue  # a default spelled out is the default
        given[k] = describe(v)
    job = {
        "n": n,
        "shard_size": shard_size,
        "seed": seed,
        "sdekit_version": __version__,
        "sde": {"repr": safe_repr(sde), "fingerprint": fingerprint(sde)},
        "score": {"type": qualified_name(score), "repr": safe_repr(score), "fingerprint": fingerprint(score)},
        "solver": {"name": solver.name, "options": describe(solver_options), "fingerprint": fingerprint(solver)},
        "options": given,
    }
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "host": platform.node(),
    }
    # through JSON once, so that the configuration compares equal to its stored copy
    return {"format": FORMAT, "job": json.loads(json.dumps(job)), "info": info}


# ----------------------------------------------------------------------------------------------------------
# the entry point
# ----------------------------------------------------------------------------------------------------------
def sample(
    sde,
    score,
    *,
    n,
    shard_size,
    client=None,
    store=None,
    seed=0,
    progress=False,
    retries=0,
    **sample_kwargs,
) -> Solution:
    """Draw ``n`` samples as ``ceil(n / shard_size)`` shards on a Dask cluster; bit-identical to one
    ``sdekit.sample(sde, score, n=n, seed=seed, **sample_kwargs)``.

    Shard ``k`` is the samples with ids ``k * shard_size .. min(n, (k + 1) * shard_size) - 1``, drawn by
    ``sdekit.sample(..., sample_ids=ids)``; sample ``i``'s prior draw and noise depend only on ``(seed, i)``,
    so the samples do not depend on the shard size, on the number of workers or on which worker ran what.

    Parameters
    ----------
    sde, score
        As in :func:`sdekit.sample`; both are sent to the workers (they must pickle with cloudpickle: analytic
        scores, ``RowScore``, functions and torch modules do).
    n, shard_size : int
        Number of samples and samples per shard (the last shard may be smaller).
    client : distributed.Client, str or None
        The cluster: a ``distributed.Client``; a scheduler address (``"tcp://host:8786"``); ``"local:N"`` (a
        ``LocalCluster`` of ``N`` single-threaded worker processes, closed afterwards); ``None``: such a local
        cluster with one worker per CPU core. (Scripts that start a local cluster need the
        ``if __name__ == "__main__":`` guard: the workers are spawned processes.)
    store : str or path, optional
        A directory to keep the samples in (see :mod:`sdekit.distributed._store` for the layout): a zarr array
        written shard by shard, the job's configuration beside it. A job restarted on the same store skips the
        shards already finished; a store of another configuration is refused (:class:`StoreMismatchError`).
        With a store the returned ``x`` is a dask array backed by it, else a numpy array.
    seed : int
        As in :func:`sdekit.sample`.
    progress : bool
        A progress bar over shards (tqdm).
    retries : int
        Reruns of a shard whose score raised an exception (default ``0``: the first exception stops the job,
        the shards already finished stay in the store). A shard whose worker *died* is rerun elsewhere whatever
        ``retries`` is, up to the scheduler's ``allowed-failures`` (:data:`WORKER_DEATHS_ALLOWED` on the local
        clusters started here).
    **sample_kwargs
        Any other argument of :func:`sdekit.sample` (solver, steps, grid, t_end, denoise, process, backend,
        solver options, ...), except ``x_T``, ``sample_ids``, ``save_at`` and ``callback``, which are refused.

    Returns
    -------
    Solution
        ``x``: the ``(n, *event_shape)`` samples in id order; ``t``; ``nfe`` (the shards' mean, rounded);
        ``stats``: ``shards``, ``shards_run``, ``shards_skipped`` (found finished in the store),
        ``shards_retried`` (reruns after a worker died or an exception was retried; ``None`` when the scheduler
        cannot say), ``shard_size``, ``workers``, ``store``, ``moments`` (``count``, per-component ``mean`` and
        ``var`` of the samples, merged from the shards: read them without gathering ``x``), ``compute_time``
        (seconds of solving summed over shards), ``wall_time``, and the shards' solver stats (per-sample means
        weighted by shard size, ``nfe_max`` the largest).
    """
    start_time = time.perf_counter()
    n, shard_size, seed, retries = _check_arguments(sde, score, n, shard_size, seed, retries, client, sample_kwargs)
    n_shards = math.ceil(n / shard_size)
    config = _configuration(sde, score, seed, n, shard_size, sample_kwargs)
    st = SampleStore.open_or_create(store, config) if store is not None else None
    records = st.finished() if st is not None else {}
    skipped = len(records)
    todo = [k for k in range(n_shards) if k not in records]
    x = None
    workers = 0
    retried = 0
    with progress_bar(n_shards, progress, desc="shards") as bar:
        bar.update(skipped)
        if todo:
            job = _ShardJob(sde, score, seed, n, shard_size, dict(sample_kwargs), None if st is None else
                            str(st.path.resolve()), __version__)  # fmt: skip
            x, workers, retried = _run_shards(job, todo, records, bar, client, retries)
    if st is not None:
        x = st.to_dask()
    stats = _merge_stats([records[k] for k in range(n_shards)])
    stats.update(
        shards=n_shards,
        shards_run=len(todo),
        shards_skipped=skipped,
        shards_retried=retried,
        shard_size=shard_size,
        workers=workers,
        store=None if st is None else str(st.path),
        wall_time=time.perf_counter() - start_time,
    )
    first = records[0]
    t = first["t"] if first.get("t") is not None else (sde.eps if sample_kwargs.get("t_end") is None else
                                                         float(sample_kwargs["t_end"]))  # fmt: skip
    nfe = int(round(sum(r["nfe"] * (r["stop"] - r["start"]) for r in records.values()) / n))
    return Solution(x=x, t=t, nfe=nfe, stats=stats)


def _check_arguments(sde, score, n, shard_size, seed, retries, client, sample_kwargs) -> tuple:
    """:func:`sample`'s checks of its arguments; returns the checked ``(n, shard_size, seed, retries)``.

    Drops ``progress`` from ``sample_kwargs`` (in place): the bar is over shards, not inside them.
    """
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdekit.SDE (e.g. VPSDE()), got {sde!r}")
    if not callable(score):
        raise TypeError(f"score must be callable score(x, t), got {score!r}")
    n = positive_int("n", n)
    shard_size = positive_int("shard_size", shard_size)
    seed = check_seed(seed)
    retries = integer_at_least("retries", retries, 0)
    sample_kwargs.pop("progress", None)  # the bar is over shards, not inside them
    _check_options(sample_kwargs, n)
    _check_sample(sde, score, n, sample_kwargs)
    check_client(client)
    return n, shard_size, seed, retries


def _run_shards(job: _ShardJob, todo: list, records: dict, bar, client, retries: int) -> tuple:
    """Run the shards ``todo`` of ``job`` on the cluster ``client``, filling ``records`` (index -> record) and
    advancing ``bar`` as they finish; returns ``(x, workers, retried)``: ``x`` the ``(job.n, *event_shape)``
    samples returned by the shards (``None`` when they went to a store), the number of workers and of reruns.
    """
    x = None

    def on_result(i, result):
        nonlocal x
        record, xs = result
        records[record["index"]] = record
        if xs is not None:
            if x is None:
                x = np.empty((job.n,) + xs.shape[1:], dtype=xs.dtype)
            x[record["start"] : record["stop"]] = xs
        bar.update(1)

    with connect(client) as c:
        workers = n_workers(c)
        retried = run_tasks(c, _run_shard, job, todo, on_result, retries=retries, name="sdekit-shard")
    return x, workers, retried


def _merge_stats(recs: list) -> dict:
    """The shards' solver stats and moments merged (shard order): per-sample means weighted by shard size."""
    total = sum(r["stop"] - r["start"] for r in recs)
    out: dict = {}
    keys = []
    for r in recs:
        keys += [k for k in r["stats"] if k not in keys]
    for k in keys:
        if k == "wall_time":
            continue
        vals = [(r["stats"].get(k), r["stop"] - r["start"]) for r in recs]
        numbers = [(v, w) for v, w in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(vals):
            if k.endswith("_max"):
                out[k] = max(v for v, _ in numbers)
            elif all(v == numbers[0][0] for v, _ in numbers):
                out[k] = numbers[0][0]
            else:
                out[k] = sum(v * w for v, w in numbers) / total
        else:
            distinct = sorted({repr(v) for v, _ in vals})
            out[k] = vals[0][0] if len(distinct) == 1 else [v for v, _ in vals]
    moments = Moments.from_json(recs[0]["moments"])
    for r in recs[1:]:
        moments = moments.merge(Moments.from_json(r["moments"]))
    out["moments"] = moments.as_dict()
    out["compute_time"] = sum(r["wall_time"] for r in recs)
    return out
