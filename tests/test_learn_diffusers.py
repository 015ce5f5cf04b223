"""A learned solver (sdekit.learn) as the steps of SdekitScheduler: fitted on the scheduler's own process, saved,
named by its file; the scheduler's loop and a real diffusers pipeline give sdekit.sample's numbers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

import sdekit  # noqa: E402
from sdekit import learn  # noqa: E402
from sdekit.interop import SdekitScheduler, score_from_diffusers  # noqa: E402
from sdekit.learn.solver import same_sde  # noqa: E402

DATA = sdekit.Gaussian(mean=[0.5, -1.0], cov=[0.3, 0.5])


@pytest.fixture(scope="module")
def fitted_file(tmp_path_factory):
    sde = SdekitScheduler().sde
    # a pipeline evaluates its first timestep on its initial latents: no analytic first step (a base without it) and
    # no time offset (the network would see the latents at another noise level than theirs)
    fitted = learn.fit(sde, DATA.score(sde), 5, n=96, base="ipndm", offsets=False, max_evals=20, guard=96,
                       progress=False)  # fmt: skip
    path = tmp_path_factory.mktemp("learned") / "fitted.json"
    fitted.save(path)
    return fitted, str(path)


def _tiny_unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval()  # fmt: skip


def _model(sde, score):
    """The exact noise prediction ``-sigma score`` as a network ``model(x, timestep)``."""

    def model(x, tau):
        t = float(sde.t_from_timestep(float(tau)))
        sigma = float(sde.marginal(t)[1])
        return torch.as_tensor(-sigma * score(x.numpy(), t))

    return model


def test_the_scheduler_runs_the_learned_solver_on_its_grid(fitted_file):
    fitted, path = fitted_file
    sch = SdekitScheduler(solver=path)
    assert same_sde(sch.sde, fitted.sde) and sch.config.solver == path
    sch.set_timesteps(len(fitted.grid))
    assert len(sch.timesteps) == fitted.nfe_budget  # the final denoising step included
    np.testing.assert_allclose(sch.sde.t_from_timestep(sch.timesteps.double().numpy()), fitted.grid, rtol=1e-6)
    x_T = sch.sde.prior_sample((16, 2), seed=1)
    ref = sdekit.sample(sch.sde, DATA.score(sch.sde), x_T=x_T, solver=fitted).x
    x, model = torch.as_tensor(x_T), _model(sch.sde, DATA.score(sch.sde))
    for tau in sch.timesteps:
        x = sch.step(model(x, tau), tau, x).prev_sample
    # the network sees the announced timesteps in float32 (offset evaluation times fall between trained timesteps)
    assert float(np.abs(x.numpy() - ref).max()) < 1e-6 * float(np.abs(ref).max())


def test_a_real_pipeline_with_the_learned_solver(tmp_path):
    unet = _tiny_unet()
    calls = []
    unet.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    source = DDPMScheduler(clip_sample=False)  # (DDPM's default clips the data prediction, sdekit.sample does not)
    sde, score = score_from_diffusers(unet, source.config)
    gauss = sdekit.Gaussian(mean=np.zeros(3 * 8 * 8), cov=np.full(3 * 8 * 8, 0.25))
    fitted = learn.fit(sde, gauss.score(sde), 4, n=32, base="ipndm", offsets=False, max_evals=8, guard=32,
                       progress=False)  # fmt: skip
    fitted.save(tmp_path / "fit.json")
    pipe = DDPMPipeline(unet=unet, scheduler=source)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = SdekitScheduler.from_config(source.config, solver=str(tmp_path / "fit.json"))
    calls.clear()
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=len(fitted.grid),
                  output_type="pt").images  # fmt: skip
    assert len(calls) == fitted.nfe_budget and set(calls) == {2}
    # the same latents through sdekit.sample with the network's score: float32 round-off
    latents = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    ref = sdekit.sample(sde, score, x_T=latents, solver=fitted).x
    expected = (ref / 2 + 0.5).clamp(0, 1)
    assert float((images - expected).abs().max()) < 1e-4


def test_save_and_load_keep_the_trained_schedule(fitted_file, tmp_path):
    fitted, path = fitted_file
    loaded = learn.load(path, sde=SdekitScheduler().sde)
    assert same_sde(loaded.sde, fitted.sde)
    np.testing.assert_array_equal(loaded.grid, fitted.grid)
    np.testing.assert_array_equal(loaded.weights, fitted.weights)
    other = SdekitScheduler(beta_end=0.03).sde
    assert repr(other) == repr(fitted.sde) and not same_sde(other, fitted.sde)  # the repr gives only the length
    with pytest.raises(ValueError, match="does not match"):
        learn.load(path, sde=other)


def test_bad_use_is_refused_by_name(fitted_file):
    fitted, path = fitted_file
    sch = SdekitScheduler(solver=path)
    with pytest.raises(ValueError, match=f"num_inference_steps must be {len(fitted.grid)}"):
        sch.set_timesteps(len(fitted.grid) + 1)
    with pytest.raises(ValueError, match="grid it was fitted on"):
        sch.set_timesteps(timesteps=[999, 500, 0])
    with pytest.raises(ValueError, match="final_sigmas_type must be 'zero'"):
        SdekitScheduler(solver=path, final_sigmas_type="sigma_min").set_timesteps(len(fitted.grid))
    with pytest.raises(ValueError, match="training schedule is another"):
        SdekitScheduler(solver=path, beta_end=0.03)
    sch.set_timesteps(len(fitted.grid))
    sch.set_begin_index(1)  # image-to-image: a run on part of the fitted grid
    with pytest.raises(ValueError, match="image-to-image"):
        sch.step(torch.zeros(2, 2), sch.timesteps[1], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="takes no solver options"):
        SdekitScheduler(solver=path, order=2)
    # an analytic first step, or a time offset on the first step, is refused: the pipeline's first network call is
    # on its initial latents at their own noise level
    with pytest.raises(ValueError, match="analytic first step"):
        SdekitScheduler(solver="ipndm(afs=True)").set_timesteps(8)
    sde = SdekitScheduler().sde
    shifted = learn.LearnedSolver.from_base(sde, "ipndm", fitted.grid)
    shifted.offsets[0] = 0.1
    shifted.save(path + ".offset.json")
    with pytest.raises(ValueError, match="fit with offsets=False"):
        SdekitScheduler(solver=path + ".offset.json").set_timesteps(len(fitted.grid))
