"""SdekitScheduler as a diffusers drop-in, checked with the real diffusers: image-to-image starts for every solver it
accepts, diffusers' timestep options, the source scheduler's own method through ``from_config`` and the scheduler
contract diffusers' own scheduler tests check (written here for SdekitScheduler; no diffusers test code is used).
Networks are exact scores of a Gaussian or small random UNet2DModels built here: nothing is downloaded."""

from __future__ import annotations

import inspect

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
OPTIONS = {"edm": {"S_tmax": 0.5}}


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
        s = self.score(x.double().numpy(), np.full(x.shape[0], t))
        return torch.as_tensor(-float(self.sde.marginal(t)[1]) * s, dtype=x.dtype)


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
    # EDM's churned stages are announced (and seen by the network) as float32 timesteps
    tol = 1e-7 if solver == "edm" else 1e-13
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
    scheduler.set_begin_index(t_start * scheduler.order)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(image.shape, generator=generator)
    x = scheduler.add_noise(image, noise, timesteps[:1].repeat(image.shape[0]))
    for t in timesteps:
        out = unet(scheduler.scale_model_input(x, t), t).sample
        x = scheduler.step(out, t, x, generator=generator, return_dict=False)[0]
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
    with pytest.raises(ValueError, match="twice the state's channels"):
        sch.step(torch.zeros(2, 3, 8, 8), sch.timesteps[0], torch.zeros(2, 3, 8, 8))


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
