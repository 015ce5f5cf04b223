"""Learned few-step solvers (``sdekit.learn.fit``) against the best peers of the few-step frontier.

The problems of ``bench_fewstep.py`` (mix2d, skew1d, skew16d, aniso64 under the EDM SDE with exact scores, and the
learned 8x8-digits denoiser), probability-flow ODE, endpoint error = RMS over test trajectories of ``|x - x_ref|``
with ``x_ref`` the dopri5 solve (rtol = atol = 1e-10) from the same ``x_T`` to sigma_min.

Peers (the best ones of ``bench_fewstep.py`` at 5-10 NFE): zju-pi/diff-sampler's iPNDM, iPNDM_v and DEIS-tAB3
(with and without the analytical first step) and diffusers' UniPC (bh1, bh2, orders 2 and 3, ending at sigma_min
or with a last step to 0), each on the five grids of ``bench_fewstep.py``; the best peer of a cell is the one with
the least RMS on the test points (chosen on them: an optimistic peer).

Learned rows: ``sdekit.learn.fit(sde, score, nfe, x_T=warm, denoise=False)`` with its defaults otherwise (base
the best on the training points of iPNDM, iPNDM_v and DEIS-tAB with AFS; 1024 points drawn from a pool of 8192 warm-up
points, prior draws with seed 2; 2048 guard points drawn from 8192 prior draws with seed 11), disjoint from the
test points (prior draws with seed 1; sample i of a seed is the same whatever the batch size, so the seeds must differ).
Per row: RMS, a 90 % paired bootstrap interval of the ratio to the best peer (2000
resamples of the test points), the fraction of test trajectories that end in another mixture component than the
reference's (most probable component of the data law at the endpoint) and the RMS over the others, the fit's
seconds and score evaluations (rows), and for the digits model the Frechet distance (of the Gaussians fitted to the
outputs; ``sdekit.metrics.gaussian_w2`` squared) to the reference outputs.

Run: ``PYTHONPATH=src python benchmarks/bench_learned.py`` (options: ``--problems``, ``--nfe``, ``--n-test``,
``--n-warm``, ``--time-limit``, ``--threads``: torch threads, default 1 -- on a loaded 2-core machine two threads
made each call of the digits network 10-50x slower; ``--history``, ``--joint``: fit's options).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fewstep import (  # noqa: E402
    GRID_NAMES,
    SIGMA_MIN,
    Denoiser,
    LearnedDigits,
    diffusers_peers,
    drive_diffusers,
    ds_peers,
    grid_levels,
    problems,
)

import sdekit.learn  # noqa: E402
from sdekit import EDMSDE, sample, solve  # noqa: E402
from sdekit.metrics import gaussian_w2  # noqa: E402

NFES = (4, 5, 6, 8, 10)


def sq_errors(x, ref):
    d = (np.asarray(x) - np.asarray(ref)).reshape(len(ref), -1)
    return np.sum(d * d, axis=1)


def components(mix, x):
    """The most probable mixture component of each point (the data law's posterior at the endpoint)."""
    from scipy.stats import multivariate_normal

    covs = mix.cov_matrices()
    logp = np.stack(
        [np.log(w) + multivariate_normal(m, c, allow_singular=True).logpdf(x) for w, m, c in
         zip(mix.weights, mix.means, covs)], axis=-1)  # fmt: skip
    return np.argmax(logp.reshape(len(x), -1), axis=1)


def bootstrap_ratio(sq_a, sq_b, reps=2000, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sq_a), size=(reps, len(sq_a)))
    r = np.sqrt(sq_a[idx].mean(axis=1) / sq_b[idx].mean(axis=1))
    return np.quantile(r, [0.05, 0.95])


def peers(D, x_T, budget, ref, sde):
    """(label, squared errors, output) of the best peer at ``budget``."""
    xt = torch.from_numpy(x_T)
    best = (None, None, math.inf, None)
    for g in GRID_NAMES:
        for label, fn in ds_peers(D):
            for afs in (False, True):
                lv = grid_levels(sde, g, budget + int(afs))
                D.calls = 0
                out = fn(xt.clone(), [float(v) for v in lv], afs)
                assert D.calls == budget
                sq = sq_errors(out.numpy(), ref["sigma_min"])
                if sq.mean() < best[2]:
                    best = (f"{label}{' afs' if afs else ''} [{g}]", sq, sq.mean(), out.numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for label, (make, kind, _) in diffusers_peers().items():
                if "UniPC" not in label or label.startswith("diffusers UniPC-1"):
                    continue
                for zero in (False, True):
                    lv = np.r_[grid_levels(sde, g, budget - 1), 0.0] if zero else grid_levels(sde, g, budget)
                    D.calls = 0
                    out = drive_diffusers(make(zero), kind, D, xt.clone(), lv)
                    sq = sq_errors(out.numpy(), ref["zero" if zero else "sigma_min"])
                    if np.isfinite(sq.mean()) and sq.mean() < best[2]:
                        best = (f"{label} [{g}{'->0' if zero else ''}]", sq, sq.mean(), out.numpy())
    return best[0], best[1], best[3]


def run(name, prob, nfes, n_test, n_warm, time_limit, log, **fit_options):
    sde = EDMSDE(SIGMA_MIN, 80.0)
    digits = isinstance(prob, LearnedDigits)
    score = prob.score(sde) if digits else prob.score(sde)
    d = prob.dim
    x_test = sde.prior_sample((n_test, d), seed=1)
    x_warm = sde.prior_sample((n_warm, d), seed=2)
    t0 = time.perf_counter()
    pf = sde.probability_flow(score)
    ref_min = solve(pf, x_test, sde.T, SIGMA_MIN, "dopri5", rtol=1e-10, atol=1e-10).x
    ref = {"sigma_min": ref_min, "zero": ref_min + SIGMA_MIN**2 * score(ref_min, np.full(n_test, SIGMA_MIN))}
    comp_ref = None if digits else components(prob, ref_min)
    log(f"\n## {name}: d = {d}; {n_test} test / {n_warm} warm-up trajectories (reference "
        f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    log(
        "\n| problem | NFE | solver | RMS | ratio to best peer [90% interval] | switched | RMS of the rest | "
        "fit s | fit score evals | choice (guard RMS fitted / base)" + (" | FD to reference |" if digits else " |")
    )
    log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | ---" + (" | --- |" if digits else " |"))
    D = Denoiser(score)
    out = {}
    for budget in nfes:
        label, sq_p, out_p = peers(D, x_test, budget, ref, sde)
        rms_p = math.sqrt(sq_p.mean())
        t1 = time.perf_counter()
        fitted = sdekit.learn.fit(sde, score, budget, x_T=x_warm, denoise=False, seed=10, time_limit=time_limit,
                                  **fit_options)  # fmt: skip
        secs = time.perf_counter() - t1
        sol = sample(sde, score, x_T=x_test, solver=fitted, denoise=False)
        assert sol.nfe <= budget, (sol.nfe, budget)
        sq = sq_errors(sol.x, ref["sigma_min"])
        rms = math.sqrt(sq.mean())
        lo, hi = bootstrap_ratio(sq, sq_p)
        rep = fitted.report
        decide = rep["guard"] or rep["heldout"]
        choice = f"{rep['choice']} ({decide[rep['choice']]:.2e} / {decide['base']:.2e}; load {os.getloadavg()[0]:.1f})"
        if digits:
            fd, fd_p = (gaussian_w2(y.mean(0), np.cov(y.T), ref_min.mean(0), np.cov(ref_min.T)) ** 2
                        for y in (sol.x, out_p))  # fmt: skip
            sw, rest = "-", "-"
        else:
            switched = components(prob, sol.x) != comp_ref
            sw, rest = f"{switched.mean():.2%}", f"{math.sqrt(sq[~switched].mean()):.2e}"
        extra = f" {fd_p:.2e} |" if digits else ""
        log(f"| {name} | {budget} | best peer: {label} | {rms_p:.2e} | 1 | | | | | |" + extra)
        log(f"| {name} | {budget} | learned | {rms:.2e} | {rms / rms_p:.2f} [{lo:.2f}, {hi:.2f}] | {sw} | {rest} | "
            f"{secs:.0f} | {rep['score_rows']:.2e} | {choice} |" + (f" {fd:.2e} |" if digits else ""))  # fmt: skip
        out[budget] = rms / rms_p
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="*", default=["mix2d", "skew1d", "skew16d", "aniso64", "digits"])
    ap.add_argument("--nfe", nargs="*", type=int, default=list(NFES))
    ap.add_argument("--n-test", type=int, default=4000)
    ap.add_argument("--n-warm", type=int, default=1024)
    ap.add_argument("--n-test-digits", type=int, default=1000)
    ap.add_argument("--n-warm-digits", type=int, default=2048, help="pool of the digits fits")
    ap.add_argument("--n-fit-digits", type=int, default=256, help="points the digits fits draw from their pool")
    ap.add_argument("--guard-digits", type=int, default=512, help="guard points of the digits fits")
    ap.add_argument("--time-limit", type=float, default=240.0, help="safety bound on the seconds of each fit's polish")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--history", type=int, default=None, help="fit's history (default: fit's own)")
    ap.add_argument("--joint", type=int, default=None, help="fit's joint (default: fit's own)")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(args.threads)
    probs = problems()

    def log(msg):
        print(msg, flush=True)

    start = time.perf_counter()
    table = {}
    for name in args.problems:
        digits = name == "digits"
        prob = LearnedDigits() if digits else probs[name]
        nt, nw = (args.n_test_digits, args.n_warm_digits) if digits else (args.n_test, args.n_warm)
        opts = {"n": args.n_fit_digits, "guard": args.guard_digits} if digits else {}
        opts.update({k: getattr(args, k) for k in ("history", "joint") if getattr(args, k) is not None})
        table[name] = run(name, prob, args.nfe, nt, nw, args.time_limit, log, **opts)
    log("\n| learned / best peer | " + " | ".join(f"NFE {b}" for b in args.nfe) + " |")
    log("| --- | " + " | ".join("---" for _ in args.nfe) + " |")
    for name, ratios in table.items():
        log(f"| {name} | " + " | ".join(f"{ratios[b]:.2f}" for b in args.nfe) + " |")
    log(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
