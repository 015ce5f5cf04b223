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
holds ``z_{k-1}`` when it runs. The host computes the scalars once per solve from the solver's own step code:
the update is linear, so applying the solver's ``_update`` (``_correct``, ``_predict``) to basis vectors in
place of ``x``, the ``D``, ``x_prev`` and the noise gives the coefficients (for ancestral and reverse
diffusion, their ``coefficients`` method). The kernel therefore contains no solver formula, and the sums run
in the solver's order (most recent evaluation first). The step arithmetic is the solver's exactly (fused and
per-step runs of the numba backend with a compiled :class:`~sdekit.backends.numba_.RowScore` agree bit for
bit), except in 2M/3M, whose divided differences are folded into the weights (a few ulp); against the numpy
backend the results differ by the round-off of the score and the normals, amplified by the scheme.

State per block: ``x``, the ring of the last 5 evaluations ``(5, d, B)`` (the largest corrector,
``corrector_order=5``, uses ``E_k .. E_{k-4}``), ``x_prev`` and the normals; nothing is allocated per step.
The history lives inside one kernel call, so these kernels run the whole grid in one call (a progress bar
advances once, at the end).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..solvers._common import coeffs, log_snr
from ..solvers.dpm_solver import DPMSolverPP2M, DPMSolverPP2MSDE, DPMSolverPP3M
from ..solvers.exp_pc import ExpPredictorCorrector, ExpPredictorCorrectorSDE
from ..solvers.score_based import Ancestral, ReverseDiffusion
from .numba_ import NC, Kernel, _end_block, _end_step, _left_times, _open_block, register_kernel, score_block
from .numba_noise import fill_normals

__all__ = ["AFFINE_MULTISTEP", "affine_multistep_coefficients"]

RING = 5  # evaluations kept: the largest corrector (dpmpp_pc, corrector_order=5) uses the new one and 4 before it
# basis layout of the host's coefficient extraction: x, E_k .. E_{k-4}, z, x_prev, z_prev
_X, _E0, _Z, _XP, _ZP = 0, 1, 1 + RING, 2 + RING, 3 + RING
_NB = 4 + RING


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
        kb, sk, xb, s, fin, work = _open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            npred, ncorr, noisy, keep, znoisy = counts[k, 0], counts[k, 1], counts[k, 2], counts[k, 3], counts[k, 4]
            score_block(xb, L, st[k, 0], coef[k, 0][NC:], p0, p1, p2, p3, work, s)
            e0, e1, e2 = ev[k, 0], ev[k, 1], ev[k, 2]
            ek = ring[k % RING]
            for j in range(d):
                xj, sj, ej = xb[j], s[j], ek[j]
                for l in range(L):
                    ej[l] = (e0 * xj[l] + e1 * sj[l]) / e2
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
                fill_normals(kb[:L], k, sk, z)
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
            _end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        _end_block(xb, L, x, i0)


# -- host: per-step coefficients from the solvers' own step code ------------------------------------------------
def _basis(i):
    e = np.zeros(_NB)
    e[i] = 1.0
    return e


def _tables(steps):
    return (
        np.zeros((steps, 3)),
        np.zeros((steps, 2 + RING)),
        np.zeros((steps, 2 + RING)),
        np.zeros((steps, 5), dtype=np.int64),
    )


def _dpm_tables(solver, sde, grid, noisy):
    """DPM-Solver++ 2M / 3M / 2M-SDE / 3M-SDE: ``E`` is the data prediction, the update ``solver._update``."""
    steps = len(grid) - 1
    ev, pred, corr, counts = _tables(steps)
    lams = [log_snr(sde, float(t)) for t in grid[:-1]]
    for k in range(steps):
        t, t_next = float(grid[k]), float(grid[k + 1])
        alpha, sigma = coeffs(sde, t)
        ev[k] = 1.0, sigma * sigma, alpha
        m = min(solver.multistep_order, k + 1)
        hist = [(lams[k - j], _basis(_E0 + j)) for j in range(m - 1, -1, -1)]  # most recent last
        order = solver._order(k, m, steps)
        v = solver._update(sde, hist, order, _basis(_X), t, t_next, [_basis(_Z)])
        pred[k, 0], pred[k, 1] = v[_X], (v[_Z] if noisy else 0.0)
        pred[k, 2 : 2 + order] = v[_E0 : _E0 + order]
        counts[k] = order, 0, int(noisy), 0, 0
    return ev, pred, corr, counts


def _exp_pc_tables(solver, sde, grid):
    """``dpmpp_pc`` / ``dpmpp_sde_pc``: :meth:`_ExpPC._correct` and :meth:`_ExpPC._predict` run on basis vectors.

    Before each step the solver's kept state is renamed into the kernel's buffers: the stored data predictions
    become ``E_{k-1}, E_{k-2}, ...``, ``x_prev`` the kernel's ``x_prev`` and the kept noise ``C_{k-1} z_{k-1}``
    the coefficient ``C_{k-1}`` on ``z_prev`` (the kernel still holds ``z_{k-1}`` when the corrector runs).
    """
    steps = len(grid) - 1
    ev, pred, corr, counts = _tables(steps)
    noisy = solver.n_noise > 0
    pc = {"lam": [], "d": [], "x_prev": None, "t_prev": None, "noise_prev": None}
    for k in range(steps):
        t, t_next = float(grid[k]), float(grid[k + 1])
        ev[k] = solver.evaluation_coefficients(sde, t)
        lam_s = log_snr(sde, t)
        q = len(pc["d"])
        pc["d"] = [_basis(_E0 + q - i) for i in range(q)]  # oldest first
        if pc["x_prev"] is not None:
            pc["x_prev"] = _basis(_XP)
        if pc["noise_prev"] is not None:
            pc["noise_prev"] = pc["noise_prev"][_Z] * _basis(_ZP)
        ncorr = znoisy = 0
        if solver.corrector and pc["x_prev"] is not None:
            v = solver._correct(sde, pc, lam_s, _basis(_E0), t)
            ncorr = 1 + min(solver.corrector_order - 1, q)
            znoisy = int(pc["noise_prev"] is not None)
            corr[k, 0], corr[k, 1] = v[_XP], v[_ZP]
            corr[k, 2 : 2 + ncorr] = v[_E0 : _E0 + ncorr]
        z = [_basis(_Z)] if noisy else None
        v = solver._predict(sde, pc, lam_s, _basis(_E0), _basis(_X), t, t_next, z, k, steps)
        npred = solver._predictor_order(k, q + 1, steps)
        pred[k, 0], pred[k, 1] = v[_X], (v[_Z] if noisy else 0.0)
        pred[k, 2 : 2 + npred] = v[_E0 : _E0 + npred]
        counts[k] = npred, ncorr, int(noisy), int(solver.corrector), znoisy
    return ev, pred, corr, counts


def _ancestral_tables(solver, sde, grid):
    steps = len(grid) - 1
    ev, pred, corr, counts = _tables(steps)
    for k in range(steps):
        s2t, alpha_t, c_x0, c_x, c_z = solver.coefficients(sde, float(grid[k]), float(grid[k + 1]))
        ev[k] = 1.0, s2t, alpha_t
        pred[k, :3] = c_x, c_z, c_x0
        counts[k] = 1, 0, 1, 0, 0
    return ev, pred, corr, counts


def _reverse_diffusion_tables(solver, sde, grid):
    steps = len(grid) - 1
    ev, pred, corr, counts = _tables(steps)
    for k in range(steps):
        c_x, c_s, c_z = solver.coefficients(sde, float(grid[k]), float(grid[k + 1]))
        ev[k] = c_x, c_s, 1.0  # E is the mean itself; x' = 0 x + 1 E + c_z z
        pred[k, :3] = 0.0, c_z, 1.0
        counts[k] = 1, 0, 1, 0, 0
    return ev, pred, corr, counts


def affine_multistep_coefficients(solver, process, grid):
    """``(ev, pred, corr, counts)`` of the kernel (see :func:`_affine_multistep_body`) for ``solver`` on
    ``process`` (the reverse SDE or probability-flow ODE of a LinearSDE) over ``grid``."""
    sde = process.sde
    grid = np.asarray(grid, dtype=np.float64)
    if isinstance(solver, (ExpPredictorCorrector, ExpPredictorCorrectorSDE)):
        return _exp_pc_tables(solver, sde, grid)
    if isinstance(solver, (DPMSolverPP2M, DPMSolverPP3M)):
        return _dpm_tables(solver, sde, grid, noisy=False)
    if isinstance(solver, DPMSolverPP2MSDE):
        return _dpm_tables(solver, sde, grid, noisy=True)
    if isinstance(solver, Ancestral):
        return _ancestral_tables(solver, sde, grid)
    if isinstance(solver, ReverseDiffusion):
        return _reverse_diffusion_tables(solver, sde, grid)
    raise TypeError(f"no affine multistep coefficients for solver {solver!r}")


AFFINE_MULTISTEP = Kernel(
    "affine_multistep",
    _affine_multistep_body,
    _left_times,
    n_noise=1,
    grid_extra=affine_multistep_coefficients,
    chunkable=False,
)
for _cls in (DPMSolverPP2M, DPMSolverPP3M, ExpPredictorCorrector):
    register_kernel(_cls, "ode", AFFINE_MULTISTEP)
for _cls in (DPMSolverPP2MSDE, ExpPredictorCorrectorSDE, Ancestral, ReverseDiffusion):
    register_kernel(_cls, "sde", AFFINE_MULTISTEP)
