"""Likelihood benchmark: accuracy and NFE of ``log_likelihood`` against scipy's RK45 at the same tolerance.

For each SDE and analytic density, ``n`` points drawn from the data law get their ``log p_{t_eps}`` computed with
the exact score and trace, with ``log p_T`` itself as the prior so the only error left is the integrator's; the
error is measured against the closed form ``density.logpdf(x, t_eps, sde)``.

Three ways of integrating the same augmented ODE (same variable ``t``, same ``rtol = atol``):

* ``dopri5``          -- sdekit's per-sample Dormand--Prince 5(4), the whole batch in one call;
* ``rk45 batch``      -- ``scipy.integrate.solve_ivp(method="RK45")`` on the flattened batch (score_sde's way);
* ``rk45 per-sample`` -- the same, one solve per point.

NFE is per sample (mean over the batch). Run: ``PYTHONPATH=src python benchmarks/bench_likelihood.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sdekit import EDMSDE, VESDE, VPSDE, SubVPSDE
from sdekit.bench import make_density
from sdekit.likelihood import log_likelihood


def run(n: int, tol: float, densities, seed: int = 0):
    rows = []
    for sde in (VPSDE(), SubVPSDE(), VESDE(), EDMSDE()):
        t_eps = 2e-3 if isinstance(sde, EDMSDE) else 1e-5
        for name in densities:
            dens = make_density(name)
            score = dens.score(sde)
            x = dens.sample(n, seed=seed)
            exact = dens.logpdf(x, t_eps, sde)

            def prior(z, dens=dens, sde=sde):
                return dens.logpdf(z, sde.T, sde)

            kw = dict(t_eps=t_eps, rtol=tol, atol=tol, prior_logpdf=prior, time_variable="t")
            out = {"sde": type(sde).__name__, "density": name, "dim": dens.dim}
            t0 = time.perf_counter()
            a = log_likelihood(sde, score, x, **kw)
            out["dopri5"] = (a.nfe, np.abs(a.logp - exact).max() / dens.dim, time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = log_likelihood(sde, score, x, solver="scipy_rk45", **kw)
            out["rk45 batch"] = (b.nfe, np.abs(b.logp - exact).max() / dens.dim, time.perf_counter() - t0)
            t0 = time.perf_counter()
            per = [log_likelihood(sde, score, x[i : i + 1], solver="scipy_rk45", **kw) for i in range(n)]
            err = max(abs(p.logp[0] - exact[i]) for i, p in enumerate(per)) / dens.dim
            out["rk45 per-sample"] = (float(np.mean([p.nfe for p in per])), err, time.perf_counter() - t0)
            rows.append(out)
    return rows


def prior_error(n: int, tol: float, densities, seed: int = 0):
    """The error of the default prior: the same dopri5 solve with ``sde.prior_logpdf`` (the SDE's ``N(0, sigma_T^2 I)``,
    not the data's ``p_T``), ``(sde, density, dim, max err/dim, mean err/dim)``."""
    rows = []
    for sde in (VPSDE(), SubVPSDE(), VESDE(), EDMSDE()):
        t_eps = 2e-3 if isinstance(sde, EDMSDE) else 1e-5
        for name in densities:
            dens = make_density(name)
            x = dens.sample(n, seed=seed)
            logp = log_likelihood(sde, dens.score(sde), x, t_eps=t_eps, rtol=tol, atol=tol, time_variable="t").logp
            err = np.abs(logp - dens.logpdf(x, t_eps, sde)) / dens.dim
            rows.append((type(sde).__name__, name, dens.dim, err.max(), err.mean()))
    return rows


def hutchinson_check(n: int, seed: int = 0):
    """Mean and standard error of the Hutchinson estimate at one point against the exact trace."""
    sde, dens = VPSDE(), make_density("ring8")
    x0 = dens.sample(1, seed=seed + 7)
    exact = log_likelihood(sde, dens.score(sde), x0, rtol=1e-8, atol=1e-8).logp[0]
    out = []
    for probe in ("rademacher", "gaussian"):
        for n_probes in (1, 4):
            r = log_likelihood(
                sde, dens.score(sde), np.repeat(x0, n, 0), trace="hutchinson", probe=probe, n_probes=n_probes, seed=seed
            )
            out.append((probe, n_probes, r.logp.mean() - exact, r.logp.std(ddof=1) / np.sqrt(n), r.logp.std(ddof=1)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--densities", nargs="+", default=["gaussian", "gaussian10", "ring8", "blobs3"])
    args = p.parse_args()
    start = time.perf_counter()
    rows = run(args.n, args.tol, args.densities)
    print(
        f"rtol = atol = {args.tol:g}, n = {args.n} points per problem; NFE per sample; error = max |logp - exact| / D"
    )
    print()
    print(
        "| SDE | density | D | dopri5 NFE | dopri5 err/dim | RK45 batch NFE | err/dim | RK45 per-sample NFE | err/dim |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        a, b, c = r["dopri5"], r["rk45 batch"], r["rk45 per-sample"]
        print(
            f"| {r['sde']} | {r['density']} | {r['dim']} | {a[0]:.1f} | {a[1]:.1e} | {b[0]:.1f} | {b[1]:.1e} "
            f"| {c[0]:.1f} | {c[1]:.1e} |"
        )
    ratio = np.mean([r["dopri5"][0] / r["rk45 batch"][0] for r in rows])
    worst = max(r["dopri5"][1] for r in rows)
    print()
    print(f"mean NFE ratio dopri5 / RK45-batch: {ratio:.3f}; worst dopri5 error {worst:.1e} nats per dimension")
    print()
    print("The default prior (sde.prior_logpdf) instead of log p_T, same solves: error per dimension")
    print("| SDE | density | D | max err/dim | mean err/dim |")
    print("| --- | --- | --- | --- | --- |")
    for sde_name, name, dim, worst_p, mean_p in prior_error(args.n, args.tol, args.densities):
        print(f"| {sde_name} | {name} | {dim} | {worst_p:.1e} | {mean_p:.1e} |")
    print()
    print("Hutchinson (VP, ring8, one point, 400 independent probe draws, rtol = atol = 1e-5):")
    print("| probe | n_probes | mean - exact | standard error | std of one estimate |")
    print("| --- | --- | --- | --- | --- |")
    for probe, k, bias, se, sd in hutchinson_check(400):
        print(f"| {probe} | {k} | {bias:+.2e} | {se:.2e} | {sd:.2e} |")
    print(f"\ntotal wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
