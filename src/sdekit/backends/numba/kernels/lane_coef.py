"""The coefficients of the linear SDEs the fused adaptive kernels run (:mod:`sdekit.backends.numba.kernels.adaptive`),
one lane at a time: the drift and diffusion at a lane's time and the analytic score's constants there.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ....sdes import EDMSDE, VESDE, VPSDE, SubVPSDE
from ..vecmath import exp_nonpos, exp_vec, expm1_nonpos, log_pos

__all__ = ["SDE_KINDS", "sde_params", "sde_coef", "lane_coef"]

#: The SDE classes with in-kernel coefficients and their kind numbers (exact classes).
SDE_KINDS = {VPSDE: 0, SubVPSDE: 1, VESDE: 2, EDMSDE: 3}


def sde_params(sde) -> np.ndarray:
    """The parameters the kernels read for ``sde`` (see :func:`sde_coef`)."""
    kind = SDE_KINDS[type(sde)]
    if kind in (0, 1):
        return np.array([sde.beta_min, sde.beta_max], dtype=np.float64)
    if kind == 2:
        return np.array([sde.sigma_min, math.log(sde.sigma_max / sde.sigma_min), sde.T], dtype=np.float64)
    return np.zeros(1)


@njit(cache=True, inline="always", error_model="numpy")
def sde_coef(kind, sp, t):
    """``(a(t), g(t)^2, alpha(t), sigma(t))`` of a linear SDE of ``kind`` (0 VP, 1 sub-VP, 2 VE, 3 EDM), written
    as :mod:`sdekit.sdes` writes them."""
    if kind <= 1:
        bmin = sp[0]
        db = sp[1] - sp[0]
        beta = bmin + t * db
        B = bmin * t + 0.5 * db * t * t
        alpha = exp_nonpos(-0.5 * B)
        if kind == 0:
            sigma = math.sqrt(-expm1_nonpos(-B))
            g2 = beta
        else:
            sigma = -expm1_nonpos(-B)
            g2 = beta * (-expm1_nonpos(-2.0 * B))
        return -0.5 * beta, g2, alpha, sigma
    if kind == 2:
        s = sp[0] * exp_vec(sp[1] * t / sp[2])
        return 0.0 * t, 2.0 * sp[1] / sp[2] * s * s, 1.0 + 0.0 * s, s
    return 0.0 * t, 2.0 * t, 1.0 + 0.0 * t, 1.0 * t


@njit(cache=True, error_model="numpy")
def lane_coef(kind, sp, t, w, klog, ulam, ucnt, cl, l):
    """The drift coefficients ``(a, g, w g^2)`` at ``t`` and the score's constants ``cl[:, l]`` (``alpha,
    sigma^2`` and, for mixtures, ``sum_j log(alpha^2 lam_kj + sigma^2)`` from the distinct eigenvalues).
    Compiled once and called by the phases (not inlined into each of them: a shorter compilation)."""
    a, g2, alpha, sigma = sde_coef(kind, sp, t)
    s2 = sigma * sigma
    cl[0, l] = alpha
    cl[1, l] = s2
    aa = alpha * alpha
    for k in range(klog):
        acc = 0.0
        for u in range(ulam.shape[1]):
            c = ucnt[k, u]
            if c > 0.0:
                acc += c * log_pos(aa * ulam[k, u] + s2)
        cl[2 + k, l] = acc
    g = math.sqrt(g2)
    return a, g, w * g * g
