"""DEIS: the diffusion exponential integrator sampler with polynomial extrapolation (Zhang & Chen 2022, "Fast
Sampling of Diffusion Models with Exponential Integrator", eqs. 14--16, the tAB and rhoAB variants).

In EDM's variables (``x_hat = x / alpha``, noise level ``rho = s = sigma / alpha``) the probability-flow ODE is
``d x_hat / d rho = eps`` with the noise prediction ``eps = -sigma * score``; DEIS integrates it exactly over a
step with ``eps`` replaced by its Lagrange interpolant through the last ``order`` values, built in a variable
``v(rho)``::

    x_hat(rho') = x_hat(rho) + sum_j eps_j int_rho^rho' l_j(v(r)) dr

* ``variant="tab"`` -- ``v`` is VP time (DEIS-tAB, the paper's recommended variant): the time of the VP SDE
  ``sigma_vp(tau)^2 = exp(beta_d tau^2 / 2 + beta_min tau) - 1`` whose levels at ``tau = 1`` and ``tau = 1e-3`` are
  the grid's first and last levels (zju-pi/diff-sampler's ``edm2t``). For score_sde's VP SDE on its own time range
  this is that SDE's time ``t``. The integrals are taken in ``tau`` with the Jacobian ``d rho / d tau``.
* ``variant="rhoab"`` -- ``v = rho`` (DEIS-rhoAB: variable-step Adams--Bashforth in the noise level).
* ``variant="logrho"`` -- ``v = log rho`` (diffusers' ``DEISMultistepScheduler``, ``solver_type="logrho"``).

The weights are computed by Gauss--Legendre quadrature (exact to round-off for these analytic integrands;
diff-sampler approximates the tAB integrals by a 10 000-point Riemann sum, diffusers integrates the log-rho
basis in closed form). ``order`` values, order ``order`` on smooth grids (any variant). With ``order`` at most 3
and ``lower_order_final=True``, ``variant="logrho"`` is diffusers' DEIS bit for bit up to round-off. Warm-up and
``afs`` as in :mod:`sdekit.solvers._sigma_adams`.
"""

from __future__ import annotations

import math

import numpy as np

from ..grids import VP_EPS, vp_fit
from ..validation import one_of
from ._sigma_adams import SigmaAdams, lagrange_weights
from .base import register

__all__ = ["DEIS", "vp_time_map", "VARIANTS"]

VARIANTS = ("tab", "rhoab", "logrho")


def vp_time_map(rho_max: float, rho_min: float, eps_s: float = VP_EPS):
    """``(beta_d, beta_min)`` of the VP SDE with ``sigma_vp(1) = rho_max`` and ``sigma_vp(eps_s) = rho_min``, where
    ``sigma_vp(tau) = sqrt(exp(beta_d tau^2 / 2 + beta_min tau) - 1)`` (diff-sampler's ``edm2t`` fit; the same fit
    as the ``time_uniform`` grid's, :func:`sdekit.grids.vp_fit`)."""
    return vp_fit(rho_max, rho_min, eps_s)[:2]


def _tau_of_rho(rho, beta_d, beta_min):
    a = np.log1p(np.square(rho))
    if beta_d == 0.0:  # the linear fit (see sdekit.grids.vp_fit)
        return a / beta_min
    # the root of beta_d tau^2 / 2 + beta_min tau = a, written without cancellation
    return 2.0 * a / (np.sqrt(beta_min**2 + 2.0 * beta_d * a) + beta_min)


@register
class DEIS(SigmaAdams):
    """DEIS with ``order`` history values (1--4, default 3) and Lagrange extrapolation in VP time (``"tab"``,
    default), the noise level (``"rhoab"``) or its logarithm (``"logrho"``); see the module docstring. Order
    ``order``, 1 NFE per step (``afs=True`` saves the first)."""

    name = "deis"

    def __init__(self, order: int = 3, variant: str = "tab", afs: bool = False, lower_order_final: bool = False):
        super().__init__(order, afs, lower_order_final)
        one_of("variant", variant, VARIANTS)
        self.variant = variant

    def __repr__(self):
        return (
            f"DEIS(order={self.multistep_order}, variant={self.variant!r}, afs={self.afs}, "
            f"lower_order_final={self.lower_order_final})"
        )

    @staticmethod
    def _vp(ctx, sde):
        vp = ctx.memory.get("deis_vp")
        if vp is None:
            levels = []
            for t in (ctx.grid[0], ctx.grid[-1]):
                alpha, sigma = sde.marginal(float(t))
                levels.append(float(sigma) / float(alpha))
            vp = ctx.memory["deis_vp"] = vp_time_map(*levels)
        return vp

    def weights(self, levels, s_next, ctx, sde):
        if len(levels) == 1:
            return np.array([s_next - levels[0]])
        if self.variant == "rhoab":
            return lagrange_weights(levels, levels[0], s_next)
        if self.variant == "logrho":
            return lagrange_weights(np.log(levels), math.log(levels[0]), math.log(s_next), np.exp)
        beta_d, beta_min = self._vp(ctx, sde)
        taus = _tau_of_rho(np.asarray(levels), beta_d, beta_min)

        def d_rho_d_tau(tau):
            e = np.exp(0.5 * beta_d * tau * tau + beta_min * tau)
            return (beta_d * tau + beta_min) * e / (2.0 * np.sqrt(e - 1.0))

        return lagrange_weights(taus, float(taus[0]), float(_tau_of_rho(s_next, beta_d, beta_min)), d_rho_d_tau)
