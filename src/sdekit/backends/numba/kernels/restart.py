"""Fused numba kernel for restart sampling (Xu et al. 2023; :class:`sdekit.solvers.restart.Restart`).

Every grid step is one of EDM's Heun steps in the scaled variable ``x_hat = x / alpha`` with the noise level ``s =
sigma / alpha`` as time; the step that lands on the restart interval's lower end then runs the ``K`` restarts: a
forward noise jump from ``s_min`` to ``s_max`` and a backward pass of Heun steps over the solver's
:meth:`~sdekit.solvers.restart.Restart.plan` levels. The host evaluates the plan, each stage's time and marginal
coefficients (:func:`~sdekit.solvers.restart.level_coeffs`, as the solver does) and the score's constants at those
times; the kernel repeats the solver's arithmetic in the same order, so the results agree with the numpy backend to
round-off. The ``K`` normal fields of a step are drawn only on the restart step (the numpy backend draws them on
every step and uses them on that one: the same counter stream, so the same numbers). Nothing is allocated per step.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ....solvers.restart import Restart, level_coeffs
from .._blocks import end_block, end_step, marginal, open_block
from ..linked import block_normals
from ..registry import NC, Kernel, register_kernel, score_block

__all__ = ["RESTART", "restart_tables"]


def _restart_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """``extra = (lv (steps, 4), ac (steps, S, 2), lev (m + 1,), plan (2,) int, jump (1,))``.

    ``lv[k] = alpha(t_k), s_k, s_{k+1}, alpha(t_{k+1})``; stage ``i`` of step ``k`` evaluates the score at
    ``st[k, i]`` on ``ac[k, i, 0] * x_hat`` and takes the slope ``-ac[k, i, 1] * score``. Stages 0, 1: the main Heun
    step; stages ``2 + 2 v, 3 + 2 v``: the backward pass's Heun step from ``lev[v]`` to ``lev[v + 1]``.
    ``plan = (k_restart, K)``: the step after which the ``K`` restarts run (-1: none); ``jump[0]`` the forward noise's
    scale ``s_noise sqrt(s_max^2 - s_min^2)``.
    """
    lv, ac, lev, plan, jump = extra
    k_restart, n_restarts = plan[0], plan[1]
    m = lev.shape[0] - 1
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        z = np.empty((max(n_restarts, 1) * d, block))
        xh = np.empty((d, block))
        xx = np.empty((d, block))
        dd = np.empty((d, block))
        kb, sk, xb, s, fin, work = open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            alpha = lv[k, 0]
            for j in range(d):
                xj, hj = xb[j], xh[j]
                for l in range(L):
                    hj[l] = xj[l] / alpha
            n_sub = 1
            if k == k_restart:
                n_sub = 1 + n_restarts * m
                block_normals(kb[:L], k, sk, z)
            for u in range(n_sub):
                if u == 0:
                    a_stage, s_from, s_to = 0, lv[k, 1], lv[k, 2]
                else:
                    r, v = (u - 1) // m, (u - 1) % m
                    a_stage, s_from, s_to = 2 + 2 * v, lev[v], lev[v + 1]
                    if v == 0:  # forward noise from s_min up to s_max
                        c = jump[0]
                        for j in range(d):
                            hj, zj = xh[j], z[r * d + j]
                            for l in range(L):
                                hj[l] = hj[l] + c * zj[l]
                b_stage = a_stage + 1
                ds = s_to - s_from
                half = 0.5 * (s_to - s_from)
                a0, sg0, a1, sg1 = ac[k, a_stage, 0], ac[k, a_stage, 1], ac[k, b_stage, 0], ac[k, b_stage, 1]
                for j in range(d):
                    hj, yj = xh[j], xx[j]
                    for l in range(L):
                        yj[l] = a0 * hj[l]
                score_block(xx, L, st[k, a_stage], coef[k, a_stage][NC:], p0, p1, p2, p3, work, s)
                for j in range(d):
                    hj, yj, sj, dj = xh[j], xx[j], s[j], dd[j]
                    for l in range(L):
                        dj[l] = -sg0 * sj[l]
                        yj[l] = a1 * (hj[l] + ds * dj[l])
                score_block(xx, L, st[k, b_stage], coef[k, b_stage][NC:], p0, p1, p2, p3, work, s)
                for j in range(d):
                    hj, sj, dj = xh[j], s[j], dd[j]
                    for l in range(L):
                        hj[l] = hj[l] + half * (dj[l] + -sg1 * sj[l])
            a_n = lv[k, 3]
            for j in range(d):
                xj, hj = xb[j], xh[j]
                for l in range(L):
                    xj[l] = a_n * hj[l]
            end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        end_block(xb, L, x, i0)


def restart_tables(solver, process, grid):
    """``(stage times (steps, S), extra)`` of :func:`_restart_body` for ``solver`` on ``grid``."""
    sde = process.sde
    steps = len(grid) - 1
    j_min, levels = solver.plan(sde, grid)
    m = 0 if j_min is None else len(levels) - 1
    lv = np.empty((steps, 4))
    st = np.empty((steps, 2 + 2 * m))
    ac = np.empty((steps, 2 + 2 * m, 2))
    sub = [] if j_min is None else [level_coeffs(sde, float(v)) for v in levels]
    for k in range(steps):
        alpha, sigma = marginal(sde, grid[k])
        alpha_n, sigma_n = marginal(sde, grid[k + 1])
        s, s_next = sigma / alpha, sigma_n / alpha_n
        lv[k] = alpha, s, s_next, alpha_n
        stages = [level_coeffs(sde, s), level_coeffs(sde, s_next)]
        for v in range(m):  # the backward pass's stages (used on the restart step only)
            stages += [sub[v], sub[v + 1]]
        for i, (t, a, sg) in enumerate(stages):
            st[k, i] = t
            ac[k, i] = a, sg
    if j_min is None:
        plan, lev, jump = np.array([-1, solver.K], dtype=np.int64), np.zeros(1), np.zeros(1)
    else:
        plan = np.array([j_min - 1, solver.K], dtype=np.int64)
        lev = np.asarray(levels, dtype=np.float64)
        jump = np.array([solver.s_noise * np.sqrt(max(levels[0] ** 2 - levels[-1] ** 2, 0.0))])
    return st, (lv, ac, lev, plan, jump)


RESTART = Kernel(
    "restart",
    _restart_body,
    lambda solver, grid: None,
    n_noise=1,
    grid_extra=lambda solver, process, grid: restart_tables(solver, process, grid)[1],
    process_stage_times=lambda solver, process, grid: restart_tables(solver, process, grid)[0],
)
register_kernel(Restart, "sde", RESTART)
