"""Fréchet distances of samples from the shipped digits model, the floor and pure noise (the table of docs/zoo.md).

    PYTHONPATH=src python scripts/digits_fd.py [--n 1000] [--seeds 5] [--grid /tmp/zoo_grid.png]

For each sampler, ``--seeds`` sets of ``--n`` samples (seeds 0, 1, ...) are drawn and their FD to the held-out
test digits is reported as mean and standard deviation over the seeds. The floor is the FD of ``--n`` training
digits (random subsets) to the test digits, and of all training digits; then a Gaussian with the mean and
covariance of the training pixels (no digits, right second moments) and uniform noise on [-1, 1].
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import sdekit
from sdekit import zoo

SAMPLERS = (
    ("heun", 18, "karras"),
    ("euler_maruyama", 250, "karras"),
    ("heun", 50, "karras"),
    ("euler_maruyama", 1000, "karras"),
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per set")
    parser.add_argument("--seeds", type=int, default=5, help="sets per sampler")
    parser.add_argument("--grid", default=None, help="write a grid of 64 heun-18 samples to this PNG")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = zoo.digits()
    print(model)

    def row(name, values, extra=""):
        v = np.asarray(values)
        print(f"{name:44s} FD {v.mean():8.3f} +- {v.std(ddof=1) if v.size > 1 else 0.0:6.3f}  {extra}")

    for solver, steps, grid in SAMPLERS:
        fds, t0 = [], time.perf_counter()
        for seed in range(args.seeds):
            sol = sdekit.sample(model.sde, model.score, n=args.n, solver=solver, steps=steps, grid=grid, seed=seed)
            fds.append(model.frechet(sol.x.numpy()))
            if args.grid and seed == 0 and (solver, steps) == ("heun", 18):
                zoo.image_grid(sol.x[:64].numpy(), args.grid, title=f"{solver}, {steps} steps, {grid} grid")
        row(f"{solver} {steps} steps {grid} (NFE {sol.nfe})", fds, f"{time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(0)
    n_sub = min(args.n, model.train.shape[0])
    subsets = [model.train[rng.choice(model.train.shape[0], n_sub, replace=False)] for _ in range(args.seeds)]
    row(f"floor: {n_sub} training digits", [model.frechet(s) for s in subsets])
    row(f"floor: all {model.train.shape[0]} training digits", [model.floor])
    flat = model.train.reshape(-1, 64).astype(np.float64)
    mean, cov = flat.mean(0), np.cov(flat, rowvar=False)
    blobs = [np.random.default_rng(s).multivariate_normal(mean, cov, args.n) for s in range(args.seeds)]
    row("Gaussian with the training pixels' moments", [model.frechet(b.reshape(-1, 1, 8, 8)) for b in blobs])
    noise = [np.random.default_rng(s).uniform(-1, 1, (args.n, 1, 8, 8)) for s in range(args.seeds)]
    row("uniform noise on [-1, 1]", [model.frechet(x) for x in noise])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
