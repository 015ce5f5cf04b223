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


MAPPED_SINCE = ["LMSDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"]  # (below)


@pytest.mark.parametrize("name", [name for name in REFUSED if name not in MAPPED_SINCE])
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


# -- diffusers' contract: _get_variance, schedules that underflow, one training timestep, DDPM's float32 loop ------


@pytest.mark.parametrize("cls, kw", [(D.DDPMScheduler, {}), (D.DDIMScheduler, {}),
                                     (D.DDIMScheduler, {"set_alpha_to_one": False})])  # fmt: skip
def test_get_variance_is_the_posterior_variance_diffusers_computes(cls, kw):
    source = cls(**kw)
    sch = SdekitScheduler.from_config(source.config)
    ac = source.alphas_cumprod.double()
    final = 1.0 if kw.get("set_alpha_to_one", True) else float(ac[0])
    pairs = [(t, t - 1) for t in (1, 2, 10, 487, 999)] + [(420, 400), (980, 960), (0, -1), (20, -20), (0, 0)]
    for t, prev in pairs:
        if cls is D.DDPMScheduler and prev != t - 1:
            continue
        got = sch._get_variance(t) if cls is D.DDPMScheduler else sch._get_variance(t, prev)
        a_t, a_prev = ac[t], (ac[prev] if prev >= 0 else torch.tensor(final, dtype=torch.float64))
        exact = 0.0 if t == prev else float((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        assert abs(float(got) - exact) <= 1e-6 * exact + 1e-30  # (float32 of the float64 law)
        ref = float(source._get_variance(*((t,) if cls is D.DDPMScheduler else (t, prev))))
        # diffusers computes beta_t = 1 - abar_t / abar_prev in float32: its error, up to half a float32 ulp of 1, is
        # 5e-4 of beta_t = 1.2e-4 at t = 1
        beta = float(1 - a_t / a_prev) or 1.0
        assert abs(float(got) - ref) <= exact * (1e-5 + 2.0**-23 / beta) + 1e-19
    with pytest.raises(ValueError, match="fixed_large"):
        sch._get_variance(10, variance_type="fixed_large")
    with pytest.raises(ValueError, match="predicted_variance"):
        sch._get_variance(10, predicted_variance=torch.zeros(1))
    with pytest.raises(ValueError, match="prev_timestep"):
        sch._get_variance(10, 2.5)


def test_get_variance_is_the_variance_of_the_ancestral_step():
    sch = SdekitScheduler.from_config(D.DDPMScheduler().config)  # sdekit's ancestral step, the posterior variance
    sch.set_timesteps(10)
    t, prev = int(sch.timesteps[3]), int(sch.timesteps[4])
    x = torch.zeros(4000, 1, 1, 1)
    draws = []
    for seed in range(2):  # the same mean, two generators: the difference is sqrt(2 var) times a standard normal
        sch.set_timesteps(10)
        sch.set_begin_index(3)
        draws.append(sch.step(torch.zeros_like(x), t, x, generator=torch.manual_seed(seed)).prev_sample)
    var = float((draws[0] - draws[1]).double().var() / 2)
    assert abs(var / float(sch._get_variance(t, prev)) - 1) < 0.1  # (4000 draws: 2.2% standard error)


#: beta_start, beta_end, the first timestep where float32 alphas_cumprod stops decreasing (subnormal; then 0)
UNDERFLOW = {"0.01-0.2": (0.01, 0.2, 952), "0.1-2": (0.1, 2.0, 244)}


@pytest.mark.parametrize("key", UNDERFLOW)
@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler",
                                  "EulerDiscreteScheduler", "SASolverScheduler"])  # fmt: skip
def test_a_schedule_whose_float32_alphas_cumprod_underflows_steps_where_it_is_finite(key, name):
    start_beta, end_beta, first = UNDERFLOW[key]
    source = getattr(D, name)(beta_start=start_beta, beta_end=end_beta)
    ac = source.alphas_cumprod
    assert not 0.0 < float(ac[first]) < float(ac[first - 1]) and bool((ac[1:first] < ac[: first - 1]).all())
    assert float(ac[-1]) == 0.0
    sch = SdekitScheduler.from_config(source.config)
    assert torch.equal(sch.alphas_cumprod, source.alphas_cumprod)  # kept as diffusers computes it
    x = start() * 0.5
    for s in (source, sch):
        if name != "DDPMScheduler":
            s.set_timesteps(50)
    t = source.timesteps[-1]
    kw = {"generator": torch.manual_seed(0)} if "generator" in inspect.signature(source.step).parameters else {}
    ref = source.step(model(x, t), t, x, **kw).prev_sample
    out = sch.step(model(x, t), t, x, generator=torch.manual_seed(0)).prev_sample
    assert rel(out, ref) < 1e-5  # (float32 round-off)
    # a run from the top, where diffusers' own step divides by sqrt(alphas_cumprod) = 0 (NaN), is refused by name
    top = SdekitScheduler.from_config(source.config)
    if name != "DDPMScheduler":
        top.set_timesteps(50)
    with pytest.raises(ValueError, match=rf"beta_end={end_beta!r}.*from timestep {first} on"):
        top.step(model(x, top.timesteps[0]), top.timesteps[0], x)


def test_an_underflowing_schedule_runs_image_to_image_below_the_underflow_as_diffusers():
    source = D.DDIMScheduler(beta_start=0.01, beta_end=0.2)  # alphas_cumprod stops decreasing at timestep 952
    sch = SdekitScheduler.from_config(source.config)
    outs = []
    for s in (source, sch):
        s.set_timesteps(50)
        x = start()  # (DDIM has no set_begin_index: its steps do not depend on the first one)
        for t in s.timesteps[46:]:  # timesteps 60, 40, 20, 0
            x = s.step(model(x, t), t, x).prev_sample
        outs.append(x)
    assert rel(outs[1], outs[0]) < 1e-5
    with pytest.raises(ValueError, match="from timestep 952 on"):
        sch.set_timesteps(50)
        sch.step(model(start(), 980), 980, start())


def test_betas_above_one_give_negative_alphas_cumprod_refused_from_there():
    source = D.DDPMScheduler(num_train_timesteps=5, beta_start=0.1, beta_end=2.0)  # betas .1 .575 1.05 1.525 2
    assert float(source.alphas_cumprod[2]) < 0 < float(source.alphas_cumprod[1])
    sch = SdekitScheduler.from_config(source.config)
    x = start()
    for t in (1, 0):  # where the schedule has noise levels: diffusers' numbers
        ref = source.step(model(x, t), t, x, generator=torch.manual_seed(1)).prev_sample
        fresh = SdekitScheduler.from_config(source.config)
        assert rel(fresh.step(model(x, t), t, x, generator=torch.manual_seed(1)).prev_sample, ref) < 1e-6
    with pytest.raises(ValueError, match="from timestep 2 on"):
        sch.step(model(x, 3), 3, x)
    with pytest.raises(ValueError, match="beta_start"):  # no finite noise level at all
        SdekitScheduler(beta_start=1.0, beta_end=2.0, num_train_timesteps=10)


def test_one_training_timestep_is_the_final_denoising_step():
    for cfg in (dict(num_train_timesteps=1), dict(num_train_timesteps=1, prediction_type="v_prediction")):
        source = D.DDPMScheduler(**cfg)
        sch = SdekitScheduler.from_config(source.config)
        assert sch.timesteps.tolist() == [0] and len(sch) == 1
        x = start()
        ref = source.step(model(x, 0), 0, x, generator=torch.manual_seed(0)).prev_sample
        out = sch.step(model(x, 0), 0, x, generator=torch.manual_seed(0)).prev_sample
        assert rel(out, ref) < 1e-6
        sch.set_timesteps(1)
        assert sch.timesteps.tolist() == [0]


def _draws_in_float32(monkeypatch):
    """Both libraries' generator draws made in float32 (then cast), so that float32 and float64 loops share them."""
    import diffusers.schedulers.scheduling_ddpm as ddpm_module

    import sdekit.interop._diffusers_config as config_module

    plain = ddpm_module.randn_tensor

    def draw(shape, generator=None, device=None, dtype=None, **kw):
        return plain(shape, generator=generator, device=device, dtype=torch.float32).to(dtype)

    monkeypatch.setattr(ddpm_module, "randn_tensor", draw)
    monkeypatch.setattr(config_module, "randn_tensor", draw)


def test_ddpm_two_step_float32_loop_is_the_float64_loop_where_diffusers_float32_is_not(monkeypatch):
    # the last two DDPM steps (timesteps 1 and 0): diffusers forms beta_t = 1 - abar_t / abar_prev in float32,
    # 1.2e-4 with an absolute error of 6e-8: its float32 loop is 5e-5 off; sdekit's float32 loop is the exact one
    _draws_in_float32(monkeypatch)

    def two_steps(s, dtype):
        x = s.add_noise(start(dtype), start(dtype).flip(0) * 0.3, torch.tensor([1]))
        gen = torch.manual_seed(0)
        for t in s.timesteps[998:]:
            x = s.step(model(x, t), t, x, generator=gen).prev_sample
        return x.double()

    exact_source = D.DDPMScheduler()
    for key in ("alphas_cumprod", "betas", "alphas", "one"):  # the same float32 schedule, float64 arithmetic
        setattr(exact_source, key, getattr(exact_source, key).double())
    exact = two_steps(exact_source, torch.float64)
    ours = two_steps(SdekitScheduler.from_config(D.DDPMScheduler().config), torch.float32)
    theirs = two_steps(D.DDPMScheduler(), torch.float32)
    ours64 = two_steps(SdekitScheduler.from_config(D.DDPMScheduler().config), torch.float64)
    assert float((ours64 - exact).abs().max()) < 1e-11  # the same law
    assert float((ours - exact).abs().max()) < 1e-6  # float32 round-off
    assert float((theirs - exact).abs().max()) > 10 * float((ours - exact).abs().max())


# -- flow-matching sigmas (use_flow_sigmas) of UniPC and DPM-Solver multistep ------------------------------------

#: (class, config, float32 tolerance): the default flow schedule starts at s = 1 - 1e-6 (an SNR of 1e-12), where the
#: score that carries the network's output to the solver keeps float32 round-off of the state / alpha = 1e6 (6e-5)
FLOW = {
    "unipc": (D.UniPCMultistepScheduler, dict(prediction_type="flow_prediction"), 1.5e-4),
    "unipc-shift3": (D.UniPCMultistepScheduler, dict(prediction_type="flow_prediction", flow_shift=3.0), 1.5e-4),
    "unipc-eps": (D.UniPCMultistepScheduler, dict(), 1.5e-4),
    "unipc-order3": (D.UniPCMultistepScheduler, dict(prediction_type="flow_prediction", solver_order=3), 1.5e-4),
    "unipc-karras": (D.UniPCMultistepScheduler, dict(prediction_type="flow_prediction", use_karras_sigmas=True), 3e-6),
    "dpm": (D.DPMSolverMultistepScheduler, dict(prediction_type="flow_prediction"), 1e-5),
    "dpm-sigma-min": (
        D.DPMSolverMultistepScheduler,
        dict(prediction_type="flow_prediction", final_sigmas_type="sigma_min"),
        1e-5,
    ),  # fmt: skip
}


@pytest.mark.parametrize("n", [10, 25])
@pytest.mark.parametrize("key", FLOW)
def test_flow_sigmas_run_the_source_method_on_flow_latents(key, n):
    cls, kw, tol = FLOW[key]
    source = cls(use_flow_sigmas=True, **kw)
    sch = swapped(source)
    assert sch.config.state_variable == "flow" and sch.config.solver == swapped(cls()).config.solver
    ref = loop(source, n)
    out = loop(sch, n)
    assert torch.equal(sch.timesteps, source.timesteps) and sch.init_noise_sigma == 1.0
    assert rel(out, ref) < tol
    # in float64 the same formula (diffusers keeps its flow sigmas, so its step coefficients, in float32)
    assert rel(loop(swapped(source), n, dtype=torch.float64), loop(cls(use_flow_sigmas=True, **kw), n,
                                                                    dtype=torch.float64)) < 1e-6  # fmt: skip


def test_flow_latents_add_noise_and_save_load(tmp_path):
    source = D.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction")
    sch = swapped(source)
    for s in (source, sch):
        s.set_timesteps(10)
    x0, noise = start(), start().flip(0)
    for i in (0, 3, 9):
        t = source.timesteps[i : i + 1]
        s_flow = float(source.sigmas[i])
        assert rel(sch.add_noise(x0, noise, t), (1 - s_flow) * x0 + s_flow * noise) < 1e-6
        assert rel(sch.add_noise(x0, noise, t), source.add_noise(x0, noise, t)) < 1e-6
    sch.save_config(tmp_path)
    again = SdekitScheduler.from_pretrained(tmp_path)
    assert again.config.state_variable == "flow" and again.config.prediction_type == "flow_prediction"
    assert torch.equal(loop(again, 10), loop(swapped(source), 10))


def test_flow_configs_sdekit_does_not_read_are_refused_by_name():
    with pytest.raises(ValueError, match="v_prediction"):
        SdekitScheduler.from_config(
            D.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="v_prediction").config
        )
    with pytest.raises(ValueError, match="flow-matching"):  # a flow prediction without the flow sigmas
        SdekitScheduler.from_config(D.UniPCMultistepScheduler(prediction_type="flow_prediction").config)
    with pytest.raises(ValueError, match="flow-matching"):  # flow sigmas of a class sdekit does not read them from
        SdekitScheduler.from_config(D.DEISMultistepScheduler(use_flow_sigmas=True).config)
    with pytest.raises(ValueError, match="prediction_type"):
        SdekitScheduler(prediction_type="flow_prediction")  # (VP latents)


# -- LMSDiscreteScheduler: DEIS-rhoAB of order 4, its last step integrated to noise level 0 ------------------------

LMS = {
    "default": dict(),
    "v": dict(prediction_type="v_prediction"),
    "karras": dict(use_karras_sigmas=True),
    "leading": dict(timestep_spacing="leading", steps_offset=1),
    "trailing": dict(timestep_spacing="trailing"),
    "scaled-linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
}


@pytest.mark.parametrize("n", [10, 25])
@pytest.mark.parametrize("key", LMS)
def test_lms_runs_as_diffusers_lms(key, n):
    source = D.LMSDiscreteScheduler(**LMS[key])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # (the same method: no "differs" warning)
        sch = SdekitScheduler.from_config(source)  # (the scheduler names its class: KDPM2's config has LMS's keys)
    assert sch.config.solver == "deis" and sch.config.final_step == "solver" and sch.config.state_variable == "sigma"
    out = loop(sch, n)
    ref = loop(source, n)
    assert torch.equal(sch.timesteps.double(), source.timesteps.double())  # (the same values; LMS lists float32)
    assert float(sch.init_noise_sigma) == pytest.approx(float(source.init_noise_sigma), rel=1e-6)
    assert rel(out, ref) < 2e-6
    # the last step is LMS's polynomial integrated to sigma = 0, not the final denoising step
    denoised = loop(SdekitScheduler.from_config(source, final_step="denoise"), n)
    assert rel(denoised, ref) > 1e-5


def test_lms_starts_later_with_the_euler_step_of_a_fresh_run():
    # a fresh run's first step has one derivative: x + (s_next - s) eps. (diffusers' LMS started at step k > 0 takes
    # the first of order min(k + 1, 4) Lagrange weights, which is not the step length: see docs/models.md)
    sch = SdekitScheduler.from_config(D.LMSDiscreteScheduler())
    sch.set_timesteps(10)
    sch.set_begin_index(6)
    t = sch.timesteps[6]
    s, s_next = float(sch.sigmas[6]), float(sch.sigmas[7])
    x = start() * 3.0
    eps = model(sch.scale_model_input(x, t), t)
    out = sch.step(eps, t, x).prev_sample
    assert rel(out, x + (s_next - s) * eps) < 1e-6


def test_final_step_option():
    sch = SdekitScheduler(solver="deis(variant='rhoab')", final_step="solver")
    sch.set_timesteps(10)
    assert float(sch.sigmas[-1]) == 0.0 and len(sch.timesteps) == 10
    for solver in ("heun", "edm", "restart"):  # a stage at level 0, or a formula that is not finite there
        with pytest.raises(ValueError, match="cannot step to noise level 0"):
            SdekitScheduler(solver=solver, final_step="solver").set_timesteps(10)
    with pytest.raises(ValueError, match="final_step"):
        SdekitScheduler(final_step="integrate")


KDPM2 = {
    "default": {},
    "v": dict(prediction_type="v_prediction"),
    "karras": dict(use_karras_sigmas=True),
    "leading": dict(timestep_spacing="leading"),
    "trailing": dict(timestep_spacing="trailing"),
    "scaled-linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
}
KDPM2_SOLVERS = {"KDPM2DiscreteScheduler": "dpm2", "KDPM2AncestralDiscreteScheduler": "dpm2_ancestral"}


@pytest.mark.parametrize("n", [10, 25])
@pytest.mark.parametrize("key", KDPM2)
@pytest.mark.parametrize("name", list(KDPM2_SOLVERS))
def test_kdpm2_runs_as_diffusers_kdpm2(name, key, n):
    # DPM-Solver-2 in sigma: its midpoint evaluations listed between the step points, the last step Euler to 0 (the
    # final denoising step); the ancestral one draws one normal per step but the last, as diffusers does
    source = getattr(D, name)(**KDPM2[key])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # (the same method: no "differs" warning)
        sch = SdekitScheduler.from_config(source)  # (the scheduler names its class: KDPM2's config has LMS's keys)
    assert sch.config.solver == KDPM2_SOLVERS[name] and sch.config.state_variable == "sigma"
    out = loop(sch, n, seed=3)
    ref = loop(source, n, seed=3)
    assert len(sch.timesteps) == len(source.timesteps) == 2 * n - 1 and sch.order == source.order == 2
    # the midpoints' real-valued timesteps: the same interpolation of log sigma, to float32 round-off (an ulp at
    # timestep 999 is 6e-5)
    torch.testing.assert_close(sch.timesteps.double(), source.timesteps.double(), rtol=0.0, atol=1e-4)
    assert float(sch.init_noise_sigma) == pytest.approx(float(source.init_noise_sigma), rel=1e-6)
    # measured: 5e-7 .. 1.1e-6 (KDPM2), 2e-7 .. 3.2e-6 (ancestral, its noise scaled by sigma_up in float32)
    assert rel(out, ref) < (2e-6 if name == "KDPM2DiscreteScheduler" else 5e-6)


@pytest.mark.parametrize("name", list(KDPM2_SOLVERS))
def test_kdpm2_image_to_image_start_equals_diffusers(name):
    # a start at step point k (evaluation 2k), with set_begin_index and by the first step() call's timestep
    for begin in (2, 6):
        for use_begin_index in (True, False):
            results = []
            for sch in (getattr(D, name)(), SdekitScheduler.from_config(getattr(D, name)())):
                sch.set_timesteps(10)
                if use_begin_index:
                    sch.set_begin_index(begin)
                takes_generator = "generator" in inspect.signature(sch.step).parameters
                kw = {"generator": torch.manual_seed(4)} if takes_generator else {}
                x = start() * 3.0
                for t in sch.timesteps[begin:]:
                    x = sch.step(model(sch.scale_model_input(x, t), t), t, x, **kw).prev_sample
                results.append(x)
            assert rel(results[1], results[0]) < 5e-6, (begin, use_begin_index)
