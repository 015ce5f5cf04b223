"""``solve`` and ``sample``: validation once at the entry, then one backend runs the loop.

Nothing below the entry re-validates: backends receive a :class:`Job` whose fields are known good.
"""

from __future__ import annotations

import contextlib
import inspect
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
from .timegrid import adaptive_stops, resolve_grid, resolve_save
from .validation import in_interval, positive_int, positive_number, real_number

__all__ = ["solve", "sample", "check_sample", "initial_state", "torch_module", "tweedie_denoise", "Job"]

#: The valid ``backend=`` values at import (``"auto"`` and the registered backends, see
#: :mod:`sdekit.backends.registry`); ``solve`` reads the registry itself at each call.
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
    if backend not in backend_names():  # read at call time: a backend registered after import is valid
        raise ValueError(f"unknown backend {backend!r}; valid backends: {list(backend_names())}")
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


def _check_solver_fits(solver, process, is_sde_process: bool) -> None:
    """The solver integrates this kind of process (SDE or ODE, additive noise when it needs it)."""
    if is_sde_process and not solver.is_sde:
        raise ValueError(f"solver {solver.name!r} integrates ODEs only; the process {process!r} is an SDE")
    if not is_sde_process and not solver.is_ode:
        raise ValueError(f"solver {solver.name!r} integrates SDEs only; the process is a probability-flow ODE")
    if is_sde_process and solver.needs_additive_noise and process.noise != "additive":
        raise ValueError(f"solver {solver.name!r} needs additive noise; the process has noise={process.noise!r}")


def _check_interval(process, t0, t1) -> tuple[float, float]:
    """``(t0, t1)`` as floats inside the process's time range, in its direction (forward SDE up, reverse down)."""
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
    return t0, t1


def _check_noise(noise, solver, is_sde_process: bool) -> str:
    """The noise source: the default (``"bridge"`` for adaptive SDE solvers, else ``"counter"``) or the one given,
    checked against the solver."""
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
    return noise


def _solve_times(process, solver, t0, t1, steps, grid, save_at, rtol, atol):
    """``(ts, rtol, atol)``: the fixed grid, or for adaptive solvers the stops (and their checked tolerances)."""
    if solver.adaptive:
        if steps is not None or grid is not None:
            raise ValueError(f"solver {solver.name!r} chooses its own steps; do not pass steps or grid")
        ts = adaptive_stops(solver, save_at, t0, t1)
        rtol = None if rtol is None else positive_number("rtol", rtol)
        atol = None if atol is None else positive_number("atol", atol)
    else:
        ts = resolve_grid(process, t0, t1, steps, grid)
    if (rtol is not None or atol is not None) and not solver.adaptive:
        raise ValueError(f"rtol/atol apply to adaptive solvers; solver {solver.name!r} uses a fixed grid")
    return ts, rtol, atol


def _step_callback(callback, n: int):
    """The user's ``callback`` behind the one contract of every loop's ``info`` (:class:`StepCallback`), or None."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable callback(info) or None, got {callback!r}")
    return None if callback is None else StepCallback(callback, n)


def _backend_for(process, solver, x0, backend, noise, cond):
    """``(process, backend name, log_snr)``: the process with its score conditioned on ``cond`` (and wrapped in the
    output check unless a fused backend compiles it), the backend that runs it, and whether the solver steps in
    log-SNR time."""
    score = getattr(process, "score", None)
    if cond is not None:
        if score is None:
            raise ValueError(f"cond conditions a score; the process {process!r} has none")
        score = ConditionedScore(score, cond, x0.shape[0])
        process = type(process)(process.sde, score)
    is_sde_process = not isinstance(process, ProbabilityFlowODE)
    needs = {"adaptive": True} if solver.adaptive else {}
    if noise in ("tree", "bridge") and is_sde_process:
        needs[f"{noise}_noise"] = True
    name = _pick_backend(backend, x0, score, solver, needs)
    log_snr = solver.adaptive and solver.time_for(getattr(process, "sde", process)) == "log_snr"
    if (not get_backend(name).fused_scores or log_snr) and score is not None:  # a fused backend checks the
        process = type(process)(process.sde, CheckedScore(score))  # scores it compiles (not the time change)
    return process, name, log_snr


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
    solver, is_sde_process, t0, t1, noise = _check_problem(process, solver, solver_options, x0, t0, t1, noise)
    ts, rtol, atol = _solve_times(process, solver, t0, t1, steps, grid, save_at, rtol, atol)
    seed, n = check_seed(seed), x0.shape[0]
    sample_ids = np.arange(n, dtype=np.int64) if sample_ids is None else check_sample_ids(sample_ids, n)
    callback = _step_callback(callback, n)
    process, name, log_snr = _backend_for(process, solver, x0, backend, noise, cond)
    entry = get_backend(name)
    job_grid = ts
    if log_snr:  # steps in lambda = log(alpha / sigma): the time-changed process (sdekit.timechange)
        process, job_grid, callback = in_log_snr_time(process, ts, callback)
    job = Job(process=process, solver=solver, x0=x0, grid=job_grid, seed=seed, sample_ids=sample_ids,
              save_index=resolve_save(save_at, ts), progress=bool(progress), check_finite=bool(check_finite),
              stochastic=is_sde_process, rtol=rtol, atol=atol, noise=noise, callback=callback)  # fmt: skip
    reason = "requested"
    if backend == "auto":  # weigh a kernel's compilation against the job (sdekit.backends.auto)
        name, job, reason = settle_auto(name, job, entry)
        entry = get_backend(name)
    x, saved, nfe, stats = entry.run(job)
    stats.update(backend=name, backend_reason=reason, solver=solver.name, wall_time=time.perf_counter() - start)
    t_final = stats.pop("t_final", t1)  # the loop's end time (in log-SNR time lambda(t1): then t1 itself)
    ts_saved = ts[sorted(job.save_index)] if job.save_index is not None else None
    # saved: None, or the states at save_index as one preallocated array (n_saved, *x.shape) from every backend
    return Solution(x=x, t=t1 if log_snr else t_final, ts=ts_saved, xs=saved, nfe=int(nfe), stats=stats)


def _check_problem(process, solver, solver_options: dict, x0, t0, t1, noise) -> tuple:
    """:func:`solve`'s checks of the problem: builds the solver from ``solver`` and ``solver_options``; returns
    ``(solver, is_sde_process, t0, t1, noise)`` with the checked interval and the resolved noise mode."""
    if not isinstance(process, (SDE, ReverseSDE, ProbabilityFlowODE)):
        raise TypeError(f"process must be an SDE, ReverseSDE or ProbabilityFlowODE, got {type(process).__name__}")
    solver = get_solver(solver, **solver_options)
    is_sde_process = not isinstance(process, ProbabilityFlowODE)
    _check_solver_fits(solver, process, is_sde_process)
    _check_array("x0", x0)
    t0, t1 = _check_interval(process, t0, t1)
    noise = _check_noise(noise, solver, is_sde_process)
    solver.check_process(process)
    return solver, is_sde_process, t0, t1, noise


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
    return sde.denoise(score, x, t)


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
    if grid is None and steps is None and solver.fixed_grid is not None:
        return solver.fixed_grid  # a solver with its own times (sdekit.learn); it refuses any other grid
    if grid is None:
        grid = solver.grid_for(sde)  # the solver family's schedule, or the SDE's own for the "uniform" family
    if isinstance(grid, str) or callable(grid):
        return make_grid(sde, positive_int("steps", DEFAULT_STEPS if steps is None else steps), grid, t_end)
    if steps is not None:
        raise ValueError(f"give steps or an explicit grid, not both (got steps={steps!r} and a grid array)")
    return grid


def _sample_process(sde, score, solver, process):
    """The reverse SDE or the probability-flow ODE of ``sde`` with ``score``, as ``process`` (``"auto"``: the
    solver's natural one) asks."""
    if process not in ("auto", "sde", "ode"):
        raise ValueError(f"process must be one of ['auto', 'sde', 'ode'], got {process!r}")
    kind = solver.default_process if process == "auto" else process
    if kind == "sde" and not solver.is_sde:
        raise ValueError(f"solver {solver.name!r} integrates ODEs only; it cannot run process='sde'")
    if kind == "ode" and not solver.is_ode:
        raise ValueError(f"solver {solver.name!r} integrates SDEs only; it cannot run process='ode'")
    return sde.reverse(score) if kind == "sde" else sde.probability_flow(score)


def _denoise_final(sol, sde, score, cond, t_end) -> None:
    """Tweedie's step at ``t_end`` on ``sol.x`` in place (one more NFE), with the samples' own conditioning
    (``sde`` is a LinearSDE: :func:`check_sample`)."""
    final = score if cond is None else ConditionedScore(score, cond, sol.x.shape[0])
    with _grad_mode(sol.x):
        sol.x = tweedie_denoise(sde, CheckedScore(final), sol.x, t_end)
    sol.nfe += 1


def check_sample(sde, score, *, n=None, x_T=None, shape=None, solver="euler_maruyama", steps=None, grid=None,
                 t_end=None, denoise=True, process="auto", device=None, dtype=None, **solver_options):  # fmt: skip
    """Every check :func:`sample` makes before it draws or solves anything (the same messages); returns
    ``(solver, process, t_end)``. ``sdekit.distributed.sample`` runs it before it writes its store, so a mistake
    is reported at once instead of by every worker."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdekit.SDE (e.g. VPSDE()), got {sde!r}")
    if not callable(score):
        raise TypeError(f"score must be callable score(x, t), got {score!r}")
    solver = solver_with_options(solver, solver_options, "sample()")
    proc = _sample_process(sde, score, solver, process)
    t_end = in_interval("t_end", sde.eps if t_end is None else t_end, 0.0, sde.T, what=f"(0, T) = (0, {sde.T})")
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
    sol = solve(proc, x_T, sde.T, t_end, solver, grid=ts, seed=seed, backend=backend, progress=progress,
                save_at=save_at, check_finite=check_finite, noise=noise, sample_ids=sample_ids, cond=cond,
                callback=callback)  # fmt: skip
    if denoise:  # a LinearSDE (check_sample)
        _denoise_final(sol, sde, score, cond, t_end)
    if check_finite and not _xp.isfinite_all(sol.x):
        n_steps = len(ts) - 1 if ts is not None else -1
        raise NonFiniteError(n_steps, t_end, f"non-finite values after the final denoising step at t = {t_end}")
    return sol


#: ``sample``'s own keyword arguments, read off its signature (anything else is a solver option, checked against the
#: solver's constructor); ``sdekit.distributed.sample`` takes them too.
SAMPLE_OPTIONS = tuple(
    name for name, p in inspect.signature(sample).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def split_options(options: dict) -> tuple[dict, dict]:
    """``options`` as ``(sample's own, the solver's)`` (see :data:`SAMPLE_OPTIONS`)."""
    own = {k: v for k, v in options.items() if k in SAMPLE_OPTIONS}
    return own, {k: v for k, v in options.items() if k not in SAMPLE_OPTIONS}


def solver_with_options(solver, solver_options: dict, caller: str):
    """``get_solver(solver, **solver_options)``; an unknown option's error lists what ``caller`` itself takes (the
    run options of :func:`sample`), so a misspelt run option reads as such."""
    try:
        return get_solver(solver, **solver_options)
    except ValueError as exc:
        if solver_options and "unknown option" in str(exc):
            raise ValueError(f"{exc}; {caller} itself takes: {list(SAMPLE_OPTIONS)}") from None
        raise
