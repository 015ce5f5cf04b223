"""Fused numba kernel for stochastic Runge--Kutta methods of SRA type (:class:`sdekit.solvers.sra.SRA`, e.g.
``sra1``) on the reverse SDE of a linear SDE.

The kernel runs any :class:`~sdekit.solvers.tableaus.StochasticTableau` with the arithmetic of
:func:`sdekit.solvers.sra.sra_step` in the same order: ``I1 = sqrt|h| z0``, ``I10 / h = (sqrt|h| / 2) (z0 +
z1 / sqrt 3)``, stages ``H_i`` with the drift ``a(s) H - c g(s)^2 score(H, s)`` at ``s = t + c0_i h`` and the
additive diffusion ``g`` at ``t + c1_i h``. The two normal fields of a step are drawn as one stream of ``2 d``
numbers per sample, ``z0`` first, as the numpy backend splits them. Nothing is allocated per step.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ....solvers.sra import SRA
from .._blocks import end_block, end_step, open_block
from ..linked import block_normals
from ..registry import NC, Kernel, register_kernel, score_block

__all__ = ["SRA_KERNEL"]

_INV_SQRT3 = 1.0 / math.sqrt(3.0)


def _sra_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """``extra = (a0 (S, S), b0 (S, S), alpha (S,), beta1 (S,), beta2 (S,), gdiff (steps, S))`` with
    ``gdiff[k, i] = g(t_k + c1_i h_k)``."""
    a0, b0, alpha, beta1, beta2, gdiff = extra
    S = alpha.shape[0]
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        z = np.empty((2 * d, block))
        fs = np.empty((S, d, block))
        hb = np.empty((d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            block_normals(kb[:L], k, sk, z)
            h = coef[k, 0, 0]
            sq = coef[k, 0, 4]
            half = 0.5 * sq
            # z0 <- I1, z1 <- I10 / h (in place: each lane reads its own pair once)
            for j in range(d):
                z0, z1 = z[j], z[d + j]
                for l in range(L):
                    i10 = half * (z0[l] + z1[l] * _INV_SQRT3)
                    z0[l] = sq * z0[l]
                    z1[l] = i10
            for i in range(S):
                for j in range(d):
                    hj, xj = hb[j], xb[j]
                    for l in range(L):
                        hj[l] = xj[l]
                    for q in range(i):
                        if a0[i, q] != 0.0:
                            f = h * a0[i, q]
                            fq = fs[q, j]
                            for l in range(L):
                                hj[l] = hj[l] + f * fq[l]
                        if b0[i, q] != 0.0:
                            f = b0[i, q] * gdiff[k, q]
                            i10j = z[d + j]
                            for l in range(L):
                                hj[l] = hj[l] + f * i10j[l]
                c = coef[k, i]
                score_block(hb, L, st[k, i], c[NC:], p0, p1, p2, p3, work, s)
                for j in range(d):
                    fij, hj, sj = fs[i, j], hb[j], s[j]
                    for l in range(L):
                        fij[l] = c[1] * hj[l] - c[2] * sj[l]
            for j in range(d):
                xj, i1j, i10j = xb[j], z[j], z[d + j]
                for i in range(S):
                    f = h * alpha[i]
                    fij = fs[i, j]
                    for l in range(L):
                        xj[l] = xj[l] + f * fij[l]
                    if beta1[i] != 0.0 or beta2[i] != 0.0:
                        g, b1, b2 = gdiff[k, i], beta1[i], beta2[i]
                        for l in range(L):
                            xj[l] = xj[l] + g * (b1 * i1j[l] + b2 * i10j[l])
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def _sra_times(solver, grid):
    h = grid[1:] - grid[:-1]
    return grid[:-1, None] + solver.tableau.c0[None, :] * h[:, None]


def _sra_extra(solver, process, grid):
    tab = solver.tableau
    h = grid[1:] - grid[:-1]
    tg = grid[:-1, None] + tab.c1[None, :] * h[:, None]
    # g(t) as the process computes it, sqrt(g^2(t)), at every diffusion stage time
    gdiff = np.sqrt(np.asarray(process.sde.g2(tg), dtype=np.float64) + np.zeros(tg.shape))
    # writable copies: the tableau's arrays are read-only, a different numba type
    arrs = tuple(np.array(a, dtype=np.float64, order="C", copy=True) for a in (tab.a0, tab.b0, tab.alpha))
    return arrs + tuple(np.array(a, dtype=np.float64, copy=True) for a in (tab.beta1, tab.beta2)) + (gdiff,)


SRA_KERNEL = Kernel("sra", _sra_body, _sra_times, n_noise=2, grid_extra=_sra_extra)
register_kernel(SRA, "sde", SRA_KERNEL)
