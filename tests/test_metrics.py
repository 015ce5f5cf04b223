"""Each metric on cases with known answers (closed forms, exact identities, statistical bounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf
from scipy.stats import ortho_group

from sdekit import metrics


def _gauss(n, mean, std, seed):
    rng = np.random.default_rng(seed)
    mean = np.atleast_1d(mean)
    return mean + std * rng.standard_normal((n, mean.shape[0]))


# -- exact Gaussian distances ------------------------------------------------------------------------------
def test_gaussian_w2_closed_forms():
    # 1-D: W2 = sqrt((m1 - m2)^2 + (s1 - s2)^2)
    assert metrics.gaussian_w2([1.0], 4.0, [-2.0], 1.0) == pytest.approx(math.sqrt(9 + 1), rel=1e-12)
    # commuting (diagonal) covariances: sum of 1-D terms
    a, b = np.array([0.5, 2.0, 1.0]), np.array([1.5, 0.3, 1.0])
    dm = np.array([0.1, -0.2, 0.3])
    want = math.sqrt(np.sum(dm**2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert metrics.gaussian_w2(dm, a, np.zeros(3), b) == pytest.approx(want, rel=1e-10)
    # invariance under a common rotation, with full matrices
    r = ortho_group.rvs(3, random_state=1)
    got = metrics.gaussian_w2(r @ dm, r @ np.diag(a) @ r.T, np.zeros(3), r @ np.diag(b) @ r.T)
    assert got == pytest.approx(want, rel=1e-8)
    # identity and symmetry for non-commuting covariances
    c1, c2 = np.array([[2.0, 0.8], [0.8, 1.0]]), np.array([[0.5, -0.2], [-0.2, 1.5]])
    assert metrics.gaussian_w2([0, 0], c1, [0, 0], c1) < 1e-7
    assert metrics.gaussian_w2([1, 0], c1, [0, 2], c2) == pytest.approx(metrics.gaussian_w2([0, 2], c2, [1, 0], c1))


def test_gaussian_kl_closed_forms():
    m1, s1, m2, s2 = 0.3, 0.7, -0.5, 1.3
    want = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    assert metrics.gaussian_kl([m1], s1**2, [m2], s2**2) == pytest.approx(want, rel=1e-12)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 4, 4))
    c1, c2 = a @ a.T + np.eye(4), b @ b.T + 0.5 * np.eye(4)
    m1, m2 = rng.standard_normal((2, 4))
    inv2 = np.linalg.inv(c2)
    want = 0.5 * (
        np.trace(inv2 @ c1) + (m2 - m1) @ inv2 @ (m2 - m1) - 4 + math.log(np.linalg.det(c2) / np.linalg.det(c1))
    )
    assert metrics.gaussian_kl(m1, c1, m2, c2) == pytest.approx(want, rel=1e-10)
    assert metrics.gaussian_kl(m1, c1, m1, c1) < 1e-12
    with pytest.raises(ValueError, match="cov2"):
        metrics.gaussian_kl(m1, c1, m2, -c2)


# -- sample metrics ----------------------------------------------------------------------------------------
def test_sample_w2_to_gaussian_floor_and_shift():
    mean, cov = np.array([1.0, -1.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
    chol = np.linalg.cholesky(cov)

    def sampler(n, seed):
        return mean + np.random.default_rng(seed).standard_normal((n, 2)) @ chol.T

    floor = metrics.noise_floor(metrics.sample_w2_to_gaussian, sampler, 4000, repeats=8, reference=(mean, cov))
    assert 0 < floor.mean < 0.05
    x = sampler(4000, 100)
    assert metrics.sample_w2_to_gaussian(x, mean, cov) < floor.mean + 4 * floor.std
    # a shift by delta is seen as delta (up to the floor)
    delta = np.array([0.3, 0.4])
    assert metrics.sample_w2_to_gaussian(x + delta, mean, cov) == pytest.approx(0.5, abs=floor.mean + 4 * floor.std)


def test_sliced_w2_exact_identities():
    x = _gauss(500, [0.0, 0.0, 0.0], 1.0, 0)
    c = np.array([0.3, -0.1, 0.2])
    theta = np.random.default_rng(5).standard_normal((7, 3))
    u = theta / np.linalg.norm(theta, axis=1, keepdims=True)
    # a translated copy: each 1-D distance is exactly |theta . c|
    assert metrics.sliced_w2(x, x + c, projections=theta) == pytest.approx(math.sqrt(np.mean((u @ c) ** 2)), rel=1e-10)
    # the same empirical law at different sample sizes (every point twice): distance 0
    assert metrics.sliced_w2(x, np.concatenate([x, x]), projections=theta) == pytest.approx(0.0, abs=1e-12)
    # unequal sizes, translated: still exactly |theta . c| per direction
    got = metrics.sliced_w2(x, np.concatenate([x, x]) + c, projections=theta)
    assert got == pytest.approx(math.sqrt(np.mean((u @ c) ** 2)), rel=1e-10)


def test_sliced_w2_gaussians_converges_to_mean_shift_over_sqrt_d():
    d, shift = 4, np.array([1.0, 0.5, 0.0, -0.5])
    x, y = _gauss(5000, np.zeros(d), 1.0, 1), _gauss(5000, shift, 1.0, 2)

    def sampler(n, seed):
        return _gauss(n, np.zeros(d), 1.0, seed + 10)

    floor = metrics.noise_floor(metrics.sliced_w2, sampler, 5000, repeats=3, n_projections=512)
    want = np.linalg.norm(shift) / math.sqrt(d)
    # projection sampling error of mean (theta . c)^2 with 512 directions is a few percent
    assert metrics.sliced_w2(x, y, n_projections=512) == pytest.approx(want, rel=0.08, abs=floor.mean)


def _mmd_gauss(mu_dist2, s, h, d):
    g = h * h + 2 * s * s
    return 2 * (h * h / g) ** (d / 2) * (1 - math.exp(-mu_dist2 / (2 * g)))


def test_mmd_matches_closed_form_and_is_unbiased_under_the_null():
    d, s, h = 2, 1.0, 1.5
    m = np.array([0.6, 0.0])
    est = np.array(
        [metrics.mmd(_gauss(800, [0, 0], s, 2 * r), _gauss(800, m, s, 2 * r + 1), bandwidth=h) for r in range(6)]
    )
    want = _mmd_gauss(0.36, s, h, d)
    assert abs(est.mean() - want) <= 4 * est.std(ddof=1) / math.sqrt(6) + 1e-4
    null = np.array(
        [
            metrics.mmd(_gauss(800, [0, 0], s, 50 + 2 * r), _gauss(800, [0, 0], s, 51 + 2 * r), bandwidth=h)
            for r in range(6)
        ]
    )
    assert abs(null.mean()) <= 4 * null.std(ddof=1) / math.sqrt(6)
    assert null.std() < want / 5  # the test has power: the shift is far above the null's spread
    # several bandwidths sum their kernels; the median heuristic gives a positive value for a real shift
    assert metrics.mmd(_gauss(300, [0, 0], s, 1), _gauss(300, m * 3, s, 2), bandwidth=[0.5, 2.0]) > 0
    assert metrics.mmd(_gauss(300, [0, 0], s, 1), _gauss(300, m * 3, s, 2)) > 0


def test_energy_distance_matches_closed_form():
    mu = 0.8
    sd = math.sqrt(2.0)
    e_abs = sd * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sd * sd)) + mu * erf(mu / (sd * math.sqrt(2)))
    want = 2 * e_abs - 4 / math.sqrt(math.pi)  # E|X - X'| = E|Y - Y'| = 2 / sqrt(pi)
    est = np.array(
        [metrics.energy_distance(_gauss(1000, [0.0], 1.0, 2 * r), _gauss(1000, [mu], 1.0, 2 * r + 1)) for r in range(6)]
    )
    assert abs(est.mean() - want) <= 4 * est.std(ddof=1) / math.sqrt(6) + 1e-4
    # a tiny exact case: x = y = {0, 1}: E|X-Y| = 1/2, E|X-X'| = E|Y-Y'| = 1 (U-statistics): 2/2 - 1 - 1 = -1
    assert metrics.energy_distance(np.array([[0.0], [1.0]]), np.array([[0.0], [1.0]])) == pytest.approx(-1.0)


def test_noise_floor_and_validation():
    def sampler(n, seed):
        return _gauss(n, [0.0, 0.0], 1.0, seed)

    f = metrics.noise_floor("sliced_w2", sampler, 200, repeats=3)
    assert f.repeats == 3 and f.mean > 0 and f.std >= 0 and "repeats" in str(f)
    assert f.resolution == pytest.approx(f.mean + 2 * f.std)
    # an unbiased metric has a floor of mean ~ 0: its resolution comes from the spread
    g = metrics.noise_floor("energy", sampler, 200, repeats=4)
    assert abs(g.mean) < 3 * g.std and g.resolution > 0
    with pytest.raises(ValueError, match="valid metrics"):
        metrics.noise_floor("wasserstein", sampler, 10)
    with pytest.raises(ValueError, match="same dimension"):
        metrics.sliced_w2(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.mmd(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="bandwidth"):
        metrics.mmd(np.zeros((3, 2)), np.ones((3, 2)), bandwidth="silverman")
    with pytest.raises(ValueError, match="cov2"):
        metrics.gaussian_w2([0, 0], np.eye(2), [0, 0], np.ones(3))


# -- MMD to an exact mixture -------------------------------------------------------------------------------
def _kernel_mean(delta, cov, h):
    """E k(delta + U), U ~ N(0, cov), for k(a) = exp(-|a|^2 / (2 h^2)): (2 pi h^2)^{d/2} N(delta; 0, cov + h^2 I)."""
    from scipy.stats import multivariate_normal

    d = len(delta)
    return (2 * math.pi * h * h) ** (d / 2) * multivariate_normal(np.zeros(d), cov + h * h * np.eye(d)).pdf(delta)


def test_mmd_to_mixture_closed_form_for_gaussians():
    # X ~ N(m1, C1) against Q = N(m2, C2): MMD^2 = E k(X-X') + E k(Y-Y') - 2 E k(X-Y), each a Gaussian integral
    from sdekit import Gaussian

    m1, c1 = np.array([0.4, -0.2]), np.array([[1.0, 0.3], [0.3, 0.6]])
    m2, c2 = np.array([0.0, 0.1]), np.array([[0.8, -0.1], [-0.1, 0.9]])
    h = 0.7
    want = _kernel_mean(np.zeros(2), 2 * c1, h) + _kernel_mean(np.zeros(2), 2 * c2, h)
    want -= 2 * _kernel_mean(m1 - m2, c1 + c2, h)
    chol = np.linalg.cholesky(c1)
    est = np.array(
        [
            metrics.mmd_to_mixture(
                m1 + np.random.default_rng(r).standard_normal((1500, 2)) @ chol.T, Gaussian(m2, c2), h
            )
            for r in range(6)
        ]
    )
    assert abs(est.mean() - want) <= 4 * est.std(ddof=1) / math.sqrt(6) + 1e-5, (est, want)
    assert est.std() < want / 5  # power: the difference is far above the spread


def _ring(n, t, sde, seed):
    from sdekit.bench import make_density

    return make_density("ring8").sample(n, seed=seed, t=t, sde=sde)


def test_mmd_to_mixture_null_mean_zero_and_spread_falls_like_one_over_n():
    from sdekit import VPSDE
    from sdekit.bench import make_density

    sde, ring = VPSDE(), make_density("ring8")

    def null(n):
        return np.array([metrics.mmd_to_mixture(_ring(n, 0.05, sde, s), ring, t=0.05, sde=sde) for s in range(16)])

    small, large = null(250), null(1000)
    for v in (small, large):
        assert abs(v.mean()) <= 4 * v.std(ddof=1) / 4.0  # unbiased: mean 0 within 4 standard errors (16 repeats)
    # a degenerate U-statistic: std ~ 1/n, so 4x the sample size cuts it ~4x (a two-sample metric: ~2x)
    assert small.std() / large.std() > 2.8, (small.std(), large.std())
    # the noise floor helper works with it (the mixture as the reference argument)
    f = metrics.noise_floor(metrics.mmd_to_mixture, lambda n, s: _ring(n, 0.0, None, s), 500, reference=(ring,))
    assert abs(f.mean) < 3 * f.std and f.resolution > 0


def test_mmd_to_mixture_agrees_with_the_sample_mmd(monkeypatch):
    from sdekit import VPSDE
    from sdekit.bench import make_density

    sde, ring = VPSDE(), make_density("ring8")
    h = metrics.component_bandwidth(ring, 0.02, sde)
    assert h == pytest.approx(math.sqrt(0.05 * sde.marginal(0.02)[0] ** 2 + sde.marginal(0.02)[1] ** 2), rel=1e-12)
    x = _ring(1200, 0.1, sde, 7)  # a different law than p_0.02: more noise
    exact = metrics.mmd_to_mixture(x, ring, t=0.02, sde=sde)
    two = np.array([metrics.mmd(x, _ring(1200, 0.02, sde, 100 + r), bandwidth=h) for r in range(5)])
    assert exact > 0.005 and abs(two.mean() - exact) <= 4 * two.std(ddof=1) / math.sqrt(5) + 1e-4, (exact, two)
    # chunking and the distance computation (direct sums in low dimension, a matrix product above) change nothing
    assert metrics.mmd_to_mixture(x, ring, t=0.02, sde=sde, chunk=7) == pytest.approx(exact, rel=1e-10)
    monkeypatch.setattr(metrics, "_DIRECT_DIM", 0)
    assert metrics.mmd_to_mixture(x, ring, t=0.02, sde=sde, chunk=300) == pytest.approx(exact, rel=1e-10)
    monkeypatch.undo()
    # two bandwidths add
    both = metrics.mmd_to_mixture(x, ring, [h, 2 * h], t=0.02, sde=sde)
    assert both == pytest.approx(exact + metrics.mmd_to_mixture(x, ring, 2 * h, t=0.02, sde=sde), rel=1e-10)


def test_mmd_to_mixture_validation():
    from sdekit.bench import make_density

    ring = make_density("ring8")
    with pytest.raises(ValueError, match="bandwidth"):
        metrics.mmd_to_mixture(np.zeros((4, 2)), ring, bandwidth="median")
    with pytest.raises(ValueError, match="bandwidth"):
        metrics.mmd_to_mixture(np.zeros((4, 2)), ring, bandwidth=-1.0)
    with pytest.raises(TypeError, match="mixture"):
        metrics.mmd_to_mixture(np.zeros((4, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="dimension"):
        metrics.mmd_to_mixture(np.zeros((4, 3)), ring)
    with pytest.raises(ValueError, match="chunk"):
        metrics.mmd_to_mixture(np.zeros((4, 2)), ring, chunk=0)
