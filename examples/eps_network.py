"""Sample from a noise-prediction network the way diffusers and score_sde models are called.

    python examples/eps_network.py                              # a tiny random UNet2DModel (runs anywhere)
    python examples/eps_network.py --pretrained google/ddpm-cifar10-32 --device cuda --n 16 --steps 100

A diffusers network predicts the noise ``eps(x_tau, tau)`` at a discrete ``timestep`` ``tau`` in ``0 .. N - 1`` of
the schedule it was trained with (DDPM: linear betas ``1e-4 .. 0.02``, ``N = 1000``). ``score_from_diffusers(unet,
scheduler_config)`` reads that schedule from the scheduler's config and returns the :class:`sdekit.DiscreteVPSDE`
built on its ``alphas_cumprod`` (``alpha_bar`` at ``t = (tau + 1) / N`` exactly, interpolated in the log-SNR between
the trained steps) with the score ``-eps / sigma(t)``, evaluated at the real-valued ``timestep = sde.timestep(t)``.
No continuous-time ``VPSDE(0.1, 20)`` approximation of the schedule, so the network sees the noise levels it was
trained on; ``prediction_type`` ``"v_prediction"`` and ``"sample"`` models are converted too.

score_sde's own models are called ``model(x, labels)`` with ``labels = 999 t`` for VP models and
``labels = sigma(t)`` for VE models, whose output is already the score (``scale_by_sigma``); both wrappers are
below. Nothing else is needed: the torch backend keeps everything on the model's device.
"""

from __future__ import annotations

import argparse
import time

import torch

import sdekit
from sdekit.interop import score_from_diffusers


def score_sde_vp_score(model, sde: sdekit.VPSDE, n_train_steps: int = 1000):
    """A score_sde VP model ``model(x, labels)`` predicting ``eps`` at ``labels = 999 t``, as a score."""
    return sdekit.score_from_eps(lambda x, t: model(x, t * (n_train_steps - 1)), sde)


def score_sde_ve_score(model, sde: sdekit.VESDE):
    """A score_sde VE model ``model(x, sigma(t))`` whose output is the score itself."""
    return lambda x, t: model(x, sde.marginal(t)[1])


def tiny_unet(channels: int = 3, size: int = 16):
    """A small randomly initialised ``UNet2DModel`` (stands in for a trained one)."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def load(pretrained=None):
    """``(unet, scheduler_config)``: a diffusers ``UNet2DModel`` and the config of the scheduler it was trained with
    (a hub id or path), or the tiny random UNet with DDPM's default schedule (linear betas, 1000 steps)."""
    from diffusers import DDPMScheduler, UNet2DModel

    if pretrained:
        return UNet2DModel.from_pretrained(pretrained), DDPMScheduler.from_pretrained(pretrained).config
    return tiny_unet(), DDPMScheduler().config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained", default=None, help="a diffusers UNet2DModel id or path (DDPM-trained)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--solver", default="euler_maruyama")
    args = parser.parse_args(argv)

    unet, scheduler_config = load(args.pretrained)
    unet = unet.to(args.device).eval()
    cfg = unet.config
    sde, score = score_from_diffusers(unet, scheduler_config)  # a DiscreteVPSDE on the trained alphas_cumprod
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)

    start = time.perf_counter()
    # x_T is drawn on the UNet's device and dtype (it is found behind the adapter); sampling runs under no_grad
    sol = sdekit.sample(
        sde, score, n=args.n, shape=shape, solver=args.solver, steps=args.steps, seed=0, device=args.device
    )
    elapsed = time.perf_counter() - start
    x = sol.x
    print(f"{args.n} samples of shape {shape} on {x.device} in {elapsed:.1f} s ({sol.nfe} network evaluations each)")
    print(f"range [{float(x.min()):.2f}, {float(x.max()):.2f}], mean {float(x.mean()):.3f}, std {float(x.std()):.3f}")
    return sol


if __name__ == "__main__":
    main()
