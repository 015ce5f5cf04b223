"""One fused numba kernel for the affine multistep samplers: DPM-Solver++ (2M, 3M, 3M-PC, 2M-SDE, 3M-SDE),
the exponential predictor-corrector samplers (``dpmpp_pc``, ``dpmpp_sde_pc``, every option), ancestral sampling
and reverse diffusion.

Each of these solvers takes, per step ``k`` (left time ``t_k``), one score evaluation turned into an
*evaluation*

    E_k = (e0_k x + e1_k score(x, t_k)) / e2_k            (DPM-Solver++ and ancestral: Tweedie's data prediction)

and then an update that is affine in the state, the last few evaluations and the noise::

    [corrector]  x <- cx_k x_prev + sum_{j < nc_k} w_kj E_{k-j} + cz_k z_{k-1}     (x_prev: the last corrected x)
    x' = A_k x + sum_{j < np_k} B_kj E_{k-j} + C_k z_k

with per-step scalars that depend only on the grid and the SDE. The corrector (3M-PC, ``dpmpp_pc``,
``dpmpp_sde_pc``) re-integrates the step just taken; ``dpmpp_sde_pc`` adds that step's noise term
``C_{k-1} z_{k-1}`` again, so the normals of step ``k`` are drawn after the corrector and the buffer still
holds ``z_{k-1}`` when it runs. The host reads the scalars once per solve from the solver's public
``affine_coefficients(sde, grid)`` (:class:`sdekit.solvers.affine.AffineCoefficients`), which each solver
computes from its own step code run on probe vectors (for ancestral and reverse diffusion, from their
``coefficients`` method). The kernel therefore contains no solver formula, and the sums run in the solver's
order (most recent evaluation first). The step arithmetic is the solver's exactly (fused and per-step runs of
the numba backend with a compiled :class:`~sdekit.backends.numba.RowScore` agree bit for bit), except in 2M/3M,
whose divided differences are folded into the weights (a few ulp); against the numpy backend the results differ
by the round-off of the score and the normals, amplified by the scheme.

State per block: ``x``, the ring of the last 5 evaluations ``(5, d, B)`` (the largest corrector,
``corrector_order=5``, uses ``E_k .. E_{k-4}``), ``x_prev`` and the normals; nothing is allocated per step.
The history lives inside one kernel call, so these kernels run the whole grid in one call (a progress bar
advances once, at the end).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ....sdes import ReverseSDE
from ....solvers._sigma_adams import SigmaAdams
from ....solvers.affine import HISTORY, affine_table
from ....solvers.afs import AnalyticFirstStep
from ....solvers.dpm_single import DPMSolverSinglestep
from ....solvers.dpm_solver import DPMSolverPP2M, DPMSolverPP2MSDE, DPMSolverPP3M
from ....solvers.exp_pc import ExpPredictorCorrector, ExpPredictorCorrectorSDE
from ....solvers.sa_solver import SASolver
from ....solvers.score_based import Ancestral, ReverseDiffusion
from ....solvers.unipc import UniPC
from .._blocks import end_block, end_step, left_times, open_block
from ..linked import block_normals
from ..registry import NC, Kernel, register_kernel, score_block

__all__ = ["AFFINE_MULTISTEP", "affine_multistep_coefficients"]

RING = HISTORY  # evaluations kept: the largest corrector (dpmpp_pc, corrector_order=5) uses the new one and 4 before it


def _affine_multistep_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """``extra = (ev (steps, 3), pred (steps, 2 + RING), corr (steps, 2 + RING), counts (steps, 5) int64)``:
    ``ev = e0, e1, e2``; ``pred = A, C, B_0..B_4``; ``corr = cx, cz, w_0..w_4``; ``counts = np, nc, noise,
    keep_prev, noise_prev`` (``noise_prev``: the corrector adds ``cz z_{k-1}``, the previous step's normals)."""
    ev, pred, corr, counts = extra
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        z = np.empty((d, block))
        ring = np.empty((RING, d, block))
        xprev = np.empty((d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            npred, ncorr, noisy, keep, znoisy = counts[k, 0], counts[k, 1], counts[k, 2], counts[k, 3], counts[k, 4]
            e0, e1, e2 = ev[k, 0], ev[k, 1], ev[k, 2]
            ek = ring[k % RING]
            if e1 != 0.0:
                score_block(xb, L, st[k, 0], coef[k, 0][NC:], p0, p1, p2, p3, work, s)
                for j in range(d):
                    xj, sj, ej = xb[j], s[j], ek[j]
                    for l in range(L):
                        ej[l] = (e0 * xj[l] + e1 * sj[l]) / e2
            else:  # an evaluation without the score (the analytic first step)
                for j in range(d):
                    xj, ej = xb[j], ek[j]
                    for l in range(L):
                        ej[l] = (e0 * xj[l]) / e2
            if ncorr > 0:
                cx, cz = corr[k, 0], corr[k, 1]
                for j in range(d):
                    xj, pj = xb[j], xprev[j]
                    for l in range(L):
                        xj[l] = cx * pj[l]
                    for q in range(ncorr):
                        w = corr[k, 2 + q]
                        eq = ring[(k - q) % RING, j]
                        for l in range(L):
                            xj[l] = xj[l] + w * eq[l]
                    if znoisy != 0:  # the previous step's noise again: z still holds z_{k-1}
                        zj = z[j]
                        for l in range(L):
                            xj[l] = xj[l] + cz * zj[l]
            if keep != 0:
                for j in range(d):
                    xj, pj = xb[j], xprev[j]
                    for l in range(L):
                        pj[l] = xj[l]
            if noisy != 0:  # drawn after the corrector, which may still need z_{k-1}
                block_normals(kb[:L], k, sk, z)
            A, C = pred[k, 0], pred[k, 1]
            for j in range(d):
                xj = xb[j]
                for l in range(L):
                    xj[l] = A * xj[l]
                for q in range(npred):
                    b = pred[k, 2 + q]
                    eq = ring[(k - q) % RING, j]
                    for l in range(L):
                        xj[l] = xj[l] + b * eq[l]
                if noisy != 0:
                    zj = z[j]
                    for l in range(L):
                        xj[l] = xj[l] + C * zj[l]
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def affine_multistep_coefficients(solver, process, grid):
    """``(ev, pred, corr, counts)`` of the kernel (see :func:`_affine_multistep_body`) for ``solver`` on
    ``process`` (the reverse SDE or probability-flow ODE of a LinearSDE) over ``grid``: the solver's own
    :class:`~sdekit.solvers.affine.AffineCoefficients` (``solver.affine_coefficients(sde, grid)``)."""
    grid = np.asarray(grid, dtype=np.float64)
    return tuple(affine_table(solver, process.sde, grid, type(process) is ReverseSDE))


AFFINE_MULTISTEP = Kernel(
    "affine_multistep",
    _affine_multistep_body,
    left_times,
    n_noise=1,
    grid_extra=affine_multistep_coefficients,
    # unipc above order 4 and AnalyticFirstStep around a solver without coefficients do not fit
    accepts=lambda solver: getattr(solver, "has_affine_coefficients", True),
    chunkable=False,
)
# (the single-step DPM-Solver's table keeps each group's start as its stored previous state)
_ODE = (DPMSolverPP2M, DPMSolverPP3M, ExpPredictorCorrector, SigmaAdams, UniPC, SASolver, AnalyticFirstStep)
for _cls in _ODE + (DPMSolverSinglestep,):
    register_kernel(_cls, "ode", AFFINE_MULTISTEP)
for _cls in (DPMSolverPP2MSDE, ExpPredictorCorrectorSDE, Ancestral, ReverseDiffusion, SASolver, DPMSolverSinglestep):
    register_kernel(_cls, "sde", AFFINE_MULTISTEP)
