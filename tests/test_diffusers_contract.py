"""SdekitScheduler as a diffusers drop-in, checked with the real diffusers: image-to-image starts for every solver it
accepts, diffusers' timestep options, the source scheduler's own method through ``from_config`` and the scheduler
contract diffusers' own scheduler tests check (written here for SdekitScheduler; no diffusers test code is used).
Networks are exact scores of a Gaussian or small random UNet2DModels built here: nothing is downloaded."""

from __future__ import annotations

import copy
import inspect
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers import DPMSolverMultistepScheduler, UNet2DModel  # noqa: E402

import sdekit  # noqa: E402
from sdekit.interop import SdekitScheduler, sde_from_diffusers  # noqa: E402
from sdekit.interop._driver import GridPlan, counter_noise, run  # noqa: E402
from sdekit.solvers import SOLVERS, get_solver  # noqa: E402

DATA = sdekit.Gaussian([0.5, -0.3, 0.2], [0.3, 0.2, 0.5])
#: every registered solver SdekitScheduler accepts (the adaptive ones choose their own steps)
ACCEPTED = [name for name in SOLVERS if not get_solver(name).adaptive]
#: EDM churning at the first step of a run is refused (its first evaluation would not be at the latents)
OPTIONS = {"edm": {"S_tmax": 0.5}, "annealed_langevin": {"n_steps": 3}}  # (its 100 Langevin steps: slow)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class ExactEps:
    """The exact noise prediction of DATA at a (real-valued) model timestep."""

    def __init__(self, scheduler):
        self.sde = sde_from_diffusers(scheduler)
        self.score = DATA.score(self.sde)
        self.calls = 0

    def __call__(self, x, timestep):
        self.calls += 1
        t = self.sde.t_from_timestep(float(timestep))
        s = self.score(x.double().numpy().reshape(x.shape[0], 3), np.full(x.shape[0], t))
        return torch.as_tensor(-float(self.sde.marginal(t)[1]) * s, dtype=x.dtype).reshape(x.shape)


def x_start(dtype=torch.float64, n=16):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(0)).to(dtype)


def step_point_index(sch, k):
    """Index in ``sch.timesteps`` of the first evaluation of step ``k``."""
    return [i for i, (step, stage, _, _) in enumerate(sch._requests) if step == k and stage == 0][0]


def truncated_reference(sch, solver, x, k, seed, options):
    """A fresh sdekit run from step point ``k`` of the scheduler's grid."""
    sde, grid = sch.sde, sch._plan.grid[k:]
    score = DATA.score(sde)
    kind = sch._kind
    if not sch._plan.final_denoise:  # sdekit.solve on the truncated grid, exactly
        process = sde.reverse(score) if kind == "sde" else sde.probability_flow(score)
        return sdekit.solve(process, x, float(grid[0]), float(grid[-1]), solver=solver, grid=grid, seed=seed,
                            **options).x  # fmt: skip
    # with the final denoising step counted as a step of the schedule (lower_order_final, EDM's churn per step)
    plan = GridPlan(sde, get_solver(solver, **options), kind, grid, True)
    return run(plan, x, score, counter_noise(plan, x, seed))


@pytest.mark.parametrize("final", ["sigma_min", "zero"])
@pytest.mark.parametrize("solver", ACCEPTED)
def test_every_solver_starts_at_any_step_as_a_fresh_run(solver, final):
    options = OPTIONS.get(solver, {})
    sch = SdekitScheduler(solver, seed=3, final_sigmas_type=final, **options)
    sch.set_timesteps(14)
    k = 5
    begin = step_point_index(sch, k)
    sch.set_begin_index(begin)
    model = ExactEps(sch)
    x = x0 = x_start()
    for t in sch.timesteps[begin:]:
        x = sch.step(model(x, t), t, x).prev_sample
    ref = truncated_reference(sch, solver, x0, k, 3, options)
    # EDM's churned stages and DPM2's midpoints (real-valued timesteps) are announced (and seen by the network) as
    # float32 timesteps (dpm2: 3e-9; dpm2_ancestral's midpoints, eta = 1, are the next step points)
    tol = 1e-7 if solver in ("edm", "dpm2") else 1e-13
    assert float((x - ref).abs().max()) < tol
    assert model.calls == len(sch.timesteps) - begin


@pytest.mark.parametrize("solver", ["heun", "unipc", "dpmpp_3m_pc"])
def test_first_step_at_a_later_timestep_starts_there(solver):
    # without set_begin_index: the step point of that timestep (for Heun-type schedules, which list a point twice,
    # the step that starts there, not the stage that ends the step before)
    a, b = SdekitScheduler(solver), SdekitScheduler(solver)
    for sch in (a, b):
        sch.set_timesteps(10)
    begin = step_point_index(a, 3)
    b.set_begin_index(begin)
    outs = []
    for sch in (a, b):
        model, x = ExactEps(sch), x_start()
        for t in sch.timesteps[begin:]:
            x = sch.step(model(x, t), t, x).prev_sample
        outs.append(x)
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="not a step point"):
        c = SdekitScheduler(solver)
        c.set_timesteps(10)
        c.step(torch.zeros(2, 3), 3.5, torch.zeros(2, 3))


def tiny_unet(seed=0, **kwargs):
    torch.manual_seed(seed)
    config = dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                  down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                  norm_num_groups=4)  # fmt: skip
    config.update(kwargs)
    return UNet2DModel(**config).eval()


@torch.no_grad()
def img2img(scheduler, unet, image, strength, steps, seed=0):
    """The scheduler calls of diffusers' image-to-image pipelines (StableDiffusionImg2ImgPipeline's get_timesteps,
    prepare_latents and denoising loop), with a UNet2DModel on pixels instead of a latent network."""
    scheduler.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    t_start = max(steps - init, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order :]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(image.shape, generator=generator)
    x = scheduler.add_noise(image, noise, timesteps[:1].repeat(image.shape[0]))
    for t in timesteps:
        out = unet(scheduler.scale_model_input(x, t), t).sample
        kw = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        x = scheduler.step(out, t, x, return_dict=False, **kw)[0]
    return x, len(timesteps)


IMAGE = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1


@pytest.mark.parametrize("solver", ACCEPTED)
def test_img2img_loop_with_a_unet_for_every_solver(solver):
    unet = tiny_unet()
    calls = []
    unet.register_forward_hook(lambda module, args, output: calls.append(float(args[1])))
    sch = SdekitScheduler.from_config(DPMSolverMultistepScheduler().config, solver=solver,
                                      **OPTIONS.get(solver, {}))  # fmt: skip
    x, n_listed = img2img(sch, unet, IMAGE, 0.6, 8)
    assert x.shape == IMAGE.shape and bool(torch.isfinite(x).all())
    assert len(calls) == n_listed and calls == [float(t) for t in sch.timesteps[len(sch.timesteps) - n_listed :]]


def test_img2img_loop_equals_diffusers_dpm_solver():
    unet = tiny_unet()
    ref, _ = img2img(DPMSolverMultistepScheduler(), unet, IMAGE, 0.6, 10)
    out, _ = img2img(SdekitScheduler.from_config(DPMSolverMultistepScheduler().config), unet, IMAGE, 0.6, 10)
    assert float((out - ref).abs().max() / ref.abs().max()) < 2e-6


def test_clear_errors_batch_change_and_short_messages():
    sch = SdekitScheduler("dpmpp_2m")
    sch.set_timesteps(8)
    model = ExactEps(sch)
    x = x_start(torch.float32, 4)
    x = sch.step(model(x, sch.timesteps[0]), sch.timesteps[0], x).prev_sample
    with pytest.raises(ValueError, match="batch cannot change during a run"):
        sch.step(model(x[:2], sch.timesteps[1]), sch.timesteps[1], x[:2])
    with pytest.raises(ValueError) as info:
        sch.set_timesteps(timesteps=np.arange(1000))  # increasing: refused, with a short summary of the values
    assert "(1000 values)" in str(info.value) and len(str(info.value)) < 200
    fresh = SdekitScheduler("dpmpp_2m")
    fresh.set_timesteps(1000)
    with pytest.raises(ValueError) as info:
        fresh.step(torch.zeros(2, 3), 0.5, torch.zeros(2, 3))
    assert len(str(info.value)) < 300


def test_learned_variance_needs_twice_the_channels():
    from sdekit.interop import score_from_diffusers

    cfg = dict(DPMSolverMultistepScheduler().config, variance_type="learned_range")
    with pytest.raises(ValueError, match="out_channels=3"):
        score_from_diffusers(tiny_unet(), cfg)
    sde, score = score_from_diffusers(tiny_unet(out_channels=6), cfg)  # the first 3 channels are the prediction
    sch = SdekitScheduler(variance_type="learned_range")
    sch.set_timesteps(4)
    with pytest.raises(ValueError, match="twice the state's channels"):  # neither the mean's nor both
        sch.step(torch.zeros(2, 4, 8, 8), sch.timesteps[0], torch.zeros(2, 3, 8, 8))
    # the mean's channels only: used as they are, as diffusers' DDPM and DPM-Solver steps take them (issue 22:
    # diffusers' own scheduler tests step a learned-variance config with such outputs)
    x = torch.ones(2, 3, 8, 8)
    both = SdekitScheduler(variance_type="learned_range")
    both.set_timesteps(4)
    mean_only = sch.step(0.1 * x, sch.timesteps[0], x).prev_sample
    with_variance = both.step(torch.cat([0.1 * x, 5 * x], 1), both.timesteps[0], x).prev_sample
    assert torch.equal(mean_only, with_variance)


def run_loop(scheduler, n=None, x=None, generator=None, **set_kwargs):
    """The loop every diffusers pipeline runs (text-to-image): init_noise_sigma, scale_model_input, one network call
    per listed timestep, then step."""
    model = ExactEps(scheduler)
    scheduler.set_timesteps(n, **set_kwargs) if n is not None else scheduler.set_timesteps(**set_kwargs)
    x = (x_start(torch.float32) if x is None else x) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = model(scheduler.scale_model_input(x, t), t)
        kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        x = scheduler.step(out, t, x, **kwargs).prev_sample
    return x, model.calls


def test_repeated_timesteps_are_removed():
    # 1000 steps on 1000 trained timesteps: linspace rounding repeats some; every step point is listed once
    sch = SdekitScheduler("dpmpp_2m")
    sch.set_timesteps(1000)
    taus = sch.timesteps.numpy()
    assert len(taus) == sch.num_inference_steps == len(np.unique(taus)) and np.all(np.diff(taus) < 0)
    sch = SdekitScheduler("heun")
    sch.set_timesteps(timesteps=[999, 800, 800, 500, 500, 0])
    assert sch.num_inference_steps == 4 and len(sch.timesteps) == 2 * 3 + 1


def test_custom_timesteps_and_sigmas_give_the_default_schedule():
    for source in (DPMSolverMultistepScheduler(), diffusers.EulerDiscreteScheduler()):
        sch = SdekitScheduler.from_config(source.config, solver="dpmpp_2m")
        ref, _ = run_loop(sch, 9)
        listed_taus, listed_sigmas = sch.timesteps.clone(), sch.sigmas.clone()
        by_taus, _ = run_loop(sch, timesteps=listed_taus)
        by_sigmas, _ = run_loop(sch, sigmas=listed_sigmas)
        # the listed sigmas are float32: round-off
        assert float((by_sigmas - ref).abs().max()) < 1e-5 and float((by_taus - ref).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="exactly one of"):
        sch.set_timesteps(5, sigmas=[1.0, 0.0])
    with pytest.raises(ValueError, match="sigmas must be non-increasing"):
        sch.set_timesteps(sigmas=[1.0, 2.0, 0.0])


@pytest.mark.parametrize("final", ["sigma_min", "zero"])
def test_karras_sigmas_final_sigmas_type_as_diffusers(final):
    # Karras sigmas end at the smallest trained level; with final_sigmas_type="sigma_min" the last step has zero
    # length: diffusers evaluates the network there and leaves the state as it is
    source = DPMSolverMultistepScheduler(use_karras_sigmas=True, final_sigmas_type=final)
    ref, ref_calls = run_loop(source, 12)
    sch = SdekitScheduler.from_config(source.config)
    out, calls = run_loop(sch, 12)
    assert calls == ref_calls == 12 and len(sch.sigmas) == len(source.sigmas)
    assert float((out - ref).abs().max() / ref.abs().max()) < 2e-6


D = diffusers
#: diffusers schedulers with an sdekit method, with settings that change the method or its conventions
SOURCES = {
    "euler": lambda: D.EulerDiscreteScheduler(),
    "euler-leading-v": lambda: D.EulerDiscreteScheduler(timestep_spacing="leading", steps_offset=1,
                                                        prediction_type="v_prediction"),
    "euler-karras": lambda: D.EulerDiscreteScheduler(use_karras_sigmas=True),
    "euler-ancestral": lambda: D.EulerAncestralDiscreteScheduler(),
    "heun": lambda: D.HeunDiscreteScheduler(),
    "heun-sample": lambda: D.HeunDiscreteScheduler(prediction_type="sample"),
    "ddim": lambda: D.DDIMScheduler(clip_sample=False),
    "ddim-sd": lambda: D.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       clip_sample=False, set_alpha_to_one=False, steps_offset=1),
    "ddpm": lambda: D.DDPMScheduler(),
    "dpm-1": lambda: D.DPMSolverMultistepScheduler(solver_order=1),
    "dpm-2": lambda: D.DPMSolverMultistepScheduler(),
    "dpm-2-v-trailing": lambda: D.DPMSolverMultistepScheduler(prediction_type="v_prediction",
                                                              timestep_spacing="trailing"),
    "dpm-sde-2": lambda: D.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++"),
    "dpm-3": lambda: D.DPMSolverMultistepScheduler(solver_order=3),  # dpmpp_3m(reference_d2=True)
    "dpm-3-no-lof": lambda: D.DPMSolverMultistepScheduler(solver_order=3, lower_order_final=False),
    "unipc-2": lambda: D.UniPCMultistepScheduler(),
    "unipc-3": lambda: D.UniPCMultistepScheduler(solver_order=3),
    "deis-2": lambda: D.DEISMultistepScheduler(solver_order=2),
    # DPM-Solver with the noise prediction (diffusers needs final_sigmas_type="sigma_min" there)
    "dpm-noise-2": lambda: D.DPMSolverMultistepScheduler(algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
    "dpm-noise-3": lambda: D.DPMSolverMultistepScheduler(algorithm_type="dpmsolver", final_sigmas_type="sigma_min",
                                                         solver_order=3),
    "dpm-sde-noise-2": lambda: D.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver",
                                                             final_sigmas_type="sigma_min"),
    # single-step DPM-Solver++ (dpmpp_single): groups of solver_order steps restarting from their first point
    "dpm-single-2": lambda: D.DPMSolverSinglestepScheduler(),
    "dpm-single-3-heun-sigma-min": lambda: D.DPMSolverSinglestepScheduler(solver_order=3, solver_type="heun",
                                                                          final_sigmas_type="sigma_min"),
    "dpm-single-sde-2": lambda: D.DPMSolverSinglestepScheduler(algorithm_type="sde-dpmsolver++"),  # same draws
    "sa-solver": lambda: D.SASolverScheduler(),  # sa_solver, tau = 1 on the levels of timesteps 200..800
    # zero-length last steps (the last point already at the final level): diffusers takes them with its solver
    "euler-sigma-min": lambda: D.EulerDiscreteScheduler(final_sigmas_type="sigma_min"),
    "unipc-karras-sigma-min": lambda: D.UniPCMultistepScheduler(use_karras_sigmas=True, final_sigmas_type="sigma_min"),
    "dpm-lu-sigma-min": lambda: D.DPMSolverMultistepScheduler(use_lu_lambdas=True, final_sigmas_type="sigma_min"),
    "heun-karras": lambda: D.HeunDiscreteScheduler(use_karras_sigmas=True),
}  # fmt: skip


@pytest.mark.parametrize("n", [10, 25])
@pytest.mark.parametrize("key", list(SOURCES))
def test_from_config_runs_the_source_schedulers_own_method(key, n):
    source = SOURCES[key]()
    ref, ref_calls = run_loop(source, n, generator=torch.Generator().manual_seed(1))
    sch = SdekitScheduler.from_config(source.config)  # no solver named: the source's method and conventions
    out, calls = run_loop(sch, n, generator=torch.Generator().manual_seed(1))
    assert calls == ref_calls and len(sch.timesteps) == len(source.timesteps)
    assert float(sch.init_noise_sigma) == pytest.approx(float(source.init_noise_sigma), rel=1e-6)
    # float32 round-off (diffusers computes its update in float32; Heun's 2 evaluations per step double it; the
    # noise-prediction SDE step multiplies it by e^h: 3.4e-6 at 10 steps, 6e-7 at 25)
    tol = 1e-5 if key.startswith("heun") else 5e-6 if key.startswith("dpm-sde-noise") else 2e-6
    assert float((out - ref).abs().max() / ref.abs().max()) < tol


def test_naming_a_solver_changes_the_method_only():
    source = D.EulerDiscreteScheduler(timestep_spacing="leading", steps_offset=1)
    sch = SdekitScheduler.from_config(source.config, solver="dpmpp_2m")
    assert sch.config.state_variable == "sigma" and sch.config.timestep_source == "EulerDiscreteScheduler"
    source.set_timesteps(12)
    sch.set_timesteps(12)
    assert float(sch.init_noise_sigma) == pytest.approx(float(source.init_noise_sigma), rel=1e-6)
    assert torch.equal(sch.timesteps.to(torch.float32), source.timesteps)
    # the same solver on the VP state and the same schedule: the latents are x / alpha, nothing else differs
    vp = SdekitScheduler.from_config(dict(sch.config, state_variable="vp"))
    out, _ = run_loop(sch, 12)
    ref, _ = run_loop(vp, 12)
    assert float((out - ref).abs().max() / ref.abs().max()) < 2e-6
    # the source's lower_order_final convention reaches a named solver that has the option
    dpm = SdekitScheduler.from_config(D.DPMSolverMultistepScheduler(lower_order_final=False).config, solver="unipc")
    assert dpm.solver.lower_order_final is False and dpm.config.solver_options is None


def test_a_scheduler_without_an_sdekit_method_is_refused_unless_a_solver_is_named():
    # (issue 22: refused, no longer a warning and another method) the class is named; naming a solver keeps its schedule
    with pytest.raises(ValueError, match="no equivalent of PNDMScheduler's method"):
        SdekitScheduler.from_config(D.PNDMScheduler())
    sch = SdekitScheduler.from_config(D.PNDMScheduler(), solver="dpmpp_2m")
    assert sch.config.solver == "dpmpp_2m" and sch.config.timestep_source == "PNDMScheduler"
    with pytest.warns(UserWarning, match="third-order SDE multistep formula differs"):
        SdekitScheduler.from_config(
            D.DPMSolverMultistepScheduler(solver_order=3, algorithm_type="sde-dpmsolver++").config
        )


def test_config_goes_through_diffusers_registration():
    sch = SdekitScheduler("heun")
    assert "timestep_spacing" in sch.config["_use_default_values"] and "solver" not in sch.config["_use_default_values"]
    # a diffusers class built from this config takes its own defaults for what was never set here
    assert D.DDIMScheduler.from_config(sch.config).config.timestep_spacing == "leading"
    assert D.DDIMScheduler.from_config(SdekitScheduler(timestep_spacing="trailing").config).config.timestep_spacing == (
        "trailing"
    )


def wide_start(n=8):
    """Latents of shape (n, 3, 1, 1) (diffusers' thresholding needs image-shaped samples)."""
    return x_start(torch.float32, n).reshape(n, 3, 1, 1)


class WideEps(ExactEps):
    """DATA scaled by 3: data predictions well outside [-1, 1], so clipping and thresholding act."""

    def __call__(self, x, timestep):
        t = self.sde.t_from_timestep(float(timestep))
        alpha, sigma = (float(c) for c in self.sde.marginal(t))
        eps = super().__call__(x, timestep)
        return eps + 0.8 * alpha / sigma * torch.sign(x)  # pushes the implied data prediction out


@pytest.mark.parametrize(
    "make",
    [lambda: D.DPMSolverMultistepScheduler(thresholding=True, sample_max_value=1.5),
     lambda: D.DPMSolverMultistepScheduler(thresholding=True, dynamic_thresholding_ratio=0.9),
     lambda: D.UniPCMultistepScheduler(thresholding=True, sample_max_value=1.3),
     lambda: D.DDPMScheduler(clip_sample=True, clip_sample_range=0.8)],
)  # fmt: skip
def test_thresholding_and_clipping_of_the_data_prediction(make):
    outs = []
    for sch in (make(), SdekitScheduler.from_config(make().config)):
        model, x = WideEps(sch), wide_start()
        sch.set_timesteps(12)
        generator = torch.Generator().manual_seed(2)
        for t in sch.timesteps:
            out = model(sch.scale_model_input(x, t), t)
            kw = {"generator": generator} if "generator" in inspect.signature(sch.step).parameters else {}
            x = sch.step(out, t, x, **kw).prev_sample
        outs.append(x)
    ref, out = outs
    assert float((out - ref).abs().max() / ref.abs().max()) < 2e-6
    # the thresholds act on this data: without them the result is another
    plain = SdekitScheduler.from_config({k: False if k in ("thresholding", "clip_sample") else v
                                         for k, v in make().config.items()})  # fmt: skip
    model, x = WideEps(plain), wide_start()
    plain.set_timesteps(12)
    generator = torch.Generator().manual_seed(2)
    for t in plain.timesteps:
        x = plain.step(model(x, t), t, x, generator=generator).prev_sample
    assert float((x - ref).abs().max()) > 1e-2


def test_zero_terminal_snr_schedules():
    # diffusers' clamp of the zero-SNR end (alphas_cumprod[-1] = 2**-24): a finite first noise level
    zero_snr = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, rescale_betas_zero_snr=True,
                    prediction_type="v_prediction", timestep_spacing="trailing")  # fmt: skip
    for source in (D.EulerDiscreteScheduler(**zero_snr), D.DPMSolverMultistepScheduler(**zero_snr)):
        sch = SdekitScheduler.from_config(source.config)
        assert torch.equal(sch.alphas_cumprod, source.alphas_cumprod)
        ref, _ = run_loop(source, 10)
        out, _ = run_loop(sch, 10)
        # float32 round-off of the first steps: Euler's latents start at sigma_max = 4096 times the noise
        assert float((out - ref).abs().max() / ref.abs().max()) < 5e-5
    # the linear schedule's second-to-last value is below the clamp: continued geometrically (strictly decreasing)
    lin = SdekitScheduler(rescale_betas_zero_snr=True)
    ac = lin.alphas_cumprod
    assert bool((ac[1:] < ac[:-1]).all()) and float(ac[-1]) < float(ac[-2])


def test_betas_and_alphas():
    for cfg in (dict(), dict(beta_schedule="squaredcos_cap_v2"), dict(trained_betas=np.linspace(1e-4, 0.03, 50))):
        ddpm, sch = D.DDPMScheduler(**cfg), SdekitScheduler(**cfg)
        assert torch.equal(sch.betas, ddpm.betas) and torch.equal(sch.alphas, ddpm.alphas)
        assert torch.equal(sch.alphas_cumprod, ddpm.alphas_cumprod)


@pytest.mark.parametrize("solver", ["dpmpp_2m_sde", "heun", "unipc", "ancestral"])
def test_pickle_and_deepcopy_mid_run_with_a_generator(solver):
    sch = SdekitScheduler.from_config(D.EulerDiscreteScheduler().config, solver=solver)
    sch.set_timesteps(8)
    model, x = ExactEps(sch), x_start(torch.float32) * sch.init_noise_sigma
    generator = torch.Generator().manual_seed(3)
    ts = sch.timesteps
    for t in ts[:3]:
        x = sch.step(model(sch.scale_model_input(x, t), t), t, x, generator=generator).prev_sample
    copies = [pickle.loads(pickle.dumps(sch)), copy.deepcopy(sch), sch]
    results = []
    for c in copies:
        g, y = copy.deepcopy(generator), x.clone()
        for t in ts[3:]:
            y = c.step(model(c.scale_model_input(y, t), t), t, y, generator=g).prev_sample
        results.append(y)
    assert torch.equal(results[0], results[2]) and torch.equal(results[1], results[2])


# -- the scheduler contract of diffusers' own scheduler tests, for every accepted solver -------------------------


def contract_config(solver):
    return dict(solver=solver, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                **OPTIONS.get(solver, {}))  # fmt: skip


def first_steps(sch, sample, k=2, seed=0):
    """``k`` steps of a dummy 'network' (0.1 x) from ``sample``, with a generator: the outputs."""
    generator = torch.manual_seed(seed)
    out = []
    for t in sch.timesteps[:k]:
        sample = sch.step(0.1 * sch.scale_model_input(sample, t), t, sample, generator=generator).prev_sample
        out.append(sample)
    return out


@pytest.mark.parametrize("solver", ACCEPTED)
def test_contract_save_load_step_shape_and_outputs(solver, tmp_path):
    sch = SdekitScheduler(**contract_config(solver), thresholding=True, sample_max_value=1.5)
    sch.save_pretrained(tmp_path)
    loaded = SdekitScheduler.from_pretrained(tmp_path)
    config = dict(sch.config)
    del config["_use_default_values"]  # a saved and loaded config passed every entry
    assert config == loaded.config
    sample = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for s in (sch, loaded):
        s.set_timesteps(10)
    a, b = first_steps(sch, sample), first_steps(loaded, sample)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and all(x.shape == sample.shape for x in a)
    # return_dict=False gives the same tensor in a tuple
    sch.set_timesteps(10)
    loaded.set_timesteps(10)
    t = sch.timesteps[0]
    (tup,) = sch.step(0.1 * sample, t, sample, generator=torch.manual_seed(0), return_dict=False)
    dic = loaded.step(0.1 * sample, t, sample, generator=torch.manual_seed(0))
    assert torch.equal(tup, dic.prev_sample)
    # add_noise keeps the samples' dtype and device
    noisy = sch.add_noise(sample.double(), torch.ones_like(sample.double()), sch.timesteps[3:4].repeat(4))
    assert noisy.dtype == torch.float64 and noisy.shape == sample.shape


def test_contract_compatibles_round_trip():
    sch = SdekitScheduler(**contract_config("unipc"))
    assert sch.compatibles and all(c is not None for c in sch.compatibles)
    for comp_cls in sch.compatibles:
        comp = comp_cls.from_config(sch.config)
        back = SdekitScheduler.from_config(comp.config)
        assert {k: v for k, v in back.config.items() if k in sch.config} == dict(sch.config), comp_cls.__name__
        init_keys = set(inspect.signature(SdekitScheduler.__init__).parameters)
        assert not ({k for k in back.config if k not in sch.config} & init_keys)


def test_contract_trained_betas_save_load(tmp_path):
    sch = SdekitScheduler(**dict(contract_config("dpmpp_2m"), trained_betas=np.array([0.1, 0.3])))
    sch.save_pretrained(tmp_path)
    assert SdekitScheduler.from_pretrained(tmp_path).betas.tolist() == sch.betas.tolist()


def dummy_model(sample, t):
    """The model of diffusers' scheduler tests' full loops: ``sample * t / (t + 1)``."""
    t = torch.as_tensor(t, dtype=sample.dtype)
    return sample * t / (t + 1)


def dummy_sample_deter():
    """A deterministic (4, 3, 8, 8) sample of values in [0, 1), laid out channel-first then permuted."""
    return (torch.arange(4 * 3 * 8 * 8) / (4 * 3 * 8 * 8)).reshape(3, 8, 8, 4).permute(3, 0, 1, 2)


@pytest.mark.parametrize("key", ["euler", "euler-ancestral", "heun", "ddim", "ddpm", "dpm-2", "dpm-sde-2", "unipc-3",
                                 "deis-2", "dpm-single-2"])  # fmt: skip
def test_full_loop_of_diffusers_scheduler_tests_through_from_config(key):
    # the loop of diffusers' per-scheduler full-loop tests (dummy model, deterministic sample, 10 steps, generator)
    results = []
    for sch in (SOURCES[key](), SdekitScheduler.from_config(SOURCES[key]().config)):
        sch.set_timesteps(10)
        generator = torch.manual_seed(0)
        sample = dummy_sample_deter() * sch.init_noise_sigma
        for t in sch.timesteps:
            out = dummy_model(sch.scale_model_input(sample, t), t)
            kw = {"generator": generator} if "generator" in inspect.signature(sch.step).parameters else {}
            sample = sch.step(out, t, sample, **kw).prev_sample
        results.append(sample)
    ref, out = results
    assert float((out - ref).abs().sum() / ref.abs().sum()) < 1e-5


@pytest.mark.parametrize("key", ["euler", "euler-ancestral", "heun", "ddim", "dpm-2", "unipc-2", "deis-2",
                                 "dpm-noise-2", "dpm-single-2"])  # fmt: skip
def test_img2img_loop_equals_the_source_scheduler(key):
    unet = tiny_unet()
    ref, n_ref = img2img(SOURCES[key](), unet, IMAGE, 0.6, 10)
    out, n_out = img2img(SdekitScheduler.from_config(SOURCES[key]().config), unet, IMAGE, 0.6, 10)
    assert n_ref == n_out
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-5


@pytest.mark.parametrize("make", [lambda: D.DDPMScheduler(), lambda: D.DDIMScheduler(clip_sample=False)],
                         ids=["ddpm", "ddim"])  # fmt: skip
def test_real_pipeline_gives_the_same_images_after_the_swap(make):
    # DDPMPipeline (a real diffusers pipeline: its own noise, generator, clipping of the data prediction for DDPM)
    unet = tiny_unet()
    pipe = D.DDPMPipeline(unet=unet, scheduler=make())
    pipe.set_progress_bar_config(disable=True)
    kw = dict(batch_size=2, num_inference_steps=10, output_type="np")
    ref = pipe(generator=torch.Generator().manual_seed(0), **kw).images
    pipe.scheduler = SdekitScheduler.from_config(pipe.scheduler.config)
    out = pipe(generator=torch.Generator().manual_seed(0), **kw).images
    assert np.abs(out - ref).max() < 1e-5


@pytest.mark.parametrize("source", [D.EDMEulerScheduler, D.EDMDPMSolverMultistepScheduler])
def test_img2img_loop_with_an_edm_source_equals_diffusers(source):
    # (diffusers' image-to-image pipelines need transformers' text encoders, not installed here: the pipeline's
    # scheduler calls, replayed by img2img, with a small UNet2DModel; see docs/models.md)
    unet = tiny_unet()
    ref, n_ref = img2img(source(), unet, IMAGE, 0.6, 10)
    out, n_out = img2img(SdekitScheduler.from_config(source().config), unet, IMAGE, 0.6, 10)
    assert n_out == n_ref == 6 and float((out - ref).abs().max() / ref.abs().max()) < 5e-6
