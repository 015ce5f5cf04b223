"""Teacher trajectories for :func:`sdekit.learn.fit`: the probability-flow states of the warm-up points at every
noise level, by cubic Hermite interpolation in the log noise level between stored states.

The teacher solves the probability-flow ODE once from the warm-up points (dopri5 at a tight tolerance, or the
exact flow of a single-Gaussian analytic density) and stores ``x_hat = x / alpha`` at ``K + 1`` levels equally
spaced in ``u = log s`` (``s = sigma / alpha``), with the ODE's own slope ``d x_hat / d u = s eps`` there (one
score call per level). Between them a cubic Hermite polynomial gives the state at any level in between, with an
error ``O(h^4)`` in the spacing ``h`` (``K = 96`` on EDM's range: ``h = 0.11``), so fitting a step of the learned
solver to the teacher's state at a level that moves during the fit needs no new ODE solve.
"""

from __future__ import annotations

import math

import numpy as np

from ..integrate import solve
from ..solvers._common import coeffs

__all__ = ["DenseTeacher"]


class DenseTeacher:
    """States of the probability-flow ODE of ``process`` from ``x_T`` at every noise level of ``[s(t_end),
    s(T)]`` (see the module docstring). ``density``: a single-Gaussian analytic density whose exact flow replaces
    the dopri5 solve; ``tol``: dopri5's rtol = atol; ``levels``: ``K``."""

    def __init__(self, process, x_T, t_end: float, *, density=None, tol: float = 1e-9, levels: int = 96):
        sde = process.sde
        self.sde, self.shape = sde, x_T.shape
        s_hi = _level(sde, sde.T)
        s_lo = _level(sde, t_end)
        self.u0, self.u1 = math.log(s_hi), math.log(s_lo)
        u = np.linspace(self.u0, self.u1, levels + 1)
        times = np.asarray(sde.t_from_log_snr(-u), dtype=np.float64)
        times[0], times[-1] = sde.T, t_end
        self.u, self.times = u, times
        if density is not None:
            xs = np.stack([x_T] + [density.flow(x_T, sde.T, float(t), sde) for t in times[1:]])
        else:
            sol = solve(process, x_T, sde.T, t_end, "dopri5", rtol=tol, atol=tol, save_at=times)
            xs = np.asarray(sol.xs)
            if xs.shape[0] != len(times):
                raise RuntimeError(f"the teacher saved {xs.shape[0]} states, expected {len(times)}")
        self.values = np.empty_like(xs)
        self.slopes = np.empty_like(xs)
        for j, t in enumerate(times):
            alpha, sigma = coeffs(sde, float(t))
            self.values[j] = xs[j] / alpha
            eps = -sigma * np.asarray(process.score(xs[j], np.full(xs.shape[1], float(t))))
            self.slopes[j] = (sigma / alpha) * eps
        self.n_score_calls = len(times)

    def extend(self, other: DenseTeacher) -> None:
        """Append the trajectories of ``other`` (a teacher of more start points on the same levels)."""
        if not np.array_equal(other.u, self.u) or other.values.shape[2:] != self.values.shape[2:]:
            raise ValueError("extend needs a teacher on the same levels and event shape")
        self.values = np.concatenate([self.values, other.values], axis=1)
        self.slopes = np.concatenate([self.slopes, other.slopes], axis=1)
        self.shape = (self.values.shape[1],) + tuple(self.shape[1:])
        self.n_score_calls += other.n_score_calls

    @property
    def endpoint(self) -> np.ndarray:
        """The state at ``t_end`` (in ``x``, not ``x_hat``)."""
        return self.values[-1] * coeffs(self.sde, float(self.times[-1]))[0]

    def x_hat(self, s: float, rows=slice(None)) -> np.ndarray:
        """The teacher's ``x_hat`` at noise level ``s`` for the warm-up points ``rows``."""
        u = min(max(math.log(s), self.u1), self.u0)
        h = (self.u1 - self.u0) / (len(self.u) - 1)
        j = min(int((u - self.u0) / h), len(self.u) - 2)
        r = (u - self.u[j]) / h
        if r <= 0.0:
            return self.values[j][rows]
        h00, h10 = 2 * r**3 - 3 * r**2 + 1, r**3 - 2 * r**2 + r
        h01, h11 = -2 * r**3 + 3 * r**2, r**3 - r**2
        return (h00 * self.values[j][rows] + h10 * h * self.slopes[j][rows] + h01 * self.values[j + 1][rows]
                + h11 * h * self.slopes[j + 1][rows])  # fmt: skip


def _level(sde, t: float) -> float:
    alpha, sigma = coeffs(sde, float(t))
    return sigma / alpha
