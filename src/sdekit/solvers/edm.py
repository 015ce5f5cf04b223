"""The EDM stochastic sampler (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", Alg. 2): Heun steps of the probability-flow ODE with "churn", a partial re-noising before each step."""

from __future__ import annotations

import math

from ..validation import non_negative_number
from ._common import coeffs, linear_sde_of
from .base import FixedStepSolver, register

__all__ = ["EDMSampler"]


@register
class EDMSampler(FixedStepSolver):
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2), for the reverse process of any :class:`LinearSDE`.

    It works in EDM's scaled variables ``x_hat = x / alpha(t)`` and noise level ``s = sigma(t) / alpha(t)``,
    in which the probability-flow ODE reads ``dx_hat / ds = (x_hat - D(x_hat, s)) / s`` with the denoiser
    ``D = E[x_0 | x_t]``. One step from ``t`` (level ``s``) to ``t_next`` (level ``s'``), N = grid steps::

        gamma = min(S_churn / N, sqrt(2) - 1)  if S_tmin <= s <= S_tmax  else 0      # churn
        s_hat = s (1 + gamma);  x_hat += sqrt(s_hat^2 - s^2) S_noise z               # raise the noise level
        d = (x_hat - D(x_hat, s_hat)) / s_hat;  x~ = x_hat + (s' - s_hat) d          # Euler step
        d' = (x~ - D(x~, s')) / s';  x_hat' = x_hat + (s' - s_hat) (d + d') / 2      # Heun correction

    With ``S_churn = 0`` this is EDM's deterministic Heun sampler (Alg. 1). Defaults ``S_churn=40``,
    ``S_tmin=0.05``, ``S_tmax=50`` (EDM's ImageNet-64 settings, Table 5) with ``S_noise=1`` (EDM uses 1.003
    to offset network bias; with an exact score 1 keeps the law exact). Levels above ``sigma_max`` that the
    churn reaches map to times beyond ``T`` through ``sde.t_from_log_snr``.

    The churn is a first-order splitting of a reverse SDE with the marginals ``p_t`` (Karras et al., eq. 6),
    so the law converges with weak order 1 as the grid is refined with ``S_churn`` fixed. 2 NFE per step.
    """

    name = "edm"
    default_grid = "karras"  # EDM's own schedule (Karras et al. 2022, eq. 5, rho = 7)
    order = 2
    strong_order = None
    weak_order = 1.0
    is_sde = True
    nfe_per_step = 2
    n_noise = 1
    n_brownian = 0

    def __init__(self, S_churn: float = 40.0, S_tmin: float = 0.05, S_tmax: float = 50.0, S_noise: float = 1.0):
        self.S_churn = non_negative_number("S_churn", S_churn)
        self.S_tmin = non_negative_number("S_tmin", S_tmin)
        self.S_tmax = non_negative_number("S_tmax", S_tmax, allow_inf=True)
        self.S_noise = non_negative_number("S_noise", S_noise)

    def __repr__(self):
        return f"EDMSampler(S_churn={self.S_churn}, S_tmin={self.S_tmin}, S_tmax={self.S_tmax}, S_noise={self.S_noise})"

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def levels(self, sde, t: float, t_next: float, n_steps: int, noisy: bool = True):
        """``(alpha(t), s_hat, t_hat, churn, alpha(t_next), s_next)`` of one step of ``n_steps``: the churned level
        ``s_hat`` and its time ``t_hat``, the noise factor ``churn = sqrt(s_hat^2 - s^2) S_noise`` (0 without churn or
        noise) and the next level ``s_next``."""
        alpha, sigma = coeffs(sde, t)
        s = sigma / alpha
        # churn: raise the noise level from s to s_hat by adding fresh noise
        gamma = min(self.S_churn / n_steps, math.sqrt(2.0) - 1.0) if self.S_tmin <= s <= self.S_tmax else 0.0
        s_hat, t_hat, churn = s, t, 0.0
        if gamma > 0.0 and noisy:
            s_hat = s * (1.0 + gamma)
            t_hat = float(sde.t_from_log_snr(-math.log(s_hat)))
            churn = math.sqrt(s_hat * s_hat - s * s) * self.S_noise
        alpha_n, sigma_n = coeffs(sde, t_next)
        return alpha, s_hat, t_hat, churn, alpha_n, sigma_n / alpha_n

    @staticmethod
    def _denoise(process, sde, x_hat, t):
        alpha, _ = coeffs(sde, t)
        return sde.denoise(process.score, alpha * x_hat, t)

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        alpha, s_hat, t_hat, churn, alpha_n, s_next = self.levels(sde, t, t_next, ctx.n_steps, z is not None)
        x_hat = x / alpha
        if churn > 0.0:
            x_hat = x_hat + churn * z[0]
        # Euler step from s_hat to s_next
        denoised = ctx.denoised = self._denoise(process, sde, x_hat, t_hat)  # (also for the step callback)
        d = (x_hat - denoised) / s_hat
        x_pred = x_hat + (s_next - s_hat) * d
        # second-order (trapezoidal) correction
        d2 = (x_pred - self._denoise(process, sde, x_pred, t_next)) / s_next
        return alpha_n * (x_hat + (0.5 * (s_next - s_hat)) * (d + d2))
