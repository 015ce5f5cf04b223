"""Laws of the score-based samplers on Gaussian data, computed exactly (sdekit.bench.exact_law), against p_t_end."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit import EDMSDE, VESDE, VPSDE, Gaussian, sample
from sdekit.bench import exact_law
from sdekit.grids import make_grid
from sdekit.metrics import gaussian_w2
from sdekit.solvers import Langevin, StepContext, get_solver

DATA = Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 1.5]]))
SDES = {"vp": (VPSDE(), "uniform"), "ve": (VESDE(), "uniform"), "edm": (EDMSDE(), "karras")}


def _w2(sde_key, solver, steps, **options):
    """W2 between the exact law of the sampler's output (started from the exact p_T) and p_t_end."""
    sde, grid_name = SDES[sde_key]
    solver = get_solver(solver, **options)
    grid = make_grid(sde, steps, grid_name)
    m, c = exact_law(solver, sde, DATA, grid)
    m_ex, c_ex = DATA.mean_cov(sde.eps, sde)
    return gaussian_w2(m, c, m_ex, c_ex)


# First-order samplers: the W2 error is O(1/N), so quadrupling the steps must cut it by about 4 (we ask for
# a factor > 2.5, below 4 to allow the pre-asymptotic regime) and the error at 800 steps must be small
# against the data scale (std ~ 1): the bound 0.02 is ~ C/800 with the C measured at 200 steps.
FIRST_ORDER = [
    ("reverse_diffusion", {}),
    ("ancestral", {}),
    ("ancestral", {"variance": "forward"}),
    ("euler_maruyama", {}),
    ("dpmpp_2m_sde", {}),
    ("dpmpp_3m_sde", {}),
    ("edm", {"S_churn": 10.0, "S_tmin": 0.0, "S_tmax": float("inf")}),
]


@pytest.mark.parametrize("sde_key", sorted(SDES))
@pytest.mark.parametrize("solver,options", FIRST_ORDER)
def test_first_order_samplers_converge_to_exact_law(sde_key, solver, options):
    w_coarse = _w2(sde_key, solver, 200, **options)
    w_fine = _w2(sde_key, solver, 800, **options)
    assert w_fine < 0.02, (w_coarse, w_fine)
    assert w_coarse / w_fine > 2.5, (w_coarse, w_fine)


@pytest.mark.parametrize("sde_key", sorted(SDES))
def test_pc_law_converges_up_to_the_corrector_bias(sde_key):
    # The Langevin corrector keeps a step ~ 2 snr^2 sigma^2 whatever the grid: an unadjusted-Langevin bias
    # of relative size ~ snr^2 / 2 in the variance. With snr = 0.02 that is 2e-4, far below the O(1/N)
    # predictor error, so the law must converge like the predictor's; with snr = 0.16 (score_sde) the
    # error must stay within the predictor error plus a bias of order snr^2 (0.0256) times the data scale.
    w_200 = _w2(sde_key, "pc", 200, snr=0.02)
    w_800 = _w2(sde_key, "pc", 800, snr=0.02)
    assert w_800 < 0.02 and w_200 / w_800 > 2.5, (w_200, w_800)
    w_default = _w2(sde_key, "pc", 800)
    assert w_default < 0.02 + 0.0256 * 2.0, w_default


@pytest.mark.parametrize("sde_key", ["ve", "vp"])
def test_annealed_langevin_converges_as_levels_refine(sde_key):
    # At each level, Langevin with step a on a Gaussian of variance v relaxes towards v / (1 - a / (4 v));
    # with eps = 0.4 sigma_L^2 that bias is below 0.1 sigma_L^2 / v ~ 1e-4, so the error left is the
    # annealing's: the chain lags behind p_t as the levels move, O(1/L) for L levels (measured: VE 0.035 at
    # L = 40, 0.008 at L = 160). Four times the levels must cut W2 by more than 2 and end below 0.03.
    sde = SDES[sde_key][0]
    s_l2 = float(sde.marginal(sde.eps)[1]) ** 2
    coarse = _w2(sde_key, "annealed_langevin", 40, eps=0.4 * s_l2, n_steps=25)
    fine = _w2(sde_key, "annealed_langevin", 160, eps=0.4 * s_l2, n_steps=25)
    assert fine < coarse / 2.2, (coarse, fine)
    assert fine < 0.03, fine


def test_edm_without_churn_is_second_order():
    # S_churn = 0: EDM's deterministic Heun sampler (Alg. 1); the exact law converges at rate 2.
    w = [_w2("edm", "edm", n, S_churn=0.0) for n in (32, 64, 128)]
    slope = -np.polyfit(np.log([32, 64, 128]), np.log(w), 1)[0]
    assert abs(slope - 2.0) < 0.25, (w, slope)


def test_ancestral_ve_is_smld_update():
    # For VE the ancestral mean is x + (sigma_t^2 - sigma_s^2) score and the variance SMLD's posterior one.
    sde = VESDE()
    score = DATA.score(sde)
    proc = sde.reverse(score)
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    z = [np.array([[0.1, -0.4], [1.3, 0.2]])]
    t, s = 0.6, 0.55
    st, ss = float(sde.marginal(t)[1]), float(sde.marginal(s)[1])
    want = x + (st**2 - ss**2) * score(x, np.full(2, t)) + np.sqrt(ss**2 * (st**2 - ss**2) / st**2) * z[0]
    got = get_solver("ancestral").step(proc, x, t, s, z, StepContext(0, np.array([1.0, s])))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_langevin_step_size_rules_and_batch_independence():
    sde = VPSDE()
    score = DATA.score(sde)
    full = sample(sde, score, n=40, solver="pc", steps=30, seed=5, step_size="per_sample")
    part = sample(sde, score, x_T=sde.prior_sample((40, 2), seed=5)[:7], solver="pc", steps=30, seed=5,
                  step_size="per_sample")  # fmt: skip
    np.testing.assert_allclose(part.x, full.x[:7], rtol=1e-12, atol=1e-12)
    full_b = sample(sde, score, n=40, solver="pc", steps=30, seed=5, step_size="batch")
    part_b = sample(sde, score, x_T=sde.prior_sample((40, 2), seed=5)[:7], solver="pc", steps=30, seed=5,
                    step_size="batch")  # fmt: skip
    assert not np.allclose(part_b.x, full_b.x[:7])  # score_sde's rule averages over the batch
    assert full.nfe == 30 * 2 + 1
    with pytest.raises(ValueError, match="step_size"):
        Langevin(step_size="global")
    with pytest.raises(ValueError, match="snr"):
        Langevin(snr=-1.0)


def test_pc_options_and_predictors():
    sde = VESDE()
    score = DATA.score(sde)
    sol = sample(sde, score, n=16, solver="pc", steps=10, predictor="ancestral", n_steps=2)
    assert sol.nfe == 10 * 3 + 1 and np.all(np.isfinite(sol.x))
    with pytest.raises(ValueError, match="predictor"):
        get_solver("pc", predictor="euler")
    with pytest.raises(ValueError, match="valid solvers"):
        get_solver("pc", predictor="nope")


def test_solver_options_are_validated():
    with pytest.raises(ValueError, match="S_churn"):
        get_solver("edm", S_churn=-1.0)
    with pytest.raises(ValueError, match="eps"):
        get_solver("annealed_langevin", eps=0.0)
    with pytest.raises(ValueError, match="variance"):
        get_solver("ancestral", variance="beta")
    with pytest.raises(TypeError, match="lower_order_final"):
        get_solver("dpmpp_2m", lower_order_final="yes")
    gen = sdekit.GeneralSDE(lambda x, t: -x, lambda x, t: 1.0 + 0.0 * x, noise="additive")
    with pytest.raises(ValueError, match="LinearSDE"):
        sdekit.solve(gen.reverse(lambda x, t: -x), np.zeros((2, 2)), 1.0, 0.1, "ancestral", steps=4)


def test_declared_properties():
    sde_solvers = ["reverse_diffusion", "ancestral", "pc", "annealed_langevin", "edm", "sra1", "dpmpp_2m_sde"]
    for name in sde_solvers + ["dpmpp_3m_sde", "adaptive"]:
        s = get_solver(name)
        assert s.is_sde and s.n_noise >= 1 and s.nfe_per_step >= 1
    for name in ["dpmpp_2m", "dpmpp_3m", "dpmpp_3m_pc", "dopri5"]:
        s = get_solver(name)
        assert s.is_ode and not s.is_sde
    assert get_solver("sra1").strong_order == 1.5 and get_solver("sra1").n_noise == 2
    assert get_solver("dpmpp_3m").order == 3 and get_solver("dopri5").order == 5
    assert get_solver("dpmpp_3m_pc").order == 4
    assert get_solver("pc", n_steps=3).nfe_per_step == 4


@pytest.mark.parametrize(
    "solver,options,process",
    [
        ("reverse_diffusion", {}, "sde"),
        ("ancestral", {}, "sde"),
        ("pc", {"step_size": "per_sample"}, "sde"),
        ("annealed_langevin", {"eps": 1e-4, "n_steps": 2}, "sde"),
        ("edm", {}, "sde"),
        ("sra1", {}, "sde"),
        ("dpmpp_2m_sde", {}, "sde"),
        ("dpmpp_3m_sde", {}, "sde"),
        ("dpmpp_2m", {}, "ode"),
        ("dpmpp_3m", {}, "ode"),
        ("dpmpp_3m_pc", {}, "ode"),
        ("dpmpp_pc", {"order": 3, "sigma_data": 0.7}, "ode"),
        ("dpmpp_sde_pc", {"order": 2, "sigma_data": 0.7}, "sde"),
    ],
)
def test_steps_run_on_torch_tensors(solver, options, process):
    # The step protocol is array-generic: the same step on float64 CPU tensors matches numpy to round-off.
    torch = pytest.importorskip("torch")
    sde = VPSDE()
    score = DATA.score(sde)
    proc = sde.reverse(score) if process == "sde" else sde.probability_flow(score)
    s_np, s_t = get_solver(solver, **options), get_solver(solver, **options)
    grid = make_grid(sde, 6, "uniform")
    x = sde.prior_sample((5, 2), seed=2)
    xt = torch.as_tensor(x)
    mem_np, mem_t = {}, {}
    rng = np.random.default_rng(0)
    for k in range(len(grid) - 1):
        z = [rng.standard_normal(x.shape) for _ in range(s_np.n_noise)] if process == "sde" else None
        x = s_np.step(proc, x, grid[k], grid[k + 1], z, StepContext(k, grid, mem_np))
        zt = None if z is None else [torch.as_tensor(v) for v in z]
        xt = s_t.step(proc, xt, grid[k], grid[k + 1], zt, StepContext(k, grid, mem_t))
    assert isinstance(xt, torch.Tensor)
    np.testing.assert_allclose(xt.numpy(), x, rtol=1e-10, atol=1e-10)
