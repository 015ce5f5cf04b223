"""Identity check: hashes of what the solvers compute, to compare a refactor's output with the tree before it.

Run from the repository root (``PYTHONPATH=src python scripts/fingerprint.py > before.txt``, again after the
change, then ``diff``). Every line is ``<what> exact=<h1> r12=<h2>``:

* ``exact``: sha256 (first 12 hex digits) of the float64 bytes of the result -- equal only when the arithmetic is
  the same operation for operation;
* ``r12``: the same hash after rounding every number to 12 significant digits -- equal also where the change is
  round-off only (e.g. an expression reassociated), and different when a number moved beyond round-off.

Covered, on a small 2-D Gaussian data law (its score is exact and analytic):

* ``sample`` of every registered solver x process (sde/ode as the solver takes) x SDE (vp, subvp, ve, edm) x
  backend (numpy; numba: the fused kernels of the analytic score; torch float64 on the CPU), with ``save_at``;
* the adaptive solvers with each noise source (counter, tree, bridge), a callback run, and ``cond``;
* ``bench.exact_law`` of every fixed-step solver (vp, sde and ode);
* ``likelihood.log_likelihood`` (dopri5, numpy and torch; hutchinson);
* a small ``bench.compare`` table (errors and NFE; wall times left out).

Takes about two minutes (the numba kernels compile once and are cached on disk).
"""

from __future__ import annotations

import hashlib
import sys
import time

import numpy as np

import sdekit
from sdekit import bench, likelihood
from sdekit.analytic import Gaussian
from sdekit.sdes import EDMSDE, VESDE, VPSDE, SubVPSDE

try:
    import torch
except ImportError:  # the torch rows are skipped
    torch = None

try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:
    HAVE_NUMBA = False

SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE(), "edm": EDMSDE()}
N, STEPS, SEED = 12, 6, 3


def _numpy(v):
    if torch is not None and isinstance(v, torch.Tensor):
        return v.detach().cpu().double().numpy()
    return np.asarray(v, dtype=np.float64)


def _hashes(*values) -> str:
    exact, rounded = hashlib.sha256(), hashlib.sha256()
    for v in values:
        a = np.ascontiguousarray(_numpy(v))
        exact.update(a.tobytes())
        with np.errstate(all="ignore"):
            rounded.update(np.char.mod("%.11e", a.ravel()).tobytes())
    return f"exact={exact.hexdigest()[:12]} r12={rounded.hexdigest()[:12]}"


def _line(what: str, *values):
    print(f"{what:<58} {_hashes(*values)}", flush=True)


def _density(sde):
    mean = np.array([0.7, -0.4])
    cov = np.array([[0.5, 0.1], [0.1, 0.3]])
    return Gaussian(mean, cov)


def _processes(solver):
    return [p for p in ("sde", "ode") if getattr(solver, f"is_{p}")]


def _x_T(sde, backend):
    x = sde.prior_sample((N, 2), seed=SEED)
    return torch.as_tensor(x) if backend == "torch" else x


def _run(what, sde, density, name, process, backend, **kw):
    try:
        sol = sdekit.sample(sde, density.score(sde), x_T=_x_T(sde, backend), solver=name, process=process,
                            seed=SEED, backend=backend, **kw)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 -- the error itself is part of the fingerprint
        print(f"{what:<58} error={type(exc).__name__}: {str(exc)[:80]}", flush=True)
        return
    values = [sol.x] + ([sol.xs, sol.ts] if sol.xs is not None else [])
    _line(f"{what} nfe={sol.nfe}", *values)


def samples():
    backends = ["numpy"] + (["numba"] if HAVE_NUMBA else []) + (["torch"] if torch is not None else [])
    for sde_name, sde in SDES.items():
        density = _density(sde)
        for name in sdekit.SOLVERS:
            solver = sdekit.get_solver(name)
            for process in _processes(solver):
                for backend in backends:
                    what = f"sample {sde_name} {name} {process} {backend}"
                    if solver.adaptive:
                        _run(what, sde, density, name, process, backend, rtol=1e-3, atol=1e-3)
                    else:
                        kw = {"steps": STEPS}
                        if sde_name == "vp":
                            kw["save_at"] = True
                        _run(what, sde, density, name, process, backend, **kw)


def adaptive_variants():
    sde = SDES["vp"]
    density = _density(sde)
    backends = ["numpy"] + (["numba"] if HAVE_NUMBA else []) + (["torch"] if torch is not None else [])
    for backend in backends:
        for noise in ("counter", "tree", "bridge"):
            _run(f"adaptive noise={noise} {backend}", sde, density, "adaptive", "sde", backend, noise=noise,
                 rtol=1e-3, atol=1e-3, save_at=[0.5, 0.2])  # fmt: skip
        _run(f"dopri5 save_at {backend}", sde, density, "dopri5", "ode", backend, rtol=1e-4, atol=1e-4,
             save_at=[0.5, 0.2])  # fmt: skip
        seen = []
        _run(f"adaptive callback {backend}", sde, density, "adaptive", "sde", backend, rtol=1e-3, atol=1e-3,
             callback=lambda info, seen=seen: seen.append(float(np.mean(_numpy(info["t"])))))  # fmt: skip
        _line(f"adaptive callback times {backend}", np.array(seen))
        seen = []
        _run(f"heun callback {backend}", sde, density, "heun", "ode", backend, steps=STEPS,
             callback=lambda info, seen=seen: seen.append(_numpy(info["x"]).sum()))  # fmt: skip
        _line(f"heun callback states {backend}", np.array(seen))
        for name in ("euler_maruyama", "dpmpp_2m_sde"):
            _run(f"{name} tree {backend}", sde, density, name, "sde", backend, steps=STEPS, noise="tree")


def exact_laws():
    sde = SDES["vp"]
    density = _density(sde)
    for name in sdekit.SOLVERS:
        solver = sdekit.get_solver(name)
        if solver.adaptive:
            continue
        for process in _processes(solver):
            try:
                mean, cov = bench.exact_law(name, sde, density, STEPS, process=process, denoise=True)
            except Exception as exc:  # noqa: BLE001
                print(f"exact_law {name} {process:<40} error={type(exc).__name__}: {str(exc)[:60]}")
                continue
            _line(f"exact_law {name} {process}", mean, cov)


def likelihoods():
    for sde_name, sde in SDES.items():
        density = _density(sde)
        x = density.sample(8, seed=1)
        for tv in ("auto", "log_snr"):
            res = likelihood.log_likelihood(sde, density.score(sde), x, time_variable=tv, rtol=1e-4, atol=1e-4)
            _line(f"log_likelihood {sde_name} {tv} numpy nfe={np.asarray(res.nfe).tolist()}", res.logp)
            if torch is not None:
                res = likelihood.log_likelihood(sde, density.score(sde), torch.as_tensor(x), time_variable=tv,
                                                rtol=1e-4, atol=1e-4)  # fmt: skip
                _line(f"log_likelihood {sde_name} {tv} torch", res.logp, res.nfe)
        res = likelihood.log_likelihood(sde, density.score(sde), x, trace="hutchinson", n_probes=2, rtol=1e-4,
                                        atol=1e-4)  # fmt: skip
        _line(f"log_likelihood {sde_name} hutchinson", res.logp)


def compare_table():
    res = bench.compare("gaussian", "vp", ["euler", "heun", "dpmpp_2m", "euler_maruyama"], [8, 16], n=200,
                        backend="numpy", seed=1)  # fmt: skip
    for r in res.rows:
        _line(f"compare {r['solver']} {r['process']} {r['nfe_budget']} nfe={r['nfe']}", r["error"], r["kl"])


def main():
    start = time.perf_counter()
    sections = [samples, adaptive_variants, exact_laws, likelihoods, compare_table]
    only = sys.argv[1:]
    for section in sections:
        if only and section.__name__ not in only:
            continue
        print(f"# {section.__name__}", flush=True)
        section()
    print(f"# done in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
