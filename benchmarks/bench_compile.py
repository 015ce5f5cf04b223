"""Compile time of each fused numba kernel, cold (an empty numba cache) and loaded from the disk cache.

For each kernel, one representative solver runs a tiny job (``n=64``, 4 steps, ``backend="numba"``) on the ring8
mixture in a fresh python process, twice: first with ``NUMBA_CACHE_DIR`` pointing to an empty folder (the kernel
compiles and is written there), then again in another fresh process with the same folder (the kernel is loaded
from the cache). The time of ``import sdekit.backends.numba`` is measured on its own and subtracted, so the
columns are what the first solve of a process pays on top of importing numba: ``cold s`` wall time, ``cold cpu``
its CPU time (user + system of the process), split into ``shared`` (the helpers every kernel of the family calls
through a symbol, :mod:`sdekit.backends.numba.linked`: compiled once per process and cache, whatever the number of
kernels) and ``own`` (the kernel itself)::

    python benchmarks/bench_compile.py [--kernels euler_maruyama,adaptive] [--json out.json]

The measured ``own`` and ``shared`` CPU times are :data:`sdekit.backends.numba.compile_cost.COMPILE_SECONDS` and
:data:`~sdekit.backends.numba.compile_cost.SHARED_COMPILE_SECONDS`, the figures ``backend="auto"`` weighs against a
job's estimated numpy time. On a tree without shared helpers ``shared`` is 0 and ``own`` holds everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

#: kernel name -> (solver, process, options) that runs it
KERNEL_JOBS = {
    "euler_maruyama": ("euler_maruyama", "sde", {}),
    "stochastic_heun": ("heun", "sde", {}),
    "runge_kutta": ("heun", "ode", {}),
    "affine_multistep": ("dpmpp_2m", "ode", {}),
    "edm": ("edm", "sde", {}),
    "restart": ("restart", "sde", {}),
    "sra": ("sra1", "sde", {}),
    "pc": ("pc", "sde", {}),
    "annealed_langevin": ("annealed_langevin", "sde", {}),
    "adaptive_sde": ("adaptive", "sde", {"rtol": 0.05}),
    "dopri5": ("dopri5", "ode", {"rtol": 0.05}),
}

CHILD = """
import json, sys, time
t0 = time.perf_counter()
c0 = time.process_time()
import sdekit
import sdekit.backends.numba
t1 = time.perf_counter()
c1 = time.process_time()
from sdekit.analytic import DENSITIES
solver, process, options = json.loads(sys.argv[1])
sde = sdekit.VPSDE()
score = DENSITIES["ring8"][0]().score(sde)
if "rtol" not in options:
    options["steps"] = 4
t2 = time.perf_counter()
c2 = time.process_time()
try:  # the helpers every kernel of the family calls through a symbol, compiled once per process (not on main)
    from sdekit.backends.numba.linked import ADAPTIVE, FIXED_GRID, link_all
except ImportError:
    link_all = None
if link_all is not None:
    link_all(ADAPTIVE if solver in ("adaptive", "dopri5") else FIXED_GRID)
t25 = time.perf_counter()
c25 = time.process_time()
sol = sdekit.sample(sde, score, n=64, solver=solver, process=process, backend="numba", **options)
t3 = time.perf_counter()
c3 = time.process_time()
print(json.dumps({"import": t1 - t0, "first_solve": t3 - t2, "import_cpu": c1 - c0, "first_solve_cpu": c3 - c2,
                  "shared_cpu": c25 - c2, "kernel_cpu": c3 - c25, "kernel": sol.stats.get("kernel")}))
"""


def run_child(job, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(job)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", default=",".join(KERNEL_JOBS), help="comma-separated kernel names")
    ap.add_argument("--json", default="", help="write the rows to this file")
    args = ap.parse_args(argv)
    rows = []
    print(
        f"{'kernel':<20}{'solver':<20}{'cold s':>9}{'cold cpu':>9}{'shared':>8}{'own':>8}{'cached s':>10}"
        f"{'import s':>10}  path"
    )
    for name in args.kernels.split(","):
        solver, process, options = KERNEL_JOBS[name]
        with tempfile.TemporaryDirectory(prefix="numba-cold-") as cache:
            tic = time.perf_counter()
            cold = run_child([solver, process, options], cache)
            warm = run_child([solver, process, options], cache)
        row = {
            "kernel": name,
            "solver": f"{solver} ({process})",
            "cold": cold["first_solve"],
            "cached": warm["first_solve"],
            "cold_cpu": cold["first_solve_cpu"],
            "shared_cpu": cold["shared_cpu"],
            "kernel_cpu": cold["kernel_cpu"],
            "cached_cpu": warm["first_solve_cpu"],
            "import": warm["import"],
            "path": cold["kernel"],
            "wall": time.perf_counter() - tic,
        }
        rows.append(row)
        print(
            f"{name:<20}{row['solver']:<20}{row['cold']:>9.1f}{row['cold_cpu']:>9.1f}{row['shared_cpu']:>8.1f}"
            f"{row['kernel_cpu']:>8.1f}{row['cached']:>10.2f}{row['import']:>10.2f}"
            f"  {row['path']}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
