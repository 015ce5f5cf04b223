"""The analytic-density contract: :class:`AnalyticDensity` and the law it describes, :class:`MixtureParams`.

Every data law here is a Gaussian mixture ``p_0 = sum_k w_k N(mu_k, Sigma_k)`` (a Gaussian is one component),
so under a linear SDE with ``(alpha, sigma) = sde.marginal(t)`` the noised marginal is the mixture

    p_t = sum_k w_k N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I).

:meth:`AnalyticDensity.mixture_params` returns that law at one time. It is all that the rest of the package
reads: :mod:`sdekit.metrics` (the closed-form MMD), the numba backend (the fused score kernels take the data
law's means, eigen-decompositions and log-weights) and the generic implementations of the score, ``logpdf``,
``sample`` and ``mean_cov`` below.

Adding a density family
-----------------------
1. Subclass :class:`AnalyticDensity`; give it ``dim`` (a property or a class attribute).
2. Implement ``mixture_params(t=0.0, sde=None)``, usually as ``MixtureParams.at(t, sde, weights=..., means=...,
   covs=...)`` with the data law's arrays (compute them once, in ``__init__``: the densities are immutable).
3. That is enough: the exact score (numpy and torch, and the numba backend's fused kernels), ``logpdf``,
   ``sample``, ``mean_cov``, the score's divergence and Jacobian-vector products (the likelihood ODE),
   ``sdekit.metrics.mmd_to_mixture`` and ``sdekit.bench.compare`` all work from it. Override a method only to
   make it faster (e.g. a closed form the generic mixture code does not see).
4. If ``p_t`` is a single Gaussian, the class may set ``exact_flow = True``: :meth:`AnalyticDensity.flow` is then
   the exact probability-flow map, and ``bench`` uses it and the exact output laws of affine solvers
   (``bench.exact_law``) instead of a reference ODE solve and a Monte Carlo metric.
5. To make it a named problem of ``sdekit compare``, register a factory with
   :func:`sdekit.analytic.presets.register_density`.

Shapes: a batch ``x`` is ``(n, d)``; a time ``t`` is a float or an ``(n,)`` array. The score, ``logpdf`` and
``flow`` accept numpy arrays and torch tensors and answer in ``x``'s library, dtype and device; ``sample``,
``mean_cov`` and ``mixture_params`` give float64 numpy arrays.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from .. import _xp
from ..noise import check_seed, normals_numpy
from ..validation import integer_at_least
from ._common import (
    DATA_STEP,
    LOG_2PI,
    check_sde,
    check_sde_time,
    check_time_value,
    check_x,
    coeffs,
    consts_like,
    float_coeffs,
    freeze,
)
from .score import AnalyticScore

__all__ = ["AnalyticDensity", "MixtureParams"]


@dataclass(frozen=True)
class MixtureParams:
    """The law ``p_t = sum_k w_k N(means_k, covs_k)`` of an analytic density at one time (float64 arrays).

    The arrays may be views of the density's own (read-only) arrays: treat them as read-only.

    Attributes
    ----------
    weights, log_weights : (K,)
        Component weights (summing to 1) and their logarithms.
    means : (K, d)
        Component means of ``p_t``: ``alpha mu_k``.
    covs : (K, d, d)
        Full component covariances of ``p_t``: ``alpha^2 Sigma_k + sigma^2 I``.
    eigvals : (K, d)
        Eigenvalues ``lam_k`` of the *data law's* covariances ``Sigma_k = U_k diag(lam_k) U_k^T``.
    eigvecs : (K, d, d) or None
        Their eigenvectors ``U_k`` (columns); ``None`` when every ``Sigma_k`` is diagonal (``U_k = I``).
    alpha, sigma : float
        ``sde.marginal(t)`` (``1, 0`` for the data law, ``sde=None``). The component variances of ``p_t`` along
        the eigen-directions are ``alpha^2 eigvals + sigma^2``.
    """

    weights: np.ndarray
    log_weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray | None
    alpha: float
    sigma: float

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @classmethod
    def at(cls, t, sde, *, weights, means, covs, eigvals=None, eigvecs=None, log_weights=None) -> MixtureParams:
        """The law at time ``t`` under ``sde`` of the data law ``sum_k weights_k N(means_k, covs_k)``.

        ``covs`` are the data law's full ``(K, d, d)`` covariance matrices. ``eigvals`` (and ``eigvecs``, or
        ``None`` for diagonal matrices) are their eigen-decomposition; computed here by ``eigh`` when omitted.
        ``t`` and ``sde`` are checked as every density method checks them (``sde=None``: the data law, ``t = 0``).
        """
        alpha, sigma = float_coeffs(t, sde)
        weights = np.asarray(weights, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64)
        covs = np.asarray(covs, dtype=np.float64)
        if eigvals is None:
            eigvals, eigvecs = np.linalg.eigh(covs)
        out = cls(
            weights=weights,
            log_weights=np.log(weights) if log_weights is None else np.asarray(log_weights, dtype=np.float64),
            means=alpha * means,
            covs=alpha * alpha * covs + sigma * sigma * np.eye(means.shape[1]),
            eigvals=np.asarray(eigvals, dtype=np.float64),
            eigvecs=None if eigvecs is None else np.asarray(eigvecs, dtype=np.float64),
            alpha=alpha,
            sigma=sigma,
        )
        freeze(out.means, out.covs)
        return out


class AnalyticDensity(abc.ABC):
    """A data law ``p_0`` whose noised marginals ``p_t`` under every linear SDE are known in closed form.

    Subclasses implement :meth:`mixture_params` (the law as a Gaussian mixture) and ``dim``; everything else has
    a generic implementation from those (see the module docstring for the recipe). Densities are immutable:
    constants converted to an array library, dtype and device are cached on the object.
    """

    #: ``True`` when ``p_t`` is one Gaussian and :meth:`flow` is exact (the class declares it).
    exact_flow: bool = False

    # -- what a subclass provides -------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """The event dimension ``d``."""

    @abc.abstractmethod
    def mixture_params(self, t=0.0, sde=None) -> MixtureParams:
        """The law ``p_t`` at the scalar time ``t`` under ``sde`` (``sde=None``: the data law, ``t = 0``)."""

    # -- basic properties --------------------------------------------------------------------------------
    @property
    def event_shape(self) -> tuple:
        return (self.dim,)

    @property
    def n_components(self) -> int:
        return self.mixture_params().n_components

    def cov_matrices(self) -> np.ndarray:
        """The data law's component covariances ``Sigma_k`` as full ``(K, d, d)`` matrices."""
        return np.array(self.mixture_params().covs)

    def score(self, sde) -> AnalyticScore:
        """The exact score function ``score(x, t) = grad_x log p_t(x)`` under ``sde`` (see :class:`AnalyticScore`)."""
        return AnalyticScore(self, sde)

    # -- constants in x's library (cached) ----------------------------------------------------------------
    def _data_arrays(self):
        p = self.mixture_params()
        return p.means, p.eigvals, p.log_weights, p.eigvecs

    def _component_consts(self, x):
        """``(means (K, d), eigvals (K, d), log_weights (K,), eigvecs (K, d, d) or None)`` of the data law."""
        return consts_like(self, "mixture", self._data_arrays, x)

    def _single_consts(self, x):
        """``(mean (d,), eigvals (d,), eigvecs (d, d) or None)`` of a one-component data law."""
        mu, lam, _, U = self._component_consts(x)
        return mu[0], lam[0], None if U is None else U[0]

    # -- the score and its derivatives (unchecked: AnalyticScore checks x) ---------------------------------
    def log_components(self, x, t, sde):
        """Per-component ``log w_k + log N_k(x)`` (n, K), eigen-coordinates ``y`` (n, K, d), ``v`` and ``U``.

        ``y_k = U_k^T (x - alpha mu_k)`` and ``v_k = alpha^2 lam_k + sigma^2`` ((K, d), or (n, K, d) for
        per-sample times). ``x`` is not checked.
        """
        mu, lam, logw, U = self._component_consts(x)
        alpha, sigma = coeffs(t, sde, x, 2)
        xp = _xp.lib(x)
        diff = x[:, None, :] - alpha * mu  # (n, K, d)
        v = alpha * alpha * lam + sigma * sigma  # (K, d) or (n, K, d)
        y = diff if U is None else xp.einsum("nkd,kde->nke", diff, U)
        quad = _xp.sum_last(y * y / v, 1)  # (n, K)
        logdet = _xp.sum_last(xp.log(v), 1)  # (K,) or (n, K)
        logc = logw - 0.5 * (self.dim * LOG_2PI + logdet + quad)
        return logc, y, v, U

    def exact_score(self, x, t, sde):
        """``grad_x log p_t(x) = sum_k r_k s_k`` for ``x`` (n, d); ``x`` is not checked (the score object does)."""
        r, s, _, _ = self.score_components(x, t, sde)
        return s[:, 0, :] if r is None else (r[:, :, None] * s).sum(1)

    def score_components(self, x, t, sde):
        """Responsibilities ``r (n, K)`` (``None`` for a single Gaussian), component scores ``s_k (n, K, d)``,
        eigen-variances ``v`` ((K, d) or (n, K, d)) and eigenvectors ``U`` ((K, d, d) or ``None``)."""
        logc, y, v, U = self.log_components(x, t, sde)
        r = _xp.softmax(logc, 1)
        s = -y / v
        if U is not None:
            s = _xp.lib(x).einsum("nke,kde->nkd", s, U)
        return r, s, v, U

    def score_divergence(self, x, t, sde):
        """Exact trace of the score's Jacobian ``tr grad_x s(x, t)``, shape ``(n,)``; ``x`` is not checked.

        Gaussian: ``-sum_j 1 / v_j``. Mixture, with ``s = sum_k r_k s_k`` and ``grad r_k = r_k (s_k - s)``:
        ``sum_k r_k tr J_k + sum_k r_k |s_k|^2 - |s|^2``, where ``tr J_k = -sum_j 1 / v_kj``.
        """
        r, s, v, _ = self.score_components(x, t, sde)
        tr_k = -_xp.sum_last(1.0 / v, 1)  # (K,) or (n, K)
        if r is None:
            return tr_k[..., 0] + 0.0 * x[:, 0]
        sbar = (r[:, :, None] * s).sum(1)
        return (r * tr_k).sum(1) + (r * _xp.sum_last(s * s, 1)).sum(1) - _xp.sum_last(sbar * sbar, 1)

    def score_jvp(self, x, t, sde, w):
        """Jacobian-vector product ``grad_x s(x, t) w`` for ``w`` like ``x`` (the Jacobian is symmetric).

        ``J = sum_k r_k J_k + sum_k r_k s_k s_k^T - s s^T`` with ``J_k = -U_k diag(1 / v_k) U_k^T``.
        """
        r, s, v, U = self.score_components(x, t, sde)
        xp = _xp.lib(x)
        if U is None:
            jk = -w[:, None, :] / v
        else:
            jk = xp.einsum("nke,kde->nkd", -xp.einsum("nd,kde->nke", w, U) / v, U)
        if r is None:
            return jk[:, 0, :]
        sbar = (r[:, :, None] * s).sum(1)
        sw = _xp.sum_last(s * w[:, None, :], 1)  # (n, K)
        out = (r[:, :, None] * (jk + s * sw[:, :, None])).sum(1)
        return out - sbar * _xp.sum_last(sbar * w, 1)[:, None]

    # -- densities, samples, moments ----------------------------------------------------------------------
    def responsibilities(self, x, t=0.0, sde=None):
        """Posterior component probabilities ``r_k(x, t)``, shape ``(n, K)``."""
        check_x(x, self.dim)
        check_sde_time(t, sde, x.shape[0])
        return _xp.softmax(self.log_components(x, t, sde)[0], 1)

    def logpdf(self, x, t=0.0, sde=None):
        """Exact ``log p_t(x) = logsumexp_k [log w_k + log N_k(x)]``, shape ``(n,)``; ``t`` a float or ``(n,)``.

        ``sde=None`` (with ``t = 0``) evaluates the data law itself.
        """
        check_x(x, self.dim)
        check_sde_time(t, sde, x.shape[0])
        return _xp.logsumexp(self.log_components(x, t, sde)[0], 1)

    def mean_cov(self, t=0.0, sde=None):
        """Overall ``(mean (d,), cov (d, d))`` of ``p_t`` as float64 numpy.

        ``m = sum_k w_k m_k`` and ``C = sum_k w_k [C_k + (m_k - m)(m_k - m)^T]`` with ``m_k = alpha mu_k``,
        ``C_k = alpha^2 Sigma_k + sigma^2 I``.
        """
        p = self.mixture_params(t, sde)
        alpha, sigma = p.alpha, p.sigma
        w = p.weights
        mk = p.means
        m = w @ mk
        dm = mk - m
        within = np.einsum("k,kij->ij", w, self.cov_matrices())
        cov = alpha * alpha * within + (w[:, None] * dm).T @ dm + sigma * sigma * np.eye(self.dim)
        return m, 0.5 * (cov + cov.T)

    def sample(self, n, seed=0, t=0.0, sde=None, like=None):
        """``n`` exact samples of ``p_t``, shape ``(n, d)`` (float64 numpy, or like ``like`` if given).

        Sample ``i`` draws ``z = normals_numpy(seed, [i], DATA_STEP, d + 1)``; its component is
        ``k = #{j : cumsum(w)_j <= u}`` with the uniform ``u = Phi(z_d)`` (standard normal CDF of the last
        normal; not drawn for one component), and ``x_i = alpha mu_k + U_k (sqrt(v_k) * z_{:d})``. So sample
        ``i`` depends only on ``(seed, i)``, and a Gaussian and the one-component mixture with its parameters
        give the same samples. ``t`` is a float; ``sde=None`` means the data law.
        """
        n = integer_at_least("n", n, 0)
        seed = check_seed(seed)
        p = self.mixture_params(t, sde)
        alpha, sigma = p.alpha, p.sigma
        K, d = p.means.shape
        zz = normals_numpy(seed, np.arange(n), DATA_STEP, d + 1)
        z = zz[:, :d]
        v = alpha * alpha * p.eigvals + sigma * sigma  # (K, d)
        U = p.eigvecs
        if K == 1:
            e = z * np.sqrt(v[0])
            x = p.means[0] + (e if U is None else e @ U[0].T)
        else:
            from scipy.special import ndtr  # on first use: a bare ``import sdekit`` loads no scipy

            u = ndtr(zz[:, d])
            comp = np.minimum(np.searchsorted(np.cumsum(p.weights), u, side="right"), K - 1)
            x = np.empty((n, d), dtype=np.float64)
            for k in range(K):
                idx = np.flatnonzero(comp == k)
                if idx.size == 0:
                    continue
                e = z[idx] * np.sqrt(v[k])
                x[idx] = p.means[k] + (e if U is None else e @ U[k].T)
        return x if like is None else _xp.asarray_like(x, like)

    # -- the exact probability-flow map of a Gaussian law -------------------------------------------------
    def flow(self, x, t_from, t_to, sde):
        """Exact probability-flow ODE transport of ``x`` (n, d) from time ``t_from`` to ``t_to``.

        Only for densities that declare ``exact_flow`` (``p_t`` one Gaussian ``N(m_t, U diag(v_t) U^T)``): the PF
        ODE ``dx/dt = a x - g^2 score / 2`` is then affine, ``d/dt [U^T (x - m_t) / sqrt(v_t)] = 0``, hence

            x_to = m_to + U diag(sqrt(v_to / v_from)) U^T (x - m_from),   m_t = alpha(t) mean.

        ``t_from`` and ``t_to`` are floats or ``(n,)`` arrays; numpy and torch ``x`` (result in its library).
        """
        if not self.exact_flow:
            raise TypeError(
                f"{type(self).__name__} has no exact flow (exact_flow is False: p_t is not a single Gaussian)"
            )
        check_x(x, self.dim)
        check_sde(sde)
        check_time_value("t_from", t_from, x.shape[0])
        check_time_value("t_to", t_to, x.shape[0])
        mu, lam, U = self._single_consts(x)
        a0, s0 = coeffs(t_from, sde, x, 1)
        a1, s1 = coeffs(t_to, sde, x, 1)
        xp = _xp.lib(x)
        ratio = xp.sqrt((a1 * a1 * lam + s1 * s1) / (a0 * a0 * lam + s0 * s0))
        diff = x - a0 * mu
        moved = ratio * diff if U is None else ((diff @ U) * ratio) @ U.T
        return a1 * mu + moved
