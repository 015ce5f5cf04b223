"""Row scores of the analytic densities, for the fused numba kernels.

The fused kernels (:mod:`sdekit.backends.numba_`) evaluate a score one sample (one *row*) at a time, with the
internal signature::

    score_row(x_row, t, coef, params, work, out_row)

``x_row`` and ``out_row`` are ``(d,)`` float64 arrays (the flattened event), ``t`` the stage time, ``coef`` a
``(m,)`` row of per-stage constants that the host computed once for every stage time of the grid, ``params`` a
tuple of arrays that stay fixed for the solve, and ``work`` a scratch array owned by the calling thread.

:func:`analytic_row_score` is that function for :class:`sdekit.analytic.Gaussian` and
:class:`~sdekit.analytic.GaussianMixture` (scalar, diagonal or full covariances; a Gaussian is a mixture of
one component). Everything it needs is in arrays, not in closures, so the kernels that call it are compiled
once and cached on disk (``cache=True``). With ``(alpha, sigma) = sde.marginal(t)`` and per component ``k``
(eigendecomposition ``Sigma_k = U_k diag(lam_k) U_k^T``, ``v_k = alpha^2 lam_k + sigma^2``):

* ``y_k = U_k^T (x - alpha mu_k)``, ``s_k = -U_k (y_k / v_k)``;
* mixtures: ``r_k = softmax_k(log w_k - (sum log v_k + sum y_k^2 / v_k) / 2)``, ``score = sum_k r_k s_k``.

``coef = [alpha, sigma^2, sum_j log v_1j, ..., sum_j log v_Kj]`` at the stage time (so no logarithm is taken
per row) and ``params = (means (K, d), eigvals (K, d), eigvecs (K, d, d) or (K, 0, 0) when diagonal,
log_weights (K,))``. :func:`analytic_params` builds ``params`` and :func:`analytic_coef` the ``coef`` table.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["analytic_row_score", "analytic_params", "analytic_coef", "analytic_work_size", "is_analytic_score"]


def is_analytic_score(score) -> bool:
    """True for the exact score of a :class:`~sdekit.analytic.Gaussian` or ``GaussianMixture`` on a LinearSDE."""
    from ..analytic import AnalyticScore, Gaussian, GaussianMixture
    from ..sdes import LinearSDE

    return (
        isinstance(score, AnalyticScore)
        and isinstance(score.density, (Gaussian, GaussianMixture))
        and isinstance(score.sde, LinearSDE)
    )


def analytic_params(density):
    """``(means (K, d), eigvals (K, d), eigvecs (K, d, d) or (K, 0, 0), log_weights (K,))`` as float64 arrays."""
    from ..analytic import Gaussian

    if isinstance(density, Gaussian):
        means = density.mean[None, :]
        lam = density.eigvals[None, :]
        U = None if density.eigvecs is None else density.eigvecs[None, :, :]
        logw = np.zeros(1)
    else:
        means, lam, U, logw = density.means, density.eigvals, density.eigvecs, density.log_weights
    K = means.shape[0]
    U = np.zeros((K, 0, 0)) if U is None else U
    return tuple(np.ascontiguousarray(a, dtype=np.float64) for a in (means, lam, U, logw))


def analytic_coef(density, sde, times) -> np.ndarray:
    """Per-stage constants ``[alpha, sigma^2, logdet_1..K]`` at ``times`` (any shape), shape ``times.shape + (2 + K,)``."""
    means, lam, _, _ = analytic_params(density)
    t = np.asarray(times, dtype=np.float64)
    alpha, sigma = sde.marginal(t.ravel())
    alpha = np.asarray(alpha, dtype=np.float64) + np.zeros(t.size)
    sigma = np.asarray(sigma, dtype=np.float64) + np.zeros(t.size)
    v = (alpha * alpha)[:, None, None] * lam[None] + (sigma * sigma)[:, None, None]  # (T, K, d)
    out = np.empty((t.size, 2 + means.shape[0]))
    out[:, 0] = alpha
    out[:, 1] = sigma * sigma
    out[:, 2:] = np.log(v).sum(axis=2)
    return out.reshape(t.shape + (2 + means.shape[0],))


def analytic_work_size(params) -> int:
    """Scratch floats :func:`analytic_row_score` needs: ``K (1 + d)``."""
    K, d = params[0].shape
    return K * (1 + d)


@njit(cache=True, error_model="numpy")
def analytic_row_score(x, t, coef, params, work, out):
    """Exact score of a Gaussian / Gaussian mixture at one row ``x`` (d,), written to ``out`` (d,).

    See the module docstring for ``coef``, ``params`` and ``work`` (size ``K (1 + d)``).
    """
    means, lam, U, logw = params
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
