"""Throughput of sharded sampling (``sdekit.distributed.sample``) on local Dask clusters against one process, and
the shard size below which the scheduler's per-task overhead dominates.

Problem: the 8-Gaussian ring (``bench.make_density("ring8")``) under the VP SDE, Euler--Maruyama, ``--steps``
steps, with the exact score; two backends: ``numpy`` (the score in numpy, a Python loop over steps: the cost of a
typical Python or network score) and ``numba`` (the fused kernel: the cheapest per-sample cost sdekit has, so
the hardest case for the overhead).

1. **Throughput**: ``n`` samples in one process (``sdekit.sample``), then sharded (``n / 16`` per shard) on a
   ``LocalCluster`` of 1 and of 2 single-threaded worker processes, without and with a zarr store. The clusters
   are started beforehand and warmed (numba compiles once per worker); their start-up time is given apart.
2. **Per-shard costs**: ``n_small`` samples at shard sizes from ``n_small`` down to a few samples, ``k``
   shards, run (a) one after the other in this process (``sdekit.sample(..., sample_ids=ids)`` per shard, no
   Dask) and (b) on the 2-worker cluster. Two fixed costs per shard: ``f``, sdekit's own per call (validation,
   the grid, the Python step loop: it does not shrink with the shard; timed as one call for one sample), and
   ``o``, Dask's per task (scheduling, pickling the result back, round trips; timed as no-op tasks that return
   an array, as many per worker as the cluster runs at once). With ``c`` the compute per sample (one call's
   time less ``f``, per sample), ``s* = (f + o) / c`` is the shard size at which a shard spends as long in
   fixed costs as in computing: shards of ``10 s*`` or more keep them under ~10 %.

Every sharded result is checked bit-identical to the one-process samples.

Run: ``PYTHONPATH=src python benchmarks/bench_distributed.py`` (``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

import sdekit
import sdekit.distributed as sd
from sdekit import bench


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    quick = args.quick
    sde = sdekit.VPSDE()
    score = bench.make_density("ring8").score(sde)
    sizes = {"numpy": 2_000 if quick else 8_000, "numba": 50_000 if quick else 400_000}
    small = {"numpy": 400 if quick else 1_000, "numba": 4_000 if quick else 20_000}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {sd._client.machine_workers()} cores, load average {load:.1f} at start; steps={args.steps}")

    t_start = {}
    clusters = {}
    for w in (1, 2):
        t, ctx = _timed(_enter, sd.connect(f"local:{w}"))
        t_start[w] = t
        clusters[w] = ctx
    print(f"LocalCluster start-up: 1 worker {t_start[1]:.1f} s, 2 workers {t_start[2]:.1f} s")
    tmp = tempfile.mkdtemp(prefix="sdekit-bench-")
    try:
        rows = []
        for backend in ("numpy", "numba"):
            kw = dict(steps=args.steps, backend=backend, seed=0)
            n = sizes[backend]
            sdekit.sample(sde, score, n=64, **kw)  # warm (numba compiles)
            t1, ref = _timed(sdekit.sample, sde, score, n=n, **kw)
            ref = ref.x
            rows.append((backend, "one process", n, "-", t1, n / t1, 1.0))
            for w in (1, 2):
                client = clusters[w][1]
                sd.sample(sde, score, n=64 * w, shard_size=64, client=client, **kw)  # warm every worker
                for store in (False, True):
                    where = os.path.join(tmp, f"{backend}-{w}-{store}") if store else None
                    shard = max(1, n // 16)
                    t, sol = _timed(sd.sample, sde, score, n=n, shard_size=shard, client=client, store=where, **kw)
                    x = np.asarray(sol.x)
                    if not np.array_equal(x, ref):
                        raise AssertionError(f"sharded samples differ from one process ({backend}, {w} workers)")
                    label = f"{w} worker{'s' if w > 1 else ''}" + (" + zarr store" if store else "")
                    rows.append((backend, label, n, shard, t, n / t, t1 / t))
        print("\nThroughput (samples/s; speed-up against one process)\n")
        print("| backend | run | n | shard size | wall (s) | samples/s | speed-up |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for b, label, n, shard, t, rate, up in rows:
            print(f"| {b} | {label} | {n} | {shard} | {t:.2f} | {rate:,.0f} | {up:.2f} |")

        print("\nPer-shard costs (wall time against shard size): chunks in one process, then on 2 workers\n")
        client = clusters[2][1]
        summary = []
        for backend in ("numpy", "numba"):
            kw = dict(steps=args.steps, backend=backend, seed=0)
            m = small[backend]
            t1, ref = _timed(sdekit.sample, sde, score, n=m, **kw)
            ref = ref.x
            pts = []
            print(f"{backend}: n={m}, one call {t1:.3f} s\n")
            print("| shard size | shards | in-process chunks (s) | 2 workers (s) | 2 workers, per shard (ms) |")
            print("| ---: | ---: | ---: | ---: | ---: |")
            ladder = [m, m // 4, m // 16, m // 64, m // 256, m // 1000]
            for shard in sorted({max(1, s) for s in ladder}, reverse=True):
                k = -(-m // shard)
                if k > (300 if quick else 1000):
                    continue
                tc, _ = _timed(_chunked, sde, score, m, shard, kw)
                t, sol = _timed(sd.sample, sde, score, n=m, shard_size=shard, client=client, **kw)
                if not np.array_equal(sol.x, ref):
                    raise AssertionError("sharded samples differ from one process")
                pts.append((k, tc, t))
                print(f"| {shard} | {k} | {tc:.3f} | {t:.3f} | {1e3 * t / k:.2f} |")
            # the fixed costs measured directly (best of 5): f, one sdekit.sample of one sample in this process; o, a
            # Dask task that returns an array like a shard's result; c, the rest of one call's time per sample
            f = min(_timed(sdekit.sample, sde, score, n=1, **kw)[0] for _ in range(5))
            o = _task_overhead(client, min(m, 256))
            c = max(t1 - f, 1e-12) / m
            summary.append((backend, c, f, o, (f + o) / c))
            print()
        print(
            "| backend | compute per sample c (us) | sdekit per call f (ms) | Dask per task o (ms) | s* = (f + o) / c |"
        )
        print("| --- | ---: | ---: | ---: | ---: |")
        for b, c, f, o, s_star in summary:
            print(f"| {b} | {c * 1e6:.1f} | {f * 1e3:.1f} | {o * 1e3:.1f} | {s_star:,.0f} |")
    finally:
        for w in (2, 1):
            clusters[w][0].__exit__(None, None, None)
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.1f} at the end")


def _chunked(sde, score, n, shard, kw):
    """The shards one after the other in this process (no Dask): sdekit's own per-call cost."""
    for start in range(0, n, shard):
        ids = np.arange(start, min(n, start + shard))
        sdekit.sample(sde, score, n=ids.size, sample_ids=ids, **kw)


def _noop(i, size):
    return i, np.zeros((size, 2))


def _task_overhead(client, size, k=200) -> float:
    """Wall seconds per task of ``k`` no-op tasks on the cluster (best of 3), each returning a ``(size, 2)`` array."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        futures = [client.submit(_noop, i, size, pure=False) for i in range(k)]
        client.gather(futures)
        best = min(best, (time.perf_counter() - t0) / k)
        del futures
    return best


def _enter(ctx):
    return ctx, ctx.__enter__()


if __name__ == "__main__":
    main()
