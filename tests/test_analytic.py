"""Tests of sdekit.analytic: exact marginals, scores, samples and probability-flow maps of Gaussian data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from scipy.special import logsumexp

from sdekit.analytic import AnalyticScore, Gaussian, GaussianMixture
from sdekit.sdes import EDMSDE, VESDE, VPSDE, SubVPSDE

SETTINGS = settings(deadline=None, max_examples=25, derandomize=True)


# ----------------------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------------------
@st.composite
def sdes(draw):
    kind = draw(st.sampled_from(["vp", "subvp", "ve", "edm"]))
    if kind in ("vp", "subvp"):
        bmin = draw(st.floats(0.05, 2.0))
        bmax = bmin + draw(st.floats(0.0, 25.0))
        return (VPSDE if kind == "vp" else SubVPSDE)(beta_min=bmin, beta_max=bmax)
    if kind == "ve":
        smin = draw(st.floats(1e-3, 0.1))
        return VESDE(sigma_min=smin, sigma_max=draw(st.floats(1.0, 100.0)))
    return EDMSDE(sigma_min=0.002, sigma_max=draw(st.floats(1.0, 80.0)))


def time_in(sde, u):
    """A time in (0, T] from a fraction u in (0, 1]."""
    return float(u * sde.T)


def random_full_cov(rng, d):
    A = rng.normal(size=(d, d))
    return A @ A.T + rng.uniform(0.05, 1.0) * np.eye(d)


def make_gaussian(kind, d, seed):
    rng = np.random.default_rng(seed)
    mean = rng.normal(scale=2.0, size=d)
    if kind == "scalar":
        cov = float(rng.uniform(0.1, 3.0))
    elif kind == "diag":
        cov = rng.uniform(0.05, 3.0, size=d)
    else:
        cov = random_full_cov(rng, d)
    return Gaussian(mean, cov)


def make_mixture(kind, K, d, seed):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.2, 1.0, size=K)
    w /= w.sum()
    means = rng.normal(scale=3.0, size=(K, d))
    if kind == "scalar":
        covs = rng.uniform(0.1, 2.0, size=K)
    elif kind == "diag":
        covs = rng.uniform(0.05, 2.0, size=(K, d))
    else:
        covs = np.stack([random_full_cov(rng, d) for _ in range(K)])
    return GaussianMixture(w, means, covs)


@st.composite
def densities(draw, max_d=4):
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**31 - 1))
    if draw(st.booleans()):
        return make_gaussian(draw(st.sampled_from(["scalar", "diag", "full"])), d, seed)
    K = draw(st.integers(1, 4))
    return make_mixture(draw(st.sampled_from(["scalar", "diag", "full"])), K, d, seed)


def gaussians(max_d=4):
    return st.builds(
        make_gaussian, st.sampled_from(["scalar", "diag", "full"]), st.integers(1, max_d), st.integers(0, 2**31 - 1)
    )


def fd_grad(f, x, h):
    """Central finite-difference gradient of a batched f: (n, d) -> (n,), step h."""
    g = np.empty_like(x)
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, j] = h
        g[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def min_std(density, t, sde):
    alpha, sigma = sde.marginal(t)
    return math.sqrt(alpha**2 * float(np.min(density.eigvals)) + sigma**2)


# ----------------------------------------------------------------------------------------------------------
# score = grad logpdf
# ----------------------------------------------------------------------------------------------------------
@SETTINGS
@given(dens=densities(), sde=sdes(), u=st.floats(0.01, 1.0), per_sample=st.booleans())
def test_score_is_gradient_of_logpdf(dens, sde, u, per_sample):
    t = time_in(sde, u)
    x = dens.sample(8, seed=3, t=t, sde=sde)
    x[-1] += 3.0 * min_std(dens, t, sde)  # a point off the bulk too
    tt = np.full(8, t) if per_sample else t
    s = dens.score(sde)(x, tt)
    assert s.shape == x.shape
    h = 1e-5 * min_std(dens, t, sde)
    g = fd_grad(lambda z: dens.logpdf(z, tt, sde), x, h)
    scale = np.max(np.abs(s)) + 1.0 / min_std(dens, t, sde)
    np.testing.assert_allclose(s, g, rtol=0, atol=1e-6 * scale)


def test_score_per_sample_times_match_scalar_times():
    dens = make_mixture("full", 3, 3, 11)
    sde = VPSDE()
    ts = np.linspace(0.05, 1.0, 6)
    x = dens.sample(6, seed=1)
    s = dens.score(sde)(x, ts)
    lp = dens.logpdf(x, ts, sde)
    for i, t in enumerate(ts):
        np.testing.assert_allclose(s[i], dens.score(sde)(x[i : i + 1], float(t))[0], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(lp[i], dens.logpdf(x[i : i + 1], float(t), sde)[0], rtol=1e-13)


# ----------------------------------------------------------------------------------------------------------
# moments: the forward SDE's moment ODE and Monte Carlo
# ----------------------------------------------------------------------------------------------------------
@SETTINGS
@given(dens=densities(), sde=sdes(), u0=st.floats(0.0, 1.0), u1=st.floats(0.0, 1.0))
def test_mean_cov_solves_moment_ode(dens, sde, u0, u1):
    t0, t1 = time_in(sde, u0), time_in(sde, u1)
    d = dens.dim
    m0, V0 = dens.mean_cov(t0, sde)

    def rhs(t, y):
        m, V = y[:d], y[d:].reshape(d, d)
        a, g2 = float(sde.drift_coef(t)), float(sde.g2(t))
        return np.concatenate([a * m, (2 * a * V + g2 * np.eye(d)).ravel()])

    if t0 == t1:
        return
    sol = integrate.solve_ivp(rhs, (t0, t1), np.concatenate([m0, V0.ravel()]), rtol=1e-11, atol=1e-12)
    assert sol.success
    m1, V1 = dens.mean_cov(t1, sde)
    scale = 1.0 + np.max(np.abs(V1))
    np.testing.assert_allclose(sol.y[:d, -1], m1, rtol=1e-8, atol=1e-8 * (1 + np.max(np.abs(m1))))
    np.testing.assert_allclose(sol.y[d:, -1].reshape(d, d), V1, rtol=1e-8, atol=1e-8 * scale)


def test_mean_cov_data_law_and_ve_convention():
    g = make_gaussian("full", 3, 5)
    m, V = g.mean_cov()
    np.testing.assert_array_equal(m, g.mean)
    np.testing.assert_allclose(V, g.cov, rtol=1e-15)
    # VE (score_sde convention): p_0 is the data convolved with N(0, sigma_min^2 I)
    ve = VESDE(sigma_min=0.3, sigma_max=10.0)
    m0, V0 = g.mean_cov(0.0, ve)
    np.testing.assert_allclose(m0, g.mean)
    np.testing.assert_allclose(V0, g.cov + 0.09 * np.eye(3), rtol=1e-14)
    # EDM: sigma(0) = 0, p_0 is the data
    np.testing.assert_allclose(g.mean_cov(0.0, EDMSDE())[1], g.cov, rtol=1e-15)
    # VP at large t approaches the prior N(0, I)
    mT, VT = g.mean_cov(1.0, VPSDE(beta_min=1.0, beta_max=60.0))
    np.testing.assert_allclose(mT, 0.0, atol=1e-5)
    np.testing.assert_allclose(VT, np.eye(3), atol=1e-5)


def test_mixture_mean_cov_matches_components():
    mix = make_mixture("full", 3, 2, 4)
    sde = SubVPSDE()
    t = 0.4
    parts = [mix.component(k).mean_cov(t, sde) for k in range(3)]
    m = sum(w * mk for w, (mk, _) in zip(mix.weights, parts))
    second = sum(w * (Vk + np.outer(mk, mk)) for w, (mk, Vk) in zip(mix.weights, parts))
    m1, V1 = mix.mean_cov(t, sde)
    np.testing.assert_allclose(m1, m, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(V1, second - np.outer(m, m), rtol=1e-10, atol=1e-12)


@settings(deadline=None, max_examples=12, derandomize=True)
@given(dens=densities(max_d=3), sde=sdes(), u=st.floats(0.0, 1.0))
def test_sample_moments_match_mean_cov(dens, sde, u):
    t = time_in(sde, u)
    n = 20000
    x = dens.sample(n, seed=7, t=t, sde=sde)
    m, V = dens.mean_cov(t, sde)
    # mean: standard error sqrt(V_ii / n)
    se_m = np.sqrt(np.diag(V) / n)
    assert np.all(np.abs(x.mean(0) - m) <= 5 * se_m), (x.mean(0), m, se_m)
    # covariance entries: standard error of the mean of the products (x_i - m_i)(x_j - m_j), estimated
    # from the sample (valid for mixtures too, which are not Gaussian); centred at the exact mean
    c = x - m
    prod = c[:, :, None] * c[:, None, :]
    se_V = prod.std(0) / math.sqrt(n)
    assert np.all(np.abs(prod.mean(0) - V) <= 5 * se_V + 1e-12), (prod.mean(0), V, se_V)


def test_sample_mixture_weights_frequencies():
    mix = GaussianMixture([0.1, 0.6, 0.3], [[-50.0], [0.0], [50.0]], [1.0, 1.0, 1.0])
    n = 30000
    x = mix.sample(n, seed=2)
    counts = np.array([(x < -25).sum(), ((x > -25) & (x < 25)).sum(), (x > 25).sum()])
    se = np.sqrt(n * mix.weights * (1 - mix.weights))
    assert np.all(np.abs(counts - n * mix.weights) <= 5 * se)


def test_sample_is_counter_based_and_consistent():
    g = make_gaussian("full", 3, 9)
    sde = VPSDE()
    a = g.sample(100, seed=5, t=0.5, sde=sde)
    b = g.sample(10, seed=5, t=0.5, sde=sde)
    np.testing.assert_array_equal(a[:10], b)
    assert not np.allclose(g.sample(10, seed=6, t=0.5, sde=sde), b)
    # a one-component mixture draws the same samples as the Gaussian
    mix = GaussianMixture([1.0], g.mean[None], g.cov[None])
    np.testing.assert_allclose(mix.sample(100, seed=5, t=0.5, sde=sde), a, rtol=1e-13, atol=1e-13)
    assert g.sample(0).shape == (0, 3)
    assert a.dtype == np.float64


# ----------------------------------------------------------------------------------------------------------
# probability-flow map
# ----------------------------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=15, derandomize=True)
@given(g=gaussians(max_d=3), sde=sdes(), u0=st.floats(0.02, 1.0), u1=st.floats(0.02, 1.0))
def test_flow_solves_probability_flow_ode(g, sde, u0, u1):
    t0, t1 = time_in(sde, u0), time_in(sde, u1)
    if t0 == t1:
        return
    score = g.score(sde)
    x0 = g.sample(3, seed=1, t=t0, sde=sde)

    def rhs(t, y):
        xx = y.reshape(x0.shape)
        return (float(sde.drift_coef(t)) * xx - 0.5 * float(sde.g2(t)) * score(xx, t)).ravel()

    sol = integrate.solve_ivp(rhs, (t0, t1), x0.ravel(), method="DOP853", rtol=1e-10, atol=1e-12)
    assert sol.success
    ref = sol.y[:, -1].reshape(x0.shape)
    out = g.flow(x0, t0, t1, sde)
    scale = 1.0 + np.max(np.abs(ref))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-7 * scale)


@SETTINGS
@given(g=gaussians(), sde=sdes(), u=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_flow_composes_and_pushes_forward_the_marginals(g, sde, u):
    ta, tb, tc = (time_in(sde, v) for v in u)
    if sde.marginal(0.0)[1] == 0.0 and min(ta, tb, tc) == 0.0:
        ta, tb, tc = (max(s, 1e-3) for s in (ta, tb, tc))  # EDM: any t works, but keep away from sigma = 0
    x = g.sample(5, seed=2, t=ta, sde=sde)
    via = g.flow(g.flow(x, ta, tb, sde), tb, tc, sde)
    direct = g.flow(x, ta, tc, sde)
    np.testing.assert_allclose(via, direct, rtol=1e-10, atol=1e-10 * (1 + np.max(np.abs(direct))))
    np.testing.assert_allclose(g.flow(x, ta, ta, sde), x, rtol=1e-13, atol=1e-13)
    # the flow is affine x -> A x + b: it must map N(m_a, V_a) to N(m_b, V_b)
    ma, Va = g.mean_cov(ta, sde)
    mb, Vb = g.mean_cov(tb, sde)
    d = g.dim
    pts = np.vstack([ma, ma + np.eye(d)])
    img = g.flow(pts, ta, tb, sde)
    A = (img[1:] - img[0]).T
    np.testing.assert_allclose(img[0], mb, rtol=1e-12, atol=1e-12 * (1 + np.max(np.abs(mb))))
    np.testing.assert_allclose(A @ Va @ A.T, Vb, rtol=1e-9, atol=1e-9 * np.max(np.abs(Vb)))
    # the probability-flow map of a Gaussian is symmetric positive definite (it is a gradient map)
    np.testing.assert_allclose(A, A.T, atol=1e-9 * np.max(np.abs(A)))


def test_flow_per_sample_times():
    g = make_gaussian("full", 2, 3)
    sde = VESDE()
    x = g.sample(4, seed=0, t=0.2, sde=sde)
    t0 = np.array([0.2, 0.3, 0.4, 0.5])
    t1 = np.array([0.9, 0.1, 0.4, 1.0])
    x0 = g.flow(x, 0.2, t0, sde)
    out = g.flow(x0, t0, t1, sde)
    for i in range(4):
        np.testing.assert_allclose(out[i], g.flow(x[i : i + 1], 0.2, t1[i], sde)[0], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# logpdf against references
# ----------------------------------------------------------------------------------------------------------
@SETTINGS
@given(sde=sdes(), u=st.floats(0.0, 1.0), K=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_logpdf_of_1d_mixture_integrates_to_one(sde, u, K, seed):
    mix = make_mixture("scalar", K, 1, seed)
    t = time_in(sde, u)
    m, V = mix.mean_cov(t, sde)
    s = math.sqrt(V[0, 0])
    pts = sorted(float(p) for p in (m[0] + 0.0, *(sde.marginal(t)[0] * mix.means[:, 0])))
    total = 0.0
    edges = [-math.inf, *pts, math.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo == hi:
            continue
        val, _ = integrate.quad(
            lambda z: math.exp(mix.logpdf(np.array([[z]]), t, sde)[0]), lo, hi, epsabs=0, epsrel=1e-11, limit=200
        )
        total += val
    assert abs(total - 1.0) < 1e-8, (total, s)


@SETTINGS
@given(dens=densities(), sde=sdes(), u=st.floats(0.0, 1.0))
def test_logpdf_matches_scipy(dens, sde, u):
    t = time_in(sde, u)
    x = dens.sample(6, seed=4, t=t, sde=sde) + 0.5
    alpha, sigma = sde.marginal(t)
    d = dens.dim
    if isinstance(dens, Gaussian):
        m, V = dens.mean_cov(t, sde)
        ref = stats.multivariate_normal(m, V).logpdf(x).reshape(-1)
    else:
        comps = []
        for k in range(dens.n_components):
            Ck = alpha**2 * dens.component(k).mean_cov()[1] + sigma**2 * np.eye(d)
            lk = stats.multivariate_normal(alpha * dens.means[k], Ck).logpdf(x).reshape(-1)
            comps.append(np.log(dens.weights[k]) + lk)
        ref = logsumexp(np.stack(comps, 1), axis=1)
    np.testing.assert_allclose(dens.logpdf(x, t, sde), ref, rtol=1e-9, atol=1e-9)


def test_data_law_logpdf_and_score():
    g = make_gaussian("diag", 3, 1)
    x = g.sample(5, seed=1)
    ref = stats.multivariate_normal(g.mean, np.diag(g.cov)).logpdf(x)
    np.testing.assert_allclose(g.logpdf(x), ref, rtol=1e-12)
    # EDM at t = 0 has sigma = 0: the score is the data score
    np.testing.assert_allclose(g.score(EDMSDE())(x, 0.0), -(x - g.mean) / g.cov, rtol=1e-13)


# ----------------------------------------------------------------------------------------------------------
# numerical stability
# ----------------------------------------------------------------------------------------------------------
def test_stable_at_extreme_noise_levels():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    lam = np.array([1e-8, 1e-3, 1.0, 1e4])  # condition number 1e12
    cov = (Q * lam) @ Q.T
    cov = 0.5 * (cov + cov.T)
    g = Gaussian(rng.normal(size=4), cov)
    mix = GaussianMixture([0.5, 0.5], [np.zeros(4), 1e3 * np.ones(4)], np.stack([cov, np.eye(4)]))
    ve = VESDE(sigma_min=1e-5, sigma_max=1e4)
    for t in (0.0, 1e-9, 0.5, ve.T):
        for dens in (g, mix):
            x = dens.sample(50, seed=0, t=t, sde=ve)
            s = dens.score(ve)(x, t)
            lp = dens.logpdf(x, t, ve)
            assert np.all(np.isfinite(s)) and np.all(np.isfinite(lp))
        # backward-stable check of the Gaussian score: V_t (-s) = x - m_t up to round-off
        m, V = g.mean_cov(t, ve)
        x = g.sample(50, seed=0, t=t, sde=ve)
        s = g.score(ve)(x, t)
        resid = np.abs(-s @ V - (x - m)).max()
        assert resid <= 1e-10 * np.linalg.norm(V, 2) * np.abs(s).max()
    # far in the tail at sigma_max = 1e4: still finite and exactly -x / sigma^2 to leading order
    x = np.full((2, 4), 1e6)
    s = g.score(ve)(x, ve.T)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(g.logpdf(x, ve.T, ve)))
    np.testing.assert_allclose(s, -(x - g.mean) / (1e8 + lam.max()), rtol=1e-3)


def test_mixture_far_apart_components_no_nan():
    mix = GaussianMixture([0.3, 0.7], [[-1e6, 0.0], [1e6, 0.0]], [[1.0, 1.0], [0.5, 2.0]])
    sde = EDMSDE()
    x = np.array([[-1e6, 0.3], [1e6, -0.2], [0.0, 0.0], [3e6, 1.0]])
    for t in (0.0, 1e-3, 1.0):
        s = mix.score(sde)(x, t)
        lp = mix.logpdf(x, t, sde)
        assert np.all(np.isfinite(s)) and np.all(np.isfinite(lp))
        r = mix.responsibilities(x, t, sde)
        assert np.all(np.isfinite(r))
        np.testing.assert_allclose(r.sum(1), 1.0)
        # near a component the score is that component's score
        np.testing.assert_allclose(s[0], mix.component(0).score(sde)(x[:1], t)[0], rtol=1e-12)
        np.testing.assert_allclose(s[1], mix.component(1).score(sde)(x[1:2], t)[0], rtol=1e-12)
    # VP at t = T with a tiny alpha, and sigma ~ 1e-5 with small component variances
    vp = VPSDE(beta_min=0.1, beta_max=60.0)
    tiny = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [1e-10, 1e-10])
    for t, xx in ((1.0, np.array([[0.0], [5.0]])), (1e-10, np.array([[0.0], [1.0], [-1.0]]))):
        assert np.all(np.isfinite(tiny.score(vp)(xx, t))) and np.all(np.isfinite(tiny.logpdf(xx, t, vp)))


def test_float32_numpy_in_float32_out():
    g = make_gaussian("full", 3, 2)
    x = g.sample(4, seed=0, t=0.5, sde=VPSDE()).astype(np.float32)
    s = g.score(VPSDE())(x, np.full(4, 0.5, dtype=np.float32))
    assert s.dtype == np.float32
    assert g.logpdf(x, 0.5, VPSDE()).dtype == np.float32
    assert g.flow(x, 0.5, 0.2, VPSDE()).dtype == np.float32


# ----------------------------------------------------------------------------------------------------------
# torch
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["gauss_full", "gauss_diag", "mix_full", "mix_diag", "mix_scalar"])
@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()], ids=repr)
def test_torch_matches_numpy(which, sde):
    torch = pytest.importorskip("torch")
    dens = {
        "gauss_full": make_gaussian("full", 3, 1),
        "gauss_diag": make_gaussian("diag", 3, 2),
        "mix_full": make_mixture("full", 3, 3, 3),
        "mix_diag": make_mixture("diag", 2, 3, 4),
        "mix_scalar": make_mixture("scalar", 4, 3, 5),
    }[which]
    t = 0.37 * sde.T
    x = dens.sample(7, seed=1, t=t, sde=sde)
    ts = np.linspace(0.1, 1.0, 7) * sde.T
    xt = torch.tensor(x, dtype=torch.float64)
    score = dens.score(sde)
    for tn, tt in ((t, t), (ts, torch.tensor(ts, dtype=torch.float64))):
        s = score(xt, tt)
        assert isinstance(s, torch.Tensor) and s.dtype == torch.float64 and s.shape == xt.shape
        np.testing.assert_allclose(s.numpy(), score(x, tn), rtol=1e-12, atol=1e-12)
        lp = dens.logpdf(xt, tt, sde)
        assert isinstance(lp, torch.Tensor) and lp.shape == (7,)
        np.testing.assert_allclose(lp.numpy(), dens.logpdf(x, tn, sde), rtol=1e-12, atol=1e-12)
    # autograd of the torch logpdf is the score
    xg = xt.clone().requires_grad_(True)
    tt = torch.tensor(ts, dtype=torch.float64)
    (grad,) = torch.autograd.grad(dens.logpdf(xg, tt, sde).sum(), xg)
    np.testing.assert_allclose(grad.numpy(), score(x, ts), rtol=1e-10, atol=1e-10)
    if isinstance(dens, Gaussian):
        f = dens.flow(xt, tt, 0.5 * sde.T, sde)
        assert isinstance(f, torch.Tensor)
        np.testing.assert_allclose(f.numpy(), dens.flow(x, ts, 0.5 * sde.T, sde), rtol=1e-12, atol=1e-12)
    # float32 tensors stay float32
    s32 = score(xt.float(), torch.tensor(ts, dtype=torch.float32))
    assert s32.dtype == torch.float32
    np.testing.assert_allclose(s32.numpy(), score(x, ts), rtol=1e-3, atol=1e-3 * np.abs(score(x, ts)).max())
    # sample(like=tensor)
    st_ = dens.sample(7, seed=1, t=t, sde=sde, like=xt)
    assert isinstance(st_, torch.Tensor)
    np.testing.assert_array_equal(st_.numpy(), x)


# ----------------------------------------------------------------------------------------------------------
# the score object and bad inputs
# ----------------------------------------------------------------------------------------------------------
def test_score_object_attributes():
    g = make_gaussian("diag", 5, 0)
    sde = VESDE()
    s = g.score(sde)
    assert isinstance(s, AnalyticScore)
    assert s.event_shape == (5,) and s.density is g and s.sde is sde
    assert g.dim == 5 and g.event_shape == (5,)
    mix = make_mixture("full", 2, 3, 0)
    assert mix.score(sde).event_shape == (3,) and mix.dim == 3
    assert "Gaussian" in repr(s)


FULL_NONSYM = np.array([[1.0, 0.5], [0.4, 1.0]])
FULL_NOT_PD = np.array([[1.0, 2.0], [2.0, 1.0]])


@pytest.mark.parametrize(
    "make, exc, word",
    [
        (lambda: Gaussian([[0.0, 1.0]], 1.0), ValueError, "mean"),
        (lambda: Gaussian([], 1.0), ValueError, "mean"),
        (lambda: Gaussian([0.0, np.nan], 1.0), ValueError, "mean"),
        (lambda: Gaussian(["a", "b"], 1.0), TypeError, "mean"),
        (lambda: Gaussian([0.0, 0.0], -1.0), ValueError, "cov"),
        (lambda: Gaussian([0.0, 0.0], 0.0), ValueError, "cov"),
        (lambda: Gaussian([0.0, 0.0], np.inf), ValueError, "cov"),
        (lambda: Gaussian([0.0, 0.0], [1.0, 1.0, 1.0]), ValueError, "cov"),
        (lambda: Gaussian([0.0, 0.0], [1.0, 0.0]), ValueError, "cov"),
        (lambda: Gaussian([0.0, 0.0], np.eye(3)), ValueError, "cov"),
        (lambda: Gaussian([0.0, 0.0], np.ones((2, 2, 2))), ValueError, "cov"),
        (lambda: Gaussian([0.0, 0.0], FULL_NONSYM), ValueError, "symmetric"),
        (lambda: Gaussian([0.0, 0.0], FULL_NOT_PD), ValueError, "positive definite"),
        (lambda: GaussianMixture([0.5, 0.6], [[0.0], [1.0]], [1.0, 1.0]), ValueError, "weights"),
        (lambda: GaussianMixture([1.5, -0.5], [[0.0], [1.0]], [1.0, 1.0]), ValueError, "weights"),
        (lambda: GaussianMixture([[1.0]], [[0.0]], [1.0]), ValueError, "weights"),
        (lambda: GaussianMixture([np.nan, 1.0], [[0.0], [1.0]], [1.0, 1.0]), ValueError, "weights"),
        (lambda: GaussianMixture([0.5, 0.5], [0.0, 1.0], [1.0, 1.0]), ValueError, "means"),
        (lambda: GaussianMixture([0.5, 0.5], [[0.0], [1.0], [2.0]], [1.0, 1.0]), ValueError, "means"),
        (lambda: GaussianMixture([0.5, 0.5], [[0.0], [1.0]], [1.0, 0.0]), ValueError, "covs"),
        (lambda: GaussianMixture([0.5, 0.5], [[0.0], [1.0]], [1.0]), ValueError, "covs"),
        (lambda: GaussianMixture([0.5, 0.5], [[0.0, 0], [1, 1]], [[1.0, 1.0]]), ValueError, "covs"),
        (
            lambda: GaussianMixture([0.5, 0.5], [[0.0, 0], [1, 1]], np.stack([np.eye(2), FULL_NOT_PD])),
            ValueError,
            "covs[1]",
        ),
        (
            lambda: GaussianMixture([0.5, 0.5], [[0.0, 0], [1, 1]], np.stack([np.eye(2), FULL_NONSYM])),
            ValueError,
            "symmetric",
        ),
    ],
)
def test_bad_constructor_arguments(make, exc, word):
    with pytest.raises(exc, match=word.replace("[", r"\[").replace("]", r"\]")):
        make()


@pytest.mark.parametrize("dens", [make_gaussian("full", 2, 0), make_mixture("diag", 2, 2, 0)], ids=repr)
def test_bad_call_arguments(dens):
    sde = VPSDE()
    x = np.zeros((3, 2))
    with pytest.raises(TypeError, match="sde"):
        dens.score("vp")
    with pytest.raises(TypeError, match="sde"):
        dens.logpdf(x, 0.5, sde="vp")
    with pytest.raises(ValueError, match="x"):
        dens.score(sde)(np.zeros((3, 3)), 0.5)
    with pytest.raises(ValueError, match="x"):
        dens.logpdf(np.zeros(2), 0.5, sde)
    with pytest.raises(ValueError, match="t"):
        dens.score(sde)(x, np.full(4, 0.5))
    with pytest.raises(ValueError, match="t"):
        dens.logpdf(x, -0.1, sde)
    with pytest.raises(ValueError, match="t"):
        dens.logpdf(x, np.nan, sde)
    with pytest.raises(ValueError, match="sde"):
        dens.logpdf(x, 0.5)
    with pytest.raises(ValueError, match="sde"):
        dens.sample(3, t=0.5)
    with pytest.raises(ValueError, match="sde"):
        dens.mean_cov(0.5)
    with pytest.raises(TypeError, match="n"):
        dens.sample(2.5)
    with pytest.raises(ValueError, match="n"):
        dens.sample(-1)
    with pytest.raises(ValueError, match="seed"):
        dens.sample(3, seed=-1)
    with pytest.raises(TypeError, match="t"):
        dens.mean_cov("soon", sde)
    with pytest.raises(ValueError, match="t"):
        dens.sample(3, t=-1.0, sde=sde)


def test_bad_flow_arguments():
    g = make_gaussian("diag", 2, 0)
    x = np.zeros((3, 2))
    with pytest.raises(TypeError, match="sde"):
        g.flow(x, 0.1, 0.2, None)
    with pytest.raises(ValueError, match="t_from"):
        g.flow(x, -0.1, 0.2, VPSDE())
    with pytest.raises(ValueError, match="t_to"):
        g.flow(x, 0.1, np.full(2, 0.3), VPSDE())
    with pytest.raises(ValueError, match="x"):
        g.flow(np.zeros((3, 1)), 0.1, 0.2, VPSDE())


def test_densities_are_immutable_and_do_not_freeze_user_arrays():
    mean, cov = np.zeros(2), np.eye(2)
    g = Gaussian(mean, cov)
    with pytest.raises(ValueError):
        g.mean[0] = 1.0
    mean[0] = 1.0  # the caller's arrays stay writeable and are not shared
    cov[0, 0] = 5.0
    assert g.mean[0] == 0.0 and g.cov[0, 0] == 1.0
    mix = GaussianMixture(np.array([0.5, 0.5]), np.zeros((2, 2)), np.ones(2))
    with pytest.raises(ValueError):
        mix.weights[0] = 1.0
