"""The exact output law of an affine solver on Gaussian data: :func:`exact_law`."""

from __future__ import annotations

import numbers

import numpy as np

from ..analytic import AnalyticDensity
from ..grids import make_grid
from ..integrate import tweedie_denoise
from ..loop import GridLoop, solve_grid
from ..sdes import LinearSDE
from ..solvers import get_solver

__all__ = ["exact_law"]


def _history_in_memory(memory, rows):
    """True when the solver left per-sample arrays in its per-solve ``memory`` (a multistep history)."""
    stack = list(memory.values())
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif getattr(v, "ndim", 0) >= 1 and v.shape[0] == rows:
            return True
    return False


def _affine_parts(fn, m, n_noise, name):
    """Linear parts of an affine map ``y = fn(x, z) = c + A x + sum_r B_r z_r`` around ``m``.

    Evaluates ``fn`` once on a batch of ``1 + d + n_noise d + 1`` rows: the mean, the mean plus each unit vector,
    the mean with each unit noise vector, and one random test row that checks the map really is affine.
    Returns ``(fn(m, 0), A, [B_r])``.
    """
    d = m.shape[0]
    rows = 1 + d + n_noise * d + 1
    rng = np.random.default_rng(20240611)
    v = rng.standard_normal(d)
    x = np.tile(m, (rows, 1))
    x[1 : 1 + d] += np.eye(d)
    x[-1] += v
    z = None
    w = []
    if n_noise:
        z = [np.zeros((rows, d)) for _ in range(n_noise)]
        for r in range(n_noise):
            z[r][1 + d + r * d : 1 + d + (r + 1) * d] = np.eye(d)
            w.append(rng.standard_normal(d))
            z[r][-1] = w[-1]
    y = fn(x, z)
    y0 = y[0]
    a = (y[1 : 1 + d] - y0).T
    bs = [(y[1 + d + r * d : 1 + d + (r + 1) * d] - y0).T for r in range(n_noise)]
    _check_affine(y0 + a @ v + sum((b @ wr for b, wr in zip(bs, w)), np.zeros(d)), y, name, "the state")
    return y, y0, a, bs


def _check_affine(predicted, y, name, what):
    """The test row (last row of ``y``) must equal its affine prediction to round-off."""
    scale = 1.0 + np.abs(y).max()
    if not np.all(np.abs(predicted - y[-1]) <= 1e-8 * scale):
        raise ValueError(
            f"{name} is not affine in {what} and the noise under a Gaussian data law "
            f"(test-row mismatch {np.abs(predicted - y[-1]).max():.3g}); exact_law does not apply"
        )


def _whole_solve_parts(solver, proc, ts, m, n_noise, name):
    """Affine parts of a whole fixed-grid solve ``x_out = c + A x_T + sum_{k,r} B_{k,r} z_{k,r}`` around ``m``.

    One solve through the reference numpy loop on ``2 + d + N n_noise d`` rows: the mean with all noise zero,
    the mean plus each unit vector, the mean with one unit noise component at one step and field each, and a
    random test row (random ``x_T`` offset and noise at every step) that checks the whole solve is affine.
    Covers multistep solvers, whose history lives in the per-solve ``StepContext.memory``. Returns ``(c, A, B)`` with
    ``B`` of shape ``(d, N n_noise d)``.
    """
    from ..backends.job import Job

    d = m.shape[0]
    n_steps = len(ts) - 1
    n_unit = n_steps * n_noise * d
    rows = 2 + d + n_unit
    rng = np.random.default_rng(20240611)
    v = rng.standard_normal(d)
    w = rng.standard_normal((n_steps, n_noise, d))
    x0 = np.tile(m, (rows, 1))
    x0[1 : 1 + d] += np.eye(d)
    x0[-1] += v

    def noise(job):
        def draw(k):
            z = np.zeros((n_noise, rows, d))
            base = 1 + d + k * n_noise * d
            for r in range(n_noise):
                z[r, base + r * d + np.arange(d), np.arange(d)] = 1.0
            z[:, -1] = w[k]
            return list(z)

        return draw

    job = Job(process=proc, solver=solver, x0=x0, grid=ts, seed=0, sample_ids=np.arange(rows), save_index=None,
              progress=False, check_finite=True, stochastic=n_noise > 0)  # fmt: skip
    y, _, _, _ = solve_grid(job, noise)
    c = y[0]
    a = (y[1 : 1 + d] - c).T  # column j: response to e_j in x_T
    bmat = (y[1 + d : 1 + d + n_unit] - c).T  # one column per (step, field, component)
    _check_affine(c + a @ v + bmat @ w.reshape(-1), y, name, "the start point")
    return c, a, bmat


def _law_grid(sde, grid) -> np.ndarray:
    """The grid of :func:`exact_law`: ``grid`` uniform steps down to ``sde.eps``, or the given decreasing times."""
    if isinstance(grid, numbers.Integral) and not isinstance(grid, bool):
        return make_grid(sde, int(grid), "uniform")
    ts = np.asarray(grid, dtype=np.float64)
    if ts.ndim != 1 or ts.shape[0] < 2 or not np.all(np.diff(ts) < 0):
        raise ValueError(f"grid must be a strictly decreasing 1-D array of times, got {grid!r}")
    if abs(ts[0] - sde.T) > 1e-12 * max(1.0, sde.T) or ts[-1] <= 0:
        raise ValueError(f"grid must run from T={sde.T} down to a positive t_end, got {ts[0]} ... {ts[-1]}")
    return ts


def _start_law(gaussian, sde, T: float, start: str):
    """``(mean, cov)`` at ``T``: the exact marginal of ``gaussian`` or the prior (``start``)."""
    if start == "marginal":
        return gaussian.mean_cov(T, sde)
    if start == "prior":
        return np.zeros(gaussian.dim), sde.prior_std**2 * np.eye(gaussian.dim)
    raise ValueError(f"start must be one of ['marginal', 'prior'], got {start!r}")


def exact_law(
    solver, sde, gaussian, grid, *, process="auto", start="marginal", denoise=False, method="auto", **solver_options
):
    """Exact mean and covariance of a solver's output when the data law is Gaussian.

    With ``p_0 = N(mu, Sigma)`` the exact score is affine in ``x``, so any solver built from drift evaluations,
    linear combinations (with coefficients that depend on the grid only) and Gaussian noise is affine in the
    start point and all the noise: ``x_out = c + A x_T + sum_{k,r} B_{k,r} z_{k,r}``, hence Gaussian with mean
    ``c + A m_T`` and covariance ``A C_T A^T + sum B B^T``. The parts are read off the solver itself, by
    running it on probe rows; no per-solver algebra, no Monte Carlo.

    * One-step solvers: per step, one batched ``step`` call on the mean, the mean plus unit vectors and unit
      noise vectors gives ``x' = c + A x + sum_r B_r z_r`` and the law is propagated,
      ``m' = c + A m``, ``C' = A C A^T + sum_r B_r B_r^T`` (``O(d)`` rows whatever the number of steps).
    * Multistep solvers (a per-sample history left in the per-solve ``memory`` is detected after the first
      step) and any other affine solver: one whole solve on ``2 + d + N n_noise d`` probe rows (the mean, unit
      offsets of ``x_T`` and one unit noise component per step, field and component) gives ``c``, ``A`` and
      every ``B_{k,r}`` at once (``O(N^2 n_noise d^2)`` work for ``N`` steps).

    Both check affinity on a random test row (each step, or the whole solve) and raise ``ValueError`` for a
    solver that is not affine under Gaussian data.

    Parameters
    ----------
    solver : str or Solver
        A fixed-grid solver (adaptive solvers are refused: their steps depend on the state).
    sde : LinearSDE
    gaussian : Gaussian
        The data law ``p_0``; the solver uses its exact score. Any :class:`~sdekit.analytic.AnalyticDensity` that
        declares ``exact_flow`` (``p_t`` one Gaussian) is accepted.
    grid : 1-D array or int
        Decreasing times from ``sde.T`` to ``t_end``, or a number of uniform steps down to ``sde.eps``.
    process : {"auto", "sde", "ode"}
        Reverse SDE or probability-flow ODE, as in :func:`sdekit.sample`.
    start : {"marginal", "prior"}
        Law at ``T``: the exact ``p_T`` or the prior ``N(0, prior_std^2 I)`` (what :func:`sdekit.sample` draws).
    denoise : bool
        Apply the final Tweedie step ``(x + sigma^2 score) / alpha`` (affine too).
    method : {"auto", "step", "solve"}
        ``"auto"``: per-step propagation, switching to the whole-solve probes when the solver turns out to be
        multistep; ``"step"``: per-step only (a multistep solver raises ``ValueError``); ``"solve"``: whole
        solve always.

    Returns
    -------
    mean : (d,), cov : (d, d)
        float64 numpy arrays: the exact law ``N(mean, cov)`` of the output at ``grid[-1]``.
    """
    solver = get_solver(solver, **solver_options)
    if not (isinstance(gaussian, AnalyticDensity) and gaussian.exact_flow):
        raise TypeError(
            "gaussian must be a Gaussian data law (an sdekit.Gaussian, or an AnalyticDensity that declares "
            f"exact_flow), got {gaussian!r}"
        )
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"sde must be a LinearSDE, got {sde!r}")
    if getattr(solver, "adaptive", False):
        raise ValueError(f"solver {solver.name!r} is adaptive; exact_law covers fixed-grid solvers only")
    if process not in ("auto", "sde", "ode"):
        raise ValueError(f"process must be one of ['auto', 'sde', 'ode'], got {process!r}")
    if method not in ("auto", "step", "solve"):
        raise ValueError(f"method must be one of ['auto', 'step', 'solve'], got {method!r}")
    kind = solver.default_process if process == "auto" else process
    if (kind == "sde" and not solver.is_sde) or (kind == "ode" and not solver.is_ode):
        raise ValueError(f"solver {solver.name!r} cannot integrate process={kind!r}")
    ts = _law_grid(sde, grid)
    m0, c0 = _start_law(gaussian, sde, float(ts[0]), start)
    score = gaussian.score(sde)
    proc = sde.reverse(score) if kind == "sde" else sde.probability_flow(score)
    solver.check_process(proc)
    n_noise = solver.n_noise if kind == "sde" else 0
    name = f"solver {solver.name!r}"
    m, c = m0, c0
    loop = GridLoop(solver, ts)
    multistep = method == "solve"
    for k in range(len(ts) - 1 if method != "solve" else 0):

        def one_step(x, z, k=k):
            return loop.step(proc, x, k, z=z)[0]

        y, m_new, a, bs = _affine_parts(one_step, m, n_noise, name)
        if _history_in_memory(loop.memory, y.shape[0]):
            if method == "step":
                raise ValueError(
                    f"{name} keeps a per-sample history between steps (multistep); method='step' covers one-step "
                    "solvers only (use method='auto' or 'solve')"
                )
            multistep = True  # the next step depends on this one's probe rows: propagate the whole solve
            break
        c = a @ c @ a.T + sum((b @ b.T for b in bs), np.zeros_like(c))
        m = m_new
    if multistep:
        c_out, a, bmat = _whole_solve_parts(solver, proc, ts, m0, n_noise, name)
        m, c = c_out, a @ c0 @ a.T + bmat @ bmat.T
    if denoise:
        t_end = float(ts[-1])
        _, m, a, _ = _affine_parts(lambda x, z: tweedie_denoise(sde, score, x, t_end), m, 0, "denoising")
        c = a @ c @ a.T
    return m, 0.5 * (c + c.T)
