"""Adaptive solvers in log-SNR time (``time="log_snr"``): the time-changed process against closed forms and finite
differences, the exact flow and law, save times at the original times, the default unchanged, option errors."""

from __future__ import annotations

import numpy as np
import pytest

from sdekit import EDMSDE, VESDE, VPSDE, Gaussian, GeneralSDE, SubVPSDE, sample, solve
from sdekit.solvers import get_solver
from sdekit.timechange import LogSNRTime, in_log_snr_time

DATA = Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 1.5]]))
SDES = [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()]
IDS = ["vp", "subvp", "ve", "edm"]


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_time_changed_drift_and_diffusion(sde):
    # dt/dlambda against a central difference of t(lambda); the drift is F(x, t(lambda)) dt/dlambda and the
    # diffusion g(t) sqrt|dt/dlambda| = sqrt(2) sigma(t), for the probability-flow ODE and the reverse SDE
    score = DATA.score(sde)
    ts = np.linspace(sde.eps, sde.T, 7)[1:-1]
    lam = sde.log_snr(ts)
    ode, rev = LogSNRTime(sde.probability_flow(score)), LogSNRTime(sde.reverse(score))
    np.testing.assert_allclose(ode.time_of(lam), ts, rtol=1e-10)
    dlam = 1e-5
    fd = (sde.t_from_log_snr(lam + dlam) - sde.t_from_log_snr(lam - dlam)) / (2 * dlam)
    np.testing.assert_allclose(ode.dt_dlam(ts), fd, rtol=1e-6)
    assert np.all(ode.dt_dlam(ts) < 0)
    x = np.random.default_rng(0).normal(size=(ts.size, 2)) * sde.marginal(ts)[1][:, None]
    for wrapped, proc in ((ode, sde.probability_flow(score)), (rev, sde.reverse(score))):
        np.testing.assert_allclose(wrapped.drift(x, lam), proc.drift(x, ts) * fd[:, None], rtol=1e-5)
    assert ode.diffusion(x, lam) is None
    g = np.sqrt(sde.g2(ts))
    np.testing.assert_allclose(rev.diffusion(x, lam)[:, 0], g * np.sqrt(np.abs(fd)), rtol=1e-5)


def test_edm_closed_forms():
    # EDM: lambda = -log sigma, dx/dlambda = D - x (ODE) and 2 (D - x) with diffusion sqrt(2) sigma (SDE),
    # D = x + sigma^2 score the denoiser (Karras et al. 2022)
    sde = EDMSDE()
    score = DATA.score(sde)
    sigma = np.array([0.002, 0.1, 1.0, 80.0])
    x = np.random.default_rng(1).normal(size=(4, 2)) * sigma[:, None]
    D = x + sigma[:, None] ** 2 * score(x, sigma)
    lam = -np.log(sigma)
    np.testing.assert_allclose(LogSNRTime(sde.probability_flow(score)).drift(x, lam), D - x, rtol=1e-9, atol=1e-12)
    rev = LogSNRTime(sde.reverse(score))
    np.testing.assert_allclose(rev.drift(x, lam), 2 * (D - x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rev.diffusion(x, lam)[:, 0], np.sqrt(2) * sigma, rtol=1e-12)


@pytest.mark.parametrize("sde", [VPSDE(), EDMSDE()], ids=["vp", "edm"])
def test_dopri5_in_log_snr_time_meets_tolerance_on_exact_flow(sde):
    # the exact probability-flow map of a Gaussian, to a small multiple of the tolerance (as in t-time); on EDM the
    # same tolerance costs fewer NFE than in sigma-time, and a loose tolerance at which sigma-time dopri5 steps
    # through the stiff end (sigma -> 0.002) and goes wrong stays accurate
    score = DATA.score(sde)
    x_T = sde.prior_sample((64, 2), seed=1)
    exact = DATA.flow(x_T, sde.T, sde.eps, sde)
    for tol in (1e-3, 1e-5):
        sol = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "dopri5", rtol=tol, atol=tol, time="log_snr")
        assert np.max(np.abs(sol.x - exact)) < 20 * tol, tol
        assert sol.t == sde.eps
        if isinstance(sde, EDMSDE):
            own = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "dopri5", rtol=tol, atol=tol, time="t")
            assert sol.stats["nfe_mean"] < 0.9 * own.stats["nfe_mean"], (tol, sol.stats, own.stats)
    if isinstance(sde, EDMSDE):
        loose = dict(rtol=1e-2, atol=1e-2)
        sol = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "dopri5", time="log_snr", **loose)
        own = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "dopri5", time="t", **loose)
        assert np.max(np.abs(sol.x - exact)) < 1e-2 < np.max(np.abs(own.x - exact))


def test_adaptive_sde_in_log_snr_time_has_the_exact_law():
    # EDM, 2000 samples: each mean within 4 standard errors (sqrt(var / n)), each variance ratio within 4 x
    # sqrt(2 / n); the Brownian path lives in lambda-time (tree noise), the law at sigma_min is unchanged
    sde = EDMSDE()
    n = 2000
    sol = sample(sde, DATA.score(sde), n=n, solver="adaptive", rtol=2e-2, atol=2e-3, denoise=False, seed=2,
                 time="log_snr")  # fmt: skip
    m, c = DATA.mean_cov(sde.eps, sde)
    assert sol.t == sde.eps
    np.testing.assert_allclose(sol.x.mean(0), m, atol=4 * np.sqrt(np.max(np.diag(c)) / n))
    np.testing.assert_allclose(sol.x.var(0) / np.diag(c), 1.0, atol=4 * np.sqrt(2 / n))


def test_save_at_is_at_the_original_times():
    sde = EDMSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((32, 2), seed=4)
    times = [1.0, sde.T, 0.01, sde.eps]
    sol = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "dopri5", rtol=1e-7, atol=1e-7, save_at=times,
                time="log_snr")  # fmt: skip
    np.testing.assert_array_equal(sol.ts, sorted(times, reverse=True))
    np.testing.assert_array_equal(sol.xs[0], x_T)
    np.testing.assert_array_equal(sol.xs[-1], sol.x)
    for ti, xi in zip(sol.ts, sol.xs):
        assert np.max(np.abs(xi - DATA.flow(x_T, sde.T, ti, sde))) < 20 * 1e-7, ti
    seen = []
    solve(sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", rtol=0.1, save_at=[1.0], time="log_snr",
          callback=lambda info: seen.append(info["t"]))  # fmt: skip
    assert np.all(np.concatenate(seen) <= sde.T * (1 + 1e-12)) and np.all(np.concatenate(seen) >= sde.eps * 0.999)
    np.testing.assert_allclose(seen[-1], sde.eps, rtol=1e-12)  # the callback sees process times


def test_default_time_is_unchanged_and_backends_agree():
    # time="t" is the solver of before, bit for bit (fused kernel on numba); in log-SNR time the numba backend
    # runs the numpy adaptive loop (its fused kernels know only the process's own time): the same numbers
    sde = VPSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((16, 2), seed=5)
    for name, proc in (("dopri5", sde.probability_flow(score)), ("adaptive", sde.reverse(score))):
        plain = solve(proc, x_T, sde.T, sde.eps, name, rtol=1e-3, atol=1e-3, seed=5)
        same = solve(proc, x_T, sde.T, sde.eps, name, rtol=1e-3, atol=1e-3, seed=5, time="t")
        np.testing.assert_array_equal(plain.x, same.x)
        assert plain.nfe == same.nfe
        a = solve(proc, x_T, sde.T, sde.eps, name, rtol=1e-3, atol=1e-3, seed=5, time="log_snr", backend="numba")
        b = solve(proc, x_T, sde.T, sde.eps, name, rtol=1e-3, atol=1e-3, seed=5, time="log_snr", backend="numpy")
        np.testing.assert_array_equal(a.x, b.x)
        assert a.stats["backend"] == "numba" and a.nfe == b.nfe
    # dopri5's default is time="auto" since issue 24: "t" on VP (above), "log_snr" on EDM (tests/test_defaults.py)
    assert get_solver("dopri5").time == "auto" and repr(get_solver("dopri5")) == "Dopri5(rtol=1e-05, atol=1e-05)"
    assert get_solver("dopri5").time_for(sde) == "t"


def test_torch_and_conditioning():
    # the array-generic loop on tensors matches numpy; a per-sample conditioning follows the active rows
    torch = pytest.importorskip("torch")
    sde = EDMSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((8, 2), seed=6)
    proc = sde.probability_flow(score)
    kw = dict(rtol=1e-4, atol=1e-4, time="log_snr")
    ref = solve(proc, x_T, sde.T, sde.eps, "dopri5", **kw)
    on_torch = solve(proc, torch.as_tensor(x_T), sde.T, sde.eps, "dopri5", **kw)
    np.testing.assert_allclose(on_torch.x.numpy(), ref.x, rtol=1e-8, atol=1e-8)

    def conditioned(x, t, shift):
        assert shift.shape[0] == x.shape[0]
        return score(x, t) + 0.0 * shift[:, None]

    rev = sde.reverse(conditioned)
    base = solve(sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", rtol=0.05, seed=6, time="log_snr")
    cond = solve(rev, x_T, sde.T, sde.eps, "adaptive", rtol=0.05, seed=6, time="log_snr",
                 cond={"shift": np.arange(8.0)})  # fmt: skip
    np.testing.assert_array_equal(cond.x, base.x)


def test_bad_options_name_the_argument():
    sde = VPSDE()
    proc = sde.probability_flow(DATA.score(sde))
    x = np.zeros((2, 2))
    for bad in ("sigma", "lambda", None, 1):
        with pytest.raises(ValueError, match=r"time must be one of \['t', 'log_snr', 'auto'\]"):
            get_solver("dopri5", time=bad)
    with pytest.raises(ValueError, match="time must be one of"):
        solve(proc, x, 1.0, 0.1, "adaptive", time="sigma")
    with pytest.raises(ValueError, match="unknown option"):
        solve(proc, x, 1.0, 0.1, "heun", steps=4, time="log_snr")  # fixed-step solvers have no time variable
    gen = GeneralSDE(lambda x, t: -x, lambda x, t: 1.0 + 0 * x, noise="additive")
    with pytest.raises(ValueError, match="time='log_snr' needs a linear SDE"):
        solve(gen, x, 0.1, 1.0, "adaptive", time="log_snr")
    with pytest.raises(ValueError, match="finite log-SNR"):
        solve(sde, x, 0.0, 1.0, "adaptive", time="log_snr")  # lambda(0) = +inf
    with pytest.raises(ValueError, match="finite log-SNR"):
        in_log_snr_time(proc, np.array([1.0, 0.0]))
