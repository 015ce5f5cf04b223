"""DPM-Solver-2 in the EDM noise level (Karras et al. 2022's "DPM2" sampler; diffusers' ``KDPM2DiscreteScheduler``
and ``KDPM2AncestralDiscreteScheduler``): an Euler half step to the geometric midpoint of the two noise levels, then
the whole step with the midpoint's slope."""

from __future__ import annotations

import math

from ..validation import non_negative_number
from ._common import coeffs, linear_sde_of, sqrt_pos
from .base import FixedStepSolver, register

__all__ = ["DPM2", "DPM2Ancestral"]


def _level(sde, t: float) -> tuple[float, float]:
    """``(alpha(t), s(t))``: the scale and the EDM noise level ``s = sigma / alpha``."""
    alpha, sigma = coeffs(sde, t)
    return alpha, sigma / alpha


def dpm2_move(process, sde, x_hat, t: float, s: float, s_to: float, ctx):
    """The DPM-Solver-2 move of the scaled state ``x_hat = x / alpha(t)`` (noise level ``s``) to level ``s_to``
    (``0 <= s_to < s``); 2 score evaluations, 1 when ``s_to = 0`` (the Euler step to ``s = 0``, which is the data
    prediction itself). Sets ``ctx.denoised`` (the step's first data prediction).

    In ``x_hat`` and ``s`` the probability-flow ODE reads ``dx_hat/ds = (x_hat - D(x_hat, s)) / s``, ``D`` the data
    prediction. With ``d = (x_hat - D(x_hat, s)) / s`` and the midpoint ``s_m = sqrt(s s_to)`` (the midpoint of
    ``log s``, i.e. of the log-SNR) at time ``t_m``::

        x_m = x_hat + (s_m - s) d;   d_m = (x_m - D(x_m, s_m)) / s_m;   x_hat' = x_hat + (s_to - s) d_m
    """
    alpha = coeffs(sde, t)[0]
    denoised = ctx.denoised = sde.denoise(process.score, alpha * x_hat, t)
    if s_to == 0.0:  # Euler to the data: x_hat + (0 - s) (x_hat - D) / s = D
        return denoised
    d = (x_hat - denoised) / s
    lam = -0.5 * (math.log(s) + math.log(s_to))  # the midpoint's log-SNR -log(s_m)
    s_mid = math.exp(-lam)
    t_mid = float(sde.t_from_log_snr(lam))
    x_mid = x_hat + (s_mid - s) * d
    alpha_mid = coeffs(sde, t_mid)[0]
    d_mid = (x_mid - sde.denoise(process.score, alpha_mid * x_mid, t_mid)) / s_mid
    return x_hat + (s_to - s) * d_mid


def _final_steps(grid, process) -> int:
    """How many steps of ``grid`` end at noise level 0 (1 evaluation each instead of 2)."""
    sde = getattr(process, "sde", None)
    if sde is None or not hasattr(sde, "marginal"):
        return 0
    return sum(1 for t in grid[1:] if coeffs(sde, float(t))[1] == 0.0)


@register
class DPM2(FixedStepSolver):
    """DPM-Solver-2 in the EDM noise level ``s = sigma / alpha`` of any :class:`LinearSDE` (k-diffusion's
    ``sample_dpm_2`` without churn; diffusers' ``KDPM2DiscreteScheduler``): the probability-flow ODE, deterministic.

    One step from level ``s`` to ``s'`` (see :func:`dpm2_move`): an Euler step to the geometric midpoint
    ``s_m = sqrt(s s')`` and the whole step with the midpoint's slope, ``x_hat' = x_hat + (s' - s) d(x_m, s_m)``; a
    step to ``s' = 0`` is the Euler step (the data prediction). It is the explicit midpoint rule in ``s`` with the
    stage placed at the log-midpoint: second order (Lu et al. 2022, DPM-Solver-2, in the EDM parameterisation of
    Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"). 2 NFE per step.
    """

    name = "dpm2"
    default_grid = "karras"  # k-diffusion's schedule for its sigma-space samplers
    order = 2
    is_ode = True
    nfe_per_step = 2

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def nfe(self, grid, process=None) -> int:
        return 2 * (len(grid) - 1) - _final_steps(grid, process)

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        alpha, s = _level(sde, t)
        alpha_n, s_n = _level(sde, t_next)
        return alpha_n * dpm2_move(process, sde, x / alpha, t, s, s_n, ctx)


@register
class DPM2Ancestral(FixedStepSolver):
    """Ancestral sampling with DPM-Solver-2 moves (k-diffusion's ``sample_dpm_2_ancestral``; diffusers'
    ``KDPM2AncestralDiscreteScheduler``), for the reverse process of any :class:`LinearSDE`.

    One step from level ``s`` to ``s'`` splits ``s'^2 = s_down^2 + s_up^2`` with
    ``s_up = min(s', eta sqrt(s'^2 (s^2 - s'^2) / s^2))`` (``eta = 1``: the DDPM posterior's noise), moves
    deterministically to ``s_down`` by :func:`dpm2_move` and adds ``s_up z`` (in ``x / alpha``). ``eta = 0`` is
    :class:`DPM2`. A first-order discretisation of the reverse SDE (weak order 1); 2 NFE per step (1 on a step to
    ``s' = 0``, where ``s_down = 0``).
    """

    name = "dpm2_ancestral"
    default_grid = "karras"
    order = 2
    weak_order = 1.0
    is_sde = True
    nfe_per_step = 2
    n_noise = 1
    n_brownian = 0

    def __init__(self, eta: float = 1.0):
        self.eta = non_negative_number("eta", eta)

    def __repr__(self):
        return f"DPM2Ancestral(eta={self.eta})"

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def nfe(self, grid, process=None) -> int:
        return 2 * (len(grid) - 1) - _final_steps(grid, process)

    def levels(self, s: float, s_next: float) -> tuple[float, float]:
        """``(s_down, s_up)`` of a step from level ``s`` to ``s_next`` (k-diffusion's ``get_ancestral_step``)."""
        if self.eta == 0.0 or s_next == 0.0:
            return s_next, 0.0
        s_up = min(s_next, self.eta * sqrt_pos(s_next * s_next * (s * s - s_next * s_next) / (s * s)))
        return sqrt_pos(s_next * s_next - s_up * s_up), s_up

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        alpha, s = _level(sde, t)
        alpha_n, s_n = _level(sde, t_next)
        s_down, s_up = self.levels(s, s_n)
        x_hat = dpm2_move(process, sde, x / alpha, t, s, s_down, ctx)
        if s_up > 0.0 and z is not None:
            x_hat = x_hat + s_up * z[0]
        return alpha_n * x_hat
