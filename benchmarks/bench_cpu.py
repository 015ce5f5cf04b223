"""CPU speed of sdekit's numba backend against sdekit's numpy backend, a hand-written numpy loop and torchsde.

All methods run side by side in one process on the same machine; the script prints seconds, nanoseconds
per particle-step (wall time / (n * steps)), ratios to the fused numba kernel and peak memory.

``em-d2`` also runs the numba backend with the score given as a plain python function (per-step path: the
score in python, noise and update in numba).

Cases (reverse-time VP SDE of Song et al. 2021, data N(mu, diag(lam)) with its exact score unless said):

1. ``em-d2``: Euler--Maruyama, d = 2, n = 100 000, 1000 steps. sdekit numba (fused), sdekit numpy, a careful
   hand-written vectorised numpy loop (closed-form score, in-place updates, numpy's ziggurat normals) and
   torchsde ``sdeint(method="euler")`` on the same SDE (reverse time by integrating in ``tau = -t``).
2. ``heun-ode-d2``: Heun on the probability-flow ODE, same data.
3. ``em-mix8-d2``: Euler--Maruyama, an 8-component Gaussian mixture.
4. ``em-d64``: Euler--Maruyama, d = 64 (diagonal Gaussian), n = 10 000.
5. ``dpmpp2m-ode-mix8-d2``: DPM-Solver++(2M) on the probability-flow ODE, the 8-component mixture, n = 100 000:
   the fused affine-multistep kernel against the path it replaced (``backend="numba"`` running the numpy
   loop, here through a subclass that overrides ``step`` and so has no kernel) and sdekit numpy.
6. ``annealed-ve-mix8-d2``: annealed Langevin dynamics (NCSN) on the VE SDE, the same mixture, 10 Langevin steps
   per level (a "step" of the table is one level: 10 score evaluations), fused kernel against the per-step path
   and sdekit numpy.

Compile time: each fused kernel compiled from scratch (no disk cache), timed on a tiny problem.
The fused kernel runs with all numba threads and, for a per-core comparison, with one. The numpy loops are
single-threaded; torchsde runs with one torch thread (on a small shared machine torch's thread pool only
adds synchronisation cost: with 2 threads it measured 5-10x slower here). Fixed-step loops cost the same
per step whatever the number of steps, so the slowest methods of cases 2-4 run fewer steps (the ``steps``
column); ns/particle-step is wall time / (n * steps).

Peak memory: ``tracemalloc`` peak during the solve (``x_T`` given, so the prior draw is not counted; 10 steps,
no trajectory saved), as a multiple of the state array ``n * d * 8`` bytes; numba's internal per-block
scratch (a few KiB per thread) is not seen by tracemalloc. torchsde's memory is not measured.

Run: ``PYTHONPATH=src python benchmarks/bench_cpu.py`` (``--quick`` for a smaller run; ``--torchsde-steps``
to shorten the slowest peer).
"""

from __future__ import annotations

import argparse
import math
import os
import time
import tracemalloc

import numpy as np

import sdekit
from sdekit.analytic import Gaussian, GaussianMixture
from sdekit.solvers.dpm_solver import DPMSolverPP2M
from sdekit.solvers.score_based import AnnealedLangevin


def _timed(fn, repeat=1):
    """Best wall time of ``repeat`` runs and the last result."""
    best = math.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _peak_bytes(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- peers ------------------------------------------------------------------------------------------------------
def hand_numpy_em(sde, mu, lam, x_T, grid, seed=0):
    """A careful vectorised numpy Euler--Maruyama loop for the reverse VP SDE with the closed-form score."""
    rng = np.random.default_rng(seed)
    x = x_T.copy()
    z = np.empty_like(x)
    for k in range(len(grid) - 1):
        t, h = grid[k], grid[k + 1] - grid[k]
        beta = sde.beta_min + t * (sde.beta_max - sde.beta_min)
        B = sde.beta_min * t + 0.5 * (sde.beta_max - sde.beta_min) * t * t
        alpha, s2 = math.exp(-0.5 * B), -math.expm1(-B)
        inv_v = 1.0 / (alpha * alpha * lam + s2)
        # x + h (-beta x / 2 - beta score) + sqrt(beta |h|) z with score = -(x - alpha mu) / v
        scale = 1.0 + h * beta * (inv_v - 0.5)
        shift = -h * beta * alpha * mu * inv_v
        rng.standard_normal(out=z)
        x *= scale
        x += shift
        z *= math.sqrt(beta * abs(h))
        x += z
    return x


def torchsde_em(sde, mu, lam, x_T, t_end, steps):
    """torchsde ``sdeint(method="euler")`` on the reverse VP SDE, integrated in ``tau = -t`` from -T to -t_end."""
    import torch
    import torchsde

    mu_t = torch.tensor(np.array(mu), dtype=torch.float64)
    lam_t = torch.tensor(np.array(lam), dtype=torch.float64)
    bmin, bmax = sde.beta_min, sde.beta_max

    class ReverseVP(torch.nn.Module):
        noise_type = "diagonal"
        sde_type = "ito"

        def _coef(self, tau):
            t = -tau
            beta = bmin + t * (bmax - bmin)
            B = bmin * t + 0.5 * (bmax - bmin) * t * t
            return beta, torch.exp(-0.5 * B), -torch.expm1(-B)

        def f(self, tau, y):
            beta, alpha, s2 = self._coef(tau)
            score = -(y - alpha * mu_t) / (alpha * alpha * lam_t + s2)
            return -(-0.5 * beta * y - beta * score)  # d/dtau = -d/dt

        def g(self, tau, y):
            beta, _, _ = self._coef(tau)
            return torch.sqrt(beta) * torch.ones_like(y)

    y0 = torch.tensor(x_T)
    ts = torch.tensor([-sde.T, -t_end], dtype=torch.float64)
    dt = (sde.T - t_end) / steps
    # one torch thread: on a small shared machine torch's thread pool only adds synchronisation cost
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return torchsde.sdeint(ReverseVP(), y0, ts, method="euler", dt=dt)[-1].numpy()
    finally:
        torch.set_num_threads(threads)


class _UnfusedAnnealed(AnnealedLangevin):
    """Annealed Langevin with its own ``step``: no kernel, the numba backend's per-step path."""

    def step(self, process, x, t, t_next, z, state):
        return super().step(process, x, t, t_next, z, state)


class _Unfused2M(DPMSolverPP2M):
    """DPM-Solver++(2M) with its own ``step``: the numba backend finds no kernel and runs the numpy loop."""

    def step(self, process, x, t, t_next, z, state):
        return super().step(process, x, t, t_next, z, state)


# -- compile times -------------------------------------------------------------------------------------------
def compile_times():
    """Seconds to compile each fused kernel from scratch (no disk cache), on a 4-sample problem."""
    from numba import njit

    from sdekit.backends.numba.fused import coef_table, fused_plan
    from sdekit.backends.numba.noise import seed_key
    from sdekit.integrate import Job
    from sdekit.solvers import get_solver

    sde = sdekit.VPSDE()
    score = Gaussian([0.0, 1.0], [1.0, 2.0]).score(sde)
    out = {}
    cases = (("euler_maruyama", "sde"), ("heun", "sde"), ("rk4", "ode"), ("dpmpp_2m", "ode"), ("edm", "sde"))
    for solver_name, kind in cases + (("sra1", "sde"), ("pc", "sde"), ("annealed_langevin", "sde")):
        solver = get_solver(solver_name)
        proc = sde.reverse(score) if kind == "sde" else sde.probability_flow(score)
        x0 = np.zeros((4, 2))
        grid = np.linspace(1.0, 0.5, 3)
        job = Job(proc, solver, x0, grid, 0, np.arange(4), None, False, True, kind == "sde")
        kernel, _, sparams, wshape, score_coef = fused_plan(job)
        fresh = njit(parallel=True, error_model="numpy")(kernel.body)
        if kernel.process_stage_times is None:
            st = kernel.stage_times(solver, grid)
        else:
            st = kernel.process_stage_times(solver, proc, grid)
        st = np.ascontiguousarray(st, dtype=np.float64)
        coef = coef_table(job, st, score_coef)
        extra = kernel.extra(solver) if kernel.grid_extra is None else kernel.grid_extra(solver, proc, grid)
        args = (st, coef, sparams, wshape, np.full(3, -1), np.zeros((1, 1, 1)), np.full(1, -1), True)
        t0 = time.perf_counter()
        fresh(x0.copy(), np.arange(4), seed_key(0), 0, 2, *args, extra, 4)
        out[f"{kernel.name} ({solver_name}, {kind})"] = time.perf_counter() - t0
    return out


# -- cases ---------------------------------------------------------------------------------------------------
def run_case(
    title,
    sde,
    density,
    n,
    steps,
    solver,
    process,
    hand=None,
    torchsde_steps=None,
    slow_steps=None,
    python_score=False,
    fallback=None,
):
    """Time every method on one problem; slow methods may run ``slow_steps`` steps (ns/particle-step is per step).

    ``fallback``: a solver instance without a fused kernel, run with ``backend="numba"`` (the per-step path)."""
    import numba

    score = density.score(sde)
    d = density.dim
    x_T = sde.prior_sample((n, d), seed=0)
    slow_steps = slow_steps or steps
    proc = sde.reverse(score) if process == "sde" else sde.probability_flow(score)
    state_bytes = n * d * 8

    def grid_of(m):
        return np.linspace(sde.T, sde.eps, m + 1)

    def sdekit_run(backend, m):
        g = grid_of(m)
        return sdekit.solve(proc, x_T, sde.T, g[-1], solver, grid=g, backend=backend, seed=0)

    def hand_run(m):
        return hand(sde, density.mean, density.eigvals, x_T, grid_of(m))

    rows = []
    torch_row = None
    if torchsde_steps:
        # first, before numba's OpenMP threads exist: two OpenMP runtimes in one process slow torch down
        t, _ = _timed(lambda: torchsde_em(sde, density.mean, density.eigvals, x_T, sde.eps, torchsde_steps))
        torch_row = ("torchsde euler (1 torch thread)", t, torchsde_steps, None)
    sdekit_run("numba", 2)  # load the cached kernel
    threads = numba.get_num_threads()
    t, sol = _timed(lambda: sdekit_run("numba", steps), 2)
    # memory does not depend on the number of steps: measured on 10 steps
    mem = _peak_bytes(lambda: sdekit_run("numba", 10))
    rows.append((f"sdekit numba fused ({threads} threads)", t, steps, mem))
    if threads > 1:
        numba.set_num_threads(1)
        try:
            t, _ = _timed(lambda: sdekit_run("numba", steps), 2)
        finally:
            numba.set_num_threads(threads)
        rows.append(("sdekit numba fused (1 thread)", t, steps, mem))
    if python_score:
        # the same score as a plain python function: numba runs the per-step path
        py_proc = type(proc)(sde, lambda x, t: score(x, t))
        g = grid_of(2)
        sdekit.solve(py_proc, x_T[:8], sde.T, g[-1], solver, grid=g, backend="numba")  # load the cached update
        g = grid_of(slow_steps)
        t, _ = _timed(lambda: sdekit.solve(py_proc, x_T, sde.T, g[-1], solver, grid=g, backend="numba"))
        rows.append(("sdekit numba, python score, per-step", t, slow_steps, None))
    if fallback is not None:
        g = grid_of(slow_steps)
        t, fb = _timed(lambda: sdekit.solve(proc, x_T, sde.T, g[-1], fallback, grid=g, backend="numba"))
        assert fb.stats["kernel"] == "per-step"
        rows.append(("sdekit numba, no kernel (numpy loop)", t, slow_steps, None))
    t, _ = _timed(lambda: sdekit_run("numpy", slow_steps))
    rows.append(("sdekit numpy", t, slow_steps, _peak_bytes(lambda: sdekit_run("numpy", 10))))
    if hand is not None:
        t, _ = _timed(lambda: hand_run(steps), 2)
        rows.append(("hand-written numpy loop", t, steps, _peak_bytes(lambda: hand_run(10))))

    if torch_row is not None:
        rows.append(torch_row)
    base = rows[0][1] / (n * rows[0][2])
    print(f"\n### {title}: n={n}, d={d}, solver={solver}, process={process}")
    cols = ("steps", "seconds", "ns/particle-step", "x fused time", "peak mem / state")
    print(f"{'method':36s} {cols[0]:>6s} {cols[1]:>8s} {cols[2]:>17s} {cols[3]:>13s} {cols[4]:>17s}")
    for name, secs, nsteps, mem in rows:
        per = secs / (n * nsteps)
        memtxt = "-" if mem is None else f"{mem / state_bytes:.2f}"
        print(f"{name:36s} {nsteps:6d} {secs:8.3f} {per * 1e9:17.2f} {per / base:13.1f} {memtxt:>17s}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n and steps divided by 10")
    parser.add_argument("--torchsde-steps", type=int, default=None, help="steps for torchsde (default: as sdekit)")
    parser.add_argument("--skip-compile", action="store_true", help="do not time compilation from scratch")
    parser.add_argument("--cases", nargs="+", default=None, help="run only these cases (titles as printed)")
    args = parser.parse_args()
    import numba

    q = 10 if args.quick else 1
    print(
        f"numba {numba.__version__}, threads {numba.get_num_threads()}, numpy {np.__version__}, cpus {os.cpu_count()}"
    )
    sde = sdekit.VPSDE()
    gauss2 = Gaussian([1.0, -0.5], [0.3, 2.0])
    n, steps = 100_000 // q, 1000 // q
    ts_steps = args.torchsde_steps or steps
    angles = 2 * np.pi * np.arange(8) / 8
    mix8 = GaussianMixture(np.full(8, 1 / 8), 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1), np.full(8, 0.05))
    rng = np.random.default_rng(0)
    gauss64 = Gaussian(rng.normal(size=64), rng.uniform(0.1, 2.0, size=64))
    ve = sdekit.VESDE()
    cases = {
        "em-d2": lambda: run_case(
            "em-d2", sde, gauss2, n, steps, "euler_maruyama", "sde", hand_numpy_em, ts_steps, python_score=True
        ),
        "heun-ode-d2": lambda: run_case("heun-ode-d2", sde, gauss2, n, steps, "heun", "ode", slow_steps=steps // 5),
        "em-mix8-d2": lambda: run_case(
            "em-mix8-d2", sde, mix8, n, steps, "euler_maruyama", "sde", slow_steps=steps // 10
        ),
        "em-d64": lambda: run_case(
            "em-d64", sde, gauss64, 10_000 // q, steps, "euler_maruyama", "sde", hand_numpy_em, slow_steps=steps // 5
        ),
        "dpmpp2m-ode-mix8-d2": lambda: run_case(
            "dpmpp2m-ode-mix8-d2",
            sde,
            mix8,
            n,
            steps,
            "dpmpp_2m",
            "ode",
            slow_steps=steps // 10,
            fallback=_Unfused2M(),
        ),  # fmt: skip
        "annealed-ve-mix8-d2": lambda: run_case(
            "annealed-ve-mix8-d2",
            ve,
            mix8,
            n,
            steps // 10,
            AnnealedLangevin(eps=2e-5, n_steps=10),
            "sde",
            slow_steps=steps // 100,
            fallback=_UnfusedAnnealed(eps=2e-5, n_steps=10),
        ),  # fmt: skip
    }
    unknown = set(args.cases or ()) - set(cases)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; valid: {list(cases)}")
    for name, case in cases.items():
        if args.cases is None or name in args.cases:
            case()
    if not args.skip_compile:
        print("\n### compile time of each fused kernel (from scratch, no disk cache)")
        for name, secs in compile_times().items():
            print(f"{name:45s} {secs:7.2f} s")


if __name__ == "__main__":
    main()
