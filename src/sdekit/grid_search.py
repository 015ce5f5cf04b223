"""Time grids chosen for one solver and one budget: :func:`optimize` (also ``sdekit.grids.optimize``).

A few-step sampler's error depends on where its few steps are as much as on the method. This module picks the grid
of one probability-flow ODE solver at a given number of score evaluations, on a few warm-up start points, and
returns it as an ordinary decreasing array of times from ``T`` to ``t_end`` that every entry point accepts
(``sample(..., grid=g)``, ``solve(..., grid=g)``; for k-diffusion and diffusers pass the noise levels
``sigma(g) / alpha(g)``).

Two methods:

* ``method="error"`` (default) -- minimise the solver's own endpoint error over the grid. The reference endpoints
  are the exact probability-flow map when the data law is a :class:`~sdekit.analytic.Gaussian` (``density=``), else
  a tight teacher solve of the same start points (dopri5 at ``teacher_tol``). The interior grid points are
  parametrised by the shares of the log noise level ``log(sigma / alpha)`` taken by each step (a softmax, so every
  candidate is a valid decreasing grid) and the RMS endpoint error is minimised by Nelder--Mead from the best of the
  starting grids in ``init``; the best grid seen, the starting grids included, is returned, so the result is never
  worse than its start on the warm-up points (with ``holdout``, on all of them, part of which were not fitted).
  How well it transfers to other start points depends on the warm-up set representing the error's tail: at 5--10
  NFE on multimodal data the RMS is carried by the few trajectories that end far from their exact endpoints, and a
  grid fitted to 30 points can be worse on others than the schedule it started from; use a few hundred points
  there (``n``), or ``holdout`` to fall back to the start when the fit does not carry over.
* ``method="dp"`` -- GITS (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion Sampling"; zju-pi/
  diff-sampler ``gits_utils.py``): a teacher trajectory on a fine grid (``teacher_steps`` steps of the first
  ``init`` schedule, integrated by dopri5), the cost ``c(i, j)`` of one Euler step in EDM's variables from teacher
  point ``i`` to teacher level ``j`` (mean L2 distance to the teacher's point ``j``), and a dynamic programme
  choosing the ``n_steps`` of them that minimise ``c(i0, i1) + coeff c(i1, i2) + coeff^2 ...`` (GITS's ``coeff``,
  default 1.15). The solver enters only through its step count. Cheap (one score evaluation per teacher point per
  warm-up sample) and solver-agnostic; ``"error"`` is usually better for the solver it is run for.

The number of steps is the largest whose evaluations (``solver.nfe``, plus one for ``denoise=True``) fit ``nfe``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _xp
from .analytic import Gaussian
from .errors import NonFiniteError
from .grids import make_grid
from .integrate import initial_state, solve, torch_module, tweedie_denoise
from .sdes import LinearSDE
from .solvers import get_solver
from .validation import boolean, in_interval, integer_at_least, positive_int, positive_number

__all__ = ["optimize", "grid_error", "steps_for_budget", "gits_grid"]

METHODS = ("error", "dp")


def steps_for_budget(solver, process, nfe: int, t_end: float, denoise: bool, grid="time_uniform") -> int:
    """The largest number of steps whose ``solver.nfe`` on the named ``grid`` (plus ``denoise``) fits ``nfe``."""
    sde = process.sde
    n = 0
    while True:
        trial = make_grid(sde, n + 1, grid, t_end)
        if solver.nfe(trial, process) + int(denoise) > nfe:
            return n
        n += 1


def _numpy(x) -> np.ndarray:
    """A float64 numpy copy of an array or a (detached, host) tensor: errors and costs are host numbers."""
    if _xp.is_torch(x):
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


def _levels(sde, ts):
    return np.exp(-np.asarray(sde.log_snr(np.asarray(ts, dtype=np.float64)), dtype=np.float64))


def _grid_from_shares(sde, theta, u0, u1, t_end):
    """Decreasing grid from ``T`` to ``t_end`` whose log noise levels split ``[u1, u0]`` in the shares
    ``softmax(theta)``."""
    w = np.exp(theta - np.max(theta))
    w = w / w.sum()
    u = u0 + (u1 - u0) * np.concatenate([[0.0], np.cumsum(w)])
    ts = np.asarray(sde.t_from_log_snr(-u), dtype=np.float64)
    ts[0], ts[-1] = sde.T, t_end
    return ts


def grid_error(process, solver, x_T, grid, ref, denoise: bool = False, trim: float = 0.0) -> float:
    """RMS over samples of ``|x_out - ref|`` (Euclidean norm per sample) of one solve on ``grid`` (``inf`` when it
    does not finish); ``trim``: the fraction of the largest per-sample errors left out of the mean."""
    sde = process.sde
    try:
        sol = solve(process, x_T, float(grid[0]), float(grid[-1]), solver, grid=np.asarray(grid))
    except (NonFiniteError, FloatingPointError, ValueError):
        return math.inf
    x = sol.x
    if denoise:
        x = tweedie_denoise(sde, process.score, x, float(grid[-1]))
    diff = _numpy(x - ref).reshape(x.shape[0], -1)
    sq = np.sum(diff * diff, axis=1)
    if trim > 0.0:
        sq = np.sort(sq)[: max(1, int(math.ceil((1.0 - trim) * len(sq))))]
    err = float(np.sqrt(np.mean(sq)))
    return err if math.isfinite(err) else math.inf


def _reference(process, x_T, t_end, density, teacher_tol, denoise):
    sde = process.sde
    if isinstance(density, Gaussian):
        ref = density.flow(x_T, sde.T, t_end, sde)
    else:
        ref = solve(process, x_T, sde.T, t_end, "dopri5", rtol=teacher_tol, atol=teacher_tol).x
    if denoise:
        ref = tweedie_denoise(sde, process.score, ref, t_end)
    return ref


def gits_grid(process, x_T, n_steps: int, t_end: float, *, schedule="karras", teacher_steps: int = 60,
              coeff: float = 1.15, teacher_tol: float = 1e-8) -> np.ndarray:  # fmt: skip
    """GITS's dynamic programme (see the module docstring): ``n_steps`` steps chosen among the points of a
    ``teacher_steps``-step ``schedule`` grid."""
    sde = process.sde
    fine = make_grid(sde, teacher_steps, schedule, t_end)
    teach = solve(process, x_T, sde.T, t_end, "dopri5", rtol=teacher_tol, atol=teacher_tol, save_at=fine)
    states = teach.xs  # (M + 1, n, ...) in x_T's array library: the score is called on them
    m = len(fine) - 1
    alpha, sigma = (np.asarray(v, dtype=np.float64) for v in sde.marginal(fine))
    levels = sigma / alpha
    n = x_T.shape[0]
    xhat = _numpy(states).reshape(m + 1, n, -1) / alpha[:, None, None]
    eps = np.stack([-sigma[i] * _numpy(process.score(states[i], _xp.full_time(fine[i], states[i]))).reshape(n, -1)
                    for i in range(m)])  # fmt: skip
    cost = np.full((m + 1, m + 1), np.inf)
    for i in range(m):
        for j in range(i + 1, m + 1):
            step = xhat[i] + (levels[j] - levels[i]) * eps[i]
            cost[i, j] = np.mean(np.sqrt(np.sum((step - xhat[j]) ** 2, axis=1)))
    # value[k][i]: least cost of reaching the end from point i in k steps (later steps weighted by coeff)
    value = np.full((n_steps + 1, m + 1), np.inf)
    value[0, m] = 0.0
    choice = np.zeros((n_steps + 1, m + 1), dtype=np.int64)
    for k in range(1, n_steps + 1):
        for i in range(m):
            cand = cost[i, i + 1 :] + coeff * value[k - 1, i + 1 :]
            if k == 1:
                cand = cost[i, i + 1 :] + value[0, i + 1 :]
            j = int(np.argmin(cand))
            value[k, i], choice[k, i] = cand[j], i + 1 + j
    path, i = [0], 0
    for k in range(n_steps, 0, -1):
        i = int(choice[k, i])
        path.append(i)
    return fine[path].copy()


def _start_points(sde, score, x_T, shape, n, seed):
    """The start points: ``x_T``, or ``n`` prior draws of the event shape ``shape`` (or the score's
    ``event_shape``) in the score's library (a torch tensor for a torch-module score, as ``sample`` draws it)."""
    if x_T is not None:
        if torch_module(score) is not None and not _xp.is_torch(x_T):
            raise TypeError(
                f"the score is a torch module; pass x_T as a torch tensor (on the module's device), or leave x_T out "
                f"to draw it there; got {type(x_T).__name__}"
            )
        return x_T
    event = shape if shape is not None else getattr(score, "event_shape", None)
    if event is None:
        raise ValueError("give x_T, or shape=(d,), or a score with event_shape")
    event = (int(event),) if np.ndim(event) == 0 else tuple(int(s) for s in event)
    return initial_state(sde, (positive_int("n", n),) + event, seed, score=score)


def _fit_points(holdout: float, n_all: int) -> int:
    """The number of points fitted on when the fraction ``holdout`` (checked: in ``[0, 1)``) of ``n_all`` is held
    out."""
    n_fit = n_all - int(round(holdout * n_all))
    if n_fit < 1:
        raise ValueError(f"holdout={holdout} leaves no warm-up point to fit on (n = {n_all})")
    return n_fit


def _share_basis(n_steps: int, degree):
    """The basis of the log step shares: the identity, or Legendre polynomials of ``degree`` at the step centres."""
    if degree is None:
        return np.eye(n_steps)
    degree = min(degree, n_steps - 1)
    centres = (np.arange(n_steps) + 0.5) / n_steps * 2.0 - 1.0
    return np.polynomial.legendre.legvander(centres, degree)  # (n_steps, degree + 1)


def _nelder_mead(sde, basis, g0, err0, fit_error, interval, t_end, maxiter):
    """The best grid seen by one Nelder--Mead run on the shares' coefficients from the grid ``g0`` (error
    ``err0``); ``interval``: the log noise levels ``(u0, u1)`` of ``T`` and ``t_end``."""
    from scipy.optimize import minimize

    u0, u1 = interval
    run = {"err": err0, "grid": g0}

    def objective(c):
        grid = _grid_from_shares(sde, basis @ c, u0, u1, t_end)
        err = fit_error(grid)
        if err < run["err"]:
            run["err"], run["grid"] = err, grid
        return err

    theta0 = np.log(np.maximum(np.diff(np.log(_levels(sde, g0))) / (u1 - u0), 1e-12))
    minimize(
        objective,
        np.linalg.lstsq(basis, theta0, rcond=None)[0],
        method="Nelder-Mead",
        options={"maxiter": maxiter or 60 * basis.shape[1], "xatol": 1e-3, "fatol": 0.0, "adaptive": True},
    )
    return run["grid"]


def _check_teacher_steps(teacher_steps: int, n_steps: int, nfe: int, solver) -> None:
    if teacher_steps < n_steps:  # the programme picks n_steps distinct points of the teacher's grid
        raise ValueError(f"teacher_steps must be at least the grid's {n_steps} steps (nfe={nfe} buys {n_steps} "
                         f"steps of {solver.name!r}), got teacher_steps={teacher_steps}")  # fmt: skip


def _fit_options(*, maxiter, restarts, degree, trim, holdout, teacher_tol, density, denoise) -> dict:
    """The options of the ``"error"`` fit, checked (in this order)."""
    return {
        "maxiter": None if maxiter is None else positive_int("maxiter", maxiter),
        "restarts": positive_int("restarts", restarts),
        "degree": None if degree is None else integer_at_least("degree", degree, 1),
        "trim": in_interval("trim", trim, 0.0, 1.0, closed="left"),
        "holdout": in_interval("holdout", holdout, 0.0, 1.0, closed="left"),
        "teacher_tol": positive_number("teacher_tol", teacher_tol),
        "density": density,
        "denoise": denoise,
    }


def _budget(solver, process, nfe: int, t_end: float, denoise: bool, init):
    """``(inits, first, n_steps)``: the starting grids as a list, the schedule of the first, and the steps that
    ``nfe`` evaluations buy on it."""
    inits = [init] if isinstance(init, str) or (hasattr(init, "ndim") and np.ndim(init) == 1) else init
    if not isinstance(inits, (list, tuple)) or not all(isinstance(g, str) or np.ndim(g) == 1 for g in inits):
        raise TypeError(f"init must be a grid name, a 1-D array of times, or a list of them, got {init!r}")
    inits = list(inits)
    if not inits:
        raise ValueError("init must name at least one starting grid")
    first = inits[0] if isinstance(inits[0], str) else "time_uniform"
    n_steps = steps_for_budget(solver, process, nfe, t_end, denoise, first)
    if n_steps < 1:
        raise ValueError(f"nfe={nfe} does not buy one step of {solver.name!r}")
    return inits, first, n_steps


def _fit_grid(process, solver, x_T, inits, n_steps, nfe, t_end, *, density, teacher_tol, denoise, trim, holdout,
              degree, restarts, maxiter):  # fmt: skip
    """The ``"error"`` method of :func:`optimize` (arguments checked there): the starting grids and a Nelder--Mead
    run from each of the best ``restarts`` of them, fitted on the first points; the best candidate."""
    sde = process.sde
    ref = _reference(process, x_T, t_end, density, teacher_tol, denoise)
    n_all = x_T.shape[0]
    n_fit = _fit_points(holdout, n_all)
    x_fit, ref_fit = x_T[:n_fit], ref[:n_fit]
    u0, u1 = math.log(_levels(sde, [sde.T])[0]), math.log(_levels(sde, [t_end])[0])

    def fit_error(grid):
        return grid_error(process, solver, x_fit, grid, ref_fit, denoise, trim)

    starts = []
    for start in inits:
        g0 = make_grid(sde, n_steps, start, t_end) if isinstance(start, str) else np.asarray(start, dtype=np.float64)
        if len(g0) != n_steps + 1 or not np.all(np.diff(g0) < 0):
            raise ValueError(f"an init grid must be decreasing with {n_steps + 1} points for nfe={nfe}, got {start!r}")
        starts.append((fit_error(g0), g0))
    candidates = [g for _, g in starts]
    if n_steps > 1:
        basis = _share_basis(n_steps, degree)
        # Nelder--Mead from the best starting grids (``restarts`` of them, best first); keep each run's best grid
        for err0, g0 in sorted(starts, key=lambda p: p[0])[:restarts]:
            candidates.append(_nelder_mead(sde, basis, g0, err0, fit_error, (u0, u1), t_end, maxiter))
    if n_fit == n_all:
        return min(candidates, key=fit_error).copy()
    # with held-out points: the candidate (a starting grid or a run's best) with the least error on all of them
    return min(candidates, key=lambda g: grid_error(process, solver, x_T, g, ref, denoise, trim)).copy()


def optimize(
    sde,
    score,
    solver,
    nfe: int,
    *,
    method: str = "error",
    x_T=None,
    n: int = 64,
    shape=None,
    seed: int = 1234,
    init=("time_uniform", "karras", "log_snr"),
    t_end: float | None = None,
    denoise: bool = False,
    density=None,
    teacher_tol: float = 1e-8,
    teacher_steps: int = 60,
    coeff: float = 1.15,
    maxiter: int | None = None,
    restarts: int = 1,
    degree: int | None = None,
    trim: float = 0.0,
    holdout: float = 0.0,
    **solver_options,
) -> np.ndarray:
    """A decreasing grid from ``sde.T`` to ``t_end`` for the probability-flow ODE solver ``solver`` at ``nfe``
    score evaluations (see the module docstring for the two methods).

    Parameters
    ----------
    sde : LinearSDE
    score : callable ``score(x, t)``
    solver : str or Solver
        An ODE solver (``solver_options`` go to its constructor).
    nfe : int
        The budget: the grid has the most steps whose ``solver.nfe`` (plus 1 with ``denoise``) fits it.
    method : {"error", "dp"}
    x_T : array (n, *event), optional
        Warm-up start points at ``T``; default ``n`` prior draws (``shape`` or ``score.event_shape``) with ``seed``.
        Use other points to evaluate the result (the grid is fitted to these).
    init : grid name, array, or a list of them
        Starting grids of ``"error"`` (each is tried, the best result kept); the first one is the fine schedule of
        ``"dp"``.
    t_end : float, optional
        Last time (default ``sde.eps``).
    denoise : bool
        Count and apply the final Tweedie step (as ``sample(denoise=True)``), so the grid is fitted to the
        denoised output; one evaluation of the budget goes to it.
    density : Gaussian, optional
        The data law when it is a Gaussian: its exact flow is the reference (else the teacher solve is).
    teacher_tol : float
        rtol = atol of the dopri5 teacher.
    teacher_steps, coeff : int, float
        ``"dp"``: the fine grid's steps and GITS's cost weight.
    maxiter : int, optional
        Nelder--Mead iterations per start (default ``60 n_steps``).
    restarts : int
        Nelder--Mead runs, from the best ``restarts`` of the ``init`` grids (default 1: the best one).
    degree : int, optional
        Restrict the log-shares of the steps to a polynomial of this degree in the step index (a smooth family:
        fewer parameters, smooth step ratios, better transfer to other start points when the warm-up set is small
        or the errors heavy-tailed); default ``None``: every share free.
    trim : float
        Fraction of the largest warm-up errors left out of the objective (default 0: the RMS of all). A trajectory
        near a boundary between modes can hold most of a small warm-up set's RMS; fitting the grid to it does not
        transfer to other start points, fitting the bulk does (but the tail then grows: on the benchmark's mixtures,
        where the RMS is tail-dominated, leave it at 0).
    holdout : float
        Fraction of the warm-up points (the last ones) not fitted to: the grid returned is the one, among the
        starting grids and each Nelder--Mead run's best, with the least error on all the warm-up points. Guards
        against grids that fit the fitted points only. Default 0: the best grid on the (all fitted) points.

    Returns
    -------
    ndarray (n_steps + 1,)
        float64 times, ``grid[0] = sde.T``, ``grid[-1] = t_end``, strictly decreasing.
    """
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"optimize needs a LinearSDE (grids live in its log noise level), got {sde!r}")
    if not callable(score):
        raise TypeError(f"score must be callable score(x, t), got {score!r}")
    solver = get_solver(solver, **solver_options)
    if not solver.is_ode or solver.adaptive:
        raise ValueError(f"optimize chooses grids for fixed-step ODE solvers; solver {solver.name!r} is not one")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    nfe, denoise = positive_int("nfe", nfe), boolean("denoise", denoise)
    t_end = sde.eps if t_end is None else positive_number("t_end", t_end)
    # every option checked before any work (a bad one must not cost the teacher solve)
    fit = _fit_options(maxiter=maxiter, restarts=restarts, degree=degree, trim=trim, holdout=holdout,
                       teacher_tol=teacher_tol, density=density, denoise=denoise)  # fmt: skip
    teacher_steps, coeff = positive_int("teacher_steps", teacher_steps), positive_number("coeff", coeff)
    process = sde.probability_flow(score)
    inits, first, n_steps = _budget(solver, process, nfe, t_end, denoise, init)
    x_T = _start_points(sde, score, x_T, shape, n, seed)
    if method == "dp":
        _check_teacher_steps(teacher_steps, n_steps, nfe, solver)
        return gits_grid(process, x_T, n_steps, t_end, schedule=first, teacher_steps=teacher_steps, coeff=coeff,
                         teacher_tol=fit["teacher_tol"])  # fmt: skip
    return _fit_grid(process, solver, x_T, inits, n_steps, nfe, t_end, **fit)
