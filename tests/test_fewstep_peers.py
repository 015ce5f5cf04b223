"""The few-step solvers against the peers' own code, on the same noise levels.

* ``unipc`` against diffusers' ``UniPCMultistepScheduler`` and ``deis(variant="logrho")`` against
  ``DEISMultistepScheduler``: the schedulers' ``sigmas`` are replaced by the grid's noise levels ``sigma/alpha`` as a
  float64 tensor (their ``set_timesteps`` casts its own to float32; with float64 sigmas, model outputs and samples
  every operation of their step runs in float64), the model output is the exact noise prediction of a Gaussian
  mixture under score_sde's VP SDE (whose ``alpha^2 + sigma^2 = 1`` is diffusers' VP convention).
* ``sa_solver`` against ``SASolverScheduler`` with the same noise: its normal draws (``randn_tensor``) are replaced by
  sdekit's counter-based normals for that step, so the two paths agree to round-off (the law then agrees too).
* ``ipndm``, ``ipndm_v``, ``deis(variant="tab")`` and the ``time_uniform`` grid against zju-pi/diff-sampler's
  published algorithm (``diff-solvers-main/solvers.py`` and ``solver_utils.py``, transcribed below: the package is
  not installable), in EDM's variables.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdekit import EDMSDE, VPSDE, GaussianMixture, solve
from sdekit.grids import make_grid
from sdekit.noise import normals_numpy
from sdekit.solvers.dpm_solver import exp_adams_weights
from sdekit.solvers.unipc import unipc_rhos

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

MIX = GaussianMixture(weights=[0.6, 0.4], means=[[-1.0, 0.5], [1.5, -0.5]], covs=[0.3, 0.1])
N_STEPS, N = 10, 16


def _vp_setup(grid="log_snr"):
    sde = VPSDE()
    score = MIX.score(sde)
    ts = make_grid(sde, N_STEPS, grid)
    alpha, sigma = sde.marginal(ts)
    return sde, score, ts, sigma, sigma / alpha, sde.prior_sample((N, 2), seed=3)


def _drive(sched, score, ts, sigma, levels, x_T):
    """Run a diffusers multistep scheduler on the given noise levels with the exact noise prediction."""
    sched.set_timesteps(N_STEPS)
    sched.sigmas = torch.tensor(levels, dtype=torch.float64)
    sched.timesteps = torch.arange(N_STEPS, 0, -1)
    x = torch.tensor(x_T)
    for i, tt in enumerate(sched.timesteps):
        eps = -sigma[i] * score(x.numpy(), np.full(N, ts[i]))
        x = sched.step(torch.tensor(eps), tt, x).prev_sample
    return x.numpy()


UNIPC = [
    (order, variant, True, pred) for order in (1, 2, 3) for variant in ("bh1", "bh2") for pred in ("data", "noise")
]
UNIPC += [(3, variant, False, pred) for variant in ("bh1", "bh2") for pred in ("data", "noise")]


@pytest.mark.parametrize("order,variant,lof,pred", UNIPC)
def test_unipc_equals_diffusers(order, variant, lof, pred):
    diffusers = pytest.importorskip("diffusers")
    sde, score, ts, sigma, levels, x_T = _vp_setup()
    sched = diffusers.UniPCMultistepScheduler(
        solver_order=order, solver_type=variant, lower_order_final=lof, predict_x0=pred == "data"
    )
    ref = _drive(sched, score, ts, sigma, levels, x_T)
    spec = f"unipc(order={order}, variant='{variant}', lower_order_final={lof}, prediction='{pred}')"
    out = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, spec, grid=ts).x
    assert np.max(np.abs(out - ref)) < 1e-12


def test_unipc_disable_corrector_equals_diffusers():
    diffusers = pytest.importorskip("diffusers")
    sde, score, ts, sigma, levels, x_T = _vp_setup("karras")
    ref = _drive(diffusers.UniPCMultistepScheduler(solver_order=3, disable_corrector=[2, 5]), score, ts, sigma, levels,
                 x_T)  # fmt: skip
    out = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "unipc(disable_corrector=(2, 5))", grid=ts).x
    assert np.max(np.abs(out - ref)) < 1e-12


@pytest.mark.parametrize("order", [1, 2, 3])
def test_deis_logrho_equals_diffusers(order):
    diffusers = pytest.importorskip("diffusers")
    sde, score, ts, sigma, levels, x_T = _vp_setup()
    ref = _drive(diffusers.DEISMultistepScheduler(solver_order=order), score, ts, sigma, levels, x_T)
    spec = f"deis(order={order}, variant='logrho', lower_order_final=True)"
    out = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, spec, grid=ts).x
    assert np.max(np.abs(out - ref)) < 1e-12


@pytest.mark.parametrize("p,c,tau", [(1, 1, 1.0), (2, 2, 0.0), (2, 2, 1.0), (3, 3, 0.5), (3, 3, 1.0), (2, 3, 1.0),
                                     (3, 4, 1.0), (4, 4, 1.0), (3, 2, 0.5)])  # fmt: skip
def test_sa_solver_equals_diffusers_with_the_same_noise(p, c, tau, monkeypatch):
    pytest.importorskip("diffusers")
    import diffusers.schedulers.scheduling_sasolver as sas

    sde, score, ts, sigma, levels, x_T = _vp_setup()
    step = {"k": 0}

    def same_noise(shape, generator=None, device=None, dtype=None):
        z = normals_numpy(5, np.arange(N), step["k"], 2).reshape(N, 2)
        step["k"] += 1
        return torch.tensor(z, dtype=dtype)

    monkeypatch.setattr(sas, "randn_tensor", same_noise)
    sched = sas.SASolverScheduler(predictor_order=p, corrector_order=c, tau_func=lambda t: tau)
    ref = _drive(sched, score, ts, sigma, levels, x_T)
    spec = f"sa_solver(predictor_order={p}, corrector_order={c}, tau={tau})"
    out = solve(sde.reverse(score), x_T, sde.T, sde.eps, spec, grid=ts, seed=5).x
    assert np.max(np.abs(out - ref)) < 1e-12


def test_sa_solver_tau_interval_is_diffusers_tau_func():
    pytest.importorskip("diffusers")
    import diffusers.schedulers.scheduling_sasolver as sas

    sde, score, ts, sigma, levels, x_T = _vp_setup()
    lo, hi = float(levels[6]), float(levels[2])  # stochastic on steps 2..6 only
    step = {"k": 0}

    def same_noise(shape, generator=None, device=None, dtype=None):
        z = normals_numpy(7, np.arange(N), step["k"], 2).reshape(N, 2)
        step["k"] += 1
        return torch.tensor(z, dtype=dtype)

    orig = sas.randn_tensor
    sas.randn_tensor = same_noise
    try:
        timesteps = {}
        sched = sas.SASolverScheduler(predictor_order=3, corrector_order=3,
                                      tau_func=lambda t: 1.0 if 2 <= timesteps[float(t)] <= 6 else 0.0)  # fmt: skip
        sched.set_timesteps(N_STEPS)
        for i, tt in enumerate(torch.arange(N_STEPS, 0, -1)):
            timesteps[float(tt)] = i
        ref = _drive(sched, score, ts, sigma, levels, x_T)
    finally:
        sas.randn_tensor = orig
    out = solve(sde.reverse(score), x_T, sde.T, sde.eps, f"sa_solver(tau_interval=({lo}, {hi}))", grid=ts, seed=7).x
    assert np.max(np.abs(out - ref)) < 1e-12


def test_unipc_solved_weights_are_the_exact_exponential_weights():
    # wherever UniPC solves its order conditions, B(h) cancels and the step equals the interpolatory exponential
    # Adams weights of dpmpp_pc: predictor with 3 nodes, corrector with 4
    h = 0.7
    lams = [0.0, -0.5, -1.1]  # log-SNR of the history relative to the step's start
    for variant in ("bh1", "bh2"):
        b_h, rho = unipc_rhos([lam / h for lam in lams[1:]], h, variant, "data", False)
        # x_t = ... - alpha (e^{-h}-1) m0 - alpha B rho_i (m_i - m0)/r_i: the weights of m_0, m_1, m_2
        w = np.zeros(3)
        w[0] = -math.expm1(-h)
        for i, lam in enumerate(lams[1:]):
            c = -b_h * rho[i] / (lam / h)
            w[i + 1] += c
            w[0] -= c
        assert np.allclose(w, exp_adams_weights(lams, h), rtol=1e-12, atol=1e-14)
        b_h, rho = unipc_rhos([lam / h for lam in lams[1:]], h, variant, "data", True)
        nodes = lams + [h]
        w = np.zeros(4)
        w[0] = -math.expm1(-h)
        for i, r in enumerate([lam / h for lam in lams[1:]] + [1.0]):
            c = -b_h * rho[i] / r
            w[i + 1] += c
            w[0] -= c
        assert np.allclose(w, exp_adams_weights(nodes, h), rtol=1e-12, atol=1e-14)


# -- zju-pi/diff-sampler, transcribed (diff-solvers-main/solvers.py: ipndm_sampler, ipndm_v_sampler, deis_sampler;
# solver_utils.py: get_schedule("time_uniform"), get_deis_coeff_list("tab")) ------------------------------------
def _ds_ipndm(D, x, t_steps, afs=False, max_order=4, variable=False):
    buffer = []
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        d_cur = x / math.sqrt(1 + t_cur**2) if (afs and i == 0) else (x - D(x, t_cur)) / t_cur
        order = min(max_order, i + 1)
        if order == 1:
            x_next = x + (t_next - t_cur) * d_cur
        elif not variable:
            fixed = {2: (3, -1, 0, 0, 2), 3: (23, -16, 5, 0, 12), 4: (55, -59, 37, -9, 24)}[order]
            acc = fixed[0] * d_cur + sum(fixed[j + 1] * buffer[-1 - j] for j in range(order - 1))
            x_next = x + (t_next - t_cur) * acc / fixed[4]
        else:
            h_n, h_n_1 = t_next - t_cur, t_cur - t_steps[i - 1]
            if order == 2:
                c1, c2 = (2 + h_n / h_n_1) / 2, -(h_n / h_n_1) / 2
                x_next = x + (t_next - t_cur) * (c1 * d_cur + c2 * buffer[-1])
            elif order == 3:
                h_n_2 = t_steps[i - 1] - t_steps[i - 2]
                temp = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
                c1 = (2 + (h_n / h_n_1)) / 2 + temp
                c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp
                c3 = temp * h_n_1 / h_n_2
                x_next = x + (t_next - t_cur) * (c1 * d_cur + c2 * buffer[-1] + c3 * buffer[-2])
            else:
                h_n_2, h_n_3 = t_steps[i - 1] - t_steps[i - 2], t_steps[i - 2] - t_steps[i - 3]
                temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
                temp2 = ((1 - h_n / (3 * (h_n + h_n_1))) / 2 + (1 - h_n / (2 * (h_n + h_n_1))) * h_n / (
                    6 * (h_n + h_n_1 + h_n_2))) * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) / (
                    h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3))  # fmt: skip
                q = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3))
                c1 = (2 + (h_n / h_n_1)) / 2 + temp1 + temp2
                c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1 - (1 + (h_n_1 / h_n_2) + q) * temp2
                c3 = temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + q * (1 + h_n_2 / h_n_3)) * temp2
                c4 = -temp2 * q * h_n_1 / h_n_2
                acc = c1 * d_cur + c2 * buffer[-1] + c3 * buffer[-2] + c4 * buffer[-3]
                x_next = x + (t_next - t_cur) * acc
        buffer = (buffer + [d_cur])[-(max_order - 1) :]
        x = x_next
    return x


def _ds_deis_coeffs(t_steps, max_order, n_quad=10000, eps_s=1e-3):
    t = torch.tensor(t_steps, dtype=torch.float64)
    smin, smax = float(t[-1]), float(t[0])
    beta_d = 2 * (np.log(smin**2 + 1) / eps_s - np.log(smax**2 + 1)) / (eps_s - 1)
    beta_min = np.log(smax**2 + 1) - 0.5 * beta_d
    taus_all = ((beta_min**2 + 2 * beta_d * (t**2 + 1).log()).sqrt() - beta_min) / beta_d
    coeffs = []
    for i in range(len(t) - 1):
        order = min(i + 1, max_order)
        if order == 1:
            coeffs.append([])
            continue
        taus = torch.linspace(float(taus_all[i]), float(taus_all[i + 1]), n_quad, dtype=torch.float64)
        dtau = (taus_all[i + 1] - taus_all[i]) / n_quad
        prev = taus_all[[i - k for k in range(order)]]
        alpha = torch.exp(-0.5 * taus**2 * beta_d - taus * beta_min)
        integrand = 0.5 * (beta_d * taus + beta_min) / torch.sqrt(alpha * (1 - alpha))
        row = []
        for j in range(order):
            poly = torch.ones_like(taus)
            for k in range(order):
                if k != j:
                    poly = poly * (taus - prev[k]) / (prev[j] - prev[k])
            row.append(float(torch.sum(integrand * poly) * dtau))
        coeffs.append(row)
    return coeffs


def _ds_deis(D, x, t_steps, max_order=4):
    coeff = _ds_deis_coeffs(t_steps, max_order)
    buffer = []
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        d_cur = (x - D(x, t_cur)) / t_cur
        if min(max_order, i + 1) == 1:
            x_next = x + (t_next - t_cur) * d_cur
        else:
            x_next = x + sum(c * d for c, d in zip(coeff[i], [d_cur] + buffer[::-1]))
        buffer = (buffer + [d_cur])[-(max_order - 1) :]
        x = x_next
    return x


def _ds_time_uniform(num_steps, sigma_min, sigma_max, rho, eps_s=1e-3):
    vp_sigma = lambda beta_d, beta_min: lambda t: (np.e ** (0.5 * beta_d * (t**2) + beta_min * t) - 1) ** 0.5  # noqa: E731
    idx = np.arange(num_steps)
    beta_d = 2 * (np.log(sigma_min**2 + 1) / eps_s - np.log(sigma_max**2 + 1)) / (eps_s - 1)
    beta_min = np.log(sigma_max**2 + 1) - 0.5 * beta_d
    tau = (1 + idx / (num_steps - 1) * (eps_s ** (1 / rho) - 1)) ** rho
    return vp_sigma(beta_d, beta_min)(tau)


def _edm_setup():
    sde = EDMSDE()
    score = MIX.score(sde)

    def D(x, s):
        return x + s * s * score(x, np.full(x.shape[0], s))

    return sde, score, D, sde.prior_sample((N, 2), seed=4)


@pytest.mark.parametrize("rho", [1.0, 2.0, 3.0])
def test_time_uniform_grid_is_diff_samplers(rho):
    sde = EDMSDE()
    for steps in (5, 10):
        ours = make_grid(sde, steps, "time_uniform", rho=rho)
        assert np.allclose(ours, _ds_time_uniform(steps + 1, sde.eps, sde.T, rho), rtol=1e-12)
    vp = VPSDE()  # score_sde's VP on its own range: rho = 1 is equal steps in t
    assert np.allclose(make_grid(vp, 7, "time_uniform", rho=1.0), make_grid(vp, 7, "uniform"), rtol=1e-10)


@pytest.mark.parametrize("afs", [False, True])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("variable", [False, True])
def test_ipndm_equals_diff_sampler(order, afs, variable):
    sde, score, D, x_T = _edm_setup()
    grid = make_grid(sde, 8, "time_uniform")
    ref = _ds_ipndm(D, x_T, [float(s) for s in grid], afs=afs, max_order=order, variable=variable)
    name = "ipndm_v" if variable else "ipndm"
    out = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, f"{name}(order={order}, afs={afs})", grid=grid).x
    assert np.max(np.abs(out - ref)) < 1e-12


def test_ipndm_equals_diff_sampler_under_vp():
    # EDM's variables of another linear SDE: the same algorithm on the same noise levels, state scaled by alpha
    vp = VPSDE()
    score = MIX.score(vp)
    grid = make_grid(vp, 8, "karras")
    alpha, sigma = vp.marginal(grid)
    levels = sigma / alpha
    x_T = vp.prior_sample((N, 2), seed=4)

    def D(x_hat, s):
        t = float(vp.t_from_log_snr(-math.log(s)))
        a, sg = vp.marginal(t)
        x = a * x_hat
        return (x + sg * sg * score(x, np.full(N, t))) / a

    ref = _ds_ipndm(D, x_T / alpha[0], [float(s) for s in levels]) * alpha[-1]
    out = solve(vp.probability_flow(score), x_T, vp.T, vp.eps, "ipndm", grid=grid).x
    assert np.max(np.abs(out - ref)) < 1e-10


def test_deis_tab_equals_diff_sampler():
    # diff-sampler integrates the tAB coefficients by a 10 000-point left Riemann sum; sdekit by Gauss--Legendre.
    # The coefficients agree to the Riemann sum's O(1/N) error, the samples to the same relative order.
    sde, score, D, x_T = _edm_setup()
    grid = make_grid(sde, 8, "time_uniform")
    ref = _ds_deis(D, x_T, [float(s) for s in grid], max_order=4)
    out = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, "deis(order=4)", grid=grid).x
    assert np.max(np.abs(out - ref)) < 2e-3 * np.max(np.abs(ref))
    # with the Riemann sum's bias removed (trapezoid on 10^6 points) the coefficients agree to 1e-6
    from sdekit.solvers.base import StepContext
    from sdekit.solvers.deis import DEIS, _tau_of_rho, vp_time_map

    levels = [float(s) for s in grid]
    ctx = StepContext(0, grid, {})
    beta_d, beta_min = vp_time_map(levels[0], levels[-1])
    ours = DEIS(order=4).weights(levels[3::-1], levels[4], ctx, sde)
    taus = torch.linspace(float(_tau_of_rho(levels[3], beta_d, beta_min)), float(_tau_of_rho(levels[4], beta_d,
                          beta_min)), 10**6, dtype=torch.float64)  # fmt: skip
    alpha = torch.exp(-0.5 * taus**2 * beta_d - taus * beta_min)
    integrand = 0.5 * (beta_d * taus + beta_min) / torch.sqrt(alpha * (1 - alpha))
    prev = _tau_of_rho(np.array(levels[3::-1]), beta_d, beta_min)
    for j in range(4):
        poly = torch.ones_like(taus)
        for k in range(4):
            if k != j:
                poly = poly * (taus - prev[k]) / (prev[j] - prev[k])
        assert abs(float(torch.trapezoid(integrand * poly, taus)) - ours[j]) < 1e-6 * max(1.0, abs(ours[j]))
