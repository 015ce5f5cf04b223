"""The few-step solvers: declared orders by fitted slopes on nested grids, NFE accounting, torch and the
numba fallback. ODE errors are against the exact probability-flow map of Gaussian data; weak errors are exact W2
distances of the exact output laws (``bench.exact_law``)."""

from __future__ import annotations

import numpy as np
import pytest

from sdekit import EDMSDE, VPSDE, Gaussian, GaussianMixture, sample, solve
from sdekit.bench import exact_law
from sdekit.grids import make_grid
from sdekit.metrics import gaussian_w2
from sdekit.solvers import SOLVERS, AnalyticFirstStep, get_solver

DATA = Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 1.5]]))
MIX = GaussianMixture(weights=[0.6, 0.4], means=[[-1.0, 0.5], [1.5, -0.5]], covs=[0.3, 0.1])
NEW = ("ipndm", "ipndm_v", "deis", "unipc", "restart", "sa_solver")


def _slope(steps, errs):
    return -np.polyfit(np.log(steps), np.log(errs), 1)[0]


def _ode_errors(spec, steps, grid="karras"):
    sde = EDMSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((32, 2), seed=1)
    exact = DATA.flow(x_T, sde.T, sde.eps, sde)
    pf = sde.probability_flow(score)
    return [np.max(np.abs(solve(pf, x_T, sde.T, sde.eps, spec, grid=make_grid(sde, n, grid)).x - exact)) for n in steps]


# (spec, step counts, how the fitted slope is checked against the declared order: "equal" within 0.25, or "at least"
# declared - 0.2 where the Gaussian's probability flow lets the method converge faster than in general)
ODE_CASES = [
    ("ipndm", [32, 64, 128, 256], "equal"),  # fixed AB4 coefficients on a graded grid: order 2
    ("ipndm(order=2)", [32, 64, 128, 256], "equal"),
    ("ipndm(order=3)", [32, 64, 128, 256], "equal"),
    ("ipndm_v(order=3)", [128, 256, 512], "equal"),
    ("ipndm_v", [128, 256, 512], "equal"),  # the default: order 3
    ("ipndm_v(order=4)", [512, 1024, 2048], "equal"),  # the published order-4 coefficients: 2, after a plateau
    ("deis", [32, 64, 128, 256], "equal"),
    ("deis(order=4)", [32, 64, 128, 256], "equal"),
    ("deis(variant='logrho')", [64, 128, 256], "equal"),
    ("deis(variant='rhoab', order=4)", [64, 128, 256], "equal"),
    ("unipc(lower_order_final=False)", [32, 64, 128, 256], "equal"),
    ("unipc", [32, 64, 128, 256], "equal"),
    ("unipc(variant='bh1', lower_order_final=False)", [32, 64, 128, 256], "equal"),
    ("unipc(order=2, lower_order_final=False)", [32, 64, 128, 256], "equal"),
    ("unipc(corrector=False, lower_order_final=False)", [64, 128, 256], "equal"),
    ("unipc(prediction='noise', lower_order_final=False)", [32, 64, 128], "at least"),
    ("sa_solver(predictor_order=3, corrector_order=4, lower_order_final=False)", [32, 64, 128, 256], "equal"),
    ("sa_solver(predictor_order=2, corrector_order=2, lower_order_final=False)", [64, 128, 256], "at least"),
    ("sa_solver(lower_order_final=False)", [32, 64, 128, 256], "at least"),
]


@pytest.mark.parametrize("spec,steps,check", ODE_CASES)
def test_ode_order_on_exact_flow(spec, steps, check):
    order = get_solver(spec).order
    slope = _slope(steps, _ode_errors(spec, steps))
    if check == "equal":
        assert abs(slope - order) < 0.25, (spec, slope, order)
    else:
        assert slope > order - 0.2, (spec, slope, order)


def test_ipndm_is_fourth_order_on_equal_steps_in_sigma():
    # the fixed coefficients are AB4's: on a grid uniform in sigma (EDM: in t) the order is 4
    sde = EDMSDE()
    score = DATA.score(sde)
    x0 = DATA.sample(16, seed=3, t=10.0, sde=sde)
    exact = DATA.flow(x0, 10.0, 1.0, sde)
    steps = [32, 64, 128, 256]
    errs = [
        np.max(np.abs(solve(sde.probability_flow(score), x0, 10.0, 1.0, "ipndm", steps=n).x - exact)) for n in steps
    ]
    assert np.log2(errs[-2] / errs[-1]) > 3.5, errs


@pytest.mark.parametrize("spec,steps,order", [("restart", [16, 32, 64, 128], 2.0), ("restart(K=2)", [16, 32, 64], 2.0)])
def test_restart_weak_order_exact_law(spec, steps, order):
    sde = EDMSDE()
    m_ex, c_ex = DATA.mean_cov(sde.eps, sde)
    errs = [gaussian_w2(*exact_law(spec, sde, DATA, make_grid(sde, n, "karras")), m_ex, c_ex) for n in steps]
    assert abs(_slope(steps, errs) - order) < 0.25, errs
    assert get_solver(spec).weak_order == order


def test_sa_solver_weak_order_exact_law():
    # declared weak order 1 (the general statement); on Gaussian data the exact law converges at rate 2
    sde = VPSDE()
    m_ex, c_ex = DATA.mean_cov(sde.eps, sde)
    steps = [16, 32, 64, 128]
    grids = [make_grid(sde, n, "log_snr") for n in steps]  # the reverse SDE (tau = 1); "auto" runs the ODE
    errs = [gaussian_w2(*exact_law("sa_solver", sde, DATA, g, process="sde"), m_ex, c_ex) for g in grids]
    assert _slope(steps, errs) > get_solver("sa_solver").weak_order - 0.2, errs
    assert errs[-1] < 1e-3


def test_restart_with_a_fixed_sub_grid_keeps_an_error():
    # a fixed number of backward steps does not refine with the grid: the law stops converging
    sde = EDMSDE()
    m_ex, c_ex = DATA.mean_cov(sde.eps, sde)
    errs = [gaussian_w2(*exact_law("restart(restart_steps=2)", sde, DATA, make_grid(sde, n, "karras")), m_ex, c_ex)
            for n in (32, 128)]  # fmt: skip
    assert errs[1] > 0.5 * errs[0], errs


class _Count:
    def __init__(self, score):
        self.score, self.calls = score, 0
        self.event_shape = score.event_shape

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


@pytest.mark.parametrize(
    "spec",
    ["ipndm", "ipndm(afs=True)", "ipndm_v(afs=True)", "deis(afs=True)", "unipc", "sa_solver", "restart",
     "restart(K=2)", "restart(restart_steps=3, K=3)", "restart(restart_interval=(5.0, 10.0))"],
)  # fmt: skip
def test_nfe_is_the_number_of_score_calls(spec):
    sde = EDMSDE()
    score = _Count(MIX.score(sde))
    sol = sample(sde, score, n=4, solver=spec, steps=9, grid="karras", denoise=True)
    assert sol.nfe == score.calls
    if spec.startswith(("ipndm(afs", "ipndm_v(afs", "deis(afs")):
        assert sol.nfe == 9  # 9 steps, the first free, plus the denoising step


def test_analytic_first_step_wrapper_equals_the_built_in_option():
    sde = VPSDE()
    score = MIX.score(sde)
    pf = sde.probability_flow(score)
    x = sde.prior_sample((8, 2), seed=1)
    grid = make_grid(sde, 7, "time_uniform")
    for name in ("ipndm", "deis"):
        a = solve(pf, x, sde.T, sde.eps, f"{name}(afs=True)", grid=grid)
        b = solve(pf, x, sde.T, sde.eps, AnalyticFirstStep(name), grid=grid)
        assert np.max(np.abs(a.x - b.x)) < 1e-12 and a.nfe == b.nfe == 6
    wrapped = AnalyticFirstStep("unipc", order=2)
    assert solve(pf, x, sde.T, sde.eps, wrapped, grid=grid).nfe == 6 and wrapped.order == 3
    with pytest.raises(ValueError, match="1 NFE per step"):
        AnalyticFirstStep("heun")


@pytest.mark.parametrize("name", NEW)
def test_registered_with_declared_attributes(name):
    s = SOLVERS[name]()
    assert s.name == name and s.order >= 1 and (s.is_ode or s.is_sde)
    if s.is_sde:
        assert s.n_noise >= 1 and s.weak_order is not None


@pytest.mark.parametrize(
    "spec,process",
    [("ipndm(afs=True)", "ode"), ("ipndm_v", "ode"), ("deis", "ode"), ("unipc", "ode"), ("sa_solver", "sde"),
     ("sa_solver", "ode"), ("restart", "sde"), (AnalyticFirstStep("dpmpp_pc", order=3), "ode")],
)  # fmt: skip
def test_torch_and_numba_fallback_equal_numpy(spec, process):
    torch = pytest.importorskip("torch")
    sde = VPSDE()
    score = MIX.score(sde)
    x = sde.prior_sample((16, 2), seed=2)
    kw = dict(x_T=x, solver=spec, steps=8, grid="time_uniform", process=process, seed=3)
    ref = sample(sde, score, backend="numpy", **kw)
    out_t = sample(sde, score, **{**kw, "x_T": torch.from_numpy(x)}, backend="torch")
    assert np.max(np.abs(out_t.x.numpy() - ref.x)) < 1e-10 and out_t.nfe == ref.nfe
    pytest.importorskip("numba")
    out_n = sample(sde, score, backend="numba", **kw)
    assert np.max(np.abs(out_n.x - ref.x)) < 1e-10


@pytest.mark.parametrize(
    "spec,match",
    [("ipndm(order=5)", "order"), ("deis(variant='cubic')", "variant"), ("unipc(variant='bh3')", "variant"),
     ("unipc(prediction='score')", "prediction"), ("unipc(disable_corrector=3)", "disable_corrector"),
     ("sa_solver(tau=-1.0)", "tau"), ("sa_solver(tau_interval=(2.0, 1.0))", "tau_interval"),
     ("restart(restart_interval=(2.0, 1.0))", "restart_interval"), ("restart(K=-1)", "K"),
     ("ipndm(afs=1)", "afs")],
)  # fmt: skip
def test_bad_options_name_the_option(spec, match):
    # out of range: ValueError; of the wrong kind (afs=1, a number where a flag is wanted): TypeError (issue 24)
    with pytest.raises(TypeError if spec == "ipndm(afs=1)" else ValueError, match=match):
        get_solver(spec)


def test_need_a_linear_sde_with_a_score():
    from sdekit import GeneralSDE

    sde = GeneralSDE(lambda x, t: -x, lambda x, t: 1.0 + 0.0 * x, noise="additive")
    for name in ("ipndm", "deis", "unipc"):
        with pytest.raises(ValueError, match=name):
            solve(sde.probability_flow(lambda x, t: -x), np.zeros((2, 1)), 1.0, 0.1, name, steps=4)
    for name in ("restart", "sa_solver"):
        with pytest.raises(ValueError, match=name):
            solve(sde.reverse(lambda x, t: -x), np.zeros((2, 1)), 1.0, 0.1, name, steps=4)
