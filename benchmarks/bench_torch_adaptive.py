"""The torch adaptive loop: device-side accept/reject with a host read every ``k`` attempts, against the
per-attempt host loop, and the choice of ``k``.

Problem: the 8-D anisotropic Gaussian of ``bench_adaptive.py`` under the VP SDE (closed-form score, float64),
``adaptive`` (reverse SDE, counter and bridge noise, rtol 0.05, atol 0.005) and ``dopri5`` (probability-flow ODE, rtol =
atol = 1e-5), from the same prior draws. Rows:

* ``host loop``: :mod:`sdekit.loop.adaptive` on tensors (the control on the host, a read per attempt);
* ``device, k = ...``: :mod:`sdekit.backends.torch_adaptive` with ``torch_options(sync_every=k)``.

Columns: wall time (best of ``--repeats``), cost per sample-NFE, host reads, and the largest difference of the
samples from the host loop's (the same decisions: round-off only). Devices: ``cpu`` and, when present, ``cuda``.

Run: ``PYTHONPATH=src python benchmarks/bench_torch_adaptive.py [--n 20000] [--repeats 3] [--threads 1]`` (on a
shared machine one thread keeps other processes' load from stalling torch's thread pool).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_adaptive import gaussian8  # the script directory is on sys.path when run as a script

from sdekit import VPSDE, solve
from sdekit.backends import torch_adaptive
from sdekit.backends.torch_ import torch_options

KS = (1, 2, 4, 8, 16, 32)


def timed(proc, x0, solver, repeats, **kw):
    best, sol = np.inf, None
    for _ in range(repeats):
        if x0.is_cuda:
            torch.cuda.synchronize()
        tic = time.perf_counter()
        sol = solve(proc, x0, 1.0, 1e-3, solver, seed=0, **kw)
        if x0.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - tic)
    return sol, best


def host_loop(proc, x0, solver, repeats, **kw):
    """The per-attempt host loop, selected by refusing the device loop for this call."""
    supports = torch_adaptive.supports
    torch_adaptive.supports = lambda job, sync_every=None: False
    try:
        return timed(proc, x0, solver, repeats, **kw)
    finally:
        torch_adaptive.supports = supports


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sde = VPSDE()
    dens = gaussian8()
    score = dens.score(sde)
    x_T = sde.prior_sample((args.n, dens.dim), seed=0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = (("adaptive", sde.reverse(score), {"rtol": 0.05, "atol": 0.005, "noise": "counter"}),
             ("adaptive", sde.reverse(score), {"rtol": 0.05, "atol": 0.005, "noise": "bridge"}),
             ("dopri5", sde.probability_flow(score), {}))  # fmt: skip
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, n = {args.n}, best of {args.repeats}\n")
    print("| device | solver | loop | NFE/sample | wall (s) | ns per sample-NFE | host reads | max diff to host |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for device in devices:
        x0 = torch.as_tensor(x_T, device=device)
        for solver, proc, kw in cases:
            solve(proc, x0[:8], 1.0, 1e-3, solver, seed=0, **kw)  # warm-up
            ref, wall = host_loop(proc, x0, solver, args.repeats, **kw)
            nfe = ref.stats["nfe_mean"]
            per = 1e9 * wall / (args.n * nfe)
            name = f"{solver} ({kw['noise']})" if "noise" in kw else solver
            print(f"| {device} | {name} | host loop | {nfe:.1f} | {wall:.3f} | {per:.0f} | per attempt | 0 |")
            for k in KS:
                with torch_options(sync_every=k):
                    sol, wall = timed(proc, x0, solver, args.repeats, **kw)
                nfe = sol.stats["nfe_mean"]
                per = 1e9 * wall / (args.n * nfe)
                diff = float((sol.x - ref.x).abs().max())
                print(f"| {device} | {name} | device, k = {k} | {nfe:.1f} | {wall:.3f} | {per:.0f} | "
                      f"{sol.stats['host_reads']} | {diff:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
