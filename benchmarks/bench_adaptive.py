"""Adaptive solvers at full speed: cost per sample-NFE, and NFE and wall time to Euler--Maruyama-1000's error.

Targets (both exact, closed-form scores, state float64):

* ``gaussian``: the 8-D anisotropic Gaussian of issue 16 (covariance eigenvalues 0.02 .. 2, rotated), VP SDE;
* ``mixture``: a 4-D mixture of three anisotropic components, VP SDE.

Error: the moment W2 (Gelbrich bound: the W2 between the Gaussians with the samples' and the exact law's mean and
covariance) of the samples at ``t_eps = 1e-3`` (no denoising step) against the exact marginal there, with ``n``
samples; the Monte Carlo floor (exact samples of the same size, mean of 3 draws) is printed with each table. Every
solver starts from the same prior draws (``sample_ids`` 0..n-1, seed 0).

Part 1 -- cost per sample-NFE (wall / (n x NFE per sample)) of Euler--Maruyama (200 steps) and ``adaptive`` (rtol
0.05, tree, bridge and counter noise) on each backend: numba (fused kernels), numpy, torch (CPU; the adaptive loop of
:mod:`sdekit.loop.adaptive` on tensors).

Part 2 -- NFE and wall time to EM-1000's error: EM on 1000 steps (and 4000) against ``adaptive`` over a sweep of
rtol (atol = rtol / 10, tree and bridge noise: ``--noises``) on the default backend (numba); the first rtol whose
W2 is within EM-1000's (resp. EM-4000's) is the "equal error" row.

Part 3 -- the peer: k-diffusion's ``sample_dpm_adaptive`` (order 3, its PID controller, one step size for the
whole batch) on the same target written in sigma under the EDM SDE (``x = x0 + sigma z``), ODE (``eta = 0``) and
SDE (``eta = 1``), against sdekit's ``dopri5`` (ODE) and ``adaptive`` (SDE) on EDMSDE, each over an rtol sweep;
error as above at ``sigma_min = 0.002``; for the ODE rows also the pathwise RMS error against the exact flow map
of the prior draws (the Gaussian's closed form; for the mixture ``dopri5`` in log-SNR time at ``rtol = atol =
1e-10``), which resolves errors far below the moment W2's Monte Carlo floor. The ``(log-SNR)`` rows take the
steps in ``lambda = -log sigma`` (``time="log_snr"``, :mod:`sdekit.timechange`), the variable dpm_adaptive steps
in; they run the numpy adaptive loop (the fused kernels integrate in the process's own time only). The
``dpm_adaptive`` rows are sdekit's DPM-Solver-3/2 pair with per-sample steps in log-SNR time
(:mod:`sdekit.solvers.dpm_adaptive`), with noise prediction (k-diffusion's formulas) and data prediction
(DPM-Solver++); numpy adaptive loop. ``--ode-only`` skips the SDE rows.

Run: ``PYTHONPATH=src python benchmarks/bench_adaptive.py [--n 100000] [--quick] [--parts 12] [--noises bridge]
[--ode-only]`` (numba kernels compile once and are cached on disk; the first run adds their compilation, which is
not timed: every timed call follows a warm-up call on a few samples).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sdekit import EDMSDE, VPSDE, Gaussian, GaussianMixture, solve
from sdekit.metrics import gaussian_w2


def gaussian8():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    lam = np.geomspace(0.02, 2.0, 8)
    return Gaussian(rng.normal(size=8) * 0.5, q @ np.diag(lam) @ q.T)


def mixture4():
    rng = np.random.default_rng(1)
    covs = []
    for _ in range(3):
        a = rng.normal(size=(4, 4))
        covs.append(a @ a.T / 8 + 0.05 * np.eye(4))
    means = np.array([[1.5, 0.0, -1.0, 0.5], [-1.5, 1.0, 0.0, 0.0], [0.0, -1.5, 1.0, -0.5]])
    return GaussianMixture([0.5, 0.3, 0.2], means, np.stack(covs))


TARGETS = {"gaussian": gaussian8, "mixture": mixture4}


def moment_w2(x, density, t, sde):
    m, c = density.mean_cov(t, sde)
    return gaussian_w2(x.mean(0), np.cov(x, rowvar=False), m, c)


def floor(density, n, t, sde):
    m, c = density.mean_cov(t, sde)
    vals = []
    for s in range(3):
        y = density.sample(n, seed=100 + s, t=t, sde=sde)
        vals.append(gaussian_w2(y.mean(0), np.cov(y, rowvar=False), m, c))
    return float(np.mean(vals))


def run(sde, density, x_T, solver, backend="numba", process="sde", **kw):
    """``(x, nfe per sample, wall seconds)`` of one solve, after a warm-up on 8 samples."""
    score = density.score(sde)
    proc = sde.reverse(score) if process == "sde" else sde.probability_flow(score)
    t_end = 1e-3 if isinstance(sde, VPSDE) else 0.002
    x0 = x_T
    if backend == "torch":
        import torch

        x0 = torch.as_tensor(x_T)
    warm = x0[:8]
    solve(proc, warm, sde.T, t_end, solver, backend=backend, seed=0, **kw)
    tic = time.perf_counter()
    sol = solve(proc, x0, sde.T, t_end, solver, backend=backend, seed=0, **kw)
    wall = time.perf_counter() - tic
    x = sol.x.numpy() if backend == "torch" else sol.x
    nfe = sol.stats.get("nfe_mean", sol.nfe)
    return np.asarray(x), float(nfe), wall


def part1(n, quick):
    print("\n## Part 1: cost per sample-NFE (ns), VP SDE, gaussian (d = 8)\n")
    print("| backend | solver | noise | n | NFE/sample | wall (s) | ns per sample-NFE |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    sde = VPSDE()
    dens = gaussian8()
    for backend, nb in (("numba", n), ("numpy", min(n, 4000)), ("torch", min(n, 2000))):
        x_T = sde.prior_sample((nb, 8), seed=0)
        cases = [("euler_maruyama", "counter", dict(steps=200))]
        cases.append(("adaptive", "counter", dict(rtol=0.05, atol=0.005)))
        if backend != "torch" or not quick:
            cases.append(("adaptive", "tree", dict(rtol=0.05, atol=0.005)))
        cases.append(("adaptive", "bridge", dict(rtol=0.05, atol=0.005)))
        for solver, noise, kw in cases:
            if backend == "torch" and noise == "tree":
                continue  # the tree's compiled chains are numpy/numba; torch tree noise runs in python
            m = nb if (backend, noise) != ("numpy", "tree") else min(nb, 1000)  # the python loop's tree: slow
            _, nfe, wall = run(sde, dens, x_T[:m], solver, backend=backend, noise=noise, **kw)
            cost = 1e9 * wall / (m * nfe)
            print(f"| {backend} | {solver} | {noise} | {m} | {nfe:.1f} | {wall:.3f} | {cost:.0f} |")


def part2(n, quick, noises=("tree", "bridge")):
    sde = VPSDE()
    for name, make in TARGETS.items():
        dens = make()
        d = dens.dim
        x_T = sde.prior_sample((n, d), seed=0)
        fl = floor(dens, n, 1e-3, sde)
        print(f"\n## Part 2: {name} (d = {d}), VP SDE, n = {n}; Monte Carlo floor of the moment W2: {fl:.2e}\n")
        print("| solver | setting | NFE/sample | wall (s) | moment W2 |")
        print("| --- | --- | --- | --- | --- |")
        for steps in (1000,) if quick else (1000, 4000):
            x, nfe, wall = run(sde, dens, x_T, "euler_maruyama", steps=steps)
            print(f"| euler_maruyama | {steps} steps | {nfe:.0f} | {wall:.3f} | {moment_w2(x, dens, 1e-3, sde):.2e} |")
        for noise in noises:
            for rtol in (0.2, 0.1, 0.05, 0.02, 0.01) if not quick else (0.1, 0.02):
                x, nfe, wall = run(sde, dens, x_T, "adaptive", rtol=rtol, atol=rtol / 10, noise=noise)
                w2 = moment_w2(x, dens, 1e-3, sde)
                print(f"| adaptive ({noise}) | rtol {rtol:g} | {nfe:.1f} | {wall:.3f} | {w2:.2e} |")


def part3(n, quick, ode_only=False):
    import torch

    from sdekit.interop import load_k_diffusion_sampling

    kd = load_k_diffusion_sampling()
    sde = EDMSDE()
    smin, smax = 0.002, 80.0
    for name, make in TARGETS.items():
        dens = make()
        d = dens.dim
        score = dens.score(sde)
        x_T = sde.prior_sample((n, d), seed=0)
        fl = floor(dens, n, smin, sde)
        print(f"\n## Part 3: {name} (d = {d}), EDM, n = {n}, sigma {smin}..{smax}; W2 floor {fl:.2e}\n")
        print("| sampler | rtol | NFE/sample | wall (s) | moment W2 | path RMS (ODE) |")
        print("| --- | --- | --- | --- | --- | --- |")
        calls = [0]
        if dens.exact_flow:
            x_ref = dens.flow(x_T, smax, smin, sde)
        else:
            x_ref = solve(
                sde.probability_flow(score), x_T, smax, smin, "dopri5", rtol=1e-10, atol=1e-10, time="log_snr"
            ).x

        def row(label, rtol, x, nfe, wall, ode, dens=dens, x_ref=x_ref):
            w2 = moment_w2(x, dens, smin, sde)
            path = f"{np.sqrt(np.mean((x - x_ref) ** 2)):.2e}" if ode else "--"
            print(f"| {label} | {rtol:g} | {nfe:.1f} | {wall:.3f} | {w2:.2e} | {path} |", flush=True)

        def D(x, sigma, score=score, calls=calls, **kwargs):
            calls[0] += 1
            s = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
            xn, sn = x.detach().numpy(), s.detach().to(torch.float64).numpy()
            return x + torch.from_numpy((sn * sn)[:, None] * np.asarray(score(xn, sn)))

        kd_rtols = (0.1, 0.02, 0.005) if quick else (0.1, 0.05, 0.02, 0.01, 0.005)
        # dopri5 needs tighter tolerances on EDM: at rtol >= 0.02 it steps through the stiff end (sigma -> 0.002)
        # and diverges for many samples (numpy and numba alike)
        own_rtols = {"ODE": (0.005, 1e-3) if quick else (0.005, 2e-3, 1e-3, 1e-4), "SDE": (0.1, 0.02)}
        if not quick:
            own_rtols["SDE"] = (0.2, 0.1, 0.05, 0.02)
        # in log-SNR time the flow is not stiff at sigma_min: dopri5 is stable at any of kd's tolerances
        log_snr_rtols = {"ODE": (0.02, 0.005) if quick else (0.1, 0.05, 0.02, 0.01, 0.005, 0.002),
                         "SDE": (0.1,) if quick else (0.2, 0.1, 0.05)}  # fmt: skip
        expint_rtols = (0.05, 0.01) if quick else (0.1, 0.05, 0.02, 0.01, 0.005, 0.002)
        for eta, label in ((0.0, "ODE"),) if ode_only else ((0.0, "ODE"), (1.0, "SDE")):
            for rtol in kd_rtols:
                torch.manual_seed(0)
                xt = torch.as_tensor(x_T)
                calls[0] = 0
                tic = time.perf_counter()
                x, info = kd.sample_dpm_adaptive(D, xt, smin, smax, rtol=rtol, atol=rtol / 10, eta=eta, disable=True,
                                                 return_info=True)  # fmt: skip
                wall = time.perf_counter() - tic
                row(f"kd dpm_adaptive {label}", rtol, x.numpy(), info["nfe"], wall, eta == 0.0)
            solver, proc = ("dopri5", "ode") if eta == 0.0 else ("adaptive", "sde")
            for rtol in own_rtols[label]:
                x, nfe, wall = run(sde, dens, x_T, solver, process=proc, rtol=rtol, atol=rtol / 10)
                row(f"sdekit {solver} {label}", rtol, x, nfe, wall, eta == 0.0)
            for rtol in log_snr_rtols[label]:
                x, nfe, wall = run(sde, dens, x_T, solver, process=proc, rtol=rtol, atol=rtol / 10, time="log_snr")
                row(f"sdekit {solver} {label} (log-SNR)", rtol, x, nfe, wall, eta == 0.0)
            if eta != 0.0:
                continue
            # the exponential integrator dpm_adaptive steps in, with per-sample steps (noise and data prediction)
            for prediction in ("noise", "data"):
                for rtol in expint_rtols:
                    x, nfe, wall = run(sde, dens, x_T, "dpm_adaptive", process="ode", rtol=rtol, atol=rtol / 10,
                                       prediction=prediction)  # fmt: skip
                    row(f"sdekit dpm_adaptive ODE ({prediction})", rtol, x, nfe, wall, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--n-peer", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="123")
    ap.add_argument("--noises", default="tree,bridge", help="noise of the adaptive rows of part 2 (comma-separated)")
    ap.add_argument("--ode-only", action="store_true", help="part 3: the probability-flow ODE rows only")
    args = ap.parse_args()
    if "1" in args.parts:
        part1(args.n, args.quick)
    if "2" in args.parts:
        part2(args.n, args.quick, tuple(args.noises.split(",")))
    if "3" in args.parts:
        part3(args.n_peer, args.quick, args.ode_only)


if __name__ == "__main__":
    main()
