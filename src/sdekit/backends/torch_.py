"""torch backend: the fixed-grid loop on tensors of any device and dtype, without host synchronisation.

What runs where
---------------
* The state, the noise and every intermediate live on ``x0``'s device in ``x0``'s dtype. The grid stays
  on the host as python floats: times enter the step as scalars (no transfer, no synchronisation).
* Noise comes from the counter-based generator (:mod:`sdekit.backends.torch_noise`) on the device; for
  float64 it equals the numpy backend's noise, so torch on CPU reproduces numpy to round-off.
* Solvers are the shared step objects of :mod:`sdekit.solvers` (written with operators numpy and torch
  share), so every registered fixed-step solver runs here unchanged.

No host synchronisation inside the loop
---------------------------------------
Nothing in the loop reads a tensor value on the host (no ``.item()``, ``bool(tensor)`` or branching on
data). The finiteness check that the numpy backend does per step (``isfinite(x).all()``, a host sync)
is replaced by a device-side record: after step ``k`` the float64 sum of the state is written to
``checks[k]``; a NaN or an infinity anywhere makes the sum non-finite. ``checks`` is read once, after the
loop, and the first non-finite entry gives the step and time of :class:`sdekit.NonFiniteError`. The cost
is one reduction per step; the price is that a failing solve runs to the end before it raises. (The sum
is accumulated in float64, so it cannot overflow for float32/float16 states; a float64 state whose
entries are finite but sum beyond 1.8e308 would be reported as non-finite.)

This loop is for fixed grids. Adaptive solvers (``solver.adaptive``) run in
:mod:`sdekit.backends.torch_adaptive`: accept/reject as device-side masks, the host read once every ``k``
attempts (``torch_options(sync_every=k)``); with a callback or Brownian-path noise (``noise="tree"``) they run
in the array-generic host loop of :mod:`sdekit.loop.adaptive` (same numbers).

Gradients and capture
---------------------
The loop runs under ``torch.no_grad()`` unless the start ``x0`` (``sample``'s ``x_T``) requires grad: then it keeps
the autograd graph, and ``backward()`` on the samples reaches ``x0`` and the score's parameters. Inside
``with torch_options(differentiable=True):`` it keeps the graph whatever ``x0`` (gradients with respect to the
score's parameters only); ``differentiable=False`` never keeps it. ``with torch_options(capture="cuda_graph"):``
records the whole fixed-grid loop in a CUDA graph the first time a given (process, solver, grid, shape, dtype,
device) is solved and replays it on later calls (new ``x0`` and seed are copied into the graph's inputs); see
:func:`clear_capture_cache`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ..brownian import tree_noise
from ..loop import DeviceGuard, grid_stats, run_grid, solve_grid
from ..loop import adaptive as adaptive_loop
from ..noise import PRIOR_STEP
from ..progress import progress_bar
from ..validation import boolean, positive_int
from . import torch_adaptive
from .torch_noise import TorchNormals

__all__ = [
    "run",
    "torch_options",
    "TorchOptions",
    "current_options",
    "torch_noise",
    "prior_sample",
    "initial_state",
    "as_state",
    "grad_mode",
    "keeps_graph",
    "clear_capture_cache",
    "CAPTURE_MODES",
]

CAPTURE_MODES = (None, "cuda_graph")
_CACHE_SIZE = 4


@dataclass(frozen=True)
class TorchOptions:
    """Options of the torch backend (see :func:`torch_options`)."""

    differentiable: bool | None = None
    capture: str | None = None
    sync_every: int | None = None


_DEFAULT_OPTIONS = TorchOptions()
_OPTIONS: contextvars.ContextVar[TorchOptions | None] = contextvars.ContextVar("sdekit_torch_options", default=None)


def current_options() -> TorchOptions:
    """The options in effect (set by :func:`torch_options`)."""
    return _OPTIONS.get() or _DEFAULT_OPTIONS


@contextlib.contextmanager
def torch_options(*, differentiable: bool | None = None, capture: str | None = None, sync_every: int | None = None):
    """Options for torch solves started inside the ``with`` block.

    Parameters
    ----------
    differentiable : bool or None
        Keep the autograd graph through the loop. ``None`` (default): keep it when ``x0`` requires grad, else run
        under ``torch.no_grad()`` (an ordinary run builds no graph, even with a network whose parameters require
        grad); ``True``: always; ``False``: never (``x0.requires_grad`` is then ignored).
    capture : {None, "cuda_graph"}
        Record the fixed-grid loop in a CUDA graph on the first call and replay it afterwards (CUDA tensors,
        fixed-step solvers, ``differentiable=False``; results equal the eager loop).
    sync_every : int, optional
        Adaptive solvers: attempts between two host reads of the device-side loop (default
        :data:`sdekit.backends.torch_adaptive.DEFAULT_SYNC_EVERY`, chosen by measurement). Larger values read
        the host less often and carry finished samples longer; results do not depend on it.
    """
    differentiable = None if differentiable is None else boolean("differentiable", differentiable)
    if sync_every is not None:
        sync_every = positive_int("sync_every", sync_every)
    if capture not in CAPTURE_MODES:
        raise ValueError(f"capture must be one of {list(CAPTURE_MODES)}, got {capture!r}")
    if differentiable and capture is not None:
        raise ValueError(
            f"capture={capture!r} replays a recorded graph and cannot keep autograd; "
            "use differentiable=True without capture"
        )
    token = _OPTIONS.set(TorchOptions(differentiable=differentiable, capture=capture, sync_every=sync_every))
    try:
        yield current_options()
    finally:
        _OPTIONS.reset(token)


def keeps_graph(x=None) -> bool:
    """Whether a torch solve from ``x`` keeps the autograd graph: ``differentiable`` when set, else whether ``x``
    requires grad."""
    flag = current_options().differentiable
    if flag is None:
        return bool(getattr(x, "requires_grad", False))
    return flag


def grad_mode(x=None):
    """The autograd context of a torch solve from ``x``: ``torch.no_grad()`` unless :func:`keeps_graph`."""
    return contextlib.nullcontext() if keeps_graph(x) else torch.no_grad()


def torch_noise(job):
    """``noise(step) -> list of z``: ``job.solver.n_noise`` standard-normal fields like ``job.x0``, on its device.

    Same layout as :func:`sdekit.backends.numpy_.numpy_noise` (field ``r`` reads components
    ``[r * size, (r + 1) * size)``), hence the same numbers.
    """
    gen = TorchNormals(job.seed, job.sample_ids, job.x0.device, job.x0.dtype)
    return _draw_from(gen, job.solver.n_noise, tuple(job.x0.shape[1:]))


def _draw_from(gen, m, event):
    size = int(np.prod(event, dtype=np.int64))

    def draw(step):
        z = gen.normals(step, m * size)
        z = z.reshape((z.shape[0], m) + event)
        return [z[:, r] for r in range(m)]

    return draw


def prior_sample(sde, shape, seed: int = 0, *, device="cpu", dtype=torch.float32, sample_ids=None):
    """Prior samples ``N(0, prior_std^2 I)`` of shape ``(n, *event)``, drawn on ``device`` in ``dtype``.

    The tensor twin of ``sde.prior_sample``: sample ``i`` (id ``sample_ids[i]``, default ``i``) depends only on
    ``(seed, id)``, and float64 equals the numpy draw to round-off.
    """
    shape = tuple(int(s) for s in shape)
    size = int(np.prod(shape[1:], dtype=np.int64))
    ids = np.arange(shape[0], dtype=np.int64) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
    z = TorchNormals(seed, ids, device, dtype).normals(PRIOR_STEP, size)
    return z.reshape(shape) * sde.prior_std


def initial_state(sde, shape, seed, *, module=None, device=None, dtype=None, sample_ids=None):
    """``x_T`` for ``sample``: prior draws on ``device``/``dtype``.

    Defaults come from ``module`` (the torch module behind the score: the device and floating dtype of its
    first parameter or buffer), else CPU float32.
    """
    if device is None or dtype is None:
        ref = None
        if module is not None:
            ref = next((p for p in module.parameters() if p.is_floating_point()), None)
            if ref is None:
                ref = next((b for b in module.buffers() if b.is_floating_point()), None)
        if device is None:
            device = ref.device if ref is not None else torch.device("cpu")
        if dtype is None:
            dtype = ref.dtype if ref is not None else torch.float32
    try:
        device = torch.device(device)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"device must be a torch device or its name (e.g. 'cpu', 'cuda:0'), got {device!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available in this installation")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype (e.g. torch.float32), got {dtype!r}")
    return prior_sample(sde, shape, seed, device=device, dtype=dtype, sample_ids=sample_ids)


def as_state(x):
    """A numpy array as this backend's state (``Backend.as_state``): a CPU tensor of the array's dtype; a tensor is
    returned unchanged. ``bench.compare(backend="torch")`` hands its numpy start points over this way."""
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


# -- the loop ----------------------------------------------------------------------------------------


def _loop(job, x, draw, checks, bar):
    """Every step of ``job.grid`` from ``x`` (the driver :func:`sdekit.loop.run_grid`); returns ``(x, saved)``.
    Writes the finiteness record into ``checks`` (device side; read once after the loop)."""
    guard = DeviceGuard(job.grid, checks) if checks is not None else None
    return run_grid(dataclasses.replace(job, x0=x), draw, guard, bar)


def run(job):
    """Run ``job`` (validated by :func:`sdekit.solve`) on torch tensors; returns ``(x, saved, nfe, stats)``."""
    opts = current_options()
    solver = job.solver
    # one autograd policy for every torch loop: no graph unless x0 requires grad or differentiable=True (keeps_graph)
    if solver.adaptive:
        with grad_mode(job.x0):
            # accept/reject as device-side masks, a host read every k attempts at most
            if torch_adaptive.supports(job, opts.sync_every):
                return torch_adaptive.run(job, opts.sync_every)
            return adaptive_loop.run(job)  # the array-generic loop (per-attempt host control)
    if job.noise == "tree" and job.stochastic:  # the array-generic loop with Brownian-tree noise
        with grad_mode(job.x0):
            return solve_grid(job, tree_noise)  # checked on the host per step (the walker reads the host anyway)
    start = time.perf_counter()
    n_steps = len(job.grid) - 1
    with grad_mode(job.x0):
        if opts.capture == "cuda_graph":
            if keeps_graph(job.x0):
                raise ValueError("x0 requires grad, but capture='cuda_graph' replays a recorded graph and cannot keep "
                                 "autograd: pass x0.detach() or leave torch_options(capture=...) off")  # fmt: skip
            if job.callback is not None:
                raise ValueError("callback cannot run inside a captured CUDA graph (a replay runs no python between "
                                 "steps); pass callback=None or leave torch_options(capture=...) off")  # fmt: skip
            x, saved, checks = _run_captured(job)
        else:
            draw = torch_noise(job) if job.stochastic else None
            checks = job.x0.new_empty(n_steps, dtype=torch.float64) if job.check_finite else None
            with progress_bar(n_steps, job.progress, desc=solver.name) as bar:
                x, saved = _loop(job, job.x0, draw, checks, bar)
    if checks is not None:
        DeviceGuard(job.grid, checks).check()
    return x, saved, solver.nfe(job.grid, job.process), grid_stats(n_steps, start)


# -- CUDA graph capture ------------------------------------------------------------------------------


class _CudaGraphs:
    """The three CUDA operations capture needs, in one place (a test substitutes a CPU emulation)."""

    @staticmethod
    def check_device(device):
        if device.type != "cuda":
            raise ValueError(f"capture='cuda_graph' needs CUDA tensors; x0 is on device {str(device)!r}")

    @staticmethod
    @contextlib.contextmanager
    def side_stream(device):
        """Run the block on a fresh stream, ordered after the work queued so far and before what follows."""
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            yield
        torch.cuda.current_stream(device).wait_stream(side)

    @staticmethod
    def record(body):
        """Capture ``body()`` in a CUDA graph; returns ``(replay, outputs)``: ``replay()`` rewrites ``outputs``."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = body()
        return graph.replay, outputs


_GRAPHS = _CudaGraphs()


class _Captured:
    """A recorded loop: static inputs (state, per-sample noise keys) and the outputs a replay rewrites."""

    def __init__(self, replay, x_in, gen, x_out, saved, checks, keep):
        self.replay, self.x_in, self.gen = replay, x_in, gen
        self.x_out, self.saved, self.checks = x_out, saved, checks
        self.keep = keep  # strong references that keep the ids in the cache key valid


_CAPTURED: OrderedDict = OrderedDict()


def clear_capture_cache():
    """Forget every recorded CUDA graph (and free its memory pool).

    A graph replays the score on the parameter tensors it saw when it was recorded: in-place updates
    (``optimizer.step()``, ``load_state_dict``) are seen, but after moving or replacing the model's tensors
    (``model.to(...)``, re-creating the module) call this function.
    """
    _CAPTURED.clear()


def _capture_key(job):
    process, solver, x0 = job.process, job.solver, job.x0
    score = getattr(process, "score", None)
    score = getattr(score, "score", score)  # the user's score inside solve()'s checking wrapper
    solver_conf = tuple(sorted((k, repr(v)) for k, v in vars(solver).items()))
    key = (
        type(process),
        id(getattr(process, "sde", process)),
        id(score),
        type(solver),
        solver_conf,
        job.grid.tobytes(),
        tuple(x0.shape),
        x0.dtype,
        x0.device,
        job.save_index,
        job.check_finite,
        job.stochastic,
    )
    return key, (getattr(process, "sde", process), score)


def _run_captured(job):
    """The loop from a recorded CUDA graph: record on the first call for this key, replay afterwards."""
    x0 = job.x0
    _GRAPHS.check_device(x0.device)
    n_steps = len(job.grid) - 1
    key, keep = _capture_key(job)
    entry = _CAPTURED.get(key)
    if entry is not None:
        _CAPTURED.move_to_end(key)
        # new inputs into the graph's static tensors: the state and the per-sample noise keys of this seed
        entry.x_in.copy_(x0)
        if job.stochastic:
            entry.gen.base.copy_(TorchNormals(job.seed, job.sample_ids, x0.device, x0.dtype).base)
        entry.replay()
        saved = entry.saved.clone() if entry.saved is not None else None
        checks = entry.checks.clone() if entry.checks is not None else None
        return entry.x_out.clone(), saved, checks

    # warm-up on a side stream (lazy initialisations such as cuBLAS handles must not happen during
    # capture, and constants cached by scores get created here); its result is this call's answer
    x_in = x0.clone()
    gen = TorchNormals(job.seed, job.sample_ids, x0.device, x0.dtype) if job.stochastic else None
    draw = _draw_from(gen, job.solver.n_noise, tuple(x0.shape[1:])) if gen is not None else None
    with _GRAPHS.side_stream(x0.device):
        checks = x0.new_empty(n_steps, dtype=torch.float64) if job.check_finite else None
        with progress_bar(n_steps, job.progress, desc=job.solver.name) as bar:
            x, saved = _loop(job, x_in, draw, checks, bar)
        x, saved = x.clone(), (saved.clone() if saved is not None else None)

    static_checks = x0.new_empty(n_steps, dtype=torch.float64) if job.check_finite else None
    replay, (x_out, saved_out) = _GRAPHS.record(lambda: _loop(job, x_in, draw, static_checks, _NoBar()))
    _CAPTURED[key] = _Captured(replay, x_in, gen, x_out, saved_out, static_checks, keep)
    while len(_CAPTURED) > _CACHE_SIZE:
        _CAPTURED.popitem(last=False)
    return x, saved, checks


class _NoBar:
    def update(self, n=1):
        pass
