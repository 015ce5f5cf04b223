"""Fused numba kernels for the explicit one-step methods: Euler--Maruyama and stochastic Heun on the reverse SDE,
explicit Runge--Kutta (any :class:`~sdekit.solvers.tableaus.ButcherTableau`, Heun's method included) on the
probability-flow ODE.

The drift of a linear SDE's reverse process at a stage time ``s`` is ``a(s) x - c g(s)^2 score(x, s)`` and its
diffusion ``g(s)``; the bodies read them from the host's ``coef`` table (columns ``h, a(s), c g(s)^2, g(s),
sqrt(|h|)``, see :data:`~sdekit.backends.numba.registry.NC`) and repeat the numpy solvers' order of operations.
Nothing is allocated per step.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ....solvers.runge_kutta import Heun, RungeKutta
from ....solvers.stochastic import EulerMaruyama
from .._blocks import end_block, end_step, left_times, open_block
from ..linked import block_normals
from ..registry import NC, Kernel, register_kernel, score_block

__all__ = ["EULER_MARUYAMA", "RUNGE_KUTTA", "STOCHASTIC_HEUN"]


def _em_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """Euler--Maruyama: ``x' = x + h (a x - c g^2 s) + g (sqrt|h| z)`` (the numpy solver's order of operations)."""
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        # unpacked once per block: unpacking per call would cost atomic reference counting
        p0, p1, p2, p3 = sparams
        z = np.empty((d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            block_normals(kb[:L], k, sk, z)
            c = coef[k, 0]
            h, a, g2c, g, sq = c[0], c[1], c[2], c[3], c[4]
            score_block(xb, L, st[k, 0], c[NC:], p0, p1, p2, p3, work, s)
            for j in range(d):
                xj, sj, zj = xb[j], s[j], z[j]
                for l in range(L):
                    xj[l] = xj[l] + h * (a * xj[l] - g2c * sj[l]) + g * (sq * zj[l])
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def _stochastic_heun_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """Stochastic Heun for additive noise (see :class:`sdekit.solvers.Heun`), stages at ``t`` and ``t_next``."""
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        z = np.empty((d, block))
        f0 = np.empty((d, block))
        xp = np.empty((d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            block_normals(kb[:L], k, sk, z)
            c0 = coef[k, 0]
            c1 = coef[k, 1]
            h, sq, g0, g1 = c0[0], c0[4], c0[3], c1[3]
            score_block(xb, L, st[k, 0], c0[NC:], p0, p1, p2, p3, work, s)
            for j in range(d):
                xj, sj, zj, fj, pj = xb[j], s[j], z[j], f0[j], xp[j]
                for l in range(L):
                    dw = sq * zj[l]
                    zj[l] = dw
                    fj[l] = c0[1] * xj[l] - c0[2] * sj[l]
                    pj[l] = xj[l] + h * fj[l] + g0 * dw
            score_block(xp, L, st[k, 1], c1[NC:], p0, p1, p2, p3, work, s)
            for j in range(d):
                xj, sj, zj, fj, pj = xb[j], s[j], z[j], f0[j], xp[j]
                for l in range(L):
                    f1 = c1[1] * pj[l] - c1[2] * sj[l]
                    xj[l] = xj[l] + (0.5 * h) * (fj[l] + f1) + (0.5 * (g0 + g1)) * zj[l]
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def _rk_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """Explicit Runge--Kutta for the probability-flow ODE; ``extra = (A (S, S), b (S,))`` of the tableau."""
    A, bw = extra
    S = bw.shape[0]
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        ks = np.empty((S, d, block))
        xi = np.empty((d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            h = coef[k, 0, 0]
            for i in range(S):
                for j in range(d):
                    xij, xj = xi[j], xb[j]
                    for l in range(L):
                        xij[l] = xj[l]
                    for q in range(i):
                        if A[i, q] != 0.0:
                            f = h * A[i, q]
                            kq = ks[q, j]
                            for l in range(L):
                                xij[l] = xij[l] + f * kq[l]
                c = coef[k, i]
                score_block(xi, L, st[k, i], c[NC:], p0, p1, p2, p3, work, s)
                for j in range(d):
                    kij, xij, sj = ks[i, j], xi[j], s[j]
                    for l in range(L):
                        kij[l] = c[1] * xij[l] - c[2] * sj[l]
            for j in range(d):
                xj = xb[j]
                for l in range(L):
                    incr = bw[0] * ks[0, j, l]
                    for i in range(1, S):
                        incr = incr + bw[i] * ks[i, j, l]
                    xj[l] = xj[l] + h * incr
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def _heun_times(solver, grid):
    return np.stack([grid[:-1], grid[1:]], axis=1)


def _rk_times(solver, grid):
    h = grid[1:] - grid[:-1]
    return grid[:-1, None] + solver.tableau.c[None, :] * h[:, None]


def _rk_extra(solver):
    # writable copies: the tableau's arrays are read-only, a different numba type
    return (np.array(solver.tableau.a, order="C", copy=True), np.array(solver.tableau.b, copy=True))


EULER_MARUYAMA = Kernel("euler_maruyama", _em_body, left_times, n_noise=1)
RUNGE_KUTTA = Kernel("runge_kutta", _rk_body, _rk_times, _rk_extra)
STOCHASTIC_HEUN = Kernel("stochastic_heun", _stochastic_heun_body, _heun_times, n_noise=1)
register_kernel(EulerMaruyama, "sde", EULER_MARUYAMA)
register_kernel(RungeKutta, "ode", RUNGE_KUTTA)
register_kernel(Heun, "ode", RUNGE_KUTTA)
register_kernel(Heun, "sde", STOCHASTIC_HEUN)
