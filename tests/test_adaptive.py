"""Adaptive solvers: tolerance met against exact answers, NFE falls as the tolerance loosens, per-sample steps."""

from __future__ import annotations

import numpy as np
import pytest

from sdekit import EDMSDE, VPSDE, Gaussian, GeneralSDE, sample, solve
from sdekit.controllers import PIController
from sdekit.integrate import Job
from sdekit.loop import adaptive as adaptive_loop
from sdekit.solvers import get_solver

DATA = Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 1.5]]))


@pytest.mark.parametrize("sde", [VPSDE(), EDMSDE()], ids=["vp", "edm"])
def test_dopri5_meets_tolerance_on_exact_flow(sde):
    # The global error of a 5(4) pair with local error control stays within a small multiple of the
    # tolerance (the data scale is ~1, so rtol and atol act alike); we allow 20x.
    score = DATA.score(sde)
    x_T = sde.prior_sample((64, 2), seed=1)
    exact = DATA.flow(x_T, sde.T, sde.eps, sde)
    nfes = []
    for tol in (1e-3, 1e-5, 1e-7):
        sol = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "dopri5", rtol=tol, atol=tol)
        err = np.max(np.abs(sol.x - exact))
        assert err < 20 * tol, (tol, err)
        nfes.append(sol.stats["nfe_mean"])
        assert sol.t == sde.eps
    assert nfes[0] < nfes[1] < nfes[2], nfes


def _pathwise_reference(sde, score, x_T, seed):
    # the same Brownian paths (tree noise), solved by SRA1 on 2^11 dyadic steps
    return solve(sde.reverse(score), x_T, sde.T, sde.eps, "sra1", steps=2**11, noise="tree", seed=seed).x


def test_adaptive_sde_meets_tolerance_pathwise():
    # With tree noise the adaptive solver discretises a fixed Brownian path, so its error against a fine
    # SRA1 solution of the same path must shrink with the tolerance (strong order 1: error ~ tol) and its
    # NFE grow; the RMS error stays below 5 x rtol (+ atol) at each tolerance.
    sde = VPSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((100, 2), seed=3)
    ref = _pathwise_reference(sde, score, x_T, 3)
    errs, nfes = [], []
    for rtol in (1e-1, 3e-2, 1e-2):
        sol = solve(
            sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", rtol=rtol, atol=rtol / 10, seed=3, noise="tree"
        )
        errs.append(np.sqrt(np.mean((sol.x - ref) ** 2)))
        nfes.append(sol.stats["nfe_mean"])
        assert errs[-1] < 5 * (rtol + rtol / 10), (rtol, errs)
    assert errs[0] > errs[1] > errs[2], errs
    assert nfes[0] < nfes[1] < nfes[2], nfes


@pytest.mark.parametrize("noise", [None, "tree"], ids=["default_bridge", "tree"])
def test_adaptive_law_with_path_noise(noise):
    # Law check against the exact p_t_end (Monte Carlo, 2000 samples: the standard error of each variance
    # ratio is sqrt(2/2000) = 0.032, of each mean <= 0.03): within 4 standard errors. The default noise of
    # an adaptive SDE solver is the bridge (exact law); the tree too; 'counter' (fresh noise per attempt) is
    # measurably biased here.
    sde = VPSDE()
    score = DATA.score(sde)
    sol = sample(sde, score, n=2000, solver="adaptive", rtol=2e-2, atol=2e-3, denoise=False, seed=2, noise=noise)
    assert ("bridge_merges" in sol.stats) == (noise is None)
    m, c = DATA.mean_cov(sde.eps, sde)
    assert sol.t == sde.eps
    np.testing.assert_allclose(sol.x.mean(0), m, atol=0.12)
    np.testing.assert_allclose(sol.x.var(0) / np.diag(c), 1.0, atol=0.13)


def test_per_sample_steps_are_independent_of_the_batch():
    sde = VPSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((30, 2), seed=7)
    full = solve(sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", rtol=1e-2, atol=1e-3, noise="tree", seed=7)
    part = solve(sde.reverse(score), x_T[5:9], sde.T, sde.eps, "adaptive", rtol=1e-2, atol=1e-3, noise="tree",
                 seed=7, sample_ids=np.arange(5, 9))  # fmt: skip
    np.testing.assert_allclose(part.x, full.x[5:9], rtol=1e-12, atol=1e-12)
    assert full.stats["nfe_max"] > full.stats["nfe_mean"]  # samples took different numbers of steps
    ode = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "dopri5", rtol=1e-6, atol=1e-6)
    ode_part = solve(sde.probability_flow(score), x_T[5:9], sde.T, sde.eps, "dopri5", rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ode_part.x, ode.x[5:9], rtol=1e-12, atol=1e-12)


def test_adaptive_loop_on_torch_matches_numpy():
    # The loop is array-generic. Accept/reject decisions are taken on errors that agree to round-off, so
    # the step sequences coincide and the results agree to round-off amplified by the steps. (Counter noise
    # here: with tree noise a round-off change of a step end moves W by ~sqrt(1e-16), Brownian roughness.)
    torch = pytest.importorskip("torch")
    sde = VPSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((8, 2), seed=1)
    for name, proc, stochastic in (
        ("dopri5", sde.probability_flow(score), False),
        ("adaptive", sde.reverse(score), True),
    ):
        outs = []
        for x0 in (x_T, torch.as_tensor(x_T)):
            job = Job(process=proc, solver=get_solver(name, rtol=1e-3, atol=1e-3), x0=x0,
                      grid=np.array([sde.T, sde.eps]), seed=1, sample_ids=np.arange(8), save_index=None,
                      progress=False, check_finite=True, stochastic=stochastic, noise="counter")  # fmt: skip
            outs.append(adaptive_loop.run(job)[0])
        assert isinstance(outs[1], torch.Tensor)
        np.testing.assert_allclose(outs[1].numpy(), outs[0], rtol=1e-8, atol=1e-8)


def test_pi_controller():
    c = PIController(beta1=0.2, beta2=0.0)
    acc, h = c.propose(np.array([0.1, 0.1, 0.1]), np.array([0.5, 1.0, 4.0]), np.ones(3))
    assert acc.tolist() == [True, True, False]
    np.testing.assert_allclose(h, 0.1 * 0.9 * np.array([0.5, 1.0, 4.0]) ** -0.2)
    acc, h = c.propose(np.array([0.1]), np.array([0.0]), np.ones(1))  # zero error: growth capped at MAX_FACTOR
    assert h[0] == pytest.approx(0.1 * 0.9 * 1e-4**-0.2) or h[0] <= 1.0
    with pytest.raises(ValueError, match="max_factor"):
        PIController(beta1=0.2, max_factor=0.5)


def test_entry_checks():
    sde = VPSDE()
    proc = sde.probability_flow(DATA.score(sde))
    x = np.zeros((2, 2))
    with pytest.raises(ValueError, match="chooses its own steps"):
        solve(proc, x, 1.0, 0.1, "dopri5", steps=10)
    with pytest.raises(ValueError, match="rtol"):
        solve(proc, x, 1.0, 0.1, "heun", steps=10, rtol=1e-3)
    with pytest.raises(ValueError, match="rtol"):
        solve(proc, x, 1.0, 0.1, "dopri5", rtol=-1.0)
    with pytest.raises(ValueError, match="save_at=True"):
        solve(proc, x, 1.0, 0.1, "dopri5", save_at=True)
    for bad in (1.5, 0.05, float("nan")):
        with pytest.raises(ValueError, match="save_at times must lie in"):
            solve(proc, x, 1.0, 0.1, "dopri5", save_at=[0.5, bad])
    with pytest.raises(ValueError, match="rtol"):
        get_solver("adaptive", rtol=0.0)
    with pytest.raises(TypeError, match="adaptive loop"):
        get_solver("dopri5").step(proc, x, 1.0, 0.9, None, {})
    gen = GeneralSDE(lambda x, t: -x, lambda x, t: 1.0 + x, noise="diagonal", diffusion_dx=lambda x, t: 1.0 + 0 * x)
    with pytest.raises(ValueError, match="additive"):
        solve(gen, x, 0.0, 1.0, "adaptive")


@pytest.mark.parametrize("sde", [VPSDE(), EDMSDE()], ids=["vp", "edm"])
def test_dopri5_save_at_lands_on_the_times(sde):
    # every sample steps onto the save times exactly: the saved states are the exact flow there within the
    # tolerance bound of the final state, for times given in any order (and the ends)
    score = DATA.score(sde)
    x_T = sde.prior_sample((64, 2), seed=1)
    times = [sde.eps + 0.5 * (sde.T - sde.eps), sde.T, sde.eps + 0.01 * (sde.T - sde.eps), sde.eps]
    sol = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "dopri5", rtol=1e-7, atol=1e-7, save_at=times)
    np.testing.assert_array_equal(sol.ts, sorted(times, reverse=True))
    assert sol.xs.shape == (4, 64, 2)
    np.testing.assert_array_equal(sol.xs[0], x_T)
    np.testing.assert_array_equal(sol.xs[-1], sol.x)
    for ti, xi in zip(sol.ts, sol.xs):
        assert np.max(np.abs(xi - DATA.flow(x_T, sde.T, ti, sde))) < 20 * 1e-7, ti


def test_adaptive_save_at_is_on_the_path():
    # tree noise: the saved state at t_mid is a discretisation of the same Brownian path as a fine SRA1 solve
    # from T to t_mid; the error is within the pathwise bound of the tolerance
    sde = VPSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((100, 2), seed=3)
    t_mid = 0.3
    sol = solve(
        sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", rtol=1e-2, atol=1e-3, seed=3, save_at=[t_mid], noise="tree"
    )
    # the tree of the adaptive solve spans [T, eps]; a fixed-grid tree solve over [T, t_mid] with the same span
    # reads the same path only if its tree has the same span, so the reference runs to eps and saves t_mid
    grid = np.linspace(sde.T, sde.eps, 2**11 + 1)
    grid = np.sort(np.r_[grid, t_mid])[::-1]
    ref = solve(sde.reverse(score), x_T, sde.T, sde.eps, "sra1", grid=grid, noise="tree", seed=3, save_at=[t_mid])
    assert sol.xs.shape == (1, 100, 2) and sol.ts[0] == t_mid
    err = np.sqrt(np.mean((sol.xs[0] - ref.xs[0]) ** 2))
    assert err < 5 * (1e-2 + 1e-3), err
    # without the stop the same tolerance gives a comparable final state (the stop only shortens one step)
    plain = solve(sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", rtol=1e-2, atol=1e-3, seed=3, noise="tree")
    assert np.sqrt(np.mean((plain.x - sol.x) ** 2)) < 5 * (1e-2 + 1e-3)
