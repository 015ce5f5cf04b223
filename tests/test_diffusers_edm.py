"""SdekitScheduler.from_config of diffusers' EDM schedulers (EDMEulerScheduler, EDMDPMSolverMultistepScheduler):
their noise levels, c_noise timesteps, preconditioning, init_noise_sigma and method, against the real diffusers
schedulers on the deterministic model of diffusers' scheduler tests (float32 latents)."""

from __future__ import annotations

import warnings

import diffusers as D
import numpy as np
import pytest
import torch

from _diffusers_loop import loop, model, rel, start, swapped
from sdekit.interop.diffusers import SdekitScheduler

EULER, DPM = "EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"
CASES = {
    "euler": (EULER, {}),
    "euler-v": (EULER, dict(prediction_type="v_prediction")),
    "euler-sigma-min": (EULER, dict(final_sigmas_type="sigma_min")),
    "euler-exponential": (EULER, dict(sigma_schedule="exponential")),
    "euler-levels": (EULER, dict(sigma_min=0.01, sigma_max=20.0, sigma_data=1.0, rho=5.0)),
    "dpm-1": (DPM, dict(solver_order=1)),
    "dpm-2": (DPM, {}),
    "dpm-3": (DPM, dict(solver_order=3)),
    "dpm-2-v": (DPM, dict(prediction_type="v_prediction")),
    "dpm-2-thresholding": (DPM, dict(thresholding=True, sample_max_value=0.5)),
    "dpm-2-sigma-min": (DPM, dict(final_sigmas_type="sigma_min")),
    "dpm-2-no-lower-final": (DPM, dict(lower_order_final=False)),
}
METHODS = {EULER: "dpmpp_pc", DPM: "dpmpp_2m"}


@pytest.mark.parametrize("n", [10, 25])
@pytest.mark.parametrize("case", list(CASES))
def test_edm_schedulers_full_loop_is_diffusers(case, n):
    """EDM Euler is DDIM (Euler in s on x_s), EDM's DPM-Solver++ is sdekit's: the same numbers (measured 5e-7 to
    1.9e-6 relative)."""
    name, kw = CASES[case]
    make = lambda: getattr(D, name)(**kw)  # noqa: E731
    sch = swapped(make())
    assert sch.config.state_variable == "edm" and sch.config.timestep_source == name
    assert rel(loop(sch, n), loop(make(), n)) < 3e-6


@pytest.mark.parametrize("n", [10, 25])
def test_edm_sde_dpm_solver_same_generator_draws(n):
    make = lambda: D.EDMDPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")  # noqa: E731
    sch = swapped(make())
    assert sch.config.solver == "dpmpp_2m_sde"
    assert rel(loop(sch, n, seed=3), loop(make(), n, seed=3)) < 5e-6


@pytest.mark.parametrize("name", [EULER, DPM])
def test_edm_conventions_are_the_source_classes(name):
    """Timesteps ``c_noise = log(s) / 4`` (float32, diffusers' own), ``init_noise_sigma = sqrt(sigma_max^2 + 1)``,
    ``scale_model_input = x / sqrt(s^2 + sigma_data^2)``, ``add_noise = x_0 + s noise``, the step's output at every
    step, the training schedule before ``set_timesteps``."""
    src = getattr(D, name)(sigma_max=40.0, sigma_data=0.7)
    sch = swapped(src)
    assert torch.equal(sch.timesteps, src.timesteps)  # (the training timesteps)
    assert sch.init_noise_sigma == pytest.approx(src.init_noise_sigma, rel=1e-12)
    src.set_timesteps(12)
    sch.set_timesteps(12)
    assert sch.timesteps.dtype == torch.float32 and torch.equal(sch.timesteps, src.timesteps)
    torch.testing.assert_close(sch.sigmas, src.sigmas.float(), rtol=1e-6, atol=0)
    x0, noise = start(), torch.flip(start(), [0])
    t = src.timesteps[[4]]
    torch.testing.assert_close(sch.add_noise(x0, noise, t), src.add_noise(x0, noise, t), rtol=1e-6, atol=1e-6)
    x = y = start() * src.init_noise_sigma
    for t in src.timesteps:
        a, b = sch.scale_model_input(x, t), src.scale_model_input(y, t)
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-7)
        x = sch.step(model(a, t), t, x).prev_sample
        y = src.step(model(b, t), t, y).prev_sample
        assert rel(x, y) < 3e-6


def test_edm_euler_custom_sigmas_go_through_the_source():
    """EDMEulerScheduler's ``set_timesteps(sigmas=...)`` (it reads them as the ramp of its schedule)."""
    ramp = torch.tensor([0.0, 0.2, 0.45, 0.7, 1.0], dtype=torch.float64)
    src, sch = D.EDMEulerScheduler(), swapped(D.EDMEulerScheduler())
    assert rel(loop(sch, sigmas=ramp), loop(src, sigmas=ramp)) < 3e-6
    with pytest.raises(ValueError, match="not timesteps"):
        sch.set_timesteps(timesteps=[3, 2, 1])


@pytest.mark.parametrize("name", [EULER, DPM])
def test_edm_img2img_start_is_diffusers_from_the_same_step(name):
    make = lambda: getattr(D, name)()  # noqa: E731

    def run(sch, k=6):
        sch.set_timesteps(20)
        sch.set_begin_index(k)
        x = start() * float(sch.sigmas[k])
        for t in sch.timesteps[k:]:
            x = sch.step(model(sch.scale_model_input(x, t), t), t, x).prev_sample
        return x

    assert rel(run(swapped(make())), run(make())) < 3e-6


def test_edm_same_formula_in_float64():
    """With float64 latents and diffusers' noise levels in float64 the two loops agree to 1e-13 (measured 4e-14) on
    levels where each one's float32 loop is 2e-5 / 3e-5 from its own float64 one (sigma_max 30, rho 5, order 3)."""
    src = D.EDMDPMSolverMultistepScheduler(sigma_max=30.0, rho=5.0, solver_order=3)
    ours = loop(swapped(src), 10, dtype=torch.float64)
    keep = src.set_timesteps

    def set_timesteps(n, device=None):
        keep(n, device)
        src.sigmas = src.sigmas.double()

    src.set_timesteps = set_timesteps
    assert rel(ours, loop(src, 10, dtype=torch.float64)) < 1e-11


def test_edm_config_round_trips_and_a_named_solver_keeps_the_conventions(tmp_path):
    src = D.EDMDPMSolverMultistepScheduler(sigma_max=30.0, rho=6.0, solver_order=3)
    sch = swapped(src)
    assert sch.config.sigma_max == 30.0 and sch.config.sigma_data == 0.5  # (given; the source's default)
    sch.save_pretrained(tmp_path)
    loaded = SdekitScheduler.from_pretrained(tmp_path)
    assert dict(loaded.config) == {k: v for k, v in sch.config.items() if k != "_use_default_values"}
    assert rel(loop(loaded, 10), loop(src, 10)) < 3e-6
    # another method, the same conventions: EDM Euler's config with DPM-Solver++(2M) named is EDM's DPM-Solver++(2M)
    euler = D.EDMEulerScheduler(sigma_max=30.0, rho=6.0)
    named = SdekitScheduler.from_config(euler.config, solver="dpmpp_2m", lower_order_final=True)
    assert named.config.solver == "dpmpp_2m" and named.config.state_variable == "edm"
    assert named.init_noise_sigma == pytest.approx(euler.init_noise_sigma, rel=1e-12)
    for n in (10, 25):
        # (float32 round-off on these levels: 3.9e-6 at 10 steps)
        assert rel(loop(named, n), loop(D.EDMDPMSolverMultistepScheduler(sigma_max=30.0, rho=6.0), n)) < 1e-5


def test_edm_bad_input_is_refused():
    with pytest.raises(ValueError, match="state_variable='edm' needs an EDM timestep_source"):
        SdekitScheduler(state_variable="edm")
    with pytest.raises(ValueError, match="'epsilon' or 'v_prediction'"):
        SdekitScheduler.from_config(D.EDMDPMSolverMultistepScheduler(prediction_type="sample").config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SdekitScheduler.from_config(D.EDMDPMSolverMultistepScheduler(euler_at_final=True).config)
    assert any("euler_at_final" in str(w.message) for w in caught)


def test_edm_process_has_the_source_levels():
    src = D.EDMEulerScheduler(sigma_min=0.01, sigma_max=20.0)
    sch = swapped(src)
    levels = np.sort(src.sigmas[:-1].double().numpy())
    np.testing.assert_allclose(sch.sde.sigmas, levels, rtol=1e-12)
    assert sch.sde.sigma_max == pytest.approx(20.0, rel=1e-12)
