"""DiscreteVPSDE: the LinearSDE of a trained DDPM schedule (log-sigma interpolated between timesteps)."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit import DiscreteVPSDE
from sdekit.grids import make_grid

BETAS = np.linspace(1e-4, 0.02, 1000)
SDE = DiscreteVPSDE(betas=BETAS)
AC = np.cumprod(1.0 - BETAS)


def test_marginals_at_the_trained_timesteps():
    tau = np.arange(1000.0)
    alpha, sigma = SDE.marginal(SDE.t_from_timestep(tau))
    np.testing.assert_allclose(alpha, np.sqrt(AC), rtol=1e-13)
    np.testing.assert_allclose(sigma, np.sqrt(1.0 - AC), rtol=1e-13)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, rtol=1e-14)  # variance preserving everywhere
    assert SDE.T == 1.0 and SDE.eps == 1e-3 and SDE.timestep(SDE.eps) == 0.0 and SDE.timestep(1.0) == 999.0
    same = DiscreteVPSDE(alphas_cumprod=AC)
    np.testing.assert_array_equal(same.log_sigmas, SDE.log_sigmas)
    assert SDE.marginal(0.0) == (1.0, 0.0)  # below timestep 0 the level falls to zero: p_0 is the data


def test_interpolation_is_k_diffusions_and_diffusers():
    # k-diffusion's DiscreteSchedule.t_to_sigma: log sigma linear between timesteps; diffusers' _sigma_to_t inverts it
    tau = np.random.default_rng(0).uniform(0, 999, 200)
    log_s = np.interp(tau, np.arange(1000), SDE.log_sigmas)
    np.testing.assert_allclose(np.log(SDE.edm_sigma(SDE.t_from_timestep(tau))), log_s, rtol=1e-13, atol=1e-13)
    diffusers = pytest.importorskip("diffusers")
    sch = diffusers.EulerDiscreteScheduler()
    sigmas = np.exp(log_s)
    theirs = sch._sigma_to_t(sigmas, np.log(((1 - sch.alphas_cumprod) / sch.alphas_cumprod).double().numpy() ** 0.5))
    ours = DiscreteVPSDE(alphas_cumprod=sch.alphas_cumprod).timestep(
        DiscreteVPSDE(alphas_cumprod=sch.alphas_cumprod).t_from_log_snr(-np.log(sigmas))
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-4)  # diffusers' float32 schedule


def test_log_snr_inverse_and_the_extensions():
    t = np.unique(np.r_[np.linspace(1e-6, 1e-3, 50), np.linspace(1e-3, 1.0, 500), np.linspace(1.0, 1.2, 20)])
    np.testing.assert_allclose(SDE.t_from_log_snr(SDE.log_snr(t)), t, rtol=1e-12, atol=1e-15)
    assert SDE.t_from_log_snr(float(SDE.log_snr(0.3))) == pytest.approx(0.3, rel=1e-13)
    lam = SDE.log_snr(t)
    assert np.all(np.diff(lam) < 0) and np.all(np.isfinite(lam))


def test_drift_and_diffusion_are_the_derivatives_of_the_marginals():
    # a = dlog alpha / dt and g^2 = dsigma^2/dt - 2 a sigma^2, by central differences away from the kinks
    t = np.linspace(2e-4, 1.1, 3001)
    t = t[np.abs(SDE.timestep(t) - np.round(SDE.timestep(t))) > 1e-2]
    h = 1e-7
    (a1, s1), (a0, s0) = SDE.marginal(t + h), SDE.marginal(t - h)
    a, s = SDE.marginal(t)
    da = (np.log(a1) - np.log(a0)) / (2 * h)
    g2 = (s1**2 - s0**2) / (2 * h) - 2 * da * s**2
    np.testing.assert_allclose(SDE.drift_coef(t), da, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(SDE.g2(t), g2, rtol=1e-5, atol=1e-6)
    # the continuous limit: N beta_N = 20 = VPSDE's beta_max, at the last timestep
    assert SDE.g2(1.0) == pytest.approx(20.0, rel=2e-2)
    assert SDE.g2(0.0) == 0.0 and np.isfinite(SDE.drift_coef(0.0))


def test_torch_tensors_give_the_numpy_numbers():
    torch = pytest.importorskip("torch")
    t = np.linspace(0.0, 1.1, 301)
    tt = torch.as_tensor(t)
    for fn in (SDE.marginal, SDE.log_snr, SDE.drift_coef, SDE.g2):
        want, got = fn(t), fn(tt)
        for w, g in zip(want if isinstance(want, tuple) else (want,), got if isinstance(got, tuple) else (got,)):
            assert isinstance(g, torch.Tensor) and g.dtype == torch.float64
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-13, atol=1e-15)
    lam = SDE.log_snr(t[1:])
    np.testing.assert_allclose(SDE.t_from_log_snr(torch.as_tensor(lam)).numpy(), SDE.t_from_log_snr(lam), rtol=1e-13)
    a32 = SDE.marginal(tt.float())[0]
    assert a32.dtype == torch.float32


def test_grids_work_on_it():
    for name in ("uniform", "quadratic", "log_snr", "karras"):
        g = make_grid(SDE, 12, name)
        assert g[0] == 1.0 and g[-1] == SDE.eps and np.all(np.diff(g) < 0)
    lam = SDE.log_snr(make_grid(SDE, 12, "log_snr"))
    np.testing.assert_allclose(np.diff(lam), np.diff(lam)[0], rtol=1e-10)
    s = SDE.edm_sigma(make_grid(SDE, 12, "karras"))
    rho = 7.0
    ramp = np.linspace(0, 1, 13)
    want = (SDE.sigma_max ** (1 / rho) + ramp * (SDE.sigma_min ** (1 / rho) - SDE.sigma_max ** (1 / rho))) ** rho
    np.testing.assert_allclose(s, want, rtol=1e-12)  # k-diffusion's get_sigmas_karras on the trained range


def test_an_exact_score_samples_through_every_kind_of_solver():
    data = sdekit.Gaussian([1.0, -1.0], [0.3, 0.2])
    x_T = SDE.prior_sample((6, 2), seed=0)
    flow = sdekit.solve(SDE.probability_flow(data.score(SDE)), x_T, 1.0, SDE.eps, "dpmpp_3m", grid="log_snr", steps=40)
    assert np.abs(flow.x - data.flow(x_T, 1.0, SDE.eps, SDE)).max() < 2e-3
    x = sdekit.sample(SDE, data.score(SDE), n=4000, solver="ancestral", steps=200, seed=1).x
    np.testing.assert_allclose(x.mean(0), [1.0, -1.0], atol=0.05)
    np.testing.assert_allclose(x.var(0), [0.3, 0.2], atol=0.05)


def test_bad_schedules():
    with pytest.raises(ValueError, match="exactly one of betas and alphas_cumprod"):
        DiscreteVPSDE()
    with pytest.raises(ValueError, match="exactly one of betas and alphas_cumprod"):
        DiscreteVPSDE(betas=BETAS, alphas_cumprod=AC)
    with pytest.raises(ValueError, match="betas must lie in"):
        DiscreteVPSDE(betas=np.linspace(0.0, 0.02, 10))
    with pytest.raises(ValueError, match="zero-terminal-SNR"):
        DiscreteVPSDE(alphas_cumprod=np.r_[AC[:-1], 0.0])
    with pytest.raises(ValueError, match="strictly decreasing"):
        DiscreteVPSDE(alphas_cumprod=AC[::-1])
    with pytest.raises(ValueError, match="1-D array of at least 2"):
        DiscreteVPSDE(betas=np.full((3, 3), 0.01))
    with pytest.raises(TypeError, match="alphas_cumprod must be a 1-D array"):
        DiscreteVPSDE(alphas_cumprod="schedule")
