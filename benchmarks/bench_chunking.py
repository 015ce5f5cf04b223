"""Cost of running the fused numba kernels in time-sized chunks (interruptible, a moving progress bar).

The fixed-step kernels return to Python about every ``sdekit.backends.numba.fused.CALL_SECONDS`` (0.25 s) of work
so that Ctrl-C and the progress bar act between calls. This prints the cost per sample-step with that limit and
with chunks that only grow (16, 128, 1024, ... steps: two or three calls), in one run, best of ``--repeats``.

    PYTHONPATH=src python benchmarks/bench_chunking.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import sdekit
import sdekit.backends.numba.fused as fused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sde = sdekit.VPSDE()
    data = sdekit.Gaussian(np.zeros(8), np.diag(np.linspace(0.1, 2.0, 8)))
    score = data.score(sde)
    limit = fused.CALL_SECONDS
    print(f"8-D Gaussian, VP, n = {args.n}, {args.steps} steps, numba backend, best of {args.repeats}")
    print(f"{'solver':<16} {f'chunks of ~{limit:.2f} s':>20} {'growing chunks':>16}   ns per sample-step")
    for solver in ("euler_maruyama", "heun", "dpmpp_2m_sde"):
        sdekit.sample(sde, score, n=64, steps=20, solver=solver, seed=0, backend="numba")  # compile
        cost = {}
        for seconds in (limit, 1e9, limit, 1e9):  # interleaved, so drifts in the machine's load hit both
            fused.CALL_SECONDS = seconds
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                sdekit.sample(sde, score, n=args.n, steps=args.steps, solver=solver, seed=0, backend="numba")
                ns = (time.perf_counter() - t0) * 1e9 / (args.n * args.steps)
                cost[seconds] = min(cost.get(seconds, np.inf), ns)
        fused.CALL_SECONDS = limit
        print(f"{solver:<16} {cost[limit]:>20.1f} {cost[1e9]:>16.1f}")


if __name__ == "__main__":
    main()
