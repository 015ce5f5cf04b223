"""Analytic data distributions whose noised marginals ``p_t``, scores and flows are known exactly.

Every SDE in :mod:`sdekit.sdes` is linear, with transition kernel ``x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I)``.
If the data law is Gaussian, ``p_0 = N(mu, Sigma)``, then

    p_t = N(alpha mu, alpha^2 Sigma + sigma^2 I),

and a Gaussian mixture ``sum_k w_k N(mu_k, Sigma_k)`` stays a mixture with the same weights and components
``N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)``. Here ``(alpha, sigma) = sde.marginal(t)``.

VE convention (score_sde's, the one documented in :class:`sdekit.sdes.VESDE`): ``p_t`` is the data law convolved
with ``N(0, sigma(t)^2 I)`` for *every* ``t``, including ``t = 0``, where ``sigma(0) = sigma_min > 0``. So
``Gaussian(mu, Sigma).mean_cov(0.0, VESDE(...))`` is ``(mu, Sigma + sigma_min^2 I)``, not the data law; the
data law itself is what you get with ``sde=None`` (only allowed at ``t = 0``).

Numerics. Each covariance is stored through its eigendecomposition ``Sigma = U diag(lam) U^T`` (for scalar and
diagonal covariances ``U = I`` and nothing is stored but ``lam``). All quantities are then evaluated in the
eigenbasis, where the covariance of ``p_t`` is diagonal with entries

    v_t = alpha(t)^2 lam + sigma(t)^2   (one per eigen-direction, always > 0),

so no matrix is ever inverted, and nothing overflows for ``sigma`` from ``1e-5`` to ``1e4`` and beyond:

* score:   ``grad log p_t(x) = -U diag(1 / v_t) U^T (x - alpha mu)``
* logpdf:  ``-1/2 [ d log(2 pi) + sum log v_t + sum y^2 / v_t ]``, with ``y = U^T (x - alpha mu)``
* mixtures: responsibilities ``r_k = softmax_k(log w_k + log N_k(x))`` by log-sum-exp, score ``sum_k r_k s_k``.

Shapes: a batch ``x`` is ``(n, d)``; a time ``t`` is a float or an ``(n,)`` array (one time per sample).
Score functions, ``logpdf`` and ``Gaussian.flow`` accept numpy arrays and torch tensors and return results in
``x``'s library, dtype and device. ``sample`` and ``mean_cov`` return float64 numpy arrays.

The densities are immutable (their arrays are read-only): constants converted to a torch dtype/device are
cached on the object, so a sampling loop does not copy them to the device at every step.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from . import _xp
from .noise import PRIOR_STEP, check_seed, normals_numpy
from .sdes import LinearSDE
from .validation import integer_at_least

__all__ = ["Gaussian", "GaussianMixture", "AnalyticScore", "DATA_STEP"]

#: Reserved step index of the counter-based noise used by ``sample`` (solvers use 0, 1, ...; the prior uses
#: ``PRIOR_STEP``), so that data samples and solver noise drawn with the same seed are independent.
DATA_STEP = PRIOR_STEP + 1

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------
def _as_float_array(name: str, value) -> np.ndarray:
    if _xp.is_torch(value):
        value = value.detach().cpu().numpy()
    try:
        arr = np.array(value, dtype=np.float64)  # a copy: the densities freeze their arrays
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _frozen(*arrays):
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def _check_symmetric(name: str, c: np.ndarray) -> None:
    scale = float(np.max(np.abs(c))) if c.size else 0.0
    asym = float(np.max(np.abs(c - np.swapaxes(c, -1, -2)))) if c.size else 0.0
    if asym > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric, got max |C - C^T| = {asym:.3g} (max |C| = {scale:.3g})")


def _eig_full(name: str, c: np.ndarray):
    """Eigendecomposition of a symmetric positive-definite ``c`` (or a stack of them)."""
    _check_symmetric(name, c)
    c = 0.5 * (c + np.swapaxes(c, -1, -2))
    lam, U = np.linalg.eigh(c)
    lam_min = lam.min(axis=-1)
    bad = np.flatnonzero(np.atleast_1d(lam_min) <= 0.0)
    if bad.size:
        where = f"{name}[{bad[0]}]" if c.ndim == 3 else name
        val = float(np.atleast_1d(lam_min)[bad[0]])
        raise ValueError(f"{where} must be positive definite, got smallest eigenvalue {val:.3g}")
    return c, lam, U


def _check_sde(sde) -> None:
    if not isinstance(sde, LinearSDE):
        raise TypeError(
            f"sde must be an sdekit LinearSDE (VPSDE, SubVPSDE, VESDE, EDMSDE), got {sde!r}; "
            "analytic marginals exist only for linear SDEs"
        )


def _check_time_value(name: str, t, n: int | None) -> None:
    """User-facing check of a time: finite, >= 0, a scalar or (n,)."""
    tn = t.detach().cpu().numpy() if _xp.is_torch(t) else t
    try:
        tn = np.asarray(tn, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or a 1-D array of times, got {t!r}") from None
    if tn.ndim > 1 or (tn.ndim == 1 and n is not None and tn.shape[0] != n):
        raise ValueError(f"{name} must be a scalar or of shape ({n},), got shape {tn.shape}")
    if not np.all(np.isfinite(tn)) or np.any(tn < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {t!r}")


def _check_x(x, d: int) -> None:
    """Cheap shape/dtype check of a batch (also done inside score calls)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 2 or shape[1] != d:
        raise ValueError(f"x must have shape (n, {d}), got shape {shape}")
    if _xp.is_torch(x):
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array or torch tensor, got {type(x).__name__}")


def _time_like(t, x):
    """``t`` in ``x``'s library, float dtype and device (a 0-d or 1-d array)."""
    if _xp.is_torch(x):
        torch = _xp.lib(x)
        if isinstance(t, torch.Tensor):
            return t.to(dtype=x.dtype, device=x.device)
        return torch.as_tensor(np.asarray(t, dtype=np.float64), dtype=x.dtype, device=x.device)
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    if _xp.is_torch(t):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=dtype)


def _coeffs(t, sde, x, n_extra: int):
    """``(alpha, sigma)`` at ``t`` in ``x``'s library; per-sample times reshaped to ``(n, 1, ...)``.

    ``n_extra`` trailing singleton axes are added to per-sample coefficients so that they broadcast against
    ``(n, d)`` (``n_extra = 1``) or ``(n, K, d)`` (``n_extra = 2``) arrays. ``sde=None`` means the data law.
    """
    if sde is None:
        one = _xp.asarray_like(1.0, x)
        return one, 0.0 * one
    tt = _time_like(t, x)
    if tt.ndim > 1 or (tt.ndim == 1 and tt.shape[0] != x.shape[0]):
        raise ValueError(f"t must be a scalar or of shape ({x.shape[0]},), got shape {tuple(tt.shape)}")
    alpha, sigma = sde.marginal(tt)
    if tt.ndim == 1:
        shape = (tt.shape[0],) + (1,) * n_extra
        alpha, sigma = alpha.reshape(shape), sigma.reshape(shape)
    return alpha, sigma


def _float_coeffs(t, sde):
    """``(alpha, sigma)`` as python floats at a scalar time; ``sde=None`` is the data law (``t = 0`` only)."""
    try:
        tf = float(t)
    except (TypeError, ValueError):
        raise TypeError(f"t must be a real number, got {t!r}") from None
    if not math.isfinite(tf) or tf < 0:
        raise ValueError(f"t must be finite and >= 0, got {t!r}")
    if sde is None:
        if tf != 0.0:
            raise ValueError(f"sde is needed for t != 0 (sde=None means the data law at t=0), got t={t!r}")
        return 1.0, 0.0
    _check_sde(sde)
    alpha, sigma = sde.marginal(tf)
    return float(alpha), float(sigma)


def _consts_like(obj, arrays, like):
    """``arrays`` (float64 numpy, or None) converted to ``like``'s library, dtype and device, cached per kind.

    The densities are immutable after construction, so the converted constants are kept (one entry per
    numpy dtype or torch dtype/device): a sampler's loop does not re-upload them to the device every step.
    """
    if _xp.is_torch(like):
        key = ("torch", like.dtype, like.device)
    else:
        key = ("numpy", like.dtype if like.dtype.kind == "f" else np.dtype(np.float64))
    cache = obj.__dict__.setdefault("_const_cache", {})
    out = cache.get(key)
    if out is None:
        # np.array(a): a writeable copy (torch warns on read-only numpy memory, and cpu tensors share it)
        out = tuple(
            None if a is None else _xp.asarray_like(np.array(a) if key[0] == "torch" else a, like) for a in arrays
        )
        cache[key] = out
    return out


def _check_sde_time(t, sde, n):
    if sde is None:
        _check_time_value("t", t, n)
        tn = t.detach().cpu().numpy() if _xp.is_torch(t) else t
        if np.any(np.asarray(tn, dtype=np.float64) != 0.0):
            raise ValueError(f"sde is needed for t != 0 (sde=None means the data law at t=0), got t={t!r}")
    else:
        _check_sde(sde)
        _check_time_value("t", t, n)


# ----------------------------------------------------------------------------------------------------------
# the score callable
# ----------------------------------------------------------------------------------------------------------
class AnalyticScore:
    """The exact score ``s(x, t) = grad_x log p_t(x)`` of an analytic density under a linear SDE.

    Call it as ``score(x, t)`` with ``x`` of shape ``(n, d)`` (numpy array or torch tensor) and ``t`` a float or
    an ``(n,)`` array; the result has ``x``'s shape, library, dtype and device.

    Attributes
    ----------
    density : Gaussian or GaussianMixture
        The data law ``p_0`` (samplers and the fused numba backend read its parameters from here).
    sde : LinearSDE
        The forward process that defines ``p_t``.
    event_shape : tuple
        ``(d,)``.
    """

    __slots__ = ("density", "sde", "event_shape")

    def __init__(self, density, sde):
        _check_sde(sde)
        self.density = density
        self.sde = sde
        self.event_shape = density.event_shape

    def __call__(self, x, t):
        _check_x(x, self.density.dim)
        return self.density._score(x, t, self.sde)

    def __repr__(self):
        return f"AnalyticScore({self.density!r}, {self.sde!r})"

    # -- derivatives of the score (used by the likelihood ODE) --------------------------------------------
    def _components(self, x, t):
        """Responsibilities ``r (n, K)`` (``None`` for a Gaussian), component scores ``s_k (n, K, d)``,
        eigen-variances ``v`` ((K, d) or (n, K, d)) and eigenvectors ``U`` ((K, d, d) or ``None``)."""
        dens = self.density
        if isinstance(dens, Gaussian):
            y, v, U = dens._parts(x, t, self.sde)
            y, v, r = y[:, None, :], (v[None, :] if v.ndim == 1 else v[:, None, :]), None
            U = None if U is None else U[None]
        else:
            logc, y, v, U = dens._log_components(x, t, self.sde)
            r = _xp.softmax(logc, 1)
        s = -y / v
        if U is not None:
            s = _xp.lib(x).einsum("nke,kde->nkd", s, U)
        return r, s, v, U

    def divergence(self, x, t):
        """Exact trace of the score's Jacobian ``tr grad_x s(x, t)``, shape ``(n,)`` (numpy or torch).

        Gaussian: ``-sum_j 1 / v_j``. Mixture, with ``s = sum_k r_k s_k`` and ``grad r_k = r_k (s_k - s)``:
        ``sum_k r_k tr J_k + sum_k r_k |s_k|^2 - |s|^2``, where ``tr J_k = -sum_j 1 / v_kj``.
        """
        _check_x(x, self.density.dim)
        r, s, v, _ = self._components(x, t)
        tr_k = -_xp.sum_last(1.0 / v, 1)  # (K,) or (n, K)
        if r is None:
            return tr_k[..., 0] + 0.0 * x[:, 0]
        sbar = (r[:, :, None] * s).sum(1)
        return (r * tr_k).sum(1) + (r * _xp.sum_last(s * s, 1)).sum(1) - _xp.sum_last(sbar * sbar, 1)

    def jvp(self, x, t, w):
        """Jacobian-vector product ``grad_x s(x, t) w`` for ``w`` like ``x``, exact (the Jacobian is symmetric).

        ``J = sum_k r_k J_k + sum_k r_k s_k s_k^T - s s^T`` with ``J_k = -U_k diag(1 / v_k) U_k^T``.
        """
        _check_x(x, self.density.dim)
        r, s, v, U = self._components(x, t)
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


# ----------------------------------------------------------------------------------------------------------
# Gaussian
# ----------------------------------------------------------------------------------------------------------
class Gaussian:
    """A Gaussian data law ``p_0 = N(mean, cov)`` and its exact noised marginals ``p_t``.

    Parameters
    ----------
    mean : array_like, shape (d,)
    cov : float, array_like of shape (d,) or (d, d)
        Isotropic variance ``cov * I``, a diagonal of variances, or a full symmetric positive-definite matrix.

    Under a linear SDE with ``(alpha, sigma) = sde.marginal(t)``: ``p_t = N(alpha mean, alpha^2 cov + sigma^2 I)``.
    Internally ``cov = U diag(lam) U^T`` (``eigvals`` = ``lam``, ``eigvecs`` = ``U``, ``None`` when ``cov`` is
    scalar or diagonal) and everything is computed per eigen-direction with variance
    ``v_t = alpha^2 lam + sigma^2``.
    """

    def __init__(self, mean, cov):
        mean = _as_float_array("mean", mean)
        if mean.ndim != 1 or mean.shape[0] < 1:
            raise ValueError(f"mean must have shape (d,) with d >= 1, got shape {mean.shape}")
        d = mean.shape[0]
        cov = _as_float_array("cov", cov)
        if cov.ndim == 0:
            if cov <= 0:
                raise ValueError(f"cov must be a positive variance, got {float(cov)!r}")
            self.cov_kind = "scalar"
            lam, U = np.full(d, float(cov)), None
        elif cov.ndim == 1:
            if cov.shape != (d,):
                raise ValueError(f"cov as a diagonal must have shape ({d},) like mean, got shape {cov.shape}")
            if np.any(cov <= 0):
                raise ValueError(f"cov (diagonal) must have positive variances, got {cov!r}")
            self.cov_kind = "diag"
            lam, U = cov.copy(), None
        elif cov.ndim == 2:
            if cov.shape != (d, d):
                raise ValueError(f"cov as a full matrix must have shape ({d}, {d}), got shape {cov.shape}")
            cov, lam, U = _eig_full("cov", cov)
            self.cov_kind = "full"
        else:
            raise ValueError(f"cov must be a scalar, shape ({d},) or shape ({d}, {d}), got shape {cov.shape}")
        self.mean = mean
        self.cov = cov  # as given (scalar, diagonal or symmetrised full matrix)
        self.eigvals = lam
        self.eigvecs = U
        _frozen(self.mean, self.cov, self.eigvals, self.eigvecs)

    # -- basic properties --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def event_shape(self) -> tuple:
        return (self.dim,)

    def __repr__(self):
        return f"Gaussian(dim={self.dim}, cov_kind={self.cov_kind!r})"

    def _cov_matrix(self) -> np.ndarray:
        if self.cov_kind == "full":
            return self.cov.copy()
        return np.diag(self.eigvals)

    # -- internals (no validation) -----------------------------------------------------------------------
    def _consts(self, x):
        return _consts_like(self, (self.mean, self.eigvals, self.eigvecs), x)

    def _parts(self, x, t, sde):
        """Eigen-coordinates ``y = U^T (x - alpha mu)`` (n, d), variances ``v_t`` and ``U``."""
        mu, lam, U = self._consts(x)
        alpha, sigma = _coeffs(t, sde, x, 1)
        diff = x - alpha * mu
        v = alpha * alpha * lam + sigma * sigma
        y = diff if U is None else diff @ U
        return y, v, U

    def _score(self, x, t, sde):
        y, v, U = self._parts(x, t, sde)
        s = -y / v
        return s if U is None else s @ U.T

    # -- public API ---------------------------------------------------------------------------------------
    def score(self, sde) -> AnalyticScore:
        """The exact score function ``score(x, t) = -U diag(1/v_t) U^T (x - alpha(t) mean)`` of ``p_t``."""
        return AnalyticScore(self, sde)

    def logpdf(self, x, t=0.0, sde=None):
        """Exact ``log p_t(x)``, shape ``(n,)``, for ``x`` of shape ``(n, d)``; ``t`` a float or ``(n,)``.

        ``-1/2 [d log 2 pi + sum_j log v_j + sum_j y_j^2 / v_j]`` with ``y = U^T (x - alpha mean)``.
        ``sde=None`` (with ``t = 0``) evaluates the data law itself.
        """
        _check_x(x, self.dim)
        _check_sde_time(t, sde, x.shape[0])
        y, v, _ = self._parts(x, t, sde)
        xp = _xp.lib(y)
        quad = _xp.sum_last(y * y / v, 1)
        logdet = _xp.sum_last(xp.log(v), 1)  # scalar, or (n,) for per-sample times
        return -0.5 * (self.dim * _LOG_2PI + logdet + quad)

    def mean_cov(self, t=0.0, sde=None):
        """``(mean (d,), cov (d, d))`` of ``p_t`` as float64 numpy: ``(alpha mean, alpha^2 cov + sigma^2 I)``."""
        alpha, sigma = _float_coeffs(t, sde)
        return alpha * self.mean, alpha * alpha * self._cov_matrix() + sigma * sigma * np.eye(self.dim)

    def sample(self, n, seed=0, t=0.0, sde=None, like=None):
        """``n`` exact samples of ``p_t``, shape ``(n, d)`` (float64 numpy, or like ``like`` if given).

        ``x_i = alpha mean + U (sqrt(v_t) * z_i)`` with ``z_i = normals_numpy(seed, [i], DATA_STEP, d + 1)[:, :d]``,
        so sample ``i`` depends only on ``(seed, i)`` (and ``t``, ``sde``). A one-component
        :class:`GaussianMixture` gives the same samples. ``t`` is a float; ``sde=None`` means the data law.
        """
        n = integer_at_least("n", n, 0)
        seed = check_seed(seed)
        alpha, sigma = _float_coeffs(t, sde)
        d = self.dim
        z = normals_numpy(seed, np.arange(n), DATA_STEP, d + 1)[:, :d]
        v = alpha * alpha * self.eigvals + sigma * sigma
        e = z * np.sqrt(v)
        x = alpha * self.mean + (e if self.eigvecs is None else e @ self.eigvecs.T)
        return x if like is None else _xp.asarray_like(x, like)

    def flow(self, x, t_from, t_to, sde):
        """Exact probability-flow ODE transport of ``x`` (n, d) from time ``t_from`` to ``t_to``.

        The PF ODE ``dx/dt = a x - g^2 score / 2`` of a Gaussian family ``p_t = N(m_t, U diag(v_t) U^T)`` is
        affine, ``d/dt [U^T (x - m_t) / sqrt(v_t)] = 0``, hence

            x_to = m_to + U diag(sqrt(v_to / v_from)) U^T (x - m_from),   m_t = alpha(t) mean.

        ``t_from`` and ``t_to`` are floats or ``(n,)`` arrays; numpy and torch ``x`` (result in its library).
        """
        _check_x(x, self.dim)
        _check_sde(sde)
        _check_time_value("t_from", t_from, x.shape[0])
        _check_time_value("t_to", t_to, x.shape[0])
        mu, lam, U = self._consts(x)
        a0, s0 = _coeffs(t_from, sde, x, 1)
        a1, s1 = _coeffs(t_to, sde, x, 1)
        xp = _xp.lib(x)
        ratio = xp.sqrt((a1 * a1 * lam + s1 * s1) / (a0 * a0 * lam + s0 * s0))
        diff = x - a0 * mu
        moved = ratio * diff if U is None else ((diff @ U) * ratio) @ U.T
        return a1 * mu + moved


# ----------------------------------------------------------------------------------------------------------
# Gaussian mixture
# ----------------------------------------------------------------------------------------------------------
class GaussianMixture:
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
        w = _as_float_array("weights", weights)
        if w.ndim != 1 or w.shape[0] < 1:
            raise ValueError(f"weights must have shape (K,) with K >= 1, got shape {w.shape}")
        if np.any(w <= 0):
            raise ValueError(f"weights must be positive, got {weights!r}")
        if abs(float(w.sum()) - 1.0) > 1e-8:
            raise ValueError(f"weights must sum to 1 (within 1e-8), got sum {float(w.sum())!r}")
        K = w.shape[0]
        means = _as_float_array("means", means)
        if means.ndim != 2 or means.shape[0] != K or means.shape[1] < 1:
            raise ValueError(f"means must have shape ({K}, d) with K = len(weights), got shape {means.shape}")
        d = means.shape[1]
        covs = _as_float_array("covs", covs)
        if covs.ndim == 1:
            if covs.shape != (K,):
                raise ValueError(f"covs as scalars must have shape ({K},), got shape {covs.shape}")
            if np.any(covs <= 0):
                raise ValueError(f"covs must be positive variances, got {covs!r}")
            self.cov_kind = "scalar"
            lam, U = np.repeat(covs[:, None], d, axis=1), None
        elif covs.ndim == 2:
            if covs.shape != (K, d):
                raise ValueError(f"covs as diagonals must have shape ({K}, {d}), got shape {covs.shape}")
            if np.any(covs <= 0):
                raise ValueError(f"covs (diagonals) must have positive variances, got {covs!r}")
            self.cov_kind = "diag"
            lam, U = covs.copy(), None
        elif covs.ndim == 3:
            if covs.shape != (K, d, d):
                raise ValueError(f"covs as full matrices must have shape ({K}, {d}, {d}), got shape {covs.shape}")
            covs, lam, U = _eig_full("covs", covs)
            self.cov_kind = "full"
        else:
            raise ValueError(f"covs must have shape ({K},), ({K}, {d}) or ({K}, {d}, {d}), got shape {covs.shape}")
        self.weights = w / w.sum()
        self.log_weights = np.log(self.weights)
        self.means = means
        self.covs = covs
        self.eigvals = lam  # (K, d)
        self.eigvecs = U  # (K, d, d) or None
        _frozen(self.weights, self.log_weights, self.means, self.covs, self.eigvals, self.eigvecs)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def event_shape(self) -> tuple:
        return (self.dim,)

    def __repr__(self):
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim}, cov_kind={self.cov_kind!r})"

    def component(self, k: int) -> Gaussian:
        """Component ``k`` as a :class:`Gaussian`."""
        return Gaussian(self.means[k], self.covs[k])

    def _cov_matrices(self) -> np.ndarray:
        if self.cov_kind == "full":
            return self.covs.copy()
        return self.eigvals[:, :, None] * np.eye(self.dim)

    # -- internals ---------------------------------------------------------------------------------------
    def _log_components(self, x, t, sde):
        """Per-component ``log w_k + log N_k(x)`` (n, K), eigen-coordinates ``y`` (n, K, d), ``v`` and ``U``."""
        mu, lam, logw, U = _consts_like(self, (self.means, self.eigvals, self.log_weights, self.eigvecs), x)
        alpha, sigma = _coeffs(t, sde, x, 2)
        xp = _xp.lib(x)
        diff = x[:, None, :] - alpha * mu  # (n, K, d)
        v = alpha * alpha * lam + sigma * sigma  # (K, d) or (n, K, d)
        y = diff if U is None else xp.einsum("nkd,kde->nke", diff, U)
        quad = _xp.sum_last(y * y / v, 1)  # (n, K)
        logdet = _xp.sum_last(xp.log(v), 1)  # (K,) or (n, K)
        logc = logw - 0.5 * (self.dim * _LOG_2PI + logdet + quad)
        return logc, y, v, U

    def _score(self, x, t, sde):
        logc, y, v, U = self._log_components(x, t, sde)
        r = _xp.softmax(logc, 1)  # (n, K)
        s = -y / v
        if U is not None:
            s = _xp.lib(x).einsum("nke,kde->nkd", s, U)
        return (r[:, :, None] * s).sum(1)

    # -- public API ---------------------------------------------------------------------------------------
    def score(self, sde) -> AnalyticScore:
        """The exact score function ``score(x, t) = sum_k r_k(x, t) s_k(x, t)`` of ``p_t``."""
        return AnalyticScore(self, sde)

    def responsibilities(self, x, t=0.0, sde=None):
        """Posterior component probabilities ``r_k(x, t)``, shape ``(n, K)``."""
        _check_x(x, self.dim)
        _check_sde_time(t, sde, x.shape[0])
        return _xp.softmax(self._log_components(x, t, sde)[0], 1)

    def logpdf(self, x, t=0.0, sde=None):
        """Exact ``log p_t(x) = logsumexp_k [log w_k + log N_k(x)]``, shape ``(n,)``; ``t`` a float or ``(n,)``."""
        _check_x(x, self.dim)
        _check_sde_time(t, sde, x.shape[0])
        return _xp.logsumexp(self._log_components(x, t, sde)[0], 1)

    def mean_cov(self, t=0.0, sde=None):
        """Overall ``(mean (d,), cov (d, d))`` of ``p_t`` as float64 numpy.

        ``m = sum_k w_k m_k`` and ``C = sum_k w_k [C_k + (m_k - m)(m_k - m)^T]`` with ``m_k = alpha mu_k``,
        ``C_k = alpha^2 Sigma_k + sigma^2 I``.
        """
        alpha, sigma = _float_coeffs(t, sde)
        w = self.weights
        mk = alpha * self.means
        m = w @ mk
        dm = mk - m
        within = np.einsum("k,kij->ij", w, self._cov_matrices())
        cov = alpha * alpha * within + (w[:, None] * dm).T @ dm + sigma * sigma * np.eye(self.dim)
        return m, 0.5 * (cov + cov.T)

    def sample(self, n, seed=0, t=0.0, sde=None, like=None):
        """``n`` exact samples of ``p_t``, shape ``(n, d)`` (float64 numpy, or like ``like`` if given).

        Sample ``i`` draws ``z = normals_numpy(seed, [i], DATA_STEP, d + 1)``; its component is
        ``k = #{j : cumsum(w)_j <= u}`` with the uniform ``u = Phi(z_d)`` (standard normal CDF of the last
        normal), and ``x_i = alpha mu_k + U_k (sqrt(v_k) * z_{:d})``. So sample ``i`` depends only on
        ``(seed, i)``. ``t`` is a float; ``sde=None`` means the data law.
        """
        n = integer_at_least("n", n, 0)
        seed = check_seed(seed)
        alpha, sigma = _float_coeffs(t, sde)
        d, K = self.dim, self.n_components
        zz = normals_numpy(seed, np.arange(n), DATA_STEP, d + 1)
        z, u = zz[:, :d], ndtr(zz[:, d])
        comp = np.minimum(np.searchsorted(np.cumsum(self.weights), u, side="right"), K - 1)
        v = alpha * alpha * self.eigvals + sigma * sigma  # (K, d)
        x = np.empty((n, d), dtype=np.float64)
        for k in range(K):
            idx = np.flatnonzero(comp == k)
            if idx.size == 0:
                continue
            e = z[idx] * np.sqrt(v[k])
            x[idx] = alpha * self.means[k] + (e if self.eigvecs is None else e @ self.eigvecs[k].T)
        return x if like is None else _xp.asarray_like(x, like)
