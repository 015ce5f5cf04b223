"""The exact scores of the analytic densities, compiled, in the two forms the fused kernels use.

*Block form* (what the fused kernels call, through the global name ``score_block``, see
:mod:`sdekit.backends.numba.registry`): a block of ``B`` samples is stored lanes last, ``xb`` of shape ``(d, B)``,
so that every inner loop runs over samples with unit stride and compiles to SIMD code::

    score_block(xb, L, t, coef, p0, p1, p2, p3, work, out)     # out (d, B); lanes l < L are live

*Row form* (one sample at a time, the form a user writes, see :class:`sdekit.backends.numba.RowScore`)::

    analytic_row_score(x_row, t, coef, p0, p1, p2, p3, work, out_row)

``t`` is the stage time, ``coef`` an ``(m,)`` row of per-stage constants that the host computed once for every
stage time of the grid, ``p0 .. p3`` arrays fixed for the solve (passed one by one: unpacking a tuple in the
inner loop would cost atomic reference counting), ``work`` scratch owned by the calling thread.

For :class:`sdekit.analytic.Gaussian` and :class:`~sdekit.analytic.GaussianMixture` (scalar, diagonal or full
covariances; a Gaussian is a mixture of one component) everything is in arrays, not closures, so the kernels
that call these functions are compiled once and cached on disk (``cache=True``). With
``(alpha, sigma) = sde.marginal(t)`` and per component ``k`` (``Sigma_k = U_k diag(lam_k) U_k^T``,
``v_k = alpha^2 lam_k + sigma^2``):

* ``y_k = U_k^T (x - alpha mu_k)``, ``s_k = -U_k (y_k / v_k)``;
* mixtures: ``r_k = softmax_k(log w_k - (sum log v_k + sum y_k^2 / v_k) / 2)``, ``score = sum_k r_k s_k``
  (the constant ``d log(2 pi) / 2`` cancels in the softmax).

``coef = [alpha, sigma^2, sum_j log v_1j, ..., sum_j log v_Kj]`` at the stage time (no logarithm per sample)
and ``(p0, p1, p2, p3) = (means (K, d), eigvals (K, d), eigvecs (K, d, d) or (K, 0, 0) when diagonal,
log_weights (K,))``; the host side (:mod:`sdekit.backends.numba.host_scores`: ``analytic_params``, ``analytic_coef``,
``analytic_work_rows``) builds them from the density.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .vecmath import exp_nonpos

__all__ = ["analytic_block_score", "analytic_row_score", "analytic_lanes_score"]


@njit(cache=True, inline="always", error_model="numpy")
def mixture_score_from_log_terms(work, U, full, K, d, D, L, mx, tot, out):
    """The mixture score of ``L`` lanes from its components' log terms, shared by the block and lane scores.

    On entry ``work[k, :L]`` holds component ``k``'s log weight and density at each lane, and
    ``work[K + k d + e]`` its residual in the eigenbasis over the marginal variances,
    ``(alpha^2 Lambda + sigma^2)^-1 U^T (x - alpha m)``; rows from ``D`` on are ``d`` rows of scratch. Writes
    ``out[:, :L] = -sum_k r_k U_k w_k`` (``r_k`` the responsibilities: a softmax over ``k`` stabilised by the
    running maximum ``mx``, normalised by ``tot``); ``full`` False: diagonal covariances, ``U = I``.
    """
    for l in range(L):
        mx[l] = work[0, l]
        tot[l] = 0.0
    for k in range(1, K):
        lk = work[k]
        for l in range(L):
            mx[l] = max(mx[l], lk[l])
    for k in range(K):
        lk = work[k]
        for l in range(L):
            e = exp_nonpos(lk[l] - mx[l])
            lk[l] = e
            tot[l] += e
    for k in range(K):
        lk = work[k]
        for l in range(L):
            lk[l] = lk[l] / tot[l]  # responsibility r_k
    for j in range(d):
        oj = out[j]
        for l in range(L):
            oj[l] = 0.0
    for k in range(K):
        lk = work[k]
        if full:
            for j in range(d):
                dj = work[D + j]
                for l in range(L):
                    dj[l] = 0.0
                for e in range(d):
                    u = U[k, j, e]
                    we = work[K + k * d + e]
                    for l in range(L):
                        dj[l] += u * we[l]
            for j in range(d):
                oj = out[j]
                dj = work[D + j]
                for l in range(L):
                    oj[l] -= lk[l] * dj[l]
        else:
            for j in range(d):
                oj = out[j]
                we = work[K + k * d + j]
                for l in range(L):
                    oj[l] -= lk[l] * we[l]


@njit(cache=True, error_model="numpy")
def analytic_block_score(xb, L, t, coef, means, lam, U, logw, work, out):
    """Exact score of a Gaussian / Gaussian mixture for a block of samples, lanes last.

    ``xb`` and ``out`` are ``(d, B)``: column ``l < L`` is one sample (only those are read and written), so
    every inner loop runs over lanes with unit stride and compiles to SIMD code. ``coef`` and the parameter
    arrays are as in the module docstring; ``work`` is ``(K (1 + d) + 2 + d, B)``.
    """
    K = means.shape[0]
    d = xb.shape[0]
    alpha = coef[0]
    s2 = coef[1]
    aa = alpha * alpha
    full = U.shape[1] > 0
    if K == 1 and not full:
        for j in range(d):
            m = alpha * means[0, j]
            v = aa * lam[0, j] + s2
            xj = xb[j]
            oj = out[j]
            for l in range(L):
                oj[l] = -(xj[l] - m) / v
        return
    D = K * (1 + d) + 2  # first of d rows of differences (full covariances)
    if K == 1:
        # y = U^T (x - alpha mu) / v in work rows 0..d-1; out = -U y
        for j in range(d):
            m = alpha * means[0, j]
            xj = xb[j]
            dj = work[D + j]
            for l in range(L):
                dj[l] = xj[l] - m
        for e in range(d):
            we = work[e]
            for l in range(L):
                we[l] = 0.0
            for j in range(d):
                u = U[0, j, e]
                dj = work[D + j]
                for l in range(L):
                    we[l] += dj[l] * u
            v = aa * lam[0, e] + s2
            for l in range(L):
                we[l] = we[l] / v
        for j in range(d):
            oj = out[j]
            for l in range(L):
                oj[l] = 0.0
            for e in range(d):
                u = U[0, j, e]
                we = work[e]
                for l in range(L):
                    oj[l] -= u * we[l]
        return
    # mixture: rows 0..K-1 log-responsibilities, K + k d + e the scaled coordinates y_ke / v_ke,
    # K (1 + d) the running maximum, K (1 + d) + 1 the normaliser
    mx = work[K * (1 + d)]
    tot = work[K * (1 + d) + 1]
    for k in range(K):
        lk = work[k]
        for l in range(L):
            lk[l] = 0.0
        if full:
            for j in range(d):
                m = alpha * means[k, j]
                xj = xb[j]
                dj = work[D + j]
                for l in range(L):
                    dj[l] = xj[l] - m
            for e in range(d):
                we = work[K + k * d + e]
                for l in range(L):
                    we[l] = 0.0
                for j in range(d):
                    u = U[k, j, e]
                    dj = work[D + j]
                    for l in range(L):
                        we[l] += dj[l] * u
                v = aa * lam[k, e] + s2
                for l in range(L):
                    y = we[l]
                    w = y / v
                    lk[l] += y * w
                    we[l] = w
        else:
            for j in range(d):
                m = alpha * means[k, j]
                v = aa * lam[k, j] + s2
                xj = xb[j]
                we = work[K + k * d + j]
                for l in range(L):
                    y = xj[l] - m
                    w = y / v
                    lk[l] += y * w
                    we[l] = w
        c = logw[k] - 0.5 * coef[2 + k]
        for l in range(L):
            lk[l] = c - 0.5 * lk[l]
    mixture_score_from_log_terms(work, U, full, K, d, D, L, mx, tot, out)


@njit(cache=True, inline="always", error_model="numpy")
def analytic_row_score(x, t, coef, means, lam, U, logw, work, out):
    """Exact score of a Gaussian / Gaussian mixture at one row ``x`` (d,), written to ``out`` (d,).

    See the module docstring for ``coef``, the parameter arrays and ``work`` (size ``K (1 + d)``).
    """
    K = means.shape[0]
    d = x.shape[0]
    alpha = coef[0]
    s2 = coef[1]
    aa = alpha * alpha
    full = U.shape[1] > 0
    if K == 1:
        if not full:
            for j in range(d):
                out[j] = -(x[j] - alpha * means[0, j]) / (aa * lam[0, j] + s2)
            return
        # y = U^T (x - alpha mu) / v, kept in work; out = -U y
        for e in range(d):
            work[e] = 0.0
        for j in range(d):
            diff = x[j] - alpha * means[0, j]
            for e in range(d):
                work[e] += diff * U[0, j, e]
        for e in range(d):
            work[e] = work[e] / (aa * lam[0, e] + s2)
        for j in range(d):
            acc = 0.0
            for e in range(d):
                acc += U[0, j, e] * work[e]
            out[j] = -acc
        return
    # mixture: work[:K] log-responsibilities, work[K + k d : K + (k + 1) d] = y_k / v_k
    mx = -np.inf
    for k in range(K):
        base = K + k * d
        quad = 0.0
        if full:
            for e in range(d):
                work[base + e] = 0.0
            for j in range(d):
                diff = x[j] - alpha * means[k, j]
                for e in range(d):
                    work[base + e] += diff * U[k, j, e]
            for e in range(d):
                y = work[base + e]
                w = y / (aa * lam[k, e] + s2)
                quad += y * w
                work[base + e] = w
        else:
            for j in range(d):
                y = x[j] - alpha * means[k, j]
                w = y / (aa * lam[k, j] + s2)
                quad += y * w
                work[base + j] = w
        lc = logw[k] - 0.5 * (coef[2 + k] + quad)
        work[k] = lc
        if lc > mx:
            mx = lc
    total = 0.0
    for k in range(K):
        e = math.exp(work[k] - mx)
        work[k] = e
        total += e
    for j in range(d):
        out[j] = 0.0
    for k in range(K):
        r = work[k] / total
        base = K + k * d
        if full:
            for j in range(d):
                acc = 0.0
                for e in range(d):
                    acc += U[k, j, e] * work[base + e]
                out[j] -= r * acc
        else:
            for j in range(d):
                out[j] -= r * work[base + j]


@njit(cache=True, error_model="numpy")
def analytic_lanes_score(xb, L, tl, cl, means, lam, U, logw, work, out):
    """:func:`analytic_block_score` with a time per lane: lane ``l`` of ``xb`` (d, B) is at time ``tl[l]`` and reads
    its own constants ``cl[:, l]`` (``alpha, sigma^2, logdet_1..K``; the log-determinants only for mixtures).

    What the fused adaptive kernels call (every sample keeps its own time); ``work`` is ``(K (1 + d) + 2 + d, B)``.
    """
    K = means.shape[0]
    d = xb.shape[0]
    al = cl[0]
    s2l = cl[1]
    full = U.shape[1] > 0
    if K == 1 and not full:
        for j in range(d):
            mu = means[0, j]
            la = lam[0, j]
            xj = xb[j]
            oj = out[j]
            for l in range(L):
                a = al[l]
                oj[l] = -(xj[l] - a * mu) / (a * a * la + s2l[l])
        return
    D = K * (1 + d) + 2
    if K == 1:
        for j in range(d):
            mu = means[0, j]
            xj = xb[j]
            dj = work[D + j]
            for l in range(L):
                dj[l] = xj[l] - al[l] * mu
        for e in range(d):
            we = work[e]
            for l in range(L):
                we[l] = 0.0
            for j in range(d):
                u = U[0, j, e]
                dj = work[D + j]
                for l in range(L):
                    we[l] += dj[l] * u
            la = lam[0, e]
            for l in range(L):
                a = al[l]
                we[l] = we[l] / (a * a * la + s2l[l])
        for j in range(d):
            oj = out[j]
            for l in range(L):
                oj[l] = 0.0
            for e in range(d):
                u = U[0, j, e]
                we = work[e]
                for l in range(L):
                    oj[l] -= u * we[l]
        return
    mx = work[K * (1 + d)]
    tot = work[K * (1 + d) + 1]
    for k in range(K):
        lk = work[k]
        for l in range(L):
            lk[l] = 0.0
        if full:
            for j in range(d):
                mu = means[k, j]
                xj = xb[j]
                dj = work[D + j]
                for l in range(L):
                    dj[l] = xj[l] - al[l] * mu
            for e in range(d):
                we = work[K + k * d + e]
                for l in range(L):
                    we[l] = 0.0
                for j in range(d):
                    u = U[k, j, e]
                    dj = work[D + j]
                    for l in range(L):
                        we[l] += dj[l] * u
                la = lam[k, e]
                for l in range(L):
                    a = al[l]
                    y = we[l]
                    w = y / (a * a * la + s2l[l])
                    lk[l] += y * w
                    we[l] = w
        else:
            for j in range(d):
                mu = means[k, j]
                la = lam[k, j]
                xj = xb[j]
                we = work[K + k * d + j]
                for l in range(L):
                    a = al[l]
                    y = xj[l] - a * mu
                    w = y / (a * a * la + s2l[l])
                    lk[l] += y * w
                    we[l] = w
        lw = logw[k]
        ld = cl[2 + k]
        for l in range(L):
            lk[l] = (lw - 0.5 * ld[l]) - 0.5 * lk[l]
    mixture_score_from_log_terms(work, U, full, K, d, D, L, mx, tot, out)
