"""Distances between distributions: exact ones for Gaussians, Monte Carlo ones for samples.

Exact (no sampling noise):

* :func:`gaussian_w2` -- the 2-Wasserstein distance between two Gaussians (Dowson & Landau 1982; Givens &
  Shortt 1984): ``W2^2 = |m1 - m2|^2 + tr(C1 + C2 - 2 (C2^{1/2} C1 C2^{1/2})^{1/2})``.
* :func:`gaussian_kl` -- ``KL(N(m1, C1) || N(m2, C2))``.

From samples (each has a Monte Carlo noise floor: the value it takes on two independent samples of the *same*
law; :func:`noise_floor` measures it, and an error below ``mean + 2 std`` of the floor is indistinguishable from
zero):

* :func:`sample_w2_to_gaussian` -- W2 between the Gaussian fitted to a sample (mean, covariance) and a Gaussian.
* :func:`sliced_w2` -- sliced 2-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015).
* :func:`mmd` -- squared maximum mean discrepancy with Gaussian kernels (Gretton et al. 2012), unbiased.
* :func:`energy_distance` -- squared energy distance (Szekely & Rizzo 2013), unbiased.
* :func:`mmd_to_mixture` -- squared MMD between a sample and an *exact* Gaussian or Gaussian mixture: the
  reference terms are closed-form Gaussian integrals, so only the sample side is random; unbiased, with a
  null standard deviation of order ``1/n`` (not ``1/sqrt(n)``).

Samples are numpy arrays of shape ``(n, *event)``; event axes are flattened to ``d``. All results are python
floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .validation import positive_int

__all__ = [
    "gaussian_w2",
    "gaussian_kl",
    "sample_w2_to_gaussian",
    "sliced_w2",
    "sliced_w2_to",
    "mmd",
    "energy_distance",
    "mmd_to_mixture",
    "component_bandwidth",
    "noise_floor",
    "NoiseFloor",
    "SAMPLE_METRICS",
]


# ----------------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------------
def _samples(name, x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a sample of shape (n, *event) with n >= 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.reshape(x.shape[0], -1) if x.ndim != 2 else x


def _same_dim(x, y):
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")


def _mean_cov(name_m, mean, name_c, cov):
    m = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    if m.ndim != 1:
        raise ValueError(f"{name_m} must have shape (d,), got shape {m.shape}")
    d = m.shape[0]
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim == 0:
        c = float(c) * np.eye(d)
    elif c.ndim == 1:
        c = np.diag(c)
    if c.shape != (d, d):
        raise ValueError(f"{name_c} must be a scalar, shape ({d},) or ({d}, {d}), got shape {c.shape}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(c))):
        raise ValueError(f"{name_m} and {name_c} must be finite")
    asym = float(np.max(np.abs(c - c.T)))
    if asym > 1e-8 * max(1.0, float(np.max(np.abs(c)))):
        # not round-off: symmetrising would silently measure another matrix (W2 = 0 to a transposed pair, say)
        raise ValueError(f"{name_c} must be symmetric, got max |C - C^T| = {asym:.3g}")
    return m, 0.5 * (c + c.T)  # round-off asymmetry only


def _two_gaussians(mean1, cov1, mean2, cov2):
    m1, c1 = _mean_cov("mean1", mean1, "cov1", cov1)
    m2, c2 = _mean_cov("mean2", mean2, "cov2", cov2)
    if m1.shape != m2.shape:
        raise ValueError(f"mean1 and mean2 must have the same shape, got {m1.shape} and {m2.shape}")
    return m1, c1, m2, c2


def _psd_sqrt(c):
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    lam, u = np.linalg.eigh(c)
    if lam.min() < -1e-8 * max(1.0, abs(lam).max()):
        raise ValueError(f"covariance must be positive semi-definite, got smallest eigenvalue {lam.min():.3g}")
    return (u * np.sqrt(np.clip(lam, 0.0, None))) @ u.T


# ----------------------------------------------------------------------------------------------------------
# exact Gaussian distances
# ----------------------------------------------------------------------------------------------------------
def gaussian_w2(mean1, cov1, mean2, cov2) -> float:
    """Exact 2-Wasserstein distance between ``N(mean1, cov1)`` and ``N(mean2, cov2)``.

    ``W2^2 = |m1 - m2|^2 + tr C1 + tr C2 - 2 tr (C2^{1/2} C1 C2^{1/2})^{1/2}`` (Givens & Shortt 1984).
    Covariances are scalars (``c I``), diagonals ``(d,)`` or matrices ``(d, d)``, positive semi-definite.
    The trace term cancels in floating point: values below about ``sqrt(1e-15 (tr C1 + tr C2))`` are round-off.
    """
    m1, c1, m2, c2 = _two_gaussians(mean1, cov1, mean2, cov2)
    s2 = _psd_sqrt(c2)
    cross = _psd_sqrt(s2 @ c1 @ s2)
    w2sq = float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(cross))
    return float(np.sqrt(max(w2sq, 0.0)))


def gaussian_kl(mean1, cov1, mean2, cov2) -> float:
    """Exact ``KL(N(mean1, cov1) || N(mean2, cov2))`` in nats; both covariances positive definite.

    ``1/2 [tr(C2^{-1} C1) + (m2 - m1)^T C2^{-1} (m2 - m1) - d + log det C2 - log det C1]``, by Cholesky factors.
    """
    m1, c1, m2, c2 = _two_gaussians(mean1, cov1, mean2, cov2)
    try:
        l1 = np.linalg.cholesky(c1)
    except np.linalg.LinAlgError:
        raise ValueError("cov1 must be positive definite") from None
    try:
        l2 = np.linalg.cholesky(c2)
    except np.linalg.LinAlgError:
        raise ValueError("cov2 must be positive definite") from None
    a = np.linalg.solve(l2, l1)  # L2^{-1} L1: tr(C2^{-1} C1) = |a|_F^2
    b = np.linalg.solve(l2, m2 - m1)
    logdet = 2.0 * (np.sum(np.log(np.diag(l2))) - np.sum(np.log(np.diag(l1))))
    kl = 0.5 * (np.sum(a * a) + np.sum(b * b) - m1.shape[0] + logdet)
    return float(max(kl, 0.0))


# ----------------------------------------------------------------------------------------------------------
# sample-based distances
# ----------------------------------------------------------------------------------------------------------
def sample_w2_to_gaussian(x, mean, cov) -> float:
    """W2 between the Gaussian fitted to the sample ``x`` (n, d) and ``N(mean, cov)``.

    The fit is the sample mean and the unbiased sample covariance. This is a distance between the first two
    moments only; it is zero for any law with the right mean and covariance. Its noise floor for an exact
    sample of ``N(mean, cov)`` is of order ``sqrt(tr C / n)`` (see :func:`noise_floor`).
    """
    x = _samples("x", x)
    m, c = _mean_cov("mean", mean, "cov", cov)
    if x.shape[1] != m.shape[0]:
        raise ValueError(f"x has dimension {x.shape[1]} but mean has dimension {m.shape[0]}")
    return gaussian_w2(x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False)), m, c)


def sliced_w2_to(y, n_projections: int = 128, seed: int = 0):
    """``x -> sliced_w2(x, y, n_projections, seed)`` with ``y``'s projections sorted once (for many ``x``)."""
    y = _samples("y", y)
    theta = _directions(y.shape[1], positive_int("n_projections", n_projections), seed)
    py = np.sort(theta @ y.T, axis=1)

    def distance(x):
        x = _samples("x", x)
        _same_dim(x, y)
        return _sliced_w2_sorted(np.sort(theta @ x.T, axis=1), py)

    return distance


def _directions(d, n_projections, seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n_projections, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _quantiles(sorted_vals, q):
    """Empirical quantile function (left-continuous inverse CDF) of sorted rows at levels ``q``."""
    n = sorted_vals.shape[-1]
    idx = np.minimum(np.floor(q * n).astype(np.int64), n - 1)
    return sorted_vals[..., idx]


def sliced_w2(x, y, n_projections: int = 128, seed: int = 0, projections=None) -> float:
    """Sliced 2-Wasserstein distance ``sqrt(mean_theta W2^2(theta . x, theta . y))``.

    Parameters
    ----------
    x, y : arrays (n, d) and (m, d)
        Two samples. With ``n == m`` the 1-D distances are exact (sorted samples matched in order); otherwise
        the two empirical quantile functions are compared on the merged grid of levels.
    n_projections : int
        Number of random unit directions (drawn from ``seed``, the same for ``x`` and ``y``).
    projections : array (p, d), optional
        Explicit directions (rows, normalised here) instead of random ones.

    Notes
    -----
    For two Gaussians with the same covariance and means ``m1, m2`` in ``d`` dimensions, the value over
    uniformly random directions converges to ``|m1 - m2| / sqrt(d)``.
    """
    x, y = _samples("x", x), _samples("y", y)
    _same_dim(x, y)
    if projections is None:
        theta = _directions(x.shape[1], positive_int("n_projections", n_projections), seed)
    else:
        theta = np.atleast_2d(np.asarray(projections, dtype=np.float64))
        if theta.shape[1] != x.shape[1] or not np.all(np.isfinite(theta)):
            raise ValueError(f"projections must be finite of shape (p, {x.shape[1]}), got shape {theta.shape}")
        norms = np.linalg.norm(theta, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError("projections must be non-zero directions")
        theta = theta / norms
    return _sliced_w2_sorted(np.sort(theta @ x.T, axis=1), np.sort(theta @ y.T, axis=1))


def _sliced_w2_sorted(px, py) -> float:
    """Sliced W2 from sorted projections ``px (p, n)`` and ``py (p, m)`` (rows: directions)."""
    if px.shape[1] == py.shape[1]:
        w2sq = np.mean((px - py) ** 2, axis=1)
    else:
        # exact 1-D W2 between two empirical laws: integrate the squared quantile difference piecewise
        n, m = px.shape[1], py.shape[1]
        levels = np.union1d(np.arange(1, n) / n, np.arange(1, m) / m)
        edges = np.concatenate([[0.0], levels, [1.0]])
        mid, width = 0.5 * (edges[:-1] + edges[1:]), np.diff(edges)
        w2sq = np.sum(width * (_quantiles(px, mid) - _quantiles(py, mid)) ** 2, axis=1)
    return float(np.sqrt(np.mean(w2sq)))


def _sq_dists(a, b):
    d2 = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def _bandwidths(bandwidth, x, y):
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be 'median', a positive number or a list of them, got {bandwidth!r}")
        z = np.concatenate([x[:1000], y[:1000]])
        d2 = _sq_dists(z, z)
        med = np.median(d2[np.triu_indices(z.shape[0], 1)])
        # the median heuristic (Gretton et al. 2012): h^2 = median squared distance / 2
        return np.array([np.sqrt(max(med, 1e-300) / 2.0)])
    h = np.atleast_1d(np.asarray(bandwidth, dtype=np.float64))
    if h.ndim != 1 or h.size == 0 or not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"bandwidth must be 'median', a positive number or a list of them, got {bandwidth!r}")
    return h


def mmd(x, y, bandwidth="median") -> float:
    """Unbiased estimate of the squared MMD with the Gaussian kernel ``k(a, b) = exp(-|a - b|^2 / (2 h^2))``.

    ``MMD^2 = E k(X, X') + E k(Y, Y') - 2 E k(X, Y)`` estimated by U-statistics (Gretton et al. 2012, eq. 3),
    so its mean is exactly zero when ``x`` and ``y`` come from the same law (it can then be negative).
    Cost ``O((n + m)^2 d)``.

    Parameters
    ----------
    x, y : arrays (n, d) and (m, d)
        Two samples.
    bandwidth : "median", float or list of floats
        ``"median"``: ``h^2`` is half the median squared pairwise distance of the pooled sample (first 1000
        points of each); a list sums the kernels of several bandwidths.

    Notes
    -----
    For ``N(m1, s^2 I)`` against ``N(m2, s^2 I)`` in ``d`` dimensions and one bandwidth ``h`` the population
    value is ``2 (h^2 / (h^2 + 2 s^2))^{d/2} (1 - exp(-|m1 - m2|^2 / (2 (h^2 + 2 s^2))))``.
    """
    x, y = _samples("x", x), _samples("y", y)
    _same_dim(x, y)
    hs = _bandwidths(bandwidth, x, y)
    dxx, dyy, dxy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
    n, m = x.shape[0], y.shape[0]
    total = 0.0
    for h in hs:
        kxx, kyy, kxy = (np.exp(-d2 / (2.0 * h * h)) for d2 in (dxx, dyy, dxy))
        total += (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total -= 2.0 * kxy.mean()
    return float(total)


def energy_distance(x, y) -> float:
    """Unbiased estimate of the squared energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``.

    Zero exactly when the laws agree (Szekely & Rizzo 2013); the U-statistic estimate has mean zero then and
    can be negative. For ``N(0, 1)`` against ``N(mu, 1)`` in one dimension the population value is
    ``2 E|N(mu, 2)| - 4 / sqrt(pi)``. Cost ``O((n + m)^2 d)``.
    """
    x, y = _samples("x", x), _samples("y", y)
    _same_dim(x, y)
    n, m = x.shape[0], y.shape[0]
    exy = np.sqrt(_sq_dists(x, y)).mean()
    exx = np.sqrt(_sq_dists(x, x)).sum() / (n * (n - 1))
    eyy = np.sqrt(_sq_dists(y, y)).sum() / (m * (m - 1))
    return float(2.0 * exy - exx - eyy)


# ----------------------------------------------------------------------------------------------------------
# MMD to an exact Gaussian mixture
# ----------------------------------------------------------------------------------------------------------
def _mixture_components(mixture, t, sde):
    """Weights ``(K,)``, means ``(K, d)`` and full covariances ``(K, d, d)`` of ``p_t`` of an analytic density."""
    from .analytic.base import AnalyticDensity

    if not isinstance(mixture, AnalyticDensity):
        raise TypeError(
            "mixture must be an sdekit analytic density (e.g. sdekit.Gaussian or sdekit.GaussianMixture), "
            f"got {mixture!r}"
        )
    p = mixture.mixture_params(t, sde)  # validates t and sde as the density's own methods do
    return p.weights, p.means, p.covs


def component_bandwidth(mixture, t=0.0, sde=None) -> float:
    """The default kernel bandwidth of :func:`mmd_to_mixture`: ``h = min_k sqrt(tr C_k / d)``.

    The RMS per-axis standard deviation of the narrowest component of ``p_t`` (of the Gaussian itself for a
    Gaussian). A kernel at that scale sees errors in the shape of the finest structure of the target (the
    width and position of each mode), which the median heuristic -- ``h`` of the order of the distance between
    modes -- averages away.
    """
    _, _, covs = _mixture_components(mixture, t, sde)
    return float(np.sqrt(np.min(np.trace(covs, axis1=1, axis2=2)) / covs.shape[1]))


def _smoothed_kernel(diff, cov, h):
    """``E_{Y ~ N(0, cov)} k(diff, Y) = det(I + cov/h^2)^{-1/2} exp(-diff^T (cov + h^2 I)^{-1} diff / 2)``.

    ``diff`` has shape ``(m, d)``, ``cov`` ``(d, d)``; returns ``(m,)``. The kernel is ``exp(-|a-b|^2/(2 h^2))``.
    """
    d = diff.shape[1]
    chol = np.linalg.cholesky(cov + h * h * np.eye(d))
    y = np.linalg.solve(chol, diff.T)
    logdet = 2.0 * np.sum(np.log(np.diag(chol))) - 2.0 * d * np.log(h)  # log det(I + cov / h^2)
    return np.exp(-0.5 * logdet - 0.5 * np.sum(y * y, axis=0))


_DIRECT_DIM = 8  # up to this dimension, pairwise squared distances are summed coordinate by coordinate


def mmd_to_mixture(x, mixture, bandwidth="component", *, t=0.0, sde=None, chunk: int = 256) -> float:
    """Unbiased squared MMD between a sample ``x`` and an exact Gaussian or Gaussian mixture ``Q``.

    ``MMD^2 = E k(X, X') - 2 E k(X, Y) + E k(Y, Y')`` with the Gaussian kernel
    ``k(a, b) = exp(-|a - b|^2 / (2 h^2))`` (Gretton et al. 2012). For ``Q = sum_k w_k N(mu_k, C_k)`` the two
    terms involving ``Y ~ Q`` are Gaussian integrals, computed in closed form:

    * ``E_Y k(x, Y) = sum_k w_k det(I + C_k/h^2)^{-1/2} exp(-(x - mu_k)^T (C_k + h^2 I)^{-1} (x - mu_k) / 2)``,
    * ``E_{Y,Y'} k(Y, Y') = sum_{j,k} w_j w_k det(I + (C_j + C_k)/h^2)^{-1/2}
      exp(-(mu_j - mu_k)^T (C_j + C_k + h^2 I)^{-1} (mu_j - mu_k) / 2)``.

    The sample term is the U-statistic ``sum_{i != j} k(x_i, x_j) / (n (n - 1))``, so the estimate is unbiased.
    When ``x`` is an exact sample of ``Q`` its mean is 0 and, the statistic being degenerate, its standard
    deviation falls like ``1/n`` (a two-sample estimate against reference samples falls like ``1/sqrt(n)`` off
    the null and carries the reference's noise). It can be negative. Its noise floor at a given ``n`` is
    ``noise_floor(mmd_to_mixture, sampler, n, reference=(mixture,))``.

    Parameters
    ----------
    x : array (n, d)
        The sample (numpy or torch; read as float64).
    mixture : AnalyticDensity
        The exact law (a Gaussian, a Gaussian mixture or any :class:`sdekit.analytic.AnalyticDensity`, read
        through its ``mixture_params``); with ``sde`` and ``t`` its noised marginal ``p_t`` is used instead of ``p_0``.
    bandwidth : "component", float or list of floats
        ``"component"`` (default): :func:`component_bandwidth`, the RMS standard deviation of the narrowest
        component of ``p_t``; a list sums the kernels of several bandwidths.
    t, sde : float, LinearSDE, optional
        Compare with ``p_t`` of ``mixture`` under ``sde`` (``t = 0`` and ``sde = None``: the data law).
    chunk : int
        Rows of the ``n x n`` kernel matrix held at once (memory ``O(chunk n)``: about 20 MB at the default for
        ``n = 10^4``).

    Returns
    -------
    float
        The unbiased estimate of ``MMD^2``; cost ``O(n^2 d + n K d^2)``.
    """
    x = _samples("x", x)
    w, means, covs = _mixture_components(mixture, t, sde)
    if x.shape[1] != means.shape[1]:
        raise ValueError(f"x has dimension {x.shape[1]} but the mixture has dimension {means.shape[1]}")
    chunk = positive_int("chunk", chunk)
    if isinstance(bandwidth, str):
        if bandwidth != "component":
            raise ValueError(f"bandwidth must be 'component', a positive number or a list of them, got {bandwidth!r}")
        hs = np.array([component_bandwidth(mixture, t, sde)])
    else:
        hs = np.atleast_1d(np.asarray(bandwidth, dtype=np.float64))
        if hs.ndim != 1 or hs.size == 0 or not np.all(np.isfinite(hs)) or np.any(hs <= 0):
            raise ValueError(f"bandwidth must be 'component', a positive number or a list of them, got {bandwidth!r}")
    n, d = x.shape
    sq = np.sum(x * x, axis=1)
    xt = np.ascontiguousarray(x.T)
    total = 0.0
    for h in hs:
        # E k(X, X'): U-statistic over i != j, a block of rows at a time; the diagonal terms k(x_i, x_i) = 1
        kxx = 0.0
        for i0 in range(0, n, chunk):
            xb = x[i0 : i0 + chunk]
            if d <= _DIRECT_DIM:
                # few dimensions: sum the squared differences directly (exact zeros on the diagonal; a BLAS
                # product of inner dimension d costs more in thread start-up than it saves)
                d2 = np.zeros((xb.shape[0], n))
                for j in range(d):
                    diff = xb[:, j, None] - xt[j]
                    d2 += diff * diff
            else:
                d2 = np.maximum(sq[i0 : i0 + chunk, None] + sq[None, :] - 2.0 * (xb @ x.T), 0.0)
                d2[np.arange(xb.shape[0]), i0 + np.arange(xb.shape[0])] = 0.0  # exact zeros, not round-off
            d2 *= -0.5 / (h * h)
            kxx += np.exp(d2, out=d2).sum() - xb.shape[0]
        kxx /= n * (n - 1)
        # E k(X, Y) and E k(Y, Y'): closed-form Gaussian integrals (Y - Y' ~ N(mu_j - mu_k, C_j + C_k))
        kxy = sum(w[k] * _smoothed_kernel(x - means[k], covs[k], h).mean() for k in range(len(w)))
        kyy = sum(
            w[j] * w[k] * _smoothed_kernel((means[j] - means[k])[None, :], covs[j] + covs[k], h)[0]
            for j in range(len(w))
            for k in range(len(w))
        )
        total += kxx - 2.0 * kxy + kyy
    return float(total)


#: Two-sample metrics by name (used by ``bench`` and the command line).
SAMPLE_METRICS = {"sliced_w2": sliced_w2, "mmd": mmd, "energy": energy_distance}


@dataclass(frozen=True)
class NoiseFloor:
    """Value of a sample metric between independent exact samples: ``mean`` and ``std`` over ``repeats``."""

    mean: float
    std: float
    repeats: int

    @property
    def resolution(self) -> float:
        """``mean + 2 std``: the smallest value distinguishable from the floor (about 97.5 % one-sided)."""
        return self.mean + 2.0 * (self.std if math.isfinite(self.std) else abs(self.mean))

    def __str__(self):
        return f"{self.mean:.3g} +- {self.std:.2g} (over {self.repeats} repeats; resolution {self.resolution:.3g})"


def noise_floor(
    metric, sampler, n: int, *, m: int | None = None, repeats: int = 5, seed: int = 0, reference=None, **metric_kwargs
) -> NoiseFloor:
    """The Monte Carlo noise floor of ``metric`` at sample sizes ``n`` (and ``m``).

    ``sampler(size, seed) -> (size, d)`` draws exact samples of the target law. For a two-sample metric the
    floor is ``metric(sampler(n, s1), sampler(m, s2))`` for independent seeds; with ``reference`` (a tuple of
    extra positional arguments, e.g. ``(mean, cov)`` for :func:`sample_w2_to_gaussian`) it is
    ``metric(sampler(n, s), *reference)``. Seeds used: ``seed, seed + 1, ...``. An error estimate is only
    meaningful above about ``mean + 2 std``.
    """
    if not callable(metric):
        metric = SAMPLE_METRICS.get(metric)
        if metric is None:
            raise ValueError(f"unknown metric; valid metrics: {sorted(SAMPLE_METRICS)} or a callable")
    n = positive_int("n", n)
    m = n if m is None else positive_int("m", m)
    repeats = positive_int("repeats", repeats)
    vals = []
    for r in range(repeats):
        if reference is None:
            vals.append(metric(sampler(n, seed + 2 * r), sampler(m, seed + 2 * r + 1), **metric_kwargs))
        else:
            vals.append(metric(sampler(n, seed + r), *reference, **metric_kwargs))
    vals = np.asarray(vals)
    return NoiseFloor(float(vals.mean()), float(vals.std(ddof=1)) if repeats > 1 else float("nan"), repeats)
