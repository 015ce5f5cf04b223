"""``dpm_adaptive`` (DPM-Solver-3 with the embedded DPM-Solver-2, per-sample steps): one attempt equal to
k-diffusion's ``DPMSolver`` steps, global order 3 of the accepted formula on the exact Gaussian flow, tolerance
proportionality, per-sample independence of the batch, torch == numpy, the numba fallback, option errors."""

from __future__ import annotations

import numpy as np
import pytest

from sdekit import EDMSDE, VESDE, VPSDE, Gaussian, GeneralSDE, SubVPSDE, solve
from sdekit.solvers import get_solver
from sdekit.timechange import LogSNRTime

DATA = Gaussian(np.array([1.0, -0.5, 0.3]), np.array([[0.6, 0.2, 0.0], [0.2, 1.5, -0.3], [0.0, -0.3, 0.12]]))
SDES = [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()]
IDS = ["vp", "subvp", "ve", "edm"]


def _span(sde):
    return (80.0, 0.002) if isinstance(sde, EDMSDE) else (sde.T, sde.eps)


def test_one_attempt_equals_k_diffusion_dpm_solver_steps():
    # EDM, noise prediction: the accepted value is kd's dpm_solver_3_step and x_low its dpm_solver_2_step(r1=1/3),
    # both in kd's t = -log sigma (= lambda); the error is the mixed norm of their difference, per sample
    torch = pytest.importorskip("torch")
    from sdekit.interop import load_k_diffusion_sampling

    kd = load_k_diffusion_sampling()
    sde = EDMSDE()
    score = DATA.score(sde)

    def denoiser(x, sigma, **kw):
        xn, sn = x.numpy(), sigma.to(torch.float64).numpy()
        return x + torch.from_numpy(sn[:, None] ** 2 * score(xn, sn))

    dpm = kd.DPMSolver(denoiser)
    rng = np.random.default_rng(3)
    rtol, atol = 0.05, 0.0078
    solver = get_solver("dpm_adaptive")
    proc = LogSNRTime(sde.probability_flow(score))
    for sig_s, sig_t in ((80.0, 40.0), (3.0, 1.1), (0.05, 0.002)):
        x = rng.normal(size=(5, 3)) * np.sqrt(sig_s**2 + 1.0)
        lam_s, lam_t = np.full(5, -np.log(sig_s)), np.full(5, -np.log(sig_t))
        carry, nfe0 = solver.init_carry(proc, x, lam_s)
        x_hi, err, _, nfe = solver.attempt(proc, x, lam_s, lam_t, None, carry, rtol, atol)
        xt = torch.as_tensor(x)
        ts, tt = torch.tensor(-np.log(sig_s)), torch.tensor(-np.log(sig_t))
        k3, _ = dpm.dpm_solver_3_step(xt, ts, tt)
        k2, _ = dpm.dpm_solver_2_step(xt, ts, tt, r1=1 / 3)
        k3, k2 = k3.numpy(), k2.numpy()
        np.testing.assert_allclose(x_hi, k3, rtol=1e-12, atol=1e-12 * sig_s)
        delta = np.maximum(atol, rtol * np.maximum(np.abs(k2), np.abs(x)))
        np.testing.assert_allclose(err, np.sqrt(np.mean(((k2 - k3) / delta) ** 2, axis=1)), rtol=1e-9)
        assert (nfe0, nfe) == (1, 2)


def _fixed_lambda_solve(solver, sde, x, n_steps):
    """The accepted formula on ``n_steps`` equal log-SNR steps (the attempt called directly, every step taken)."""
    t0, t1 = _span(sde)
    proc = LogSNRTime(sde.probability_flow(DATA.score(sde)))
    lams = np.linspace(sde.log_snr(t0), sde.log_snr(t1), n_steps + 1)
    n = x.shape[0]
    carry, _ = solver.init_carry(proc, x, np.full(n, lams[0]))
    for a, b in zip(lams[:-1], lams[1:]):
        x, _, prop, _ = solver.attempt(proc, x, np.full(n, a), np.full(n, b), None, carry, 1.0, 1.0)
        carry, _ = solver.accept(proc, x, np.full(n, b), carry, prop)
    return x


@pytest.mark.parametrize("prediction", ["noise", "data"])
@pytest.mark.parametrize("sde", [VPSDE(), EDMSDE()], ids=["vp", "edm"])
def test_global_order_three_on_exact_gaussian_flow(sde, prediction):
    solver = get_solver("dpm_adaptive", prediction=prediction)
    t0, t1 = _span(sde)
    x_T = sde.prior_sample((16, 3), seed=2)
    x_ref = DATA.flow(x_T, t0, t1, sde)
    steps = [48, 96, 192]  # data prediction is pre-asymptotic below ~40 steps (slopes 1.8, 2.6 from 12 steps)
    errs = [np.sqrt(np.mean((_fixed_lambda_solve(solver, sde, x_T, k) - x_ref) ** 2)) for k in steps]
    slopes = -np.diff(np.log(errs)) / np.log(2.0)
    assert np.all(slopes > 2.6) and np.all(slopes < 3.6), (errs, slopes)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_meets_tolerance_on_exact_flow(sde):
    # the error falls with the tolerance, about in proportion, and stays a small multiple of it; VP, sub-VP, VE, EDM
    t0, t1 = _span(sde)
    score = DATA.score(sde)
    x_T = sde.prior_sample((64, 3), seed=1)
    x_ref = DATA.flow(x_T, t0, t1, sde)
    errs, nfes = [], []
    for rtol in (1e-3, 1e-4, 1e-5):
        sol = solve(sde.probability_flow(score), x_T, t0, t1, "dpm_adaptive", rtol=rtol, atol=rtol, backend="numpy")
        errs.append(np.sqrt(np.mean((sol.x - x_ref) ** 2)))
        nfes.append(sol.stats["nfe_mean"])
        assert errs[-1] < 30 * rtol
    assert errs[0] > errs[1] > errs[2] and nfes[0] < nfes[1] < nfes[2]
    slope = np.log(errs[0] / errs[2]) / np.log(100.0)
    assert 0.6 < slope < 1.6, (errs, slope)


@pytest.mark.parametrize("time", ["log_snr", "t"])
def test_per_sample_results_do_not_depend_on_the_batch(time):
    sde = EDMSDE()
    proc = sde.probability_flow(DATA.score(sde))
    x_T = sde.prior_sample((40, 3), seed=4)
    kw = dict(rtol=1e-3, atol=1e-4, time=time, backend="numpy")
    full = solve(proc, x_T, 80.0, 0.002, "dpm_adaptive", **kw).x
    part = solve(proc, x_T[7:19], 80.0, 0.002, "dpm_adaptive", sample_ids=np.arange(7, 19), **kw).x
    np.testing.assert_allclose(part, full[7:19], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("prediction", ["noise", "data"])
def test_torch_device_loop_matches_numpy(prediction):
    torch = pytest.importorskip("torch")
    sde = VPSDE()
    proc = sde.probability_flow(DATA.score(sde))
    x_T = sde.prior_sample((24, 3), seed=5)
    kw = dict(rtol=1e-3, atol=1e-4, prediction=prediction)
    ref = solve(proc, x_T, 1.0, 1e-3, "dpm_adaptive", backend="numpy", **kw)
    out = solve(proc, torch.as_tensor(x_T), 1.0, 1e-3, "dpm_adaptive", backend="torch", **kw)
    assert isinstance(out.x, torch.Tensor)
    np.testing.assert_allclose(out.x.numpy(), ref.x, rtol=1e-10, atol=1e-12)
    assert out.stats["nfe_mean"] == pytest.approx(ref.stats["nfe_mean"])


def test_numba_backend_runs_the_numpy_loop():
    pytest.importorskip("numba")
    sde = EDMSDE()
    proc = sde.probability_flow(DATA.score(sde))
    x_T = sde.prior_sample((16, 3), seed=6)
    ref = solve(proc, x_T, 80.0, 0.002, "dpm_adaptive", backend="numpy", rtol=1e-3, atol=1e-4)
    for backend in ("numba", "auto"):
        out = solve(proc, x_T, 80.0, 0.002, "dpm_adaptive", backend=backend, rtol=1e-3, atol=1e-4)
        np.testing.assert_array_equal(out.x, ref.x)
        assert out.nfe == ref.nfe


def test_save_at_and_nfe_accounting():
    sde = EDMSDE()
    proc = sde.probability_flow(DATA.score(sde))
    x_T = sde.prior_sample((8, 3), seed=7)
    sol = solve(proc, x_T, 80.0, 0.002, "dpm_adaptive", save_at=[80.0, 1.0, 0.002], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sol.ts, [80.0, 1.0, 0.002])
    np.testing.assert_allclose(sol.xs[1], DATA.flow(x_T, 80.0, 1.0, sde), atol=2e-3)
    st = sol.stats
    # 1 (start) + 3 per accepted attempt + 2 per rejected one
    assert st["nfe_mean"] == pytest.approx(1 + 3 * st["accepted"] + 2 * st["rejected"])


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="prediction"):
        get_solver("dpm_adaptive", prediction="x0")
    with pytest.raises(ValueError, match="safety"):
        get_solver("dpm_adaptive", safety=1.5)
    with pytest.raises(ValueError, match="rtol"):
        get_solver("dpm_adaptive", rtol=-1.0)
    with pytest.raises(ValueError, match="time"):
        get_solver("dpm_adaptive", time="sigma")
    sde = EDMSDE()
    with pytest.raises(ValueError, match="ODEs only"):
        solve(sde.reverse(DATA.score(sde)), np.zeros((2, 3)), 80.0, 0.002, "dpm_adaptive")
    general = GeneralSDE(lambda x, t: -x, lambda x, t: np.ones_like(x), noise="additive")
    with pytest.raises(ValueError, match="LinearSDE"):
        solve(general.probability_flow(DATA.score(sde)), np.zeros((2, 3)), 1.0, 0.01, "dpm_adaptive")
