"""sdekit inside diffusers (SdekitScheduler in a real DDPMPipeline, against DPMSolverMultistepScheduler) and diffusers
networks inside sdekit (score_from_diffusers). Small randomly initialised UNet2DModels, built here: nothing is
downloaded."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UNet2DModel,
)

import sdekit  # noqa: E402
from sdekit.interop import SdekitScheduler, score_from_diffusers, sde_from_diffusers  # noqa: E402

DATA = sdekit.Gaussian([0.5, -0.3, 0.2], [0.3, 0.2, 0.5])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks and small batches: one torch thread is fastest (and the machine may be shared)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_unet(seed=0, **kwargs):
    torch.manual_seed(seed)
    config = dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                  down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                  norm_num_groups=4)  # fmt: skip
    config.update(kwargs)
    return UNet2DModel(**config).eval()


class ExactEps:
    """The exact noise prediction of DATA at a model timestep (a 'network' with a known answer)."""

    def __init__(self, scheduler):
        self.sde = sde_from_diffusers(scheduler)
        self.score = DATA.score(self.sde)
        self.calls = 0

    def __call__(self, x, timestep):
        self.calls += 1
        t = self.sde.t_from_timestep(float(timestep))
        s = self.score(x.double().numpy(), np.full(x.shape[0], t))
        return torch.as_tensor(-float(self.sde.marginal(t)[1]) * s, dtype=x.dtype)


def run_loop(scheduler, n, x, generator=None):
    """The loop every diffusers pipeline runs: one network call per timestep, then ``step``."""
    model = ExactEps(scheduler)
    scheduler.set_timesteps(n)
    for t in scheduler.timesteps:
        x = scheduler.step(model(scheduler.scale_model_input(x, t), t), t, x, generator=generator).prev_sample
    return x, model.calls


def x_T(dtype=torch.float32):
    return torch.randn(16, 3, generator=torch.Generator().manual_seed(0)).to(dtype)


def max_rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("n", [5, 10, 25])
def test_dpmpp_2m_reproduces_dpm_solver_multistep(n):
    ref, ref_calls = run_loop(DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2), n, x_T())
    out, calls = run_loop(SdekitScheduler("dpmpp_2m"), n, x_T())
    assert calls == ref_calls == n and out.dtype == torch.float32
    # diffusers computes its sigmas and the update in float32; sdekit's coefficients are float64
    assert max_rel(out, ref) < 2e-6
    out64, _ = run_loop(SdekitScheduler("dpmpp_2m"), n, x_T(torch.float64))
    assert max_rel(out64, ref) < 2e-6


def test_dpmpp_2m_sde_reproduces_sde_dpm_solver_with_the_same_generator():
    ref, _ = run_loop(DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++"), 12, x_T(),
                      generator=torch.Generator().manual_seed(7))  # fmt: skip
    out, _ = run_loop(SdekitScheduler("dpmpp_2m_sde"), 12, x_T(), generator=torch.Generator().manual_seed(7))
    assert max_rel(out, ref) < 5e-6


@pytest.mark.parametrize("solver, options", [("heun", {}), ("dpmpp_3m_pc", {}), ("euler_maruyama", {"seed": 4}),
                                             ("edm", {"S_churn": 10.0, "seed": 4}), ("pc", {"seed": 4})])  # fmt: skip
def test_scheduler_equals_sdekit_on_the_same_grid(solver, options):
    # float64 latents: the scheduler (one network call at a time, multi-evaluation steps replayed) gives sdekit's own
    # numbers on the timesteps' grid, denoising step included; counter-based noise when a seed is given
    sch = SdekitScheduler(solver, **options)
    out, calls = run_loop(sch, 20, x_T(torch.float64))
    sde = sch.sde
    grid = sch._plan.grid
    ref = sdekit.sample(sde, DATA.score(sde), x_T=x_T(torch.float64), solver=solver, grid=grid, t_end=float(grid[-1]),
                        seed=options.get("seed", 0), **{k: v for k, v in options.items() if k != "seed"}).x  # fmt: skip
    assert calls == len(sch.timesteps) == (20 - 1) * sch.order + 1
    # EDM's churned stages fall between trained timesteps, announced (and seen by the network) in float32
    assert max_rel(out, ref) < (1e-8 if sch.timesteps.is_floating_point() else 1e-12)


def test_multi_evaluation_solvers_announce_their_stages():
    sch = SdekitScheduler("heun")
    sch.set_timesteps(4)
    assert sch.order == 2
    # heun: each step's second evaluation is at the next point, as diffusers' HeunDiscreteScheduler lists them
    taus = sch.timesteps.tolist()
    assert len(taus) == 2 * 3 + 1 and taus[1] == taus[2] and taus[3] == taus[4]
    rk4 = SdekitScheduler("rk4")
    rk4.set_timesteps(4)
    assert rk4.order == 4 and rk4.timesteps.dtype == torch.float32  # midpoints are between trained timesteps
    with pytest.raises(ValueError, match="evaluates the network first at another state"):
        SdekitScheduler("edm", S_tmax=1000.0).set_timesteps(5)  # churn on the first step


def test_ddpm_pipeline_with_one_network_call_per_timestep():
    unet = tiny_unet()
    calls = []
    unet.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler())
    pipe.set_progress_bar_config(disable=True)
    ddpm_taus = DDPMScheduler()
    ddpm_taus.set_timesteps(10)
    for solver, expected in [("dpmpp_2m", 10), ("heun", 19), ("dpmpp_3m_pc", 10)]:
        pipe.scheduler = SdekitScheduler.from_config(DDPMScheduler().config, solver=solver)
        calls.clear()
        images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=10,
                      output_type="pt").images  # fmt: skip
        assert len(calls) == expected and set(calls) == {2}
        assert images.shape == (2, 3, 8, 8) and bool(torch.isfinite(images).all())
        # the DDPM scheduler's own timestep spacing ("leading": 900, 800, ..., 0) is kept
        assert sorted(set(pipe.scheduler.timesteps.tolist())) == sorted(ddpm_taus.timesteps.tolist())
    # against DPMSolverMultistepScheduler in the same pipeline: float32 round-off (images are x / 2 + 1/2)
    pipe.scheduler = DPMSolverMultistepScheduler()
    ref = pipe(
        batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=10, output_type="pt"
    ).images
    pipe.scheduler = SdekitScheduler.from_config(pipe.scheduler.config)
    out = pipe(
        batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=10, output_type="pt"
    ).images
    assert float((out - ref).abs().max()) < 1e-5


@pytest.mark.parametrize(
    "source",
    [DDPMScheduler(), DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
     DPMSolverMultistepScheduler(use_karras_sigmas=True), EulerDiscreteScheduler(timestep_spacing="trailing")],
    ids=lambda s: type(s).__name__,
)  # fmt: skip
def test_from_config_keeps_the_training_schedule_and_the_timestep_spacing(source, tmp_path):
    sch = SdekitScheduler.from_config(source.config, solver="euler")
    assert sch.config.timestep_source == type(source).__name__
    np.testing.assert_array_equal(sch.alphas_cumprod.numpy(), source.alphas_cumprod.numpy())
    source.set_timesteps(8)
    sch.set_timesteps(8)
    np.testing.assert_array_equal(sch.timesteps.numpy().astype(np.float64),
                                  source.timesteps.numpy().astype(np.float64).round())  # fmt: skip
    # the scheduler object works too, and the config survives save_pretrained / from_pretrained
    assert SdekitScheduler.from_config(source).config.timestep_source == type(source).__name__
    sch.save_pretrained(tmp_path)
    loaded = SdekitScheduler.from_pretrained(tmp_path)
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == {
        k: v for k, v in sch.config.items() if not k.startswith("_")
    }
    loaded.set_timesteps(8)
    assert torch.equal(loaded.timesteps, sch.timesteps)


def test_solver_options_through_from_config():
    sch = SdekitScheduler.from_config(DDPMScheduler().config, solver="dpmpp_pc", order=2, sigma_data=0.5)
    assert sch.solver.name == "dpmpp_pc" and sch.config.solver_options == {"order": 2, "sigma_data": 0.5}
    again = SdekitScheduler.from_config(sch.config, solver="heun")  # another solver: the old options do not carry over
    assert again.solver.name == "heun" and again.config.solver_options is None


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_score_from_diffusers_matches_diffusers_conversion(prediction_type):
    unet = tiny_unet()
    config = DPMSolverMultistepScheduler(prediction_type=prediction_type).config
    sde, score = score_from_diffusers(unet, config)
    assert isinstance(sde, sdekit.DiscreteVPSDE) and score.event_shape == (3, 8, 8)
    ref = DPMSolverMultistepScheduler.from_config(config)
    ref.set_timesteps(10)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ref._step_index = 3
    tau = int(ref.timesteps[3])
    with torch.no_grad():
        x0_ref = ref.convert_model_output(unet(x, tau).sample, sample=x)  # diffusers' data prediction
        t = torch.full((2,), sde.t_from_timestep(float(tau)))
        s = score(x, t)
    alpha, sigma = (float(c) for c in sde.marginal(float(t[0])))
    x0 = (x + sigma**2 * s) / alpha  # Tweedie from sdekit's score
    assert float((x0 - x0_ref).abs().max() / x0_ref.abs().max()) < 1e-5


def test_diffusers_network_is_a_score_for_every_solver_and_takes_cond():
    unet = tiny_unet(num_class_embeds=3)
    sde, score = score_from_diffusers(unet, DDPMScheduler())
    labels = torch.tensor([0, 2, 1, 2])
    kw = dict(solver="dpmpp_2m", steps=6, cond={"class_labels": labels}, seed=2)
    whole = sdekit.sample(sde, score, n=4, **kw).x
    assert whole.shape == (4, 3, 8, 8) and whole.dtype == torch.float32
    # conditioning stays aligned when the batch is sampled in chunks with its ids
    kw["cond"] = {"class_labels": labels[2:]}
    part = sdekit.sample(sde, score, n=2, sample_ids=[2, 3], **kw).x
    assert max_rel(part, whole[2:]) < 1e-5  # float32 convolutions of batches of 2 and 4
    heun = sdekit.sample(sde, score, n=2, solver="heun", steps=3, cond={"class_labels": labels[:2]}).x
    assert bool(torch.isfinite(heun).all())


def test_learned_variance_outputs_are_split():
    unet = tiny_unet(out_channels=6)
    sde, score = score_from_diffusers(unet, DDPMScheduler(variance_type="learned_range"))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert score(x, torch.full((2,), 0.5)).shape == x.shape


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="no training schedule"):
        SdekitScheduler.from_config({"num_train_timesteps": 1000, "shift": 3.0})
    with pytest.raises(ValueError, match="no training schedule"):
        score_from_diffusers(tiny_unet(), {"num_train_timesteps": 1000})
    with pytest.raises(ValueError, match=r"prediction_type'\] must be one of"):
        score_from_diffusers(tiny_unet(), dict(DDPMScheduler().config, prediction_type="flow_velocity"))
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        SdekitScheduler("euler", prediction_type="x0")
    with pytest.raises(ValueError, match="chooses its own .*steps"):
        SdekitScheduler("adaptive")
    with pytest.raises(ValueError, match="unknown option"):
        SdekitScheduler("heun", order=3)
    with pytest.raises(ValueError, match="timestep_spacing must be one of"):
        SdekitScheduler("euler", timestep_spacing="cosine")
    sch = SdekitScheduler("euler")
    # (issue 22) before set_timesteps the schedule is every training timestep, as diffusers' DDPM and Euler have it
    untimed = sch.step(torch.full((2, 3), 0.1), 999, torch.ones(2, 3)).prev_sample
    assert sch.num_inference_steps == 1000 and sch.timesteps.tolist() == list(range(999, -1, -1))
    timed = SdekitScheduler("euler")
    timed.set_timesteps(timesteps=list(range(999, -1, -1)))
    assert torch.equal(untimed, timed.step(torch.full((2, 3), 0.1), 999, torch.ones(2, 3)).prev_sample)
    sch.set_timesteps(5)
    x = torch.zeros(2, 3)
    sch.step(torch.zeros(2, 3), sch.timesteps[0], x)
    with pytest.raises(ValueError, match="scheduler.timesteps in order"):
        sch.step(torch.zeros(2, 3), sch.timesteps[3], x)
    with pytest.raises(ValueError, match="timesteps must decrease"):  # repeats are removed (as diffusers does)
        sch.set_timesteps(timesteps=[10, 500, 999])


def test_add_noise_start_mid_schedule_and_half_precision():
    sch = SdekitScheduler("heun")
    ddpm = DDPMScheduler()
    x0, noise = torch.randn(3, 3), torch.randn(3, 3)
    taus = torch.tensor([0, 500, 999])
    assert float((sch.add_noise(x0, noise, taus) - ddpm.add_noise(x0, noise, taus)).abs().max()) < 1e-6
    assert sch.init_noise_sigma == 1.0 and sch.scale_model_input(x0, 10) is x0 and len(sch) == 1000
    # image-to-image: start at a later step point (set_begin_index, as pipelines do with timesteps[t_start * order:])
    sch.set_timesteps(10)
    sch.set_begin_index(4 * sch.order)
    model = ExactEps(sch)
    x = sch.add_noise(x0, noise, sch.timesteps[4 * sch.order : 4 * sch.order + 1].repeat(3))
    for t in sch.timesteps[4 * sch.order :]:
        x = sch.step(model(x, t), t, x).prev_sample
    assert model.calls == len(sch.timesteps) - 4 * sch.order and bool(torch.isfinite(x).all())
    # float16 latents: the state is kept in float32, prev_sample comes back in the model output's dtype
    half = SdekitScheduler("dpmpp_2m")
    half.set_timesteps(6)
    x = x_T(torch.float16)
    model = ExactEps(half)
    for t in half.timesteps:
        x = half.step(model(x.float(), t).half(), t, x).prev_sample
    assert x.dtype == torch.float16
    ref, _ = run_loop(SdekitScheduler("dpmpp_2m"), 6, x_T(torch.float16).float())
    assert max_rel(x, ref) < 5e-3
