"""Exponential predictor-corrector samplers (``dpmpp_pc``, ``dpmpp_sde_pc``): orders on the exact Gaussian flow,
the deterministic order of the SDE scheme, exact-law convergence, equivalences and option checks."""

from __future__ import annotations

import numpy as np
import pytest

from sdekit import EDMSDE, VESDE, VPSDE, Gaussian, GaussianMixture, sample, solve
from sdekit.bench import exact_law
from sdekit.grids import make_grid
from sdekit.metrics import gaussian_w2
from sdekit.solvers import StepContext, get_solver

DATA = Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 1.5]]))
MIX = GaussianMixture(
    weights=[0.5, 0.3, 0.2],
    means=[[-1.0, -1.0], [1.2, 1.0], [1.3, -1.1]],
    covs=np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.4]], [[0.2, 0.0], [0.0, 0.2]]]),
)


def _slope(steps, errs):
    return -np.polyfit(np.log(steps), np.log(errs), 1)[0]


# (options, step counts): each range is in the asymptotic regime and above round-off for that order
ODE_CASES = [
    ({"order": 1}, [32, 64, 128, 256]),
    ({"order": 2}, [32, 64, 128, 256]),
    ({"order": 3}, [32, 64, 128, 256]),
    ({"order": 4}, [32, 64, 128, 256]),
    ({"order": 1, "corrector": False}, [32, 64, 128, 256]),
    ({"order": 2, "corrector": False}, [32, 64, 128, 256]),
    ({"order": 3, "corrector": False}, [32, 64, 128, 256]),
    ({"order": 4, "corrector": False}, [64, 128, 256, 512]),
]


def _flow_errors(solver, steps):
    sde = EDMSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((32, 2), seed=1)
    exact = DATA.flow(x_T, sde.T, sde.eps, sde)
    errs = []
    for n in steps:
        sol = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, solver, grid=make_grid(sde, n, "karras"))
        errs.append(np.max(np.abs(sol.x - exact)))
    return errs


@pytest.mark.parametrize("options,steps", ODE_CASES)
def test_dpmpp_pc_order_on_exact_flow(options, steps):
    s = get_solver("dpmpp_pc", **options)
    p, c = options["order"], options.get("corrector_order", options["order"] + 1)
    assert s.order == (min(c, p + 1) if options.get("corrector", True) else p)
    errs = _flow_errors(s, steps)
    assert abs(_slope(steps, errs) - s.order) < 0.25, (errs, _slope(steps, errs))


def test_corrector_order_limited_by_the_predictor_on_mixture_flow():
    # order min(c, p + 1): a 5-node corrector after a 2-node predictor is third order. On Gaussian data the
    # leading error term of this pair cancels (slope ~4.5 there), so the flow is a mixture's, against dopri5.
    sde = EDMSDE()
    pf = sde.probability_flow(MIX.score(sde))
    x_T = sde.prior_sample((16, 2), seed=2)
    ref = solve(pf, x_T, sde.T, sde.eps, "dopri5", rtol=1e-12, atol=1e-12).x
    s = get_solver("dpmpp_pc", order=2, corrector_order=5)
    assert s.order == 3
    steps = [32, 64, 128, 256]
    errs = [
        np.sqrt(np.mean((solve(pf, x_T, sde.T, sde.eps, s, grid=make_grid(sde, n, "karras")).x - ref) ** 2))
        for n in steps
    ]
    assert abs(_slope(steps, errs) - 3) < 0.25, (errs, _slope(steps, errs))


class _NoNoise:
    """The reverse SDE with its diffusion switched off: the drift ODE dx = [f - g^2 score] dt."""

    def __init__(self, proc):
        self.proc, self.sde, self.score = proc, proc.sde, proc.score

    def drift(self, x, t):
        return self.proc.drift(x, t)

    def diffusion(self, x, t):
        return 0.0


def _run(solver, proc, x, grid):
    memory = {}
    zero = [np.zeros_like(x)] * solver.n_noise
    for k in range(len(grid) - 1):
        x = solver.step(proc, x, grid[k], grid[k + 1], zero if solver.n_noise else None, StepContext(k, grid, memory))
    return x


@pytest.mark.parametrize("order", [2, 3])
def test_dpmpp_sde_pc_deterministic_order(order):
    # With z = 0 the SDE scheme integrates the reverse drift ODE dx = [f - g^2 score] dt; reference: RK4 on
    # 8192 Karras steps. Mixture data: with Gaussian data the drift ODE contracts onto the mean so fast that
    # every scheme is exact to round-off. The drift ODE contracts strongly, so the errors settle into their
    # asymptotic rate late (local ratios vary by ~1 over 32..128 steps): slope fitted over 64..512 steps.
    sde = EDMSDE()
    proc = _NoNoise(sde.reverse(MIX.score(sde)))
    x_T = sde.prior_sample((16, 2), seed=2)
    ref = _run(get_solver("rk4"), proc, x_T, make_grid(sde, 8192, "karras"))
    s = get_solver("dpmpp_sde_pc", order=order)
    steps = [64, 128, 256, 512]
    errs = [np.sqrt(np.mean((_run(s, proc, x_T, make_grid(sde, n, "karras")) - ref) ** 2)) for n in steps]
    assert abs(_slope(steps, errs) - s.order) < 0.35, (errs, _slope(steps, errs))


SDES = {"vp": (VPSDE(), "uniform"), "ve": (VESDE(), "uniform"), "edm": (EDMSDE(), "karras")}


@pytest.mark.parametrize("sde_key", sorted(SDES))
@pytest.mark.parametrize("options", [{"order": 2}, {"order": 3}])
def test_dpmpp_sde_pc_converges_to_exact_law(sde_key, options):
    # Exact law of the (affine) sampler on Gaussian data, no Monte Carlo; first order in the law (as the
    # other SDE samplers' test): a factor > 2.5 from 200 to 800 steps and W2 < 0.02 at 800.
    sde, grid_name = SDES[sde_key]
    m_ex, c_ex = DATA.mean_cov(sde.eps, sde)
    w = []
    for n in (200, 800):
        m, c = exact_law("dpmpp_sde_pc", sde, DATA, make_grid(sde, n, grid_name), process="sde", **options)
        w.append(gaussian_w2(m, c, m_ex, c_ex))
    assert w[1] < 0.02, w
    assert w[0] / w[1] > 2.5, w


def test_equivalences_with_the_fixed_order_samplers():
    sde = EDMSDE(0.002, 80.0)
    score = MIX.score(sde)
    x_T = sde.prior_sample((64, 2), seed=4)
    a = sample(sde, score, x_T=x_T, solver="dpmpp_3m_pc", steps=12, grid="log_snr").x
    b = sample(sde, score, x_T=x_T, solver="dpmpp_pc", steps=12, grid="log_snr", order=3).x
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    a = sample(sde, score, x_T=x_T, solver="dpmpp_3m_sde", steps=12, grid="karras", seed=5).x
    b = sample(
        sde,
        score,
        x_T=x_T,
        solver="dpmpp_sde_pc",
        steps=12,
        grid="karras",
        seed=5,
        corrector=False,
        lower_order_final=True,
    ).x
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # the corrector changes the result, and the SDE scheme does use its noise
    c = sample(sde, score, x_T=x_T, solver="dpmpp_sde_pc", steps=12, grid="karras", seed=5).x
    d = sample(sde, score, x_T=x_T, solver="dpmpp_sde_pc", steps=12, grid="karras", seed=6).x
    assert np.max(np.abs(c - b)) > 1e-3 and np.max(np.abs(c - d)) > 1e-2


def test_lower_order_final_caps_the_last_steps():
    sde = EDMSDE(0.002, 80.0)
    score = MIX.score(sde)
    x_T = sde.prior_sample((64, 2), seed=4)
    base = sample(sde, score, x_T=x_T, solver="dpmpp_pc", steps=10, grid="log_snr").x
    low = sample(sde, score, x_T=x_T, solver="dpmpp_pc", steps=10, grid="log_snr", lower_order_final=True).x
    assert np.max(np.abs(base - low)) > 1e-4
    # from 15 steps on the rule changes nothing
    base = sample(sde, score, x_T=x_T, solver="dpmpp_pc", steps=15, grid="log_snr").x
    low = sample(sde, score, x_T=x_T, solver="dpmpp_pc", steps=15, grid="log_snr", lower_order_final=True).x
    np.testing.assert_array_equal(base, low)


@pytest.mark.parametrize("name", ["dpmpp_pc", "dpmpp_sde_pc"])
def test_options_are_validated(name):
    # out of range: ValueError; of the wrong kind (2.0, True where an integer is wanted): TypeError (issue 24)
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError if isinstance(bad, int) and not isinstance(bad, bool) else TypeError,
                           match="order"):  # fmt: skip
            get_solver(name, order=bad)
    for bad in (1, 6, 3.0, False):
        with pytest.raises(ValueError if isinstance(bad, int) and not isinstance(bad, bool) else TypeError,
                           match="corrector_order"):  # fmt: skip
            get_solver(name, corrector_order=bad)
    with pytest.raises(TypeError, match="corrector"):
        get_solver(name, corrector="yes")
    with pytest.raises(TypeError, match="lower_order_final"):
        get_solver(name, lower_order_final=1)
    s = get_solver(name)
    assert s.nfe_per_step == 1 and s.order == 4 and "order=3" in repr(s)
    assert (s.is_sde, s.n_noise, s.strong_order) == ((True, 1, 1.0) if name == "dpmpp_sde_pc" else (False, 0, None))
    with pytest.raises(ValueError, match="LinearSDE"):
        from sdekit import GeneralSDE

        s.check_process(GeneralSDE(lambda x, t: -x, lambda x, t: 1.0).reverse(lambda x, t: -x))


# -- the Gaussian linear part (sigma_data) ------------------------------------------------------------------------
SIGMA_DATA = 0.8
ISO = Gaussian(np.zeros(2), SIGMA_DATA**2 * np.eye(2))  # the data the sigma_data schemes integrate exactly
EXACT_SDES = {"vp": (VPSDE(), "uniform"), "ve": (VESDE(), "log_snr"), "edm": (EDMSDE(), "karras")}


@pytest.mark.parametrize("sde_key", sorted(EXACT_SDES))
def test_sigma_data_flow_is_exact_on_its_gaussian(sde_key):
    # F = 0 for N(0, sigma_data^2 I) data: every step is the exact flow, at 4 steps; without sigma_data the same
    # scheme is far from exact there, so the comparison can fail
    sde, grid_name = EXACT_SDES[sde_key]
    pf = sde.probability_flow(ISO.score(sde))
    x_T = sde.prior_sample((16, 2), seed=3)
    exact = ISO.flow(x_T, sde.T, sde.eps, sde)
    grid = make_grid(sde, 4, grid_name)
    for order in (1, 3):
        x = solve(pf, x_T, sde.T, sde.eps, get_solver("dpmpp_pc", order=order, sigma_data=SIGMA_DATA), grid=grid).x
        np.testing.assert_allclose(x, exact, rtol=0, atol=1e-10 * np.max(np.abs(exact)))
    plain = solve(pf, x_T, sde.T, sde.eps, get_solver("dpmpp_pc", order=3), grid=grid).x
    assert np.max(np.abs(plain - exact)) > 1e-3 * np.max(np.abs(exact))


@pytest.mark.parametrize("sde_key", sorted(EXACT_SDES))
def test_sigma_data_sde_law_is_exact_on_its_gaussian(sde_key):
    # the reverse-SDE scheme's drift and noise variance are the exact transition of the linear part: on
    # N(0, sigma_data^2 I) data its output law (exact, no Monte Carlo) is p_t_end at 4 steps
    sde, grid_name = EXACT_SDES[sde_key]
    m_ex, c_ex = ISO.mean_cov(sde.eps, sde)
    grid = make_grid(sde, 4, grid_name)
    for options in ({"order": 2}, {"order": 3, "corrector": False}):
        m, c = exact_law("dpmpp_sde_pc", sde, ISO, grid, process="sde", sigma_data=SIGMA_DATA, **options)
        np.testing.assert_allclose(m, m_ex, rtol=0, atol=1e-10)
        np.testing.assert_allclose(c, c_ex, rtol=1e-9, atol=1e-12)
    m, c = exact_law("dpmpp_sde_pc", sde, ISO, grid, process="sde", order=2)
    assert gaussian_w2(m, c, m_ex, c_ex) > 1e-3


@pytest.mark.parametrize("order", [2, 3])
def test_sigma_data_keeps_the_order(order):
    # on data that is not the scheme's Gaussian (mean != 0, correlated, other scale) the order is the plain one
    s = get_solver("dpmpp_pc", order=order, sigma_data=0.5)
    assert s.order == order + 1
    steps = [32, 64, 128, 256]
    errs = _flow_errors(s, steps)
    assert abs(_slope(steps, errs) - s.order) < 0.25, (errs, _slope(steps, errs))


def test_gaussian_part_weights_are_interpolatory():
    # the weights integrate every polynomial of degree < len(nodes) against the kernel exactly (scipy's adaptive
    # quadrature as the reference), and for sigma_data -> 0 they become the closed-form DPM-Solver++ weights
    from scipy.integrate import quad

    from sdekit.solvers.dpm_solver import exp_adams_weights
    from sdekit.solvers.exp_pc import gaussian_part_weights

    sd, lam_from, h = 0.9, -1.3, 1.7
    nodes = [0.0, -1.1, -2.0, h]
    for kernel in (1.0, 2.0):

        def kern(u, kernel=kernel):
            s2, s2_to = np.exp(-2 * (lam_from + u)), np.exp(-2 * (lam_from + h))
            phi = (s2_to + sd**2) / (s2 + sd**2)
            return kernel * phi ** (kernel / 2) * np.sqrt(s2) * sd / np.sqrt(s2 + sd**2)

        w = gaussian_part_weights(sd, kernel, lam_from, nodes, h)
        for deg in range(len(nodes)):
            exact = quad(lambda u, deg=deg: kern(u) * u**deg, 0.0, h, epsabs=1e-14, epsrel=1e-13)[0]
            assert abs(np.dot(w, np.asarray(nodes) ** deg) - exact) < 1e-12 * max(1.0, abs(exact))
        tiny = 1e-9
        w0 = gaussian_part_weights(tiny, kernel, 3.0, nodes[:3], 0.8) / tiny
        closed = exp_adams_weights([kernel * u for u in nodes[:3]], kernel * 0.8)
        np.testing.assert_allclose(w0, closed, rtol=1e-7)


def test_sigma_data_is_validated():
    for name in ("dpmpp_pc", "dpmpp_sde_pc"):
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="sigma_data"):
                get_solver(name, sigma_data=bad)
        for bad in ("0.5", True):
            with pytest.raises(TypeError, match="sigma_data"):
                get_solver(name, sigma_data=bad)
        assert "sigma_data=0.5" in repr(get_solver(name, sigma_data=0.5))


def test_solver_specs():
    from sdekit.solvers import parse_solver_spec

    assert parse_solver_spec("dpmpp_pc(order=2, sigma_data=1.5)") == ("dpmpp_pc", {"order": 2, "sigma_data": 1.5})
    assert parse_solver_spec(" pc(predictor=ancestral, snr=0.1, step_size='batch') ") == (
        "pc",
        {"predictor": "ancestral", "snr": 0.1, "step_size": "batch"},
    )
    assert parse_solver_spec("euler") == ("euler", {})
    s = get_solver("dpmpp_pc(order=2, sigma_data=1.5)")
    assert (s.multistep_order, s.sigma_data) == (2, 1.5)
    # a spec is the same solver as the keyword form: identical samples
    sde = EDMSDE(0.002, 80.0)
    x_T = sde.prior_sample((8, 2), seed=1)
    a = sample(sde, MIX.score(sde), x_T=x_T, solver="dpmpp_sde_pc(order=2, sigma_data=0.9)", steps=6, seed=2).x
    b = sample(sde, MIX.score(sde), x_T=x_T, solver="dpmpp_sde_pc", order=2, sigma_data=0.9, steps=6, seed=2).x
    np.testing.assert_array_equal(a, b)
    for bad in ("dpmpp_pc(2)", "dpmpp_pc(order=1+1)", "dpmpp_pc(**o)", "dpmpp pc", "dpmpp_pc("):
        with pytest.raises(ValueError, match="solver spec"):
            parse_solver_spec(bad)
    with pytest.raises(ValueError, match="valid solvers"):
        get_solver("nope(order=2)")
    with pytest.raises(ValueError, match="both"):
        get_solver("dpmpp_pc(order=2)", order=3)
    with pytest.raises(ValueError, match="sigma_data"):
        get_solver("dpmpp_pc(sigma_data=-1)")
