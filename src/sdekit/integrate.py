"""``solve`` and ``sample``: validation once at the entry, then one backend runs the loop.

Nothing below the entry re-validates: backends receive a :class:`Job` whose fields are known good.
"""

from __future__ import annotations

import contextlib
import numbers
import sys
import time

import numpy as np

from . import _xp
from .backends import has_fused_score
from .backends.auto import settle as settle_auto
from .backends.job import CheckedScore, Job, StepCallback
from .backends.registry import BACKENDS, backend_names, get_backend
from .errors import NonFiniteError
from .grids import make_grid
from .noise import check_sample_ids, check_seed
from .scores import ConditionedScore
from .sdes import SDE, LinearSDE, ProbabilityFlowODE, ReverseSDE
from .solution import Solution
from .solvers import get_solver
from .timechange import in_log_snr_time
from .validation import in_interval, positive_int, positive_number, real_number

__all__ = ["solve", "sample", "check_sample", "initial_state", "torch_module", "tweedie_denoise", "Job"]

#: Every valid ``backend=`` value (``"auto"`` and the registered backends, see :mod:`sdekit.backends.registry`).
BACKEND_NAMES = backend_names()
NOISE_NAMES = ("counter", "tree", "bridge")


def _check_array(name, x):
    if _xp.is_torch(x):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    elif isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, *event_shape) with n >= 1, got shape {tuple(x.shape)}")
    if not _xp.isfinite_all(x):
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_time(name, t):
    return real_number(name, t)


def _resolve_grid(process, t0, t1, steps, grid):
    if grid is None:
        if steps is None:
            raise ValueError("give steps or grid: steps for a uniform grid, grid for an explicit array of times")
        return np.linspace(t0, t1, positive_int("steps", steps) + 1)
    if isinstance(grid, str) or callable(grid):
        # a named schedule between t0 and t1 (they run from high to low noise)
        if steps is None:
            raise ValueError(f"grid={grid!r} is a schedule: give steps too")
        sde = getattr(process, "sde", process)
        if not t1 < t0:
            raise ValueError(f"named grids run backwards in time (t1 < t0); got t0={t0}, t1={t1}: pass an array")
        return make_grid(sde, steps, grid, t_end=t1, t_start=t0)
    if steps is not None:
        raise ValueError(f"give steps or an explicit grid, not both (got steps={steps!r} and a grid array)")
    # the ends are compared at the precision of the grid's own dtype: a float32 grid (k-diffusion's sigmas are)
    # ends at t1 only to float32 precision
    given = grid.detach().cpu().numpy() if _xp.is_torch(grid) else np.asarray(grid)
    resolution = np.finfo(given.dtype).eps if given.dtype.kind == "f" else np.finfo(np.float64).eps
    ts = given.astype(np.float64)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"grid must be a 1-D array of at least 2 times, got shape {ts.shape}")
    if not np.all(np.isfinite(ts)):
        raise ValueError("grid contains NaN or infinite times")
    diffs = np.diff(ts)
    direction = np.sign(t1 - t0)
    if not np.all(diffs * direction > 0):
        want = "decreasing" if direction < 0 else "increasing"
        raise ValueError(f"grid must be strictly {want} from t0={t0} to t1={t1}, got {ts!r}")
    tol = max(1e-12, 8 * resolution) * max(1.0, abs(t0), abs(t1))
    if abs(ts[0] - t0) > tol or abs(ts[-1] - t1) > tol:
        raise ValueError(f"grid must start at t0={t0} and end at t1={t1}, got grid[0]={ts[0]}, grid[-1]={ts[-1]}")
    ts = ts.copy()
    ts[0], ts[-1] = t0, t1
    return ts


def _resolve_save(save_at, grid):
    if save_at is None or save_at is False:
        return None
    if save_at is True:
        return frozenset(range(len(grid)))
    wanted = np.atleast_1d(np.asarray(save_at, dtype=np.float64))
    index = []
    scale = max(1.0, float(np.max(np.abs(grid))))
    for s in wanted:
        hits = np.nonzero(np.abs(grid - s) <= 1e-10 * scale)[0]
        if hits.size == 0:
            raise ValueError(f"save_at time {s!r} is not a point of the grid; grid times are {grid!r}")
        index.append(int(hits[0]))
    return frozenset(index)


def _adaptive_stops(solver, save_at, t0: float, t1: float) -> np.ndarray:
    """``[t0, save times strictly inside, t1]``: the times every sample of an adaptive solve steps onto exactly
    (its step is shortened to land on the next one), so the states there are saved without interpolation."""
    if save_at is None or save_at is False:
        return np.array([t0, t1])
    if save_at is True:
        raise ValueError(f"save_at=True (every step) needs a fixed grid; the adaptive solver {solver.name!r} takes "
                         f"per-sample steps: pass the times to save at")  # fmt: skip
    wanted = np.atleast_1d(np.asarray(save_at, dtype=np.float64))
    lo, hi = min(t0, t1), max(t0, t1)
    tol = 1e-12 * max(1.0, abs(t0), abs(t1))
    bad = wanted[~np.isfinite(wanted) | (wanted < lo - tol) | (wanted > hi + tol)]
    if bad.size:
        raise ValueError(f"save_at times must lie in [{lo}, {hi}], got {bad[0]!r}")
    inside = np.unique(wanted[(np.abs(wanted - t0) > tol) & (np.abs(wanted - t1) > tol)])
    if t1 < t0:
        inside = inside[::-1]
    return np.concatenate([[t0], inside, [t1]])


def torch_module(score):
    """The ``torch.nn.Module`` behind a score: the score itself, or the model that a chain of wrappers (adapters,
    guidance, conditioning: each keeps what it wraps as ``.fn``) ends at; else None."""
    torch = sys.modules.get("torch")
    if torch is None:  # no module can exist without torch imported
        return None
    obj = score
    for _ in range(8):  # wrappers nest a few deep (conditioning of guidance of an adapter of the network)
        if isinstance(obj, torch.nn.Module):
            return obj
        obj = getattr(obj, "fn", None)
        if obj is None:
            return None
    return None


def _first_backend(**capabilities) -> str | None:
    """The first available registered backend whose entry has all of ``capabilities``."""
    for name, b in BACKENDS.items():
        if b.available and all(getattr(b, key) == value for key, value in capabilities.items()):
            return name
    return None


def initial_state(sde, shape, seed, backend="auto", score=None, device=None, dtype=None, sample_ids=None):
    """Prior draws at ``T`` of shape ``shape`` as ``sample`` makes them: a tensor for a torch backend (or a torch
    module score, on its parameters' device and dtype), else a numpy array (also used by ``grids.optimize``)."""
    module = torch_module(score)
    wants_torch = module is not None or device is not None or dtype is not None
    if backend == "auto" and wants_torch:
        backend = _first_backend(array_library="torch") or "torch"
    if backend != "auto" and get_backend(backend).array_library == "torch":
        return (
            get_backend(backend)
            .load()
            .initial_state(sde, shape, seed, module=module, device=device, dtype=dtype, sample_ids=sample_ids)
        )
    if device is not None or dtype is not None:
        raise ValueError(
            f"device and dtype choose the torch tensor for x_T and need backend='torch' or 'auto', "
            f"got backend={backend!r}, device={device!r}, dtype={dtype!r}"
        )
    return sde.prior_sample(shape, seed=seed, sample_ids=sample_ids)


def _pick_backend(backend, x0, score, solver, needs):
    """The backend that runs the solve. ``needs``: capabilities the solve requires (``adaptive``,
    ``tree_noise``, ``bridge_noise``); ``"auto"`` takes the first registered backend that fits ``x0``, the score
    and them."""
    if backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {list(BACKEND_NAMES)}")
    library = "torch" if _xp.is_torch(x0) else "numpy"
    if backend == "auto":
        if library == "numpy" and torch_module(score) is not None:
            raise TypeError("the score is a torch module; pass x0 as a torch tensor (and backend='torch' or 'auto')")
        fused = library == "numpy" and has_fused_score(score)
        picked = _first_backend(array_library=library, fused_scores=True, **needs) if fused else None
        picked = picked or _first_backend(array_library=library, fused_scores=False, **needs)
        if picked is None:  # the array library's backend is not installed
            raise ValueError(f"no installed backend runs {library} arrays; available: {sorted(BACKENDS)}")
        return picked
    entry = get_backend(backend)
    if entry.array_library != "torch" and torch_module(score) is not None:
        raise TypeError(f"backend={backend!r} cannot run a torch module score; use backend='torch' (or 'auto')")
    if entry.array_library != library:
        want = "a torch tensor" if entry.array_library == "torch" else "a numpy array"
        got = "a torch tensor" if library == "torch" else "a numpy array"
        hint = "; use backend='torch'" if library == "torch" else ""
        raise TypeError(f"backend={backend!r} needs x0 as {want}, got {got}{hint}")
    for capability in needs:
        if not getattr(entry, capability):
            what = f"adaptive solver {solver.name!r}"
            if capability != "adaptive":
                what = f"noise={capability.removesuffix('_noise')!r}"
            able = [name for name, b in BACKENDS.items() if getattr(b, capability)]
            raise ValueError(f"{what} runs on the {' and '.join(able)} backends, got backend={backend!r}")
    return backend


def solve(
    process,
    x0,
    t0,
    t1,
    solver="euler_maruyama",
    *,
    steps=None,
    grid=None,
    seed=0,
    backend="auto",
    save_at=None,
    progress=False,
    rtol=None,
    atol=None,
    check_finite=True,
    sample_ids=None,
    noise=None,
    cond=None,
    callback=None,
    **solver_options,
) -> Solution:
    """Integrate ``process`` from ``t0`` to ``t1`` starting at ``x0``.

    Parameters
    ----------
    process : SDE, ReverseSDE or ProbabilityFlowODE
        A forward SDE runs forwards (``t1 > t0``), a reverse-time SDE backwards (``t1 < t0``); an ODE either way.
    x0 : array (n, *event)
        Initial state (numpy array or torch tensor, floating point, finite).
    solver : str or Solver
        A registered name (see ``sdekit.solvers.SOLVERS``) or a solver instance; ``solver_options`` go to
        its constructor.
    steps, grid : int, and a 1-D array or schedule name
        ``steps`` alone: equal steps. ``grid`` alone: an explicit monotone array of times from ``t0`` to ``t1``.
        Both: the named schedule (see :mod:`sdekit.grids`) with ``steps`` steps from ``t0`` down to ``t1``.
    seed : int
        Noise seed; sample ``i`` (``sample_ids[i]``, default ``i``) draws noise from ``(seed, i, step)`` only.
    backend : {"auto", "numpy", "numba", "torch"}
    save_at : None, True or times
        ``True`` saves every grid point; otherwise the given times, which must be grid points. Adaptive
        solvers take times in ``[t1, t0]`` (not ``True``): every sample's step is shortened to land on each
        of them exactly, so the saved states carry no interpolation error.
    check_finite : bool
        Raise :class:`sdekit.NonFiniteError` as soon as the state stops being finite.
    rtol, atol : float, optional
        Tolerances of adaptive solvers (``adaptive``, ``dopri5``); default: the solver's own. Adaptive solvers
        need neither ``steps`` nor ``grid`` and give each sample its own step sizes.
    noise : {None, "counter", "tree", "bridge"}
        ``"counter"``: fresh normals per step from ``(seed, i, step)``. ``"tree"``: one Brownian path per
        sample (:mod:`sdekit.brownian`), so different grids (and adaptive retries) see the same path.
        ``"bridge"`` (adaptive SDE solvers only): each sample keeps the increments it has drawn ahead of its
        time and refines them by Brownian bridges after a rejection (:mod:`sdekit.bridge_noise`, rejection
        sampling with memory): the exact law at one draw per attempt at most, but the path depends on the
        sample's step sequence (another tolerance sees another path). ``None``: ``"bridge"`` for adaptive SDE
        solvers (exact law at about the cost of fresh noise; redrawing fresh noise after a rejection, as
        ``"counter"`` does, selects the noise and biases the law; ``"tree"`` when the same path at every
        tolerance matters), ``"counter"`` otherwise. A probability-flow ODE draws no noise and refuses
        ``"tree"`` and ``"bridge"`` (``ValueError``).
    cond : dict, optional
        Per-sample conditioning: keyword name -> array or tensor with leading dimension ``n`` (labels, embeddings).
        The score is called ``score(x, t, **cond)`` with the rows it is given (adaptive loops pass subsets, and
        the conditioning follows them), so sample ``i`` always sees its own ``cond[...][i]``.
    callback : callable, optional
        ``callback(info)`` after each step with ``info = {"step", "t", "x", "denoised"}``: ``t`` every sample's time
        after the step, always a float64 ``(n,)`` numpy array; ``x`` the state after the step; ``denoised`` the data
        prediction when the solver computes one, else None; for adaptive solvers ``step`` counts attempts. ``x`` and
        ``denoised`` cannot change the run: read-only views of numpy arrays, copies of torch tensors
        (:class:`sdekit.backends.job.StepCallback`). Costs nothing when None. On the numba backend a callback runs the
        per-step loop (a
        fused kernel runs no python between steps); inside a captured CUDA graph it is refused.
    """
    start = time.perf_counter()
    if not isinstance(process, (SDE, ReverseSDE, ProbabilityFlowODE)):
        raise TypeError(f"process must be an SDE, ReverseSDE or ProbabilityFlowODE, got {type(process).__name__}")
    solver = get_solver(solver, **solver_options)
    is_sde_process = not isinstance(process, ProbabilityFlowODE)
    if is_sde_process and not solver.is_sde:
        raise ValueError(f"solver {solver.name!r} integrates ODEs only; the process {process!r} is an SDE")
    if not is_sde_process and not solver.is_ode:
        raise ValueError(f"solver {solver.name!r} integrates SDEs only; the process is a probability-flow ODE")
    if is_sde_process and solver.needs_additive_noise and process.noise != "additive":
        raise ValueError(f"solver {solver.name!r} needs additive noise; the process has noise={process.noise!r}")
    _check_array("x0", x0)
    t0, t1 = _check_time("t0", t0), _check_time("t1", t1)
    T = process.T
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}")
    lo = 0.0 if isinstance(process, SDE) else None
    for name, t in (("t0", t0), ("t1", t1)):
        if t > T or t < 0 or (lo is None and t <= 0):
            rng = f"[0, {T}]" if lo is not None else f"(0, {T}]"
            raise ValueError(f"{name} must lie in {rng}, got {t!r}")
    if isinstance(process, SDE) and t1 < t0:
        raise ValueError(f"a forward SDE integrates forwards in time (t1 > t0); got t0={t0}, t1={t1}")
    if isinstance(process, ReverseSDE) and t1 > t0:
        raise ValueError(f"a reverse-time SDE integrates backwards in time (t1 < t0); got t0={t0}, t1={t1}")
    if noise is None:
        noise = "bridge" if solver.adaptive and is_sde_process else "counter"
    if noise not in NOISE_NAMES:
        raise ValueError(f"unknown noise {noise!r}; valid choices: {list(NOISE_NAMES)}")
    if noise != "counter" and not is_sde_process:
        raise ValueError(f"noise={noise!r} applies to SDEs; the process is a probability-flow ODE, which draws no "
                         f"noise (solver {solver.name!r}): leave noise=None")  # fmt: skip
    if noise == "bridge" and not solver.adaptive:
        raise ValueError(f"noise='bridge' is defined for adaptive solvers (it refines the increments of rejected "
                         f"steps); solver {solver.name!r} uses a fixed grid: use 'counter' or 'tree'")  # fmt: skip
    if noise == "bridge" and is_sde_process and solver.n_noise != 1:
        raise ValueError(f"noise='bridge' gives one Brownian increment per step; solver {solver.name!r} needs "
                         f"{solver.n_noise} normals per step")  # fmt: skip
    solver.check_process(process)
    if solver.adaptive:
        if steps is not None or grid is not None:
            raise ValueError(f"solver {solver.name!r} chooses its own steps; do not pass steps or grid")
        ts = _adaptive_stops(solver, save_at, t0, t1)
        rtol = None if rtol is None else positive_number("rtol", rtol)
        atol = None if atol is None else positive_number("atol", atol)
    else:
        ts = _resolve_grid(process, t0, t1, steps, grid)
    if (rtol is not None or atol is not None) and not solver.adaptive:
        raise ValueError(f"rtol/atol apply to adaptive solvers; solver {solver.name!r} uses a fixed grid")
    seed = check_seed(seed)
    n = x0.shape[0]
    sample_ids = np.arange(n, dtype=np.int64) if sample_ids is None else check_sample_ids(sample_ids, n)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable callback(info) or None, got {callback!r}")
    callback = None if callback is None else StepCallback(callback, n)  # one contract for every loop's info
    score = getattr(process, "score", None)
    if cond is not None:
        if score is None:
            raise ValueError(f"cond conditions a score; the process {process!r} has none")
        score = ConditionedScore(score, cond, n)
        process = type(process)(process.sde, score)
    needs = {"adaptive": True} if solver.adaptive else {}
    if noise in ("tree", "bridge") and is_sde_process:
        needs[f"{noise}_noise"] = True
    name = _pick_backend(backend, x0, score, solver, needs)
    entry = get_backend(name)
    log_snr = solver.adaptive and solver.time_for(getattr(process, "sde", process)) == "log_snr"
    if (not entry.fused_scores or log_snr) and score is not None:  # a fused backend checks the scores it cannot
        process = type(process)(process.sde, CheckedScore(score))  # compile itself (the time change it cannot)
    job_grid = ts
    if log_snr:  # steps in lambda = log(alpha / sigma): the time-changed process (sdekit.timechange)
        process, job_grid, callback = in_log_snr_time(process, ts, callback)
    job = Job(
        process=process,
        solver=solver,
        x0=x0,
        grid=job_grid,
        seed=seed,
        sample_ids=sample_ids,
        save_index=_resolve_save(save_at, ts),
        progress=bool(progress),
        check_finite=bool(check_finite),
        stochastic=is_sde_process,
        rtol=rtol,
        atol=atol,
        noise=noise,
        callback=callback,
    )
    reason = "requested"
    if backend == "auto":  # weigh a kernel's compilation against the job (sdekit.backends.auto)
        name, job, reason = settle_auto(name, job, entry)
        entry = get_backend(name)
    x, saved, nfe, stats = entry.run(job)
    stats.update(backend=name, backend_reason=reason, solver=solver.name, wall_time=time.perf_counter() - start)
    ts_saved = xs = None
    if job.save_index is not None:
        ts_saved = ts[sorted(job.save_index)]
        # backends return the saved states as one preallocated array (n_saved, *x.shape)
        xs = _xp.lib(x).stack(saved) if isinstance(saved, list) else saved
    t_final = stats.pop("t_final", t1)
    if log_snr:  # the loop's end time is lambda(t1)
        t_final = t1
    return Solution(x=x, t=t_final, ts=ts_saved, xs=xs, nfe=int(nfe), stats=stats)


def _grad_mode(x):
    """The torch backend's autograd mode for tensors (the final denoising step obeys it too), else nothing."""
    if not _xp.is_torch(x):
        return contextlib.nullcontext()
    from .backends.torch_ import grad_mode

    return grad_mode(x)


def tweedie_denoise(sde: LinearSDE, score, x, t):
    """Tweedie's denoising step at time ``t``: ``E[x_0 | x_t] = (x + sigma^2 score(x, t)) / alpha``.

    (Efron 2011; used at the end of sampling by score_sde and EDM.) Costs one score evaluation.
    """
    if not isinstance(sde, LinearSDE):
        raise ValueError(f"denoise needs a LinearSDE (with alpha and sigma), got {sde!r}; pass denoise=False")
    alpha, sigma = (float(c) for c in sde.marginal(float(t)))  # python floats keep x's dtype
    return (x + (sigma * sigma) * score(x, _xp.full_time(t, x))) / alpha


#: ``sample``'s own keyword arguments (anything else is a solver option, checked against the solver's constructor).
SAMPLE_OPTIONS = (
    "n", "x_T", "shape", "solver", "steps", "grid", "t_end", "denoise", "process", "seed", "backend", "progress",
    "save_at", "check_finite", "device", "dtype", "noise", "sample_ids", "cond", "callback",
)  # fmt: skip

#: Steps of a fixed-grid ``sample`` when ``steps`` is not given.
DEFAULT_STEPS = 1000


def _event_shape(shape, score):
    """The event shape from ``shape`` (an int or a tuple of positive ints) or ``score.event_shape``."""
    event = shape if shape is not None else getattr(score, "event_shape", None)
    if event is None:
        raise ValueError("the event shape is unknown: pass shape=(d,) (or x_T), or a score with event_shape")
    what = "shape" if shape is not None else "score.event_shape"
    if isinstance(event, numbers.Integral) and not isinstance(event, (bool, np.bool_)):
        event = (event,)
    if not isinstance(event, (tuple, list)) or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_)) and s >= 1 for s in event
    ):
        raise ValueError(f"{what} must be a positive integer or a tuple of positive integers, got {event!r}")
    return tuple(int(s) for s in event)


def _sample_grid(sde, solver, steps, grid, t_end):
    """The time grid of a fixed-step ``sample``: ``None`` for adaptive solvers (which refuse steps and grid)."""
    if solver.adaptive:
        if steps is not None or grid is not None:
            raise ValueError(
                f"solver {solver.name!r} chooses its own steps (tolerances: rtol=..., atol=...); do not pass "
                f"steps or grid (got steps={steps!r}, grid={grid!r})"
            )
        return None
    if grid is None:
        grid = solver.grid_for(sde)  # the solver family's schedule, or the SDE's own for the "uniform" family
    if isinstance(grid, str) or callable(grid):
        return make_grid(sde, positive_int("steps", DEFAULT_STEPS if steps is None else steps), grid, t_end)
    if steps is not None:
        raise ValueError(f"give steps or an explicit grid, not both (got steps={steps!r} and a grid array)")
    return grid


def check_sample(sde, score, *, n=None, x_T=None, shape=None, solver="euler_maruyama", steps=None, grid=None,
                 t_end=None, denoise=True, process="auto", device=None, dtype=None, **solver_options):  # fmt: skip
    """Every check :func:`sample` makes before it draws or solves anything (the same messages); returns
    ``(solver, process, t_end)``. ``sdekit.distributed.sample`` runs it before it writes its store, so a mistake
    is reported at once instead of by every worker."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdekit.SDE (e.g. VPSDE()), got {sde!r}")
    if not callable(score):
        raise TypeError(f"score must be callable score(x, t), got {score!r}")
    try:
        solver = get_solver(solver, **solver_options)
    except ValueError as exc:
        if solver_options and "unknown option" in str(exc):
            raise ValueError(f"{exc}; sample() itself takes: {list(SAMPLE_OPTIONS)}") from None
        raise
    if process not in ("auto", "sde", "ode"):
        raise ValueError(f"process must be one of ['auto', 'sde', 'ode'], got {process!r}")
    kind = solver.default_process if process == "auto" else process
    if kind == "sde" and not solver.is_sde:
        raise ValueError(f"solver {solver.name!r} integrates ODEs only; it cannot run process='sde'")
    if kind == "ode" and not solver.is_ode:
        raise ValueError(f"solver {solver.name!r} integrates SDEs only; it cannot run process='ode'")
    proc = sde.reverse(score) if kind == "sde" else sde.probability_flow(score)
    t_end = in_interval("t_end", sde.eps if t_end is None else t_end, 0.0, sde.T, what=f"(0, T) = (0, {sde.T})")
    if (x_T is None) == (n is None):
        raise ValueError("give exactly one of n (number of samples) and x_T (initial states)")
    if x_T is not None and (device is not None or dtype is not None):
        raise ValueError(f"device and dtype apply to a drawn x_T; x_T was given (device={device!r}, dtype={dtype!r})")
    if (x_T is None) == (n is None):
        raise ValueError("give exactly one of n (number of samples) and x_T (initial states)")
    if x_T is not None and (device is not None or dtype is not None):
        raise ValueError(f"device and dtype apply to a drawn x_T; x_T was given (device={device!r}, dtype={dtype!r})")
    if x_T is None:
        positive_int("n", n)
        _event_shape(shape, score)
        if not hasattr(sde, "prior_sample"):
            raise ValueError(f"sde {sde!r} has no prior to sample from; pass x_T")
    if denoise and not isinstance(sde, LinearSDE):
        raise ValueError(f"denoise=True needs a LinearSDE, got {sde!r}; pass denoise=False")
    _sample_grid(sde, solver, steps, grid, t_end)
    return solver, proc, t_end


def sample(
    sde,
    score,
    *,
    n=None,
    x_T=None,
    shape=None,
    solver="euler_maruyama",
    steps=None,
    grid=None,
    t_end=None,
    denoise=True,
    process="auto",
    seed=0,
    backend="auto",
    progress=False,
    save_at=None,
    check_finite=True,
    device=None,
    dtype=None,
    noise=None,
    sample_ids=None,
    cond=None,
    callback=None,
    **solver_options,
) -> Solution:
    """Draw samples: start from the prior at ``T``, integrate to ``t_end`` (default ``sde.eps``), denoise.

    Parameters
    ----------
    sde : SDE
        The forward process (``VPSDE()``, ``EDMSDE()``, ...).
    score : callable ``score(x, t)``
        ``x`` of shape ``(n, *event)``, ``t`` of shape ``(n,)``; returns an array like ``x``.
    n, x_T, shape
        Either ``x_T`` (the initial state) or ``n``; the event shape then comes from ``shape`` or from
        ``score.event_shape``. The prior draw for sample ``i`` depends only on ``(seed, sample_ids[i])``.
    solver : str or Solver
        Any registered solver; ``solver_options`` go to its constructor (their names are checked against it).
    steps, grid
        Number of steps (default 1000) and the schedule: a name in ``sdekit.grids.GRIDS``, a callable
        ``grid(sde, steps, t_end)``, or an explicit decreasing array of times from ``T`` to ``t_end``. The default
        schedule is ``solver.grid_for(sde)``: the solver family's ``default_grid`` (``"log_snr"`` for the
        exponential integrators, EDM's ``"karras"`` for ``edm``, ``"time_uniform"`` for the Adams methods); for the
        ``"uniform"`` family (score_sde's samplers, the Runge-Kutta methods) the SDE's ``default_grid``: uniform in
        ``t`` on VP, sub-VP, VE and ``DiscreteVPSDE``, ``"karras"`` on ``EDMSDE`` (whose ``t`` is the noise level);
        ``"uniform"`` on SDEs that are not linear. Adaptive solvers take neither.
    denoise : bool
        Apply Tweedie's step ``(x + sigma^2 score) / alpha`` at ``t_end`` (one more NFE).
    process : {"auto", "sde", "ode"}
        Reverse SDE or probability-flow ODE; ``"auto"`` takes the solver's natural process (ODE for
        solvers that do both).
    device, dtype
        Where and in which dtype to draw ``x_T`` when it is not given and the torch backend runs (``backend="torch"``,
        or ``"auto"`` with a torch-module score or either keyword given). Default: the device and dtype of the
        score module's parameters, else CPU float32.
    noise : {None, "counter", "tree", "bridge"}
        Noise source of SDE solvers (see :func:`solve`).
    sample_ids : (n,) integers, optional
        Global ids of the samples (default ``0 .. n-1``): sample ``i``'s prior draw and noise depend only on
        ``(seed, sample_ids[i])``, so a batch sampled in chunks, each with its ids, equals the batch sampled at once.
    cond : dict, optional
        Per-sample conditioning (keyword name -> array/tensor with leading dimension ``n``): the score is called
        ``score(x, t, **cond)`` on the rows it is given, the final denoising step included (see :func:`solve`).
    callback : callable, optional
        ``callback(info)`` after each step, ``info = {"step", "t", "x", "denoised"}`` (see :func:`solve`).
    """
    solver, proc, t_end = check_sample(
        sde, score, n=n, x_T=x_T, shape=shape, solver=solver, steps=steps, grid=grid, t_end=t_end, denoise=denoise,
        process=process, device=device, dtype=dtype, **solver_options
    )  # fmt: skip
    if x_T is None:
        n, event = positive_int("n", n), _event_shape(shape, score)
        ids = None if sample_ids is None else check_sample_ids(sample_ids, n)
        x_T = initial_state(sde, (n,) + event, check_seed(seed), backend, score, device, dtype, ids)
    ts = _sample_grid(sde, solver, steps, grid, t_end)
    sol = solve(
        proc,
        x_T,
        sde.T,
        t_end,
        solver,
        grid=ts,
        seed=seed,
        backend=backend,
        progress=progress,
        save_at=save_at,
        check_finite=check_finite,
        noise=noise,
        sample_ids=sample_ids,
        cond=cond,
        callback=callback,
    )
    if denoise:  # a LinearSDE (check_sample)
        final = score if cond is None else ConditionedScore(score, cond, sol.x.shape[0])
        with _grad_mode(sol.x):
            sol.x = tweedie_denoise(sde, CheckedScore(final), sol.x, t_end)
        sol.nfe += 1
    if check_finite and not _xp.isfinite_all(sol.x):
        n_steps = len(ts) - 1 if ts is not None else -1
        raise NonFiniteError(n_steps, t_end, f"non-finite values after the final denoising step at t = {t_end}")
    return sol
