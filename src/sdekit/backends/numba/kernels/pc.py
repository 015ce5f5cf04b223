"""Fused numba kernel for predictor--corrector sampling (:class:`sdekit.solvers.score_based.PredictorCorrector`)
with the Langevin corrector's ``"sigma"`` step rule and a reverse-diffusion or ancestral predictor.

Per step ``k`` at time ``t``: ``n_c`` corrector steps ``x <- x + eps_k score(x, t) + sqrt(2 eps_k) z_c`` with
the batch-independent ``eps_k`` of :meth:`Langevin.sigma_step`, then the predictor's affine update
``x' = A_k x + B_k E + C_k z_0``, ``E = (e0_k x + e1_k score(x, t)) / e2_k``, with the per-step scalars of
the predictor's ``affine_coefficients`` (:class:`sdekit.solvers.affine.AffineCoefficients`). The normals of a step are
one stream of ``(1 + n_c) d`` numbers per sample, the predictor's first, as the numpy backend splits them.
Other configurations (``"per_sample"`` or ``"batch"`` step sizes, other predictors) run the per-step path.
Nothing is allocated per step.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ....solvers.score_based import Ancestral, Langevin, PredictorCorrector, ReverseDiffusion
from .._blocks import end_block, end_step, left_times, open_block
from ..linked import block_normals
from ..registry import NC, Kernel, register_kernel, score_block

__all__ = ["PC"]


def _pc_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """``extra = (ev (steps, 3), pred (steps, 5), ceps (steps, 2), nc (1,) int64)``: the predictor's ``e0, e1,
    e2`` and ``A, C, B``; the corrector's ``eps, sqrt(2 eps)``; the number of corrector steps."""
    ev, pred, ceps, ncs = extra
    nc = ncs[0]
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        z = np.empty(((1 + nc) * d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            block_normals(kb[:L], k, sk, z)
            t = st[k, 0]
            c = coef[k, 0][NC:]
            eps, sq2 = ceps[k, 0], ceps[k, 1]
            for r in range(nc):
                score_block(xb, L, t, c, p0, p1, p2, p3, work, s)
                for j in range(d):
                    xj, sj, zj = xb[j], s[j], z[(1 + r) * d + j]
                    for l in range(L):
                        xj[l] = xj[l] + eps * sj[l] + sq2 * zj[l]
            score_block(xb, L, t, c, p0, p1, p2, p3, work, s)
            e0, e1, e2 = ev[k, 0], ev[k, 1], ev[k, 2]
            A, C, B = pred[k, 0], pred[k, 1], pred[k, 2]
            for j in range(d):
                xj, sj, zj = xb[j], s[j], z[j]
                for l in range(L):
                    e = (e0 * xj[l] + e1 * sj[l]) / e2
                    xj[l] = A * xj[l] + B * e
                    xj[l] = xj[l] + C * zj[l]
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def _accepts(solver) -> bool:
    corr = solver.corrector
    return (
        type(solver.predictor) in (ReverseDiffusion, Ancestral) and type(corr) is Langevin and corr.step_size == "sigma"
    )


def pc_coefficients(solver, process, grid):
    """``(ev, pred, ceps, nc)`` of :func:`_pc_body` for ``solver`` on ``process`` over ``grid``."""
    sde = process.sde
    grid = np.asarray(grid, dtype=np.float64)
    ev, pred, _, _ = solver.predictor.affine_coefficients(sde, grid)
    steps = len(grid) - 1
    ceps = np.empty((steps, 2))
    for k in range(steps):
        eps = solver.corrector.sigma_step(sde, float(grid[k]), float(grid[k + 1]))
        ceps[k] = eps, math.sqrt(2.0 * eps)
    return ev, pred, ceps, np.array([solver.corrector.n_steps], dtype=np.int64)


PC = Kernel("pc", _pc_body, left_times, n_noise=2, grid_extra=pc_coefficients, accepts=_accepts)
register_kernel(PredictorCorrector, "sde", PC)
