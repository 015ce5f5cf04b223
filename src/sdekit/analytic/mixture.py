"""Gaussian and Gaussian-mixture data laws: :class:`Gaussian` and :class:`GaussianMixture`.

Numerics. Each covariance is stored through its eigendecomposition ``Sigma = U diag(lam) U^T`` (for scalar and
diagonal covariances ``U = I`` and nothing is stored but ``lam``). All quantities are then evaluated in the
eigenbasis, where the covariance of ``p_t`` is diagonal with entries

    v_t = alpha(t)^2 lam + sigma(t)^2   (one per eigen-direction, always > 0),

so no matrix is ever inverted, and nothing overflows for ``sigma`` from ``1e-5`` to ``1e4`` and beyond:

* score:   ``grad log p_t(x) = -U diag(1 / v_t) U^T (x - alpha mu)``
* logpdf:  ``-1/2 [ d log(2 pi) + sum log v_t + sum y^2 / v_t ]``, with ``y = U^T (x - alpha mu)``
* mixtures: responsibilities ``r_k = softmax_k(log w_k + log N_k(x))`` by log-sum-exp, score ``sum_k r_k s_k``.

The mixture formulas are the generic ones of :class:`~sdekit.analytic.AnalyticDensity`; :class:`Gaussian`
evaluates its single component directly (no responsibilities). Both parse covariances with one function
(:func:`parse_covariances`) and draw samples with the base class's ``sample`` (a Gaussian and the one-component
mixture with its parameters give the same samples).
"""

from __future__ import annotations

import numpy as np

from .. import _xp
from ._common import (
    LOG_2PI,
    as_float_array,
    check_sde_time,
    check_x,
    coeffs,
    consts_like,
    eig_full,
    float_coeffs,
    freeze,
)
from .base import AnalyticDensity, MixtureParams

__all__ = ["Gaussian", "GaussianMixture", "parse_covariances"]


def _shape(*dims) -> str:
    return "(" + ", ".join(str(v) for v in dims) + ("," if len(dims) == 1 else "") + ")"


def parse_covariances(name: str, cov: np.ndarray, lead: tuple, d: int):
    """``(cov_kind, stored cov, eigvals (*lead, d), eigvecs (*lead, d, d) or None)`` of one or ``K`` covariances.

    ``lead`` is ``()`` for a single covariance (:class:`Gaussian`: ``cov`` a scalar, ``(d,)`` or ``(d, d)``) or
    ``(K,)`` for a stack (:class:`GaussianMixture`: ``(K,)``, ``(K, d)`` or ``(K, d, d)``). Scalar and diagonal
    covariances store their variances as eigenvalues (no eigenvectors); full ones are checked symmetric and
    positive definite, symmetrised and decomposed.
    """
    many = bool(lead)
    extra = cov.ndim - len(lead)
    if extra == 0:
        if cov.shape != lead:
            raise ValueError(f"{name} as scalars must have shape {_shape(*lead)}, got shape {cov.shape}")
        if np.any(cov <= 0):
            if many:
                raise ValueError(f"{name} must be positive variances, got {cov!r}")
            raise ValueError(f"{name} must be a positive variance, got {float(cov)!r}")
        return "scalar", cov, np.repeat(cov[..., None], d, axis=-1), None
    if extra == 1:
        if cov.shape != lead + (d,):
            what = "diagonals" if many else "a diagonal"
            like = "" if many else " like mean"
            raise ValueError(f"{name} as {what} must have shape {_shape(*lead, d)}{like}, got shape {cov.shape}")
        if np.any(cov <= 0):
            what = "diagonals" if many else "diagonal"
            raise ValueError(f"{name} ({what}) must have positive variances, got {cov!r}")
        return "diag", cov, cov.copy(), None
    if extra == 2:
        if cov.shape != lead + (d, d):
            what = "full matrices" if many else "a full matrix"
            raise ValueError(f"{name} as {what} must have shape {_shape(*lead, d, d)}, got shape {cov.shape}")
        cov, lam, U = eig_full(name, cov)
        return "full", cov, lam, U
    if many:
        shapes = f"{_shape(*lead)}, {_shape(*lead, d)} or {_shape(*lead, d, d)}"
        raise ValueError(f"{name} must have shape {shapes}, got shape {cov.shape}")
    raise ValueError(f"{name} must be a scalar, shape ({d},) or shape ({d}, {d}), got shape {cov.shape}")


# ----------------------------------------------------------------------------------------------------------
# Gaussian
# ----------------------------------------------------------------------------------------------------------
class Gaussian(AnalyticDensity):
    """A Gaussian data law ``p_0 = N(mean, cov)`` and its exact noised marginals ``p_t``.

    Parameters
    ----------
    mean : array_like, shape (d,)
    cov : float, array_like of shape (d,) or (d, d)
        Isotropic variance ``cov * I``, a diagonal of variances, or a full symmetric positive-definite matrix.

    Under a linear SDE with ``(alpha, sigma) = sde.marginal(t)``: ``p_t = N(alpha mean, alpha^2 cov + sigma^2 I)``.
    Internally ``cov = U diag(lam) U^T`` (``eigvals`` = ``lam``, ``eigvecs`` = ``U``, ``None`` when ``cov`` is
    scalar or diagonal) and everything is computed per eigen-direction with variance
    ``v_t = alpha^2 lam + sigma^2``. ``p_t`` is one Gaussian, so :meth:`flow` is exact (``exact_flow``).
    """

    exact_flow = True

    def __init__(self, mean, cov):
        mean = as_float_array("mean", mean)
        if mean.ndim != 1 or mean.shape[0] < 1:
            raise ValueError(f"mean must have shape (d,) with d >= 1, got shape {mean.shape}")
        d = mean.shape[0]
        self.cov_kind, cov, lam, U = parse_covariances("cov", as_float_array("cov", cov), (), d)
        self.mean = mean
        self.cov = cov  # as given (scalar, diagonal or symmetrised full matrix)
        self.eigvals = lam
        self.eigvecs = U
        freeze(self.mean, self.cov, self.eigvals, self.eigvecs)

    # -- basic properties --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def n_components(self) -> int:
        return 1

    def __repr__(self):
        return f"Gaussian(dim={self.dim}, cov_kind={self.cov_kind!r})"

    def _cov_matrix(self) -> np.ndarray:
        if self.cov_kind == "full":
            return self.cov.copy()
        return np.diag(self.eigvals)

    def cov_matrices(self) -> np.ndarray:
        """The covariance as a ``(1, d, d)`` stack (one component)."""
        return self._cov_matrix()[None]

    def mixture_params(self, t=0.0, sde=None) -> MixtureParams:
        """``p_t`` as a one-component mixture: weight 1, mean ``alpha mean``, covariance ``alpha^2 cov + sigma^2 I``."""
        return MixtureParams.at(
            t,
            sde,
            weights=np.ones(1),
            log_weights=np.zeros(1),
            means=self.mean[None, :],
            covs=self.cov_matrices(),
            eigvals=self.eigvals[None, :],
            eigvecs=None if self.eigvecs is None else self.eigvecs[None, :, :],
        )

    # -- internals (no validation) -----------------------------------------------------------------------
    def _single_consts(self, x):
        return consts_like(self, "gaussian", lambda: (self.mean, self.eigvals, self.eigvecs), x)

    def _parts(self, x, t, sde):
        """Eigen-coordinates ``y = U^T (x - alpha mu)`` (n, d), variances ``v_t`` and ``U``."""
        mu, lam, U = self._single_consts(x)
        alpha, sigma = coeffs(t, sde, x, 1)
        diff = x - alpha * mu
        v = alpha * alpha * lam + sigma * sigma
        y = diff if U is None else diff @ U
        return y, v, U

    # -- the score hooks ----------------------------------------------------------------------------------
    def exact_score(self, x, t, sde):
        """``-U diag(1/v_t) U^T (x - alpha(t) mean)``; ``x`` is not checked (the score object does)."""
        y, v, U = self._parts(x, t, sde)
        s = -y / v
        return s if U is None else s @ U.T

    def score_components(self, x, t, sde):
        """``(None, s (n, 1, d), v, U (1, d, d) or None)``: one component, no responsibilities."""
        y, v, U = self._parts(x, t, sde)
        y, v = y[:, None, :], (v[None, :] if v.ndim == 1 else v[:, None, :])
        U = None if U is None else U[None]
        s = -y / v
        if U is not None:
            s = _xp.lib(x).einsum("nke,kde->nkd", s, U)
        return None, s, v, U

    # -- public API ---------------------------------------------------------------------------------------
    def logpdf(self, x, t=0.0, sde=None):
        """Exact ``log p_t(x)``, shape ``(n,)``, for ``x`` of shape ``(n, d)``; ``t`` a float or ``(n,)``.

        ``-1/2 [d log 2 pi + sum_j log v_j + sum_j y_j^2 / v_j]`` with ``y = U^T (x - alpha mean)``.
        ``sde=None`` (with ``t = 0``) evaluates the data law itself.
        """
        check_x(x, self.dim)
        check_sde_time(t, sde, x.shape[0])
        y, v, _ = self._parts(x, t, sde)
        xp = _xp.lib(y)
        quad = _xp.sum_last(y * y / v, 1)
        logdet = _xp.sum_last(xp.log(v), 1)  # scalar, or (n,) for per-sample times
        return -0.5 * (self.dim * LOG_2PI + logdet + quad)

    def mean_cov(self, t=0.0, sde=None):
        """``(mean (d,), cov (d, d))`` of ``p_t`` as float64 numpy: ``(alpha mean, alpha^2 cov + sigma^2 I)``."""
        alpha, sigma = float_coeffs(t, sde)
        return alpha * self.mean, alpha * alpha * self._cov_matrix() + sigma * sigma * np.eye(self.dim)


# ----------------------------------------------------------------------------------------------------------
# Gaussian mixture
# ----------------------------------------------------------------------------------------------------------
class GaussianMixture(AnalyticDensity):
    """A Gaussian mixture ``p_0 = sum_k w_k N(mu_k, Sigma_k)`` and its exact noised marginals.

    Parameters
    ----------
    weights : array_like, shape (K,)
        Positive, finite, summing to 1 within ``1e-8`` (they are not silently renormalised).
    means : array_like, shape (K, d)
    covs : array_like, shape (K,), (K, d) or (K, d, d)
        Per-component isotropic variances, diagonals, or full symmetric positive-definite matrices.

    ``p_t = sum_k w_k N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)``. The score is
    ``sum_k r_k(x, t) s_k(x, t)`` with responsibilities ``r_k = softmax_k(log w_k + log N_k(x))`` computed by
    log-sum-exp, so far-apart components do not underflow to ``0/0``.
    """

    def __init__(self, weights, means, covs):
        w = as_float_array("weights", weights)
        if w.ndim != 1 or w.shape[0] < 1:
            raise ValueError(f"weights must have shape (K,) with K >= 1, got shape {w.shape}")
        if np.any(w <= 0):
            raise ValueError(f"weights must be positive, got {weights!r}")
        if abs(float(w.sum()) - 1.0) > 1e-8:
            raise ValueError(f"weights must sum to 1 (within 1e-8), got sum {float(w.sum())!r}")
        K = w.shape[0]
        means = as_float_array("means", means)
        if means.ndim != 2 or means.shape[0] != K or means.shape[1] < 1:
            raise ValueError(f"means must have shape ({K}, d) with K = len(weights), got shape {means.shape}")
        d = means.shape[1]
        self.cov_kind, covs, lam, U = parse_covariances("covs", as_float_array("covs", covs), (K,), d)
        self.weights = w / w.sum()
        self.log_weights = np.log(self.weights)
        self.means = means
        self.covs = covs
        self.eigvals = lam  # (K, d)
        self.eigvecs = U  # (K, d, d) or None
        freeze(self.weights, self.log_weights, self.means, self.covs, self.eigvals, self.eigvecs)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def __repr__(self):
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim}, cov_kind={self.cov_kind!r})"

    def component(self, k: int) -> Gaussian:
        """Component ``k`` as a :class:`Gaussian`."""
        return Gaussian(self.means[k], self.covs[k])

    def cov_matrices(self) -> np.ndarray:
        """The component covariances ``Sigma_k`` as full ``(K, d, d)`` matrices (a fresh array)."""
        if self.cov_kind == "full":
            return self.covs.copy()
        return self.eigvals[:, :, None] * np.eye(self.dim)

    def mixture_params(self, t=0.0, sde=None) -> MixtureParams:
        """``p_t``: weights, means ``alpha mu_k``, covariances ``alpha^2 Sigma_k + sigma^2 I`` (see MixtureParams)."""
        return MixtureParams.at(
            t,
            sde,
            weights=self.weights,
            log_weights=self.log_weights,
            means=self.means,
            covs=self.cov_matrices(),
            eigvals=self.eigvals,
            eigvecs=self.eigvecs,
        )

    def _data_arrays(self):
        return self.means, self.eigvals, self.log_weights, self.eigvecs
