"""Single-step DPM-Solver(++): ``sdekit``'s ``dpmpp_single`` against diffusers' ``DPMSolverSinglestepScheduler``
(its order list, its full loops through ``SdekitScheduler.from_config``, image-to-image starts) and the solver's
fused kernel against its own step. The real diffusers scheduler, the deterministic model of diffusers' scheduler
tests, float32 latents unless said otherwise."""

from __future__ import annotations

import logging

import diffusers as D
import numpy as np
import pytest
import torch

import sdekit
from _diffusers_loop import loop, model, rel, start, swapped
from sdekit.bench import exact_law
from sdekit.grids import make_grid
from sdekit.interop.diffusers import SdekitScheduler
from sdekit.metrics import gaussian_w2
from sdekit.solvers import get_solver
from sdekit.solvers.dpm_single import singlestep_orders


@pytest.fixture(autouse=True)
def quiet_diffusers():
    # diffusers' set_timesteps logs a warning each time it rewrites lower_order_final
    logger = logging.getLogger("diffusers.schedulers.scheduling_dpmsolver_singlestep")
    old = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(old)


def make(**kw):
    return D.DPMSolverSinglestepScheduler(**kw)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("lof", [False, True])
def test_order_list_is_diffusers(order, lof):
    # diffusers' order list after its set_timesteps (which turns lower_order_final on when the steps do not fill whole
    # groups, and always with final_sigmas_type="zero"; there the last step, sdekit's final denoising step, is order 1)
    for n in range(1, 41):
        ref = make(solver_order=order, lower_order_final=lof, final_sigmas_type="sigma_min")
        ref.set_timesteps(n)
        assert singlestep_orders(n, order, lof) == ref.order_list, n
        ref = make(solver_order=order, lower_order_final=lof)
        ref.set_timesteps(n)
        assert singlestep_orders(n, order, True)[:-1] == ref.order_list[:-1] and ref.order_list[-1] == 1, n


FULL_LOOPS = {
    f"{alg}-{order}-{variant}-{final}": dict(algorithm_type=alg, solver_order=order, solver_type=variant,
                                             final_sigmas_type=final)
    for alg, final in [("dpmsolver++", "zero"), ("dpmsolver++", "sigma_min")]
    for order in (1, 2, 3)
    for variant in ("midpoint", "heun")
}  # fmt: skip
FULL_LOOPS.update({
    "lower-order-final-3": dict(solver_order=3, lower_order_final=True, final_sigmas_type="sigma_min"),
    "v-prediction-3": dict(solver_order=3, prediction_type="v_prediction"),
    "sample-2": dict(solver_order=2, prediction_type="sample"),
    "karras-3": dict(solver_order=3, use_karras_sigmas=True),
    "sd-karras-3-sigma-min": dict(solver_order=3, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                  use_karras_sigmas=True, final_sigmas_type="sigma_min"),
    "thresholding-3": dict(solver_order=3, thresholding=True, sample_max_value=0.5),
    "thresholding-2-heun": dict(solver_order=2, solver_type="heun", thresholding=True, sample_max_value=0.5),
})  # fmt: skip


@pytest.mark.parametrize("n", [10, 25, 7, 11])
@pytest.mark.parametrize("case", list(FULL_LOOPS))
def test_from_config_is_diffusers_single_step_dpm_solver_pp(case, n):
    config = FULL_LOOPS[case]
    sch = swapped(make(**config))  # no "differs" warning
    assert sch.config.solver == "dpmpp_single" and sch.solver.order == config["solver_order"]
    assert sch.solver.variant == config.get("solver_type", "midpoint") and sch.solver.prediction == "data"
    # measured: 3e-7 to 1.2e-6 (float32 round-off)
    assert rel(loop(sch, n), loop(make(**config), n)) < 3e-6


def _diffusers_loop_float64(source, n):
    """diffusers' loop with its noise levels and the latents in float64 (its update then runs in float64)."""
    source.set_timesteps(n)
    source.sigmas = source.sigmas.double()
    x = start(torch.float64)
    for t in source.timesteps:
        x = source.step(model(x, t), t, x).prev_sample
    return x


@pytest.mark.parametrize("variant", ["midpoint", "heun"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_from_config_is_diffusers_single_step_dpm_solver_noise(order, variant):
    # DPM-Solver (noise prediction; diffusers needs final_sigmas_type="sigma_min" there). The same formula: equal to
    # 1e-13 with diffusers' update in float64. In float32 the noise-prediction update multiplies the round-off by
    # alpha_t / alpha_s over a whole group: diffusers' own float32 loop is 7.9e-5 (7 steps), 1.2e-5 (10) from its
    # float64 loop at order 3, and sdekit's float32 loop is as far from diffusers'.
    config = dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_order=order, solver_type=variant)
    for n in (7, 10, 25):
        sch = swapped(make(**config))
        assert sch.solver.prediction == "noise"
        assert rel(loop(sch, n, dtype=torch.float64), _diffusers_loop_float64(make(**config), n)) < 1e-11
        assert rel(loop(swapped(make(**config)), n), loop(make(**config), n)) < 2e-4


SDE_LOOPS = {
    "order1": dict(solver_order=1),
    "order2": dict(solver_order=2),
    "order2-heun": dict(solver_order=2, solver_type="heun"),
    "order3": dict(solver_order=3),
    "order2-sigma-min": dict(solver_order=2, final_sigmas_type="sigma_min"),
    "order3-v-karras": dict(solver_order=3, prediction_type="v_prediction", use_karras_sigmas=True),
}


@pytest.mark.parametrize("n", [10, 25, 7])
@pytest.mark.parametrize("case", list(SDE_LOOPS))
def test_sde_dpm_solver_pp_single_step_same_generator_draws(case, n):
    config = dict(algorithm_type="sde-dpmsolver++", **SDE_LOOPS[case])
    sch = swapped(make(**config))
    assert sch.config.solver == "dpmpp_single" and sch.solver.stochastic and sch._kind == "sde"
    # measured: 2e-7 to 9e-7
    assert rel(loop(sch, n, seed=3), loop(make(**config), n, seed=3)) < 3e-6


def test_sde_third_order_heun_weight_differs_and_is_warned():
    # diffusers weights D2 by (1 - e^{-2h} - 2h) / (2h)^2 - 1/2 (tends to -1); sdekit by the exact + 1/2 (tends to 0)
    source = make(algorithm_type="sde-dpmsolver++", solver_order=3, solver_type="heun")
    with pytest.warns(UserWarning, match="exact"):
        sch = SdekitScheduler.from_config(source.config)
    assert sch.solver.variant == "heun" and sch.solver.stochastic
    assert rel(loop(sch, 10, seed=3), loop(source, 10, seed=3)) > 0.1


def test_zero_final_level_turns_lower_order_final_on_as_diffusers_does():
    sch = swapped(make(solver_order=3, lower_order_final=False))  # final_sigmas_type="zero" (the default)
    assert sch.solver.lower_order_final is True
    sch = swapped(make(solver_order=3, lower_order_final=False, final_sigmas_type="sigma_min"))
    assert sch.solver.lower_order_final is False


def _img2img(sch, n, begin):
    sch.set_timesteps(n)
    sch.set_begin_index(begin)
    x = start()
    for t in sch.timesteps[begin:]:
        x = sch.step(model(x, t), t, x).prev_sample
    return x


def test_img2img_start_keeps_the_full_schedules_groups_as_diffusers():
    # from_config with no solver named (later_start="schedule"): the whole schedule's order list, the orders that lack
    # outputs lowered, as diffusers has it. At a group start with the remaining list the full list's tail (12 steps of
    # order 3, start at 6) a fresh run agrees too.
    config = dict(solver_order=3, final_sigmas_type="sigma_min")
    assert rel(_img2img(swapped(make(**config)), 12, 6), _img2img(make(**config), 12, 6)) < 3e-6
    # inside a group: diffusers (10 steps of order 2, start at 5: orders 1, 1, 2, 1, 2) and sdekit now agree; a fresh
    # run of 5 steps (1, 2, 1, 2, 1: later_start="fresh", the behaviour before) differs
    config = dict(solver_order=2, final_sigmas_type="sigma_min")
    assert rel(_img2img(swapped(make(**config)), 10, 5), _img2img(make(**config), 10, 5)) < 3e-6
    fresh = SdekitScheduler.from_config(make(**config).config, later_start="fresh")
    assert rel(_img2img(fresh, 10, 5), _img2img(make(**config), 10, 5)) > 1e-4


@pytest.mark.parametrize(
    "options",
    [dict(order=1), dict(order=2), dict(order=3, lower_order_final=True), dict(order=3, variant="heun"),
     dict(order=2, variant="heun", prediction="noise"), dict(order=3, prediction="noise"),
     dict(order=2, process="sde"), dict(order=3, variant="heun", stochastic=True)],
)  # fmt: skip
def test_fused_kernel_equals_the_solvers_own_step(options):
    pytest.importorskip("numba")
    sde = sdekit.VPSDE()
    score = sdekit.Gaussian(np.array([0.5, -1.0]), np.array([[0.6, 0.1], [0.1, 1.2]])).score(sde)
    kw = dict(n=32, steps=11, solver="dpmpp_single", seed=5, **options)
    a = sdekit.sample(sde, score, backend="numba", **kw)
    b = sdekit.sample(sde, score, backend="numpy", **kw)
    assert a.stats["kernel"] == "fused affine_multistep"
    assert np.max(np.abs(a.x - b.x)) <= 1e-12 * np.max(np.abs(b.x))


def test_each_group_restarts_from_its_first_point():
    # order 2 on 2 steps is one group: the second step goes from the start over both intervals, so it equals the
    # closed-form second-order step from x_T with the two data predictions, whatever the intermediate state was
    sde = sdekit.VPSDE()
    data = sdekit.Gaussian(np.array([0.5, -1.0]), np.array([[0.6, 0.1], [0.1, 1.2]]))
    score = data.score(sde)
    grid = np.array([1.0, 0.5, 0.1])
    x_T = sde.prior_sample((8, 2), seed=1)
    out = sdekit.solve(sde.probability_flow(score), x_T, 1.0, 0.1, "dpmpp_single", grid=grid).x
    lam = [float(sde.log_snr(t)) for t in grid]
    (a0, s0), (a2, s2) = (tuple(map(float, sde.marginal(t))) for t in (grid[0], grid[2]))
    d0 = sde.denoise(score, x_T, grid[0])
    x1 = sdekit.solve(sde.probability_flow(score), x_T, 1.0, 0.5, "dpmpp_single", grid=grid[:2]).x  # the DDIM step
    d1 = sde.denoise(score, x1, grid[1])
    h = lam[2] - lam[0]
    r = (lam[1] - lam[0]) / h
    phi1 = np.expm1(-h)
    expected = (s2 / s0) * x_T - a2 * phi1 * d0 - 0.5 * a2 * phi1 * (d1 - d0) / r
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match="order"):
        get_solver("dpmpp_single", order=4)
    with pytest.raises(ValueError, match="variant"):
        get_solver("dpmpp_single", variant="bh2")
    with pytest.raises(ValueError, match="prediction"):
        get_solver("dpmpp_single", prediction="eps")
    with pytest.raises(ValueError, match="stochastic=True"):
        get_solver("dpmpp_single", prediction="noise", stochastic=True)
    sde = sdekit.VPSDE()
    with pytest.raises(ValueError, match="prediction='noise' integrates the probability-flow ODE only"):
        sdekit.sample(
            sde, lambda x, t: -x, n=2, shape=(2,), steps=3, solver="dpmpp_single", prediction="noise", process="sde"
        )
    with pytest.raises(ValueError, match="needs the reverse SDE or probability-flow ODE of a LinearSDE"):
        flow = sdekit.GeneralSDE(lambda x, t: -x, lambda x, t: 1.0, noise="additive").probability_flow(lambda x, t: -x)
        sdekit.solve(flow, np.zeros((2, 1)), 1.0, 0.5, "dpmpp_single", steps=2)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_reverse_sde_weak_order_one_exact_law(order):
    # SDE-DPM-Solver++ single-step: weak order 1 (fitted 0.95 to 0.98 over 192..1536 steps; order 1 is the ancestral
    # step, the same law as sdekit's ancestral sampler)
    sde = sdekit.VPSDE()
    data = sdekit.Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 1.5]]))
    m_ex, c_ex = data.mean_cov(sde.eps, sde)
    steps = [192, 384, 768, 1536]
    spec = f"dpmpp_single(order={order})"
    errs = [gaussian_w2(*exact_law(spec, sde, data, make_grid(sde, n, "log_snr"), process="sde"), m_ex, c_ex)
            for n in steps]  # fmt: skip
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert slope > get_solver("dpmpp_single").weak_order - 0.2, errs
    if order == 1:
        ref = exact_law("ancestral", sde, data, make_grid(sde, 192, "log_snr"), process="sde")
        got = exact_law(spec, sde, data, make_grid(sde, 192, "log_snr"), process="sde")
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-10, atol=1e-12)
