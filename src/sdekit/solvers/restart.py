"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes", Alg. 1; the authors'
k-diffusion sampler ``restart_sampler``).

The main pass integrates the probability-flow ODE with EDM's Heun steps (``x_hat = x / alpha``, noise level ``s =
sigma / alpha``, ``d x_hat / d s = (x_hat - D) / s``). When it reaches the grid level closest to the restart
interval's lower end ``s_min`` it restarts ``K`` times: forward noise takes ``x_hat`` from ``s_min`` up to the
interval's upper end ``s_max`` (the grid level closest to it), ``x_hat += s_noise sqrt(s_max^2 - s_min^2) z``
(the forward process's exact transition in EDM's variables), and the ODE is integrated back down to ``s_min``.
Then the main pass continues. The noise contracts the error accumulated above ``s_min`` (the paper's main
result), while every step is a deterministic ODE step.

Backward passes: with ``restart_steps=None`` (default) they step on the main grid's own levels between ``s_max``
and ``s_min``, so they refine with the grid and the output law converges with the ODE solver's weak order 2 (Heun);
an integer ``restart_steps`` gives each pass that many Heun steps on a Karras sub-grid (exponent ``rho``) from
``s_max`` to ``s_min``, as the reference sampler does (a fixed sub-grid leaves an error that does not vanish as the
main grid is refined). ``restart_interval=(s_min, s_max)`` is in EDM's noise level ``sigma / alpha`` (default
``(0.1, 2.0)``, the reference sampler's automatic choice); ``K`` restarts (default 1).

NFE: 2 per main step plus ``2 K`` per backward step (:meth:`Restart.nfe` counts them); ``K`` normal fields per step
(only the step that lands on ``s_min`` uses them).
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import integer_at_least, non_negative_number, positive_int, positive_number
from ._common import coeffs, linear_sde_of, score_at
from .base import FixedStepSolver, register

__all__ = ["Restart", "level_coeffs"]


def _heun(process, sde, x_hat, s, s_next, d=None):
    """One Heun step of ``d x_hat / d s = (x_hat - D) / s`` (2 NFE; 1 when the slope ``d`` at the start is given)."""
    if d is None:
        d = _slope(process, sde, x_hat, s)
    x_e = x_hat + (s_next - s) * d
    return x_hat + (0.5 * (s_next - s)) * (d + _slope(process, sde, x_e, s_next))


def level_coeffs(sde, s: float) -> tuple[float, float, float]:
    """``(t, alpha(t), sigma(t))`` at EDM noise level ``s = sigma / alpha`` (where a Heun stage evaluates the score;
    the fused kernel's host tables use the same numbers)."""
    t = float(sde.t_from_log_snr(-math.log(s)))
    alpha, sigma = coeffs(sde, t)
    return t, alpha, sigma


def _slope(process, sde, x_hat, s):
    """``(x_hat - D) / s = -sigma * score(alpha x_hat, t)`` (the noise prediction) at noise level ``s`` (1 NFE)."""
    t, alpha, sigma = level_coeffs(sde, s)
    return -sigma * score_at(process, alpha * x_hat, t)


@register
class Restart(FixedStepSolver):
    """Restart sampling with EDM's Heun ODE steps; see the module docstring. Weak order 2 (``restart_steps=None``),
    deterministic order 2 between restarts; 2 NFE per main step plus the backward passes (``nfe``)."""

    name = "restart"
    order = 2
    strong_order = None
    weak_order = 2.0
    is_sde = True
    nfe_per_step = 2
    n_brownian = 0
    # exact output law on Gaussian data (VP and EDM, 5-20 steps): 3-4x closer to p(t_end) than on karras or log_snr
    default_grid = "time_uniform"

    def __init__(self, restart_interval=(0.1, 2.0), K: int = 1, restart_steps=None, s_noise: float = 1.0, rho=7.0):
        try:
            lo, hi = (positive_number("restart_interval", v) for v in restart_interval)
        except TypeError:
            raise ValueError(f"restart_interval must be a pair (s_min, s_max), got {restart_interval!r}") from None
        if not lo < hi:
            raise ValueError(f"restart_interval must have s_min < s_max, got {restart_interval!r}")
        self.restart_interval = (lo, hi)
        self.K = integer_at_least("K", K, 0)
        self.restart_steps = None if restart_steps is None else positive_int("restart_steps", restart_steps)
        self.s_noise = non_negative_number("s_noise", s_noise)
        self.rho = positive_number("rho", rho)
        self.n_noise = max(self.K, 1)

    def __repr__(self):
        return (
            f"Restart(restart_interval={self.restart_interval}, K={self.K}, restart_steps={self.restart_steps}, "
            f"s_noise={self.s_noise}, rho={self.rho})"
        )

    def check_process(self, process):
        linear_sde_of(process, self.name)

    # -- the restart plan -------------------------------------------------------------------------------
    def plan(self, sde, grid):
        """``(j_min, levels)``: the grid index after which the restarts run (``None``: no restart on this grid)
        and the noise levels of one backward pass, from ``s_max`` down to the level at ``j_min``."""
        levels = np.array([float(s) / float(a) for a, s in (sde.marginal(float(t)) for t in grid)])
        lo, hi = self.restart_interval
        j_min = int(np.argmin(np.abs(levels - lo)))
        j_max = int(np.argmin(np.abs(levels - hi)))
        if self.K == 0 or j_max >= j_min:
            return None, None
        if self.restart_steps is None:
            return j_min, levels[j_max : j_min + 1]
        ramp = np.linspace(0.0, 1.0, self.restart_steps + 1)
        a, b = levels[j_max] ** (1.0 / self.rho), levels[j_min] ** (1.0 / self.rho)
        sub = (a + ramp * (b - a)) ** self.rho
        sub[0], sub[-1] = levels[j_max], levels[j_min]
        return j_min, sub

    def nfe(self, grid, process=None) -> int:
        main = 2 * (len(grid) - 1)
        if process is None:
            return main
        j_min, levels = self.plan(process.sde, grid)
        return main if j_min is None else main + 2 * self.K * (len(levels) - 1)

    # -- steps --------------------------------------------------------------------------------------------
    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        if ctx.index == 0:
            ctx.memory["restart"] = self.plan(sde, ctx.grid)
        j_min, levels = ctx.memory["restart"]
        alpha, sigma = coeffs(sde, t)
        alpha_n, sigma_n = coeffs(sde, t_next)
        s, s_next = sigma / alpha, sigma_n / alpha_n
        x_hat = x / alpha
        d = _slope(process, sde, x_hat, s)
        ctx.denoised = x_hat - s * d  # the data prediction at the step's start, for the step callback
        x_hat = _heun(process, sde, x_hat, s, s_next, d)
        if j_min is not None and ctx.index + 1 == j_min:
            jump = self.s_noise * math.sqrt(max(levels[0] ** 2 - levels[-1] ** 2, 0.0))
            for r in range(self.K):
                x_hat = x_hat + jump * z[r]  # forward noise from s_min up to s_max
                for a, b in zip(levels[:-1], levels[1:]):
                    x_hat = _heun(process, sde, x_hat, float(a), float(b))
        return alpha_n * x_hat
