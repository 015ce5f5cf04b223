"""Fused numba kernel for EDM's sampler (Karras et al. 2022, Alg. 2; :class:`sdekit.solvers.edm.EDMSampler`).

The host evaluates, per step, the solver's own :meth:`~sdekit.solvers.edm.EDMSampler.levels` (the churned
level ``s_hat`` and its time ``t_hat``, the churn noise factor, the next level) and the marginal coefficients at
``t_hat`` and ``t_next``; the two score evaluations of a step are at those stage times. The kernel repeats the
solver's arithmetic in the same order (in the scaled variable ``x_hat = x / alpha``), so the results agree with
the numpy backend to round-off. Nothing is allocated per step.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ....solvers.edm import EDMSampler
from .._blocks import end_block, end_step, marginal, open_block
from ..linked import block_normals
from ..registry import NC, Kernel, register_kernel, score_block

__all__ = ["EDM", "edm_levels"]


def _edm_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """``extra = (lv (steps, 8),)``: ``alpha, s_hat, churn, alpha_hat, sigma_hat^2, alpha_n, sigma_n^2, s_next``."""
    (lv,) = extra
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        z = np.empty((d, block))
        xh = np.empty((d, block))
        xx = np.empty((d, block))
        dd = np.empty((d, block))
        xp = np.empty((d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            alpha, s_hat, churn, a_h, s2_h = lv[k, 0], lv[k, 1], lv[k, 2], lv[k, 3], lv[k, 4]
            a_n, s2_n, s_next = lv[k, 5], lv[k, 6], lv[k, 7]
            ds = s_next - s_hat
            half = 0.5 * (s_next - s_hat)
            if churn > 0.0:
                block_normals(kb[:L], k, sk, z)
            for j in range(d):
                xj, hj, yj, zj = xb[j], xh[j], xx[j], z[j]
                for l in range(L):
                    hj[l] = xj[l] / alpha
                if churn > 0.0:
                    for l in range(L):
                        hj[l] = hj[l] + churn * zj[l]
                for l in range(L):
                    yj[l] = a_h * hj[l]
            score_block(xx, L, st[k, 0], coef[k, 0][NC:], p0, p1, p2, p3, work, s)
            for j in range(d):
                hj, yj, sj, dj, pj = xh[j], xx[j], s[j], dd[j], xp[j]
                for l in range(L):
                    den = (yj[l] + s2_h * sj[l]) / a_h
                    dj[l] = (hj[l] - den) / s_hat
                    pj[l] = hj[l] + ds * dj[l]
                    yj[l] = a_n * pj[l]
            score_block(xx, L, st[k, 1], coef[k, 1][NC:], p0, p1, p2, p3, work, s)
            for j in range(d):
                xj, hj, yj, sj, dj, pj = xb[j], xh[j], xx[j], s[j], dd[j], xp[j]
                for l in range(L):
                    den = (yj[l] + s2_n * sj[l]) / a_n
                    d2 = (pj[l] - den) / s_next
                    xj[l] = a_n * (hj[l] + half * (dj[l] + d2))
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def edm_levels(solver, process, grid):
    """``(stage times (steps, 2), lv (steps, 8))`` from :meth:`EDMSampler.levels` (see :func:`_edm_body`)."""
    sde = process.sde
    steps = len(grid) - 1
    st = np.empty((steps, 2))
    lv = np.empty((steps, 8))
    for k in range(steps):
        t, t_next = float(grid[k]), float(grid[k + 1])
        alpha, s_hat, t_hat, churn, alpha_n, s_next = solver.levels(sde, t, t_next, steps)
        a_h, sig_h = marginal(sde, t_hat)
        sig_n = marginal(sde, t_next)[1]
        st[k] = t_hat, t_next
        lv[k] = alpha, s_hat, churn, a_h, sig_h * sig_h, alpha_n, sig_n * sig_n, s_next
    return st, lv


EDM = Kernel(
    "edm",
    _edm_body,
    lambda solver, grid: None,
    n_noise=1,
    grid_extra=lambda solver, process, grid: (edm_levels(solver, process, grid)[1],),
    process_stage_times=lambda solver, process, grid: edm_levels(solver, process, grid)[0],
)
register_kernel(EDMSampler, "sde", EDM)
