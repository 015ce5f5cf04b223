"""The pipeline loop of diffusers' scheduler tests (their deterministic model, float32 latents), shared by the tests
that compare SdekitScheduler.from_config with the real diffusers schedulers."""

from __future__ import annotations

import inspect
import warnings

import torch

from sdekit.interop.diffusers import SdekitScheduler


def model(x, t):
    """A model whose output depends on the state and the timestep (diffusers' scheduler tests use this one)."""
    t = torch.as_tensor(t).reshape(-1, *(1,) * (x.ndim - 1)).to(x.dtype)
    return x * t / (t + 1)


def start(dtype=torch.float32):
    n = 4 * 3 * 8 * 8
    return (torch.arange(n).reshape(3, 8, 8, 4) / n).permute(3, 0, 1, 2).to(dtype)


def loop(sch, n=None, seed=0, dtype=torch.float32, **set_kwargs):
    """A pipeline's loop: init_noise_sigma, scale_model_input, one model call per timestep, step (with a generator
    where step takes one)."""
    sch.set_timesteps(n, **set_kwargs) if n is not None else sch.set_timesteps(**set_kwargs)
    gen = torch.manual_seed(seed)
    kw = {"generator": gen} if "generator" in inspect.signature(sch.step).parameters else {}
    x = start(dtype) * sch.init_noise_sigma
    for t in sch.timesteps:
        x = sch.step(model(sch.scale_model_input(x, t), t), t, x, **kw).prev_sample
    return x


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def swapped(source):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # these mappings are exact: no "differs" warning
        return SdekitScheduler.from_config(source.config)
