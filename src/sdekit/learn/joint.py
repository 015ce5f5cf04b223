"""The joint stage of :func:`sdekit.learn.fit`: Gauss--Newton on every coefficient of a fitted solver at once,
against the endpoint error (see ``docs/learn.md``).

Stage 2 fits each step to the teacher's state at its end level, one step after another; that greedy fit is not the
least endpoint error. Here the parameters -- each step's ``scale``, its history ``weights`` (up to its order) and the
log offsets of its score call -- move together to lower the weighted endpoint RMS on the training points. The
solver's output is differentiable in them, so the Jacobian of the residuals is taken by forward differences (one
sampler run per parameter: no autograd, any numpy score), and each iteration solves the Levenberg--Marquardt system
``(J^T J + lam diag(J^T J)) d = -J^T r``, taking the step only when it lowers the error.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import NonFiniteError
from .solver import LearnedSolver

__all__ = ["gauss_newton", "joint_stage"]


def _pack(solver, offsets):
    cols = [(k, j) for k in range(solver.n_steps) for j in range(int(solver.orders[k]))]
    evaluated = [k for k in range(solver.n_steps) if offsets and not (solver.afs and k == 0)]
    theta = np.concatenate([solver.scales, [solver.weights[k, j] for k, j in cols], solver.offsets[evaluated]])
    return theta, cols, evaluated


def _unpack(solver, theta, cols, evaluated):
    n = solver.n_steps
    weights, offsets = solver.weights.copy(), solver.offsets.copy()
    for v, (k, j) in zip(theta[n : n + len(cols)], cols):
        weights[k, j] = v
    offsets[evaluated] = theta[n + len(cols) :]
    return LearnedSolver(solver.sde, solver.base, solver.grid, weights, solver.orders, theta[:n], offsets,
                         afs=solver.afs, denoise=solver.denoise)  # fmt: skip


def _residual(residual, solver, theta, cols, evaluated):
    """The residuals of the candidate ``theta`` as a flat array, or ``None`` where it fails (non-finite output, a
    time offset outside the SDE's range)."""
    try:
        with np.errstate(all="ignore"):
            r = np.asarray(residual(_unpack(solver, theta, cols, evaluated)), dtype=np.float64).reshape(-1)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError, NonFiniteError):
        return None
    return r if np.all(np.isfinite(r)) else None


def gauss_newton(residual, solver, iterations: int, offsets: bool = True, rel_step: float = 1e-6):
    """``(solver, rms, runs)``: ``solver`` after ``iterations`` Levenberg--Marquardt steps on ``residual``.

    ``residual(solver) -> ndarray (n, ...)``: the weighted endpoint residuals of a candidate on the training points
    (its squared sum over points is the weighted mean squared error times ``n``); ``rms`` the returned solver's
    ``sqrt(sum r^2 / n)``; ``runs`` the calls of ``residual`` (each a sampler run on the training points). The
    returned solver is never worse than ``solver`` on ``residual``. ``offsets=False``: the time offsets stay."""
    theta, cols, evaluated = _pack(solver, offsets)
    r0 = np.asarray(residual(solver))
    n, r = r0.shape[0], r0.reshape(-1)
    cost, lam, runs = float(r @ r), 1e-3, 1
    for _ in range(iterations):
        jac = np.empty((r.size, theta.size))
        for p in range(theta.size):
            h = rel_step * max(1.0, abs(theta[p]))
            trial = theta.copy()
            trial[p] += h
            r_p = _residual(residual, solver, trial, cols, evaluated)
            jac[:, p] = 0.0 if r_p is None else (r_p - r) / h
        runs += theta.size
        a, b = jac.T @ jac, jac.T @ r
        while lam < 1e6:
            damp = lam * (np.diag(a) + 1e-12 * np.trace(a) / len(a))
            trial = theta + np.linalg.solve(a + np.diag(damp), -b)
            r_new = _residual(residual, solver, trial, cols, evaluated)
            runs += 1
            new = math.inf if r_new is None else float(r_new @ r_new)
            if new < cost:
                theta, r, cost, lam = trial, r_new, new, lam / 3.0
                break
            lam *= 10.0
        else:
            break
    return _unpack(solver, theta, cols, evaluated), math.sqrt(cost / n), runs


def joint_stage(st, iterations: int, offsets: bool) -> None:
    """Stage 5 of :func:`sdekit.learn.fit` (its shared state ``st``): Gauss--Newton from the trained candidate with
    the least training error, on the training points; the result is candidate ``joint``."""
    if not iterations:
        return
    start = min((k for k in st.candidates if k != "base"), key=st.train_err.get)
    solver, err, runs = gauss_newton(lambda c: st.fitter.residual(c, st.train), st.candidates[start], iterations,
                                     offsets)  # fmt: skip
    st.candidates["joint"], st.train_err["joint"], st.polish_evals["joint"] = solver, err, runs
    st.say(f"joint from {start}: {runs} runs, train RMS {err:.3e}")
