"""Train a small MLP score on a 2-D Gaussian mixture, then sample it with several integrators.

    python examples/train_2d.py                 # 1-1.5 minutes on a shared 2-core CPU (one torch thread)
    python examples/train_2d.py --quick         # a few seconds (smoke test)

What it shows:

* a noise-prediction network ``eps(x, t)`` trained with :func:`sdekit.training.dsm_loss` through the adapter
  ``score_from_eps`` (``score = -eps / sigma(t)``), i.e. the DDPM loss written as continuous DSM;
* the trained module passed straight to :func:`sdekit.sample`: the torch backend is picked and ``x_T`` is drawn
  on the module's device and dtype;
* for each integrator, the sliced 2-Wasserstein distance of the samples to fresh data, next to the same
  integrator driven by the mixture's exact score (what is left is the network's error) and to the distance
  between two data sets of the same size (the Monte Carlo floor); and the mean ``-log p_data`` of the samples
  under the true mixture, which rises when mass falls between the modes.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import sdekit
from sdekit.training import dsm_loss

# (solver, process, steps): a spread of integrators; names not registered in this installation are skipped
INTEGRATORS = [
    ("euler_maruyama", "sde", 500),
    ("heun", "sde", 250),
    ("reverse_diffusion", "sde", 500),
    ("euler", "ode", 500),
    ("heun", "ode", 100),
    ("rk4", "ode", 50),
    ("dpmpp_2m", "ode", 50),
]


def ring_mixture(k: int = 8, radius: float = 2.0, var: float = 0.03) -> sdekit.GaussianMixture:
    """``k`` equal Gaussians with variance ``var`` on a circle."""
    angles = 2 * np.pi * np.arange(k) / k
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return sdekit.GaussianMixture(np.full(k, 1.0 / k), means, np.full(k, var))


class EpsMLP(torch.nn.Module):
    """``eps(x, t)``: an MLP on ``x`` and Fourier features of ``t``."""

    def __init__(self, d: int = 2, width: int = 128, n_freq: int = 16):
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.linspace(-3.0, 3.0, n_freq))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d + 2 * n_freq, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, d),
        )
        self.event_shape = (d,)

    def forward(self, x, t):
        # Fourier features of log(t): resolution where the score changes fastest, near the data (small t)
        wt = torch.log(t)[:, None] * self.freqs
        return self.net(torch.cat([x, torch.sin(wt), torch.cos(wt)], dim=1))


def sliced_w2(x: np.ndarray, y: np.ndarray, n_proj: int = 128, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two equal-size samples (random directions, sorted projections)."""
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((x.shape[1], n_proj))
    dirs /= np.linalg.norm(dirs, axis=0)
    px, py = np.sort(x @ dirs, axis=0), np.sort(y @ dirs, axis=0)
    return float(np.sqrt(np.mean((px - py) ** 2)))


def train(score, params, data, sde, iters: int, batch: int, lr: float, seed: int):
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for i in range(iters):
        x0 = torch.as_tensor(data.sample(batch, seed=seed + 1 + i), dtype=torch.float32)
        loss = dsm_loss(score, x0, sde, weighting="sigma2", eps=sde.eps, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
    parser.add_argument("--iters", type=int, default=None, help="training iterations (default 5000, quick 100)")
    parser.add_argument("--n", type=int, default=None, help="samples per integrator (default 4000, quick 300)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", default="train_2d.png", help="where to save the plot ('' to skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (small matrices: 1 is fastest)")
    args = parser.parse_args(argv)
    iters = args.iters or (100 if args.quick else 5000)
    n = args.n or (300 if args.quick else 4000)
    step_scale = 10 if args.quick else 1

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sde = sdekit.VPSDE()
    data = ring_mixture()
    net = EpsMLP()
    score = sdekit.score_from_eps(net, sde)  # score = -eps / sigma(t); event_shape comes from the network

    start = time.perf_counter()
    losses = train(score, net.parameters(), data, sde, iters, batch=args.batch, lr=args.lr, seed=args.seed)
    train_time = time.perf_counter() - start
    print(
        f"trained {iters} iterations in {train_time:.1f} s; DSM loss {np.mean(losses[:20]):.3f} -> "
        f"{np.mean(losses[-20:]):.3f}"
    )

    reference = data.sample(n, seed=10**6)
    # Monte Carlo floor: the distance between two data sets of this size (mean over 5 pairs)
    floor = float(np.mean([sliced_w2(data.sample(n, seed=2 * 10**6 + k), reference) for k in range(5)]))
    data_nll = -float(np.mean(data.logpdf(reference)))
    rows, samples = [], {}
    net.eval()
    for name, process, steps in INTEGRATORS:
        if name not in sdekit.SOLVERS:
            continue
        steps = max(steps // step_scale, 5)
        learned = sdekit.sample(sde, score, n=n, solver=name, process=process, steps=steps, seed=args.seed)
        exact = sdekit.sample(sde, data.score(sde), n=n, solver=name, process=process, steps=steps, seed=args.seed)
        x = learned.x.double().numpy()
        samples[f"{name} ({process}, {steps} steps)"] = x
        nll = -float(np.mean(data.logpdf(x)))
        rows.append((name, process, steps, learned.nfe, sliced_w2(x, reference), sliced_w2(exact.x, reference), nll))

    print(f"\nsliced W2 to {n} fresh data points (two data sets of that size: {floor:.3f}); -log p_data of the")
    print(
        f"learned-score samples under the true data law (data themselves: {data_nll:.3f}; higher = mass off the modes)"
    )
    print(
        f"{'solver':<18} {'process':<8} {'steps':>5} {'NFE':>5} {'W2 learned':>11} {'W2 exact':>9} {'NLL learned':>12}"
    )
    for name, process, steps, nfe, w_learned, w_exact, nll in rows:
        print(f"{name:<18} {process:<8} {steps:>5} {nfe:>5} {w_learned:>11.3f} {w_exact:>9.3f} {nll:>12.3f}")

    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = {"data": reference, **samples}
        cols = 4
        fig, axes = plt.subplots(
            math.ceil(len(panels) / cols), cols, figsize=(3 * cols, 3 * math.ceil(len(panels) / cols))
        )
        for ax, (title, pts) in zip(axes.ravel(), panels.items()):
            ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5)
            ax.set_title(title, fontsize=8)
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
            ax.set_aspect("equal")
        for ax in axes.ravel()[len(panels) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        plt.close(fig)
        print(f"\nplot saved to {args.out}")
    return {"losses": losses, "rows": rows, "floor": floor, "data_nll": data_nll, "train_time": train_time}


if __name__ == "__main__":
    main()
