"""Forward SDEs: coefficient identities, marginals, log-SNR, prior, and input validation."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sdekit
from sdekit import EDMSDE, VESDE, VPSDE, GeneralSDE, SubVPSDE


def vp(bmin, span):
    return VPSDE(beta_min=bmin, beta_max=bmin + span)


sde_strategy = st.one_of(
    st.builds(vp, st.floats(0.01, 2.0), st.floats(0.0, 30.0)),
    st.builds(lambda b, s: SubVPSDE(beta_min=b, beta_max=b + s), st.floats(0.01, 2.0), st.floats(0.0, 30.0)),
    st.builds(lambda lo, r: VESDE(sigma_min=lo, sigma_max=lo * r), st.floats(1e-3, 1.0), st.floats(2.0, 1e4)),
    st.builds(lambda lo, r: EDMSDE(sigma_min=lo, sigma_max=lo * r), st.floats(1e-3, 1.0), st.floats(2.0, 1e4)),
)


@given(sde=sde_strategy, u=st.floats(0.02, 0.98))
def test_linear_sde_coefficients_satisfy_the_moment_odes(sde, u):
    """alpha' = a alpha and (sigma^2)' = 2 a sigma^2 + g^2: the forward SDE moves p_s to p_t exactly."""
    t = sde.eps + u * (sde.T - sde.eps)
    h = 1e-6 * sde.T
    (a_p, s_p), (a_m, s_m) = sde.marginal(t + h), sde.marginal(t - h)
    alpha, sigma = sde.marginal(t)
    dalpha = (a_p - a_m) / (2 * h)
    dvar = (s_p**2 - s_m**2) / (2 * h)
    assert dalpha == pytest.approx(sde.drift_coef(t) * alpha, rel=1e-5, abs=1e-9)
    assert dvar == pytest.approx(2 * sde.drift_coef(t) * sigma**2 + sde.g2(t), rel=1e-5, abs=1e-9)


@given(sde=sde_strategy, u=st.floats(0.0, 1.0))
def test_log_snr_is_inverted_by_t_from_log_snr(sde, u):
    t = sde.eps + u * (sde.T - sde.eps)
    lam = sde.log_snr(t)
    alpha, sigma = sde.marginal(t)
    assert lam == pytest.approx(math.log(alpha / sigma), rel=1e-10, abs=1e-10)
    assert sde.t_from_log_snr(lam) == pytest.approx(t, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()], ids=repr)
def test_coefficients_accept_arrays_and_floats_alike(sde):
    ts = np.linspace(sde.eps, sde.T, 7)
    alpha, sigma = sde.marginal(ts)
    for k, t in enumerate(ts):
        a, s = sde.marginal(float(t))
        assert a == pytest.approx(alpha[k], rel=1e-14) and s == pytest.approx(sigma[k], rel=1e-14)
    np.testing.assert_allclose(sde.t_from_log_snr(sde.log_snr(ts)), ts, rtol=1e-9)


def test_reference_values_from_the_papers():
    # VP (Song et al. 2021): B(1) = beta_min + (beta_max - beta_min) / 2 = 10.05
    alpha, sigma = VPSDE().marginal(1.0)
    assert alpha == pytest.approx(math.exp(-10.05 / 2), rel=1e-14)
    assert sigma == pytest.approx(math.sqrt(1 - math.exp(-10.05)), rel=1e-14)
    # sub-VP: sigma = 1 - exp(-B)
    assert SubVPSDE().marginal(1.0)[1] == pytest.approx(1 - math.exp(-10.05), rel=1e-14)
    # VE: sigma(t) = sigma_min (sigma_max / sigma_min)^t, g^2 = d sigma^2 / dt
    ve = VESDE()
    assert ve.marginal(0.5)[1] == pytest.approx(0.01 * 5000**0.5, rel=1e-14)
    assert ve.g2(0.5) == pytest.approx(2 * math.log(5000) * (0.01 * 5000**0.5) ** 2, rel=1e-14)
    # EDM: sigma(t) = t, g = sqrt(2 t); T = sigma_max, eps = sigma_min
    edm = EDMSDE()
    assert (edm.T, edm.eps) == (80.0, 0.002)
    assert edm.marginal(3.0) == (1.0, 3.0) and edm.g2(3.0) == 6.0


def test_vp_log_snr_is_stable_at_both_ends():
    sde = VPSDE()
    assert math.isfinite(sde.log_snr(1e-12)) and sde.log_snr(1e-12) > 10
    assert math.isfinite(VPSDE(beta_max=2000.0).log_snr(1.0))


def test_prior_sample_is_reproducible_per_sample_and_has_the_prior_law():
    sde = VESDE()
    big = sde.prior_sample((20000, 3), seed=5)
    small = sde.prior_sample((10, 3), seed=5)
    np.testing.assert_array_equal(big[:10], small)
    assert not np.allclose(sde.prior_sample((10, 3), seed=6), small)
    # std 50: standard error of the sample std is about 50 / sqrt(2 * 60000) = 0.14
    assert big.std() == pytest.approx(50.0, abs=5 * 0.15)
    lp = sde.prior_logpdf(small)
    expected = -0.5 * (small**2).sum(1) / 2500.0 - 1.5 * math.log(2 * math.pi * 2500.0)
    np.testing.assert_allclose(lp, expected, rtol=1e-13)


def test_reverse_and_probability_flow_drifts():
    sde = VPSDE()
    x = np.array([[0.3, -1.2], [2.0, 0.5]])

    def score(x, t):
        assert t.shape == (x.shape[0],)
        return -x

    t = 0.4
    f, g = sde.drift(x, t), sde.diffusion(x, t)
    np.testing.assert_allclose(sde.reverse(score).drift(x, t), f + g**2 * x)
    np.testing.assert_allclose(sde.probability_flow(score).drift(x, t), f + 0.5 * g**2 * x)
    assert sde.probability_flow(score).diffusion(x, t) is None


def test_general_sde_reverse_needs_the_diffusion_derivative_for_diagonal_noise():
    sde = GeneralSDE(lambda x, t: -x, lambda x, t: 1.0 + 0.1 * x**2, noise="diagonal")
    rev = sde.reverse(lambda x, t: -x)
    with pytest.raises(ValueError, match="diffusion_dx"):
        rev.drift(np.ones((2, 1)), 0.5)
    sde = GeneralSDE(
        lambda x, t: -x, lambda x, t: 1.0 + 0.1 * x**2, noise="diagonal", diffusion_dx=lambda x, t: 0.2 * x
    )
    x = np.full((2, 1), 2.0)
    g = 1.4
    np.testing.assert_allclose(sde.reverse(lambda x, t: -x).drift(x, 0.5), -x - g**2 * (-x) - 2 * g * 0.4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: VPSDE(beta_min=-1.0), "beta_min"),
        (lambda: VPSDE(beta_min=5.0, beta_max=1.0), "beta_max"),
        (lambda: VPSDE(T=float("nan")), "T"),
        (lambda: VESDE(sigma_min=1.0, sigma_max=0.5), "sigma_max"),
        (lambda: VESDE(sigma_min="a"), "sigma_min"),
        (lambda: EDMSDE(sigma_min=0.0), "sigma_min"),
        (lambda: GeneralSDE(1.0, lambda x, t: x), "drift"),
        (lambda: GeneralSDE(lambda x, t: x, lambda x, t: x, noise="multiplicative"), "noise"),
        (lambda: VPSDE().reverse(3), "score"),
        (lambda: VPSDE().prior_sample((2, 2), seed=-1), "seed"),
    ],
)
def test_bad_parameters_name_the_argument(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_public_names_exist():
    for name in ["SDE", "LinearSDE", "VPSDE", "SubVPSDE", "VESDE", "EDMSDE", "GeneralSDE", "solve", "sample"]:
        assert hasattr(sdekit, name)
