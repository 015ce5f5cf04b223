"""Sample from a noise-prediction network the way diffusers and score_sde models are called.

    python examples/eps_network.py                              # a tiny random UNet2DModel (runs anywhere)
    python examples/eps_network.py --pretrained google/ddpm-cifar10-32 --device cuda --n 16 --steps 1000

A DDPM network predicts the noise ``eps(x_t, timestep)`` with a discrete ``timestep`` in ``0 .. 999`` of the
linear beta schedule ``1e-4 .. 0.02``; its continuous-time limit is ``VPSDE(beta_min=0.1, beta_max=20)`` and
the network is evaluated at ``timestep = 999 t`` (score_sde, ``models/utils.py::get_score_fn`` for
``continuous=False``). ``score_from_eps`` turns it into the score ``-eps / sigma(t)``.

score_sde's own models are called ``model(x, labels)`` with ``labels = 999 t`` for VP models and
``labels = sigma(t)`` for VE models, whose output is already the score (``scale_by_sigma``); both wrappers are
below. Nothing else is needed: the torch backend keeps everything on the model's device.
"""

from __future__ import annotations

import argparse
import time

import torch

import sdekit


def diffusers_eps(unet, n_train_steps: int = 1000):
    """``eps(x, t)`` from a diffusers ``UNet2DModel`` trained on the DDPM schedule with ``n_train_steps`` steps."""

    def eps(x, t):
        return unet(x, t * (n_train_steps - 1)).sample

    return eps


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained", default=None, help="a diffusers UNet2DModel id or path (DDPM-trained)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--solver", default="euler_maruyama")
    args = parser.parse_args(argv)

    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(args.pretrained) if args.pretrained else tiny_unet()
    unet = unet.to(args.device).eval()
    cfg = unet.config
    sde = sdekit.VPSDE(beta_min=0.1, beta_max=20.0)
    score = sdekit.score_from_eps(diffusers_eps(unet), sde)
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
