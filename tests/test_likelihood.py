"""log_likelihood against closed-form log densities; Hutchinson unbiasedness; torch and numpy paths agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdekit import EDMSDE, VESDE, VPSDE, Gaussian, GaussianMixture, SubVPSDE
from sdekit.bench import make_density
from sdekit.likelihood import bits_per_dim, log_likelihood

TOL_PER_DIM = 1e-4  # the accuracy target at rtol = atol = 1e-6


def _t_eps(sde):
    return 2e-3 if isinstance(sde, EDMSDE) else 1e-5


def _exact_prior(dens, sde):
    # log p_T itself, so that the only error left is the integrator's
    return lambda z: dens.logpdf(z, sde.T, sde)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()], ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("density", ["gaussian", "ring8", "gaussian10"])
def test_exact_trace_matches_closed_form(sde, density):
    dens = make_density(density)
    x = dens.sample(8, seed=11)
    t_eps = _t_eps(sde)
    res = log_likelihood(
        sde, dens.score(sde), x, t_eps=t_eps, rtol=1e-6, atol=1e-6, prior_logpdf=_exact_prior(dens, sde)
    )
    exact = dens.logpdf(x, t_eps, sde)
    assert res.logp.shape == (8,)
    assert np.max(np.abs(res.logp - exact)) <= TOL_PER_DIM * dens.dim
    np.testing.assert_allclose(res.logp, res.prior_logp + res.delta_logp)
    assert res.nfe > 0 and res.nfe_per_sample.shape == (8,)


@pytest.mark.parametrize("time_variable", ["log_snr", "sigma"])
def test_other_time_variables_are_as_accurate(time_variable):
    sde = VPSDE()
    dens = make_density("blobs3")
    x = dens.sample(6, seed=2)
    res = log_likelihood(
        sde, dens.score(sde), x, rtol=1e-6, atol=1e-6, time_variable=time_variable, prior_logpdf=_exact_prior(dens, sde)
    )
    assert res.stats["time_variable"] == time_variable
    assert np.max(np.abs(res.logp - dens.logpdf(x, 1e-5, sde))) <= TOL_PER_DIM * dens.dim
    # the end points are the flow's, whatever the coordinates: compare with t
    ref = log_likelihood(sde, dens.score(sde), x, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(res.z, ref.z, atol=1e-4)


def test_error_shrinks_with_tolerance_and_default_prior_is_close():
    sde = VPSDE()
    dens = make_density("ring8")
    x = dens.sample(6, seed=4)
    exact = dens.logpdf(x, 1e-5, sde)
    errs = []
    for tol in (1e-3, 1e-5, 1e-7):
        res = log_likelihood(sde, dens.score(sde), x, rtol=tol, atol=tol, prior_logpdf=_exact_prior(dens, sde))
        errs.append(np.max(np.abs(res.logp - exact)))
    assert errs[2] < errs[0] / 100
    # with the N(0, I) prior the only extra error is log N(x_T) - log p_T(x_T), small for VP at T = 1
    res = log_likelihood(sde, dens.score(sde), x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.prior_logp, sde.prior_logpdf(res.z))
    assert np.max(np.abs(res.logp - exact)) < 0.01


def test_single_sample_dopri5_takes_the_steps_of_scipy_rk45():
    sde = VESDE()
    dens = make_density("ring8")
    x = dens.sample(3, seed=9)
    for i in range(3):
        a = log_likelihood(sde, dens.score(sde), x[i : i + 1], rtol=1e-6, atol=1e-6)
        b = log_likelihood(sde, dens.score(sde), x[i : i + 1], rtol=1e-6, atol=1e-6, solver="scipy_rk45")
        assert a.nfe == b.nfe
        np.testing.assert_allclose(a.logp, b.logp, rtol=0, atol=1e-9)


def test_per_sample_steps_beat_a_shared_batch_step():
    sde = VPSDE()
    dens = make_density("ring8")
    x = dens.sample(40, seed=5)
    a = log_likelihood(sde, dens.score(sde), x, rtol=1e-6, atol=1e-6)
    b = log_likelihood(sde, dens.score(sde), x, rtol=1e-6, atol=1e-6, solver="scipy_rk45")
    assert a.nfe < b.nfe
    exact = dens.logpdf(x, 1e-5, sde)
    # ... at no loss of accuracy (both with the same N(0, I) prior error, compare the integrals)
    c = log_likelihood(sde, dens.score(sde), x, rtol=1e-10, atol=1e-10)
    assert np.max(np.abs(a.delta_logp - c.delta_logp)) <= TOL_PER_DIM * dens.dim
    assert np.all(np.isfinite(exact))


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(probe):
    sde = VPSDE()
    dens = make_density("ring8")
    x0 = dens.sample(1, seed=3)
    x = np.repeat(x0, 300, axis=0)  # the probes of sample i depend on (seed, i): 300 independent estimates
    exact = log_likelihood(sde, dens.score(sde), x0, rtol=1e-7, atol=1e-7).logp[0]
    res = log_likelihood(sde, dens.score(sde), x, rtol=1e-6, atol=1e-6, trace="hutchinson", probe=probe, seed=1)
    se = res.logp.std(ddof=1) / math.sqrt(x.shape[0])
    assert res.logp.std() > 1e-3  # a real estimator, not the exact trace
    assert abs(res.logp.mean() - exact) <= 3 * se
    # averaging 4 probes divides the variance by about 4
    res4 = log_likelihood(
        sde, dens.score(sde), x, rtol=1e-6, atol=1e-6, trace="hutchinson", probe=probe, seed=1, n_probes=4
    )
    assert res4.logp.std() < 0.7 * res.logp.std()
    assert abs(res4.logp.mean() - exact) <= 3 * res4.logp.std(ddof=1) / math.sqrt(x.shape[0])


def test_numpy_finite_difference_hutchinson_matches_jvp():
    sde = VPSDE()
    dens = make_density("blobs3")
    score = dens.score(sde)
    x = dens.sample(5, seed=8)

    def plain(x, t):  # no divergence/jvp methods: central differences are used
        return score(x, t)

    a = log_likelihood(sde, score, x, trace="hutchinson", n_probes=2, seed=3, rtol=1e-7, atol=1e-7)
    b = log_likelihood(sde, plain, x, trace="hutchinson", n_probes=2, seed=3, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(a.logp, b.logp, atol=1e-4)
    assert b.stats["finite_difference_score_evals"] > 0 and b.nfe > a.nfe


def test_torch_autograd_paths_match_numpy():
    torch = pytest.importorskip("torch")
    sde = VPSDE()
    dens = make_density("ring8")
    score = dens.score(sde)
    x = dens.sample(6, seed=1)

    def torch_score(x, t):  # a torch function: autograd gives the trace
        return score(x, t)

    for trace in ("exact", "hutchinson"):
        ref = log_likelihood(sde, score, x, trace=trace, seed=2, rtol=1e-7, atol=1e-7)
        out = log_likelihood(sde, torch_score, torch.tensor(x), trace=trace, seed=2, rtol=1e-7, atol=1e-7)
        assert isinstance(out.logp, torch.Tensor)
        np.testing.assert_allclose(out.logp.numpy(), ref.logp, atol=1e-6)


def test_mixture_with_full_covariances():
    sde = EDMSDE()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 3)) * 0.4
    dens = GaussianMixture([0.4, 0.6], rng.standard_normal((2, 3)), a @ a.transpose(0, 2, 1) + 0.2 * np.eye(3))
    x = dens.sample(5, seed=0)
    res = log_likelihood(
        sde, dens.score(sde), x, t_eps=2e-3, rtol=1e-6, atol=1e-6, prior_logpdf=_exact_prior(dens, sde)
    )
    assert np.max(np.abs(res.logp - dens.logpdf(x, 2e-3, sde))) <= TOL_PER_DIM * 3


def test_bits_per_dim():
    # a uniform density on [0, 1]^D has log p = 0: 8 bits per dimension for 8-bit data
    assert bits_per_dim(np.zeros(3), 10) == pytest.approx(8.0)
    logp = np.array([-5.0 * math.log(2.0) * 4])
    np.testing.assert_allclose(bits_per_dim(logp, 4, offset=7.0), 12.0)
    with pytest.raises(ValueError, match="dim"):
        bits_per_dim(logp, 0)


def test_bad_arguments():
    sde = VPSDE()
    dens = Gaussian([0.0, 0.0], 1.0)
    x = dens.sample(3)
    with pytest.raises(ValueError, match="valid choices"):
        log_likelihood(sde, dens.score(sde), x, solver="rk4")
    with pytest.raises(ValueError, match="hutchinson"):
        log_likelihood(sde, lambda x, t: -x, x, trace="exact")
    with pytest.raises(ValueError, match="t_eps"):
        log_likelihood(sde, dens.score(sde), x, t_eps=2.0)
    with pytest.raises(ValueError, match="rtol"):
        log_likelihood(sde, dens.score(sde), x, rtol=-1.0)
    with pytest.raises(ValueError, match="n_probes"):
        log_likelihood(sde, dens.score(sde), x, trace="hutchinson", n_probes=0)
    with pytest.raises(TypeError, match="LinearSDE"):
        log_likelihood("vp", dens.score(sde), x)
    with pytest.raises(ValueError, match="NaN"):
        log_likelihood(sde, dens.score(sde), np.full((2, 2), np.nan))


@pytest.mark.parametrize("density", ["gaussian", "gaussian10", "blobs3", "ring8"])
@pytest.mark.parametrize("per_sample_t", [False, True])
def test_analytic_divergence_and_jvp_match_finite_differences(density, per_sample_t):
    sde = SubVPSDE()
    dens = make_density(density)
    score = dens.score(sde)
    rng = np.random.default_rng(7)
    x = dens.sample(4, seed=5, t=0.3, sde=sde)
    t = np.array([0.05, 0.2, 0.5, 0.9]) if per_sample_t else 0.3
    d, h = dens.dim, 1e-5
    jac = np.zeros((4, d, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = h
        jac[:, :, j] = (score(x + e, t) - score(x - e, t)) / (2 * h)
    w = rng.standard_normal((4, d))
    scale = 1.0 + np.abs(jac).max()
    np.testing.assert_allclose(score.divergence(x, t), np.trace(jac, axis1=1, axis2=2), atol=1e-6 * scale * d)
    np.testing.assert_allclose(score.jvp(x, t, w), np.einsum("nij,nj->ni", jac, w), atol=1e-6 * scale * d)


@pytest.mark.parametrize("solver", ["dopri5", "scipy_rk45", "scipy_dop853"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_non_finite_score_fails_fast(solver, trace):
    # a score that turns NaN for t > 0.5: the first evaluation there raises NonFiniteError naming the time, in a
    # handful of evaluations (it used to shrink the step until max_steps: 28 s for 20 points, scipy never returned)
    from sdekit import NonFiniteError

    sde = VPSDE()
    g = Gaussian([0.0, 0.0], 1.0)
    exact = g.score(sde)
    calls = []

    def bad(x, t):
        calls.append(1)
        return np.where(t[:, None] > 0.5, np.nan, exact(x, t))

    bad.divergence = exact.divergence
    with pytest.raises(NonFiniteError, match="not finite at evaluation") as info:
        log_likelihood(sde, bad, g.sample(20, seed=1), solver=solver, trace=trace)
    assert 0.5 < info.value.t <= 1.0
    assert len(calls) < 200
    # with the check off, the per-sample integrator still stops by its own bound (no hang)
    with pytest.raises(RuntimeError):
        log_likelihood(sde, bad, g.sample(3, seed=1), trace=trace, check_finite=False, max_steps=50)


@pytest.mark.parametrize("sde, worst", [(VPSDE(), 3.4e-3), (VESDE(), 1.1e-2), (EDMSDE(), 6.6e-3)],
                         ids=lambda v: type(v).__name__ if not isinstance(v, float) else "")  # fmt: skip
def test_documented_default_prior_error(sde, worst):
    # docs/likelihood.md: 1e-4 nats per dimension holds with the exact prior only; the default N(0, sigma_T^2 I)
    # prior adds its own mismatch, measured on the 2-D Gaussian (50 points, benchmarks/bench_likelihood.py)
    dens = make_density("gaussian")
    x = dens.sample(50, seed=0)
    exact = dens.logpdf(x, _t_eps(sde), sde)
    kw = dict(t_eps=_t_eps(sde), rtol=1e-6, atol=1e-6, time_variable="t")
    default = np.abs(log_likelihood(sde, dens.score(sde), x, **kw).logp - exact).max() / dens.dim
    exact_prior = log_likelihood(sde, dens.score(sde), x, prior_logpdf=_exact_prior(dens, sde), **kw).logp
    assert np.abs(exact_prior - exact).max() / dens.dim < TOL_PER_DIM
    assert TOL_PER_DIM < default and abs(default - worst) < 0.05 * worst  # the figure the docs give, to 2 digits
