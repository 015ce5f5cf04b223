"""SdekitScheduler.from_config against diffusers' own schedulers, for the methods and conventions of issue 22's last
round: DPM-Solver with the noise prediction (algorithm_type "dpmsolver" / "sde-dpmsolver"), DEIS of order 3, the
classes sdekit refuses, DDIM's step options, the schedule before set_timesteps, custom timesteps through the source
class, thresholding options. The real diffusers schedulers, a deterministic model, float32 latents."""

from __future__ import annotations

import inspect
import warnings

import diffusers as D
import numpy as np
import pytest
import torch

import sdekit
from _diffusers_loop import loop, model, rel, start, swapped
from sdekit.interop.diffusers import SdekitScheduler

DPM_NOISE = {
    "order1": dict(solver_order=1),
    "order2": dict(solver_order=2),
    "order3": dict(solver_order=3),
    "order2-v": dict(solver_order=2, prediction_type="v_prediction"),
    "order2-karras": dict(solver_order=2, use_karras_sigmas=True),  # (order 3 with Karras sigmas: NaN in diffusers)
    "order2-no-lower-final": dict(solver_order=2, lower_order_final=False),
}


@pytest.mark.parametrize("n", [10, 25])
@pytest.mark.parametrize("case", list(DPM_NOISE))
def test_dpm_solver_noise_prediction_is_diffusers_dpmsolver(case, n):
    # diffusers refuses final_sigmas_type="zero" for the noise prediction
    make = lambda: D.DPMSolverMultistepScheduler(algorithm_type="dpmsolver", final_sigmas_type="sigma_min",  # noqa: E731
                                                 **DPM_NOISE[case])  # fmt: skip
    sch = swapped(make())
    if DPM_NOISE[case]["solver_order"] > 1:
        assert sch.solver.prediction == "noise"
    assert rel(loop(sch, n), loop(make(), n)) < 3e-6


@pytest.mark.parametrize("n", [10, 25])
def test_sde_dpm_solver_noise_prediction_same_generator_draws(n):
    make = lambda: D.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min")  # noqa: E731
    sch = swapped(make())
    assert sch.config.solver == "dpmpp_2m_sde" and sch.solver.prediction == "noise"
    assert rel(loop(sch, n, seed=3), loop(make(), n, seed=3)) < 5e-6


def test_deis_order_3_is_diffusers_formula_and_differs_by_its_float32_coefficients():
    # diffusers evaluates DEIS's closed-form log-rho integrals in float32 (its sigmas' dtype), where the difference
    # of two antiderivative values cancels; with its sigmas in float64 the loops agree to round-off
    make = lambda: D.DEISMultistepScheduler(solver_order=3)  # noqa: E731
    for n in (10, 25):
        ref = make()
        ref.set_timesteps(n)
        ref.sigmas = ref.sigmas.double()
        x = start(torch.float64)
        for t in ref.timesteps:
            x = ref.step(model(x, t), t, x).prev_sample
        assert rel(loop(swapped(make()), n, dtype=torch.float64), x) < 1e-12
        assert rel(loop(swapped(make()), n), loop(make(), n)) < 1e-4  # float32: 3e-6 (10 steps), 4e-5 (25)


# (DPMSolverSinglestepScheduler runs dpmpp_single now; its SDE variant is refused: tests/test_diffusers_singlestep.py)
REFUSED = ["LMSDiscreteScheduler", "PNDMScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
           "DPMSolverSDEScheduler"]  # fmt: skip


@pytest.mark.parametrize("name", REFUSED)
def test_a_class_without_an_sdekit_method_is_refused_by_name(name):
    source = getattr(D, name)()  # (LMS's and KDPM2's configs have the same keys: the scheduler names its class)
    with pytest.raises(ValueError, match=f"no equivalent of {name}'s method"):
        SdekitScheduler.from_config(source)
    sch = SdekitScheduler.from_config(source, solver="dpmpp_2m")  # its schedule, the named solver
    assert sch.config.timestep_source == name
    assert loop(sch, 10).shape == start().shape


def test_a_config_whose_keys_fit_several_classes_is_refused():
    # a constructed scheduler's config has no '_class_name'; LMS's and KDPM2's keys are the same
    with pytest.raises(ValueError, match=r"several diffusers schedulers \['KDPM2AncestralDiscreteScheduler'"):
        SdekitScheduler.from_config(dict(D.KDPM2DiscreteScheduler().config), solver="dpmpp_2m")
    assert SdekitScheduler.from_config(dict(D.DDPMScheduler().config)).config.timestep_source == "DDPMScheduler"


@pytest.mark.parametrize("name", ["IPNDMScheduler"])  # (the EDM classes: tests/test_diffusers_edm.py)
def test_a_class_without_a_training_schedule_is_refused(name):
    with pytest.raises(ValueError, match="no training schedule"):
        SdekitScheduler.from_config(getattr(D, name)().config)


SA_SOLVER = {"default": {}, "orders-3-4": dict(predictor_order=3, corrector_order=4),
             "v": dict(prediction_type="v_prediction"), "karras": dict(use_karras_sigmas=True)}  # fmt: skip


@pytest.mark.parametrize("n", [10, 25])
@pytest.mark.parametrize("case", list(SA_SOLVER))
def test_sa_solver_scheduler_is_sdekit_sa_solver_with_the_same_generator_draws(case, n):
    # diffusers' default tau_func: tau = 1 on the steps that start at timesteps 200..800 (sdekit: their noise levels)
    make = lambda: D.SASolverScheduler(**SA_SOLVER[case])  # noqa: E731
    sch = swapped(make())
    assert sch.config.solver == "sa_solver" and sch.solver.stochastic
    assert rel(loop(sch, n, seed=2), loop(make(), n, seed=2)) < 4e-6


def test_ddim_step_options():
    ddim = D.DDIMScheduler(clip_sample=False)
    sch = swapped(ddim)
    assert "eta" in inspect.signature(sch.step).parameters  # pipelines pass eta (0 by default) when step takes it
    sch.set_timesteps(10)
    x = start()
    t = sch.timesteps[0]
    positional = sch.step(model(x, t), t, x, 0.0).prev_sample  # DDIM's step(out, t, x, eta)
    sch.set_timesteps(10)
    assert torch.equal(positional, sch.step(model(x, t), t, x, eta=0.0).prev_sample)
    sch.set_timesteps(10)
    with pytest.raises(ValueError, match=r"step\(eta=0.5\).*'dpmpp_pc'"):
        sch.step(model(x, t), t, x, eta=0.5)
    with pytest.raises(ValueError, match="variance_noise"):
        sch.step(model(x, t), t, x, variance_noise=torch.zeros_like(x))
    clipped = SdekitScheduler.from_config(D.DDIMScheduler().config, solver="dpmpp_2m")
    clipped.set_timesteps(10)
    with pytest.raises(ValueError, match="use_clipped_model_output=False"):
        clipped.step(model(x, t), t, x, use_clipped_model_output=False)
    posterior = SdekitScheduler.from_config(ddim.config, solver="ancestral")  # DDIM's eta=1 is the posterior step
    posterior.set_timesteps(10)
    posterior.step(model(x, t), t, x, eta=1.0, generator=torch.manual_seed(0))
    forward = SdekitScheduler.from_config(ddim.config, solver="ancestral(variance=forward)")
    forward.set_timesteps(10)
    with pytest.raises(ValueError, match="eta=1"):
        forward.step(model(x, t), t, x, eta=1.0, generator=torch.manual_seed(0))


def test_schedule_before_set_timesteps_is_the_training_one():
    # diffusers' Euler steps on every training timestep until set_timesteps is called
    for make in (lambda: D.EulerDiscreteScheduler(), lambda: D.EulerDiscreteScheduler(use_karras_sigmas=True)):
        ref, sch = make(), swapped(make())
        x = start() * 5.0
        t = ref.timesteps[-3]
        a = ref.step(model(ref.scale_model_input(x, t), t), t, x).prev_sample
        b = sch.step(model(sch.scale_model_input(x, t), t), t, x).prev_sample
        assert sch.timesteps.tolist() == list(range(999, -1, -1)) and rel(b, a) < 1e-6


@pytest.mark.parametrize("final", ["zero", "sigma_min"])
@pytest.mark.parametrize("source", ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DDPMScheduler"])
def test_custom_timesteps_go_through_the_source_class(source, final):
    make = lambda: SdekitScheduler.from_config(getattr(D, source)(), final_sigmas_type=final)  # noqa: E731
    listed = make()
    listed.set_timesteps(10)
    by_count = loop(make(), 10)
    by_timesteps = loop(make(), timesteps=listed.timesteps.tolist())
    assert torch.equal(by_count, by_timesteps)
    if source == "DPMSolverMultistepScheduler":  # real-valued timesteps: sdekit's levels (the source casts to int)
        real = make()
        real.set_timesteps(timesteps=[900.5, 500.25, 100.0])
        assert real.timesteps.tolist() == [900.5, 500.25, 100.0]
    if source == "EulerDiscreteScheduler":  # real-valued timesteps (Euler keeps them): the source's levels
        odd = SdekitScheduler.from_config(D.EulerDiscreteScheduler(), final_sigmas_type=final)
        odd.set_timesteps(37)
        assert not all(float(t).is_integer() for t in odd.timesteps)
        ref = D.EulerDiscreteScheduler(final_sigmas_type=final)
        ref.set_timesteps(timesteps=odd.timesteps.tolist())
        assert rel(loop(make(), timesteps=odd.timesteps.tolist()), loop(ref, timesteps=odd.timesteps.tolist())) < 2e-6
    if source == "EulerDiscreteScheduler":  # custom sigmas of a sigma-state source: its own timesteps
        by_sigmas = loop(make(), sigmas=listed.sigmas.tolist())
        assert rel(by_sigmas, by_count) < 1e-6


def test_previous_timestep():
    sch = SdekitScheduler.from_config(D.DDPMScheduler().config)
    sch.set_timesteps(timesteps=[100, 87, 50, 1, 0])
    assert [int(sch.previous_timestep(t)) for t in sch.timesteps] == [87, 50, 1, 0, -1]
    with pytest.raises(ValueError, match="not a step point"):
        sch.previous_timestep(2)


def test_thresholding_options_are_checked_only_when_on_and_as_diffusers_reads_them():
    SdekitScheduler(thresholding=False, dynamic_thresholding_ratio=0.0, sample_max_value=0.5)  # kept as given
    with pytest.raises(ValueError, match="dynamic_thresholding_ratio must be in"):
        SdekitScheduler(thresholding=True, dynamic_thresholding_ratio=1.5)
    with pytest.raises(ValueError, match="clip_sample_range must be > 0"):
        SdekitScheduler(clip_sample=True, clip_sample_range=0.0)
    # sample_max_value below 1: diffusers' clamp(s, 1, max) is then max (torch's rule), and so is sdekit's
    make = lambda: D.DPMSolverMultistepScheduler(thresholding=True, sample_max_value=0.5)  # noqa: E731
    assert rel(loop(swapped(make()), 10), loop(make(), 10)) < 1e-6


def test_betas_of_the_exp_schedule():
    heun = D.HeunDiscreteScheduler(beta_schedule="exp")
    sch = swapped(heun)
    assert torch.equal(sch.betas, heun.betas)
    assert rel(loop(sch, 10), loop(D.HeunDiscreteScheduler(beta_schedule="exp"), 10)) < 2e-6


@pytest.mark.parametrize("solver", ["dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde"])
def test_noise_prediction_option_fused_kernel_equals_numpy(solver):
    pytest.importorskip("numba")
    sde = sdekit.VPSDE()
    score = sdekit.Gaussian(np.array([0.5, -1.0]), np.array([[0.6, 0.1], [0.1, 1.2]])).score(sde)
    kw = dict(n=32, steps=8, solver=solver, seed=5)
    a = sdekit.sample(sde, score, backend="numba", prediction="noise", **kw)
    b = sdekit.sample(sde, score, backend="numpy", prediction="noise", **kw)
    assert a.stats["kernel"] == "fused affine_multistep"
    assert np.max(np.abs(a.x - b.x)) <= 1e-12 * np.max(np.abs(b.x))
    c = sdekit.sample(sde, score, backend="numpy", **kw)  # the data prediction: another method
    assert np.max(np.abs(c.x - b.x)) > 1e-6


def test_the_source_classes_defaults_are_in_the_config_and_stay_out_of_other_classes(tmp_path):
    """``config.predictor_order`` of an SA-Solver config that leaves it out reads the source's default, as the source's
    own config does; those entries are listed as defaults, so another class's ``from_config`` leaves them out (DEIS
    would otherwise read SA-Solver's ``algorithm_type``), and the round trip through it gives the same config."""
    cfg = {"num_train_timesteps": 1100, "beta_schedule": "linear", "_class_name": "SASolverScheduler"}
    sch = SdekitScheduler.from_config(cfg)
    src = D.SASolverScheduler.from_config(cfg)
    for key in ("predictor_order", "corrector_order", "tau_func", "algorithm_type"):
        assert sch.config[key] == src.config[key]
        assert key in sch.config["_use_default_values"]
    given = SdekitScheduler.from_config({**cfg, "predictor_order": 3})
    assert given.config.predictor_order == 3 and "predictor_order" not in given.config["_use_default_values"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deis = D.DEISMultistepScheduler.from_config(sch.config)
    assert deis.config.algorithm_type == "deis"
    back = SdekitScheduler.from_config(deis.config)
    assert dict(back.config) == dict(sch.config)
    # our own config read again, and saved and loaded
    assert dict(SdekitScheduler.from_config(sch.config).config) == dict(sch.config)
    sch.save_pretrained(tmp_path)
    loaded = SdekitScheduler.from_pretrained(tmp_path)
    assert loaded.config.predictor_order == 2 and loaded.config.solver == "sa_solver"


def test_the_source_classes_entries_read_as_that_class_reads_them():
    """DEIS turns DPM-Solver's explicit ``algorithm_type="dpmsolver++"`` into ``"deis"``; read back through the
    DPM-Solver source it is ``"dpmsolver++"`` again, as DPM-Solver's own constructor reads ``"deis"`` (so the round
    trip through any compatible class gives the same config, whatever class comes last; diffusers' DPM-Solver reads
    ``"deis"`` only with ``final_sigmas_type="sigma_min"``)."""
    cfg = {"num_train_timesteps": 1000, "beta_schedule": "linear", "algorithm_type": "dpmsolver++",
           "solver_type": "midpoint", "final_sigmas_type": "sigma_min",
           "_class_name": "DPMSolverMultistepScheduler"}  # fmt: skip
    sch = SdekitScheduler.from_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deis = D.DEISMultistepScheduler.from_config(sch.config)
    assert deis.config.algorithm_type == "deis"
    back = SdekitScheduler.from_config(deis.config)
    assert back.config.algorithm_type == "dpmsolver++" and back.config.solver_type == "midpoint"
    assert dict(back.config) == dict(sch.config)
