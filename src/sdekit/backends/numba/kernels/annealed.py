"""Fused numba kernel for annealed Langevin dynamics (:class:`sdekit.solvers.score_based.AnnealedLangevin`).

Per step ``k`` (the level ``sigma_i = sigma(t_{k+1})``): ``n_steps`` updates
``x <- x + (a_k / 2) score(x, t_{k+1}) + sqrt(a_k) z_r`` with ``a_k = eps sigma_i^2 / sigma_L^2``, the numpy
solver's arithmetic in the same order. Langevin step ``r`` reads components ``r d .. (r + 1) d - 1`` of the
sample's stream at step ``k`` (the numpy backend's split of the ``n_steps`` normal fields); the kernel draws
them one Langevin step at a time, so its scratch is ``(d, B)`` whatever ``n_steps`` (NCSN runs 100 per level).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ....solvers.score_based import AnnealedLangevin
from .._blocks import end_block, end_step, marginal, open_block
from ..noise import fill_components, stream_key
from ..registry import NC, Kernel, register_kernel, score_block

__all__ = ["ANNEALED_LANGEVIN", "annealed_coefficients"]


def _annealed_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """``extra = (steps (steps, 2), nl (1,) int64)``: per level ``a / 2`` and ``sqrt(a)``; Langevin steps per level."""
    ab, nls = extra
    nl = nls[0]
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        z = np.empty((d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            kk = np.uint64(k)
            for l in range(L):
                sk[l] = stream_key(kb[l], kk)
            t = st[k, 0]
            c = coef[k, 0][NC:]
            half, sq = ab[k, 0], ab[k, 1]
            for r in range(nl):
                fill_components(sk, L, r * d, z)
                score_block(xb, L, t, c, p0, p1, p2, p3, work, s)
                for j in range(d):
                    xj, sj, zj = xb[j], s[j], z[j]
                    for l in range(L):
                        xj[l] = xj[l] + half * sj[l] + sq * zj[l]
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def _level_times(solver, grid):
    return grid[1:, None].copy()  # every Langevin step of a level evaluates the score at that level's time


def annealed_coefficients(solver, process, grid):
    """``(ab, nl)`` of :func:`_annealed_body`: ``a_k / 2`` and ``sqrt(a_k)`` per level (as
    :meth:`AnnealedLangevin.step` computes them) and the number of Langevin steps per level."""
    sde = process.sde
    grid = np.asarray(grid, dtype=np.float64)
    sigma_l = marginal(sde, float(grid[-1]))[1]
    ab = np.empty((len(grid) - 1, 2))
    for k in range(len(grid) - 1):
        sigma_i = marginal(sde, float(grid[k + 1]))[1]
        a = solver.eps * sigma_i * sigma_i / (sigma_l * sigma_l)
        ab[k] = 0.5 * a, math.sqrt(a)
    return ab, np.array([solver.n_steps], dtype=np.int64)


ANNEALED_LANGEVIN = Kernel("annealed_langevin", _annealed_body, _level_times, n_noise=1,
                           grid_extra=annealed_coefficients)  # fmt: skip
register_kernel(AnnealedLangevin, "sde", ANNEALED_LANGEVIN)
