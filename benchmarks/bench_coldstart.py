"""Cold start: the default backend against numpy in fresh processes, with an empty and with a warm numba cache.

Every figure is the wall time of a fresh python process from before ``import sdekit`` to the end of one
``sdekit.sample`` call on the ring8 mixture (VP SDE): what a user waits for. Three process kinds per job:

* ``numpy`` -- ``backend="numpy"``;
* ``cold`` -- the default backend (``"auto"``) with ``NUMBA_CACHE_DIR`` pointing to an empty folder;
* ``warm`` -- the default backend with a cache folder in which ``backend="numba"`` compiled the job's kernel before
  (in another process, not timed).

Jobs: a small one (``n = 2000``, 50 steps or ``rtol = 0.02``) and a large one (``n = 200000``, 200 steps or
``rtol = 0.02``) per solver; then ``sdekit compare`` (default arguments, no files written) cold and warm. Goals of
issue 23: small cold <= 2x numpy; large cold <= 1x numpy and warm <= 0.2x numpy; compare cold <= 1.5x warm::

    python benchmarks/bench_coldstart.py [--solvers euler_maruyama,ipndm] [--n-large 200000] [--skip-large]
                                         [--skip-compare] [--json out.json]

Rows are printed as they finish (the large jobs take minutes each on numpy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SOLVERS = ["euler_maruyama", "heun", "dpmpp_2m", "dpmpp_3m_sde", "ipndm", "adaptive", "dopri5"]
ADAPTIVE = {"adaptive", "dopri5"}

CHILD = """
import time
t0 = time.perf_counter()
import json, sys
import sdekit
from sdekit.analytic import DENSITIES
job = json.loads(sys.argv[1])
sde = sdekit.VPSDE()
score = DENSITIES["ring8"][0]().score(sde)
t1 = time.perf_counter()
sol = sdekit.sample(sde, score, **job)
t2 = time.perf_counter()
print(json.dumps({"total": t2 - t0, "solve": t2 - t1, "backend": sol.stats["backend"],
                  "reason": sol.stats.get("backend_reason", ""), "kernel": sol.stats.get("kernel", "")}))
"""


def child(job, cache_dir=None):
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def job_of(solver, n, steps):
    job = {"n": n, "solver": solver, "seed": 0}
    if solver in ADAPTIVE:
        job["rtol"] = 0.02
    else:
        job["steps"] = steps
    return job


def measure(solver, n, steps, warm_dir):
    """``{"numpy", "cold", "warm"}`` rows of one job (``warm_dir``: a cache folder warmed for this solver, or None:
    no warm row)."""
    job = job_of(solver, n, steps)
    numpy_row = child({**job, "backend": "numpy"})
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as empty:
        cold = child(job, empty)
    warm = child(job, warm_dir) if warm_dir is not None else None
    return {"numpy": numpy_row, "cold": cold, "warm": warm}


def warm_cache(solver, cache_dir):
    """Compile ``solver``'s kernel into ``cache_dir`` (a tiny ``backend="numba"`` job in another process)."""
    child({**job_of(solver, 64, 4), "backend": "numba"}, cache_dir)


def compare_child(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    tic = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sdekit", "compare", "--csv", "", "--png", ""],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - tic


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--n-small", type=int, default=2000)
    ap.add_argument("--n-large", type=int, default=200_000)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--large-solvers", default=None, help="solvers of the large job (default: --solvers)")
    ap.add_argument("--warm-small", action="store_true", help="also a warm row for the small jobs")
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    rows = []
    print(f"load: {os.getloadavg()}", flush=True)
    print(f"{'job':<28}{'numpy s':>9}{'cold s':>9}{'warm s':>9}{'cold/np':>9}{'warm/np':>9}  cold path; warm path")
    large = set((args.large_solvers or args.solvers).split(",")) if not args.skip_large else set()
    with tempfile.TemporaryDirectory(prefix="numba-warm-") as warm_dir:
        for solver in args.solvers.split(","):
            sizes = [("small", args.n_small, 50)] + ([("large", args.n_large, 200)] if solver in large else [])
            warmed = solver in large or args.warm_small
            if warmed:
                warm_cache(solver, warm_dir)
            for size, n, steps in sizes:
                r = measure(solver, n, steps, warm_dir if warmed else None)
                np_t, cold_t = r["numpy"]["total"], r["cold"]["total"]
                warm_t = r["warm"]["total"] if r["warm"] else float("nan")
                label = f"{solver} {size} (n={n})"
                warm_path = f"{r['warm']['backend']} {r['warm']['kernel']}" if r["warm"] else "-"
                print(
                    f"{label:<28}{np_t:>9.2f}{cold_t:>9.2f}{warm_t:>9.2f}{cold_t / np_t:>9.2f}{warm_t / np_t:>9.2f}"
                    f"  {r['cold']['backend']}; {warm_path}",
                    flush=True,
                )
                rows.append({"solver": solver, "size": size, "n": n, **r})
    if not args.skip_compare:
        with tempfile.TemporaryDirectory(prefix="numba-cmp-") as cache:
            cold = compare_child(cache)
            warm = compare_child(cache)
        print(f"{'sdekit compare':<28}{'':>9}{cold:>9.2f}{warm:>9.2f}   cold/warm {cold / warm:.2f}", flush=True)
        rows.append({"job": "sdekit compare", "cold": cold, "warm": warm})
    print(f"load: {os.getloadavg()}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
