"""Host side of the analytic densities' fused scores: which scores the numba kernels run, and their arrays.

The compiled scores themselves (block form for the kernels, row form for one sample) are in
:mod:`sdekit.backends.numba.scores`; this module turns a density into what they read:

* :func:`is_analytic_score` -- True for an exact score the kernels can run;
* :func:`analytic_params` -- the arrays ``(p0, p1, p2, p3) = (means (K, d), eigvals (K, d), eigvecs (K, d, d) or
  (K, 0, 0) when diagonal, log_weights (K,))`` fixed for a solve;
* :func:`analytic_coef` -- the per-stage constants ``coef = [alpha, sigma^2, sum_j log v_1j, ..., sum_j log v_Kj]``
  (``v_kj = alpha^2 lam_kj + sigma^2``) at every stage time of a grid, computed once per solve;
* :func:`analytic_work_rows`, :func:`analytic_work_size` -- the scratch the block and row forms need.

See :mod:`sdekit.backends.numba.scores` for the formulas.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "analytic_params",
    "analytic_coef",
    "analytic_work_size",
    "analytic_work_rows",
    "is_analytic_score",
]


def is_analytic_score(score) -> bool:
    """True for the exact score of an analytic density (:class:`~sdekit.analytic.AnalyticDensity`) on a LinearSDE."""
    from ...analytic import AnalyticDensity, AnalyticScore
    from ...sdes import LinearSDE

    return (
        isinstance(score, AnalyticScore)
        and isinstance(score.density, AnalyticDensity)
        and isinstance(score.sde, LinearSDE)
    )


def analytic_params(density):
    """``(means (K, d), eigvals (K, d), eigvecs (K, d, d) or (K, 0, 0), log_weights (K,))`` as float64 arrays.

    Read from ``density.mixture_params()``: the data law (``t = 0``, ``sde=None``) as a Gaussian mixture.
    """
    p = density.mixture_params()
    means, lam, U, logw = p.means, p.eigvals, p.eigvecs, p.log_weights
    K = means.shape[0]
    U = np.zeros((K, 0, 0)) if U is None else U
    # fresh writable C arrays: numba types read-only arrays apart, which would compile the kernels again
    return tuple(np.array(a, dtype=np.float64, order="C", copy=True) for a in (means, lam, U, logw))


def analytic_coef(density, sde, times) -> np.ndarray:
    """Per-stage constants ``[alpha, sigma^2, logdet_1..K]`` at ``times``; shape ``times.shape + (2 + K,)``."""
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


def analytic_work_rows(params) -> int:
    """Rows of the ``(rows, block)`` scratch :func:`analytic_block_score` needs: ``K (1 + d) + 2 + d``."""
    K, d = params[0].shape
    return K * (1 + d) + 2 + d


def analytic_work_size(params) -> int:
    """Scratch floats :func:`analytic_row_score` needs: ``K (1 + d)``."""
    K, d = params[0].shape
    return K * (1 + d)
