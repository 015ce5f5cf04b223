"""Compile the fused kernels ahead of time: :func:`warmup` (the ``sdekit warmup`` command).

A fused kernel compiles on its first call (tens of seconds, minutes for the adaptive ones) and is then kept in
numba's disk cache (:mod:`sdekit.backends.numba.compile_cost` says where), so later processes load it in a fraction
of a second. ``backend="auto"`` never waits on the compiler for a job that would not pay for it; run this once
after installing (or in CI before the tests) and every later process finds the kernels cached, which ``"auto"``
then uses for any job large enough to pay the load.

One compilation serves every analytic density, dimension and linear SDE: the kernels' argument types do not
depend on them. Kernels for a :class:`~sdekit.backends.numba.RowScore` are compiled per process and score (they
are not cached on disk) and cannot be warmed up ahead of time.
"""

from __future__ import annotations

import time

import numpy as np

from .compile_cost import cache_dir, kernel_dispatcher, readiness

__all__ = ["warmup", "warmup_jobs"]


def _kinds(solver):
    return [k for k, on in (("sde", solver.is_sde), ("ode", solver.is_ode)) if on]


def warmup_jobs(solvers=None):
    """``([(solver spec, process)], [solver specs without a kernel])``: one tiny job per fused kernel that the given
    ``solvers`` (names or ``"name(k=v)"`` specs; default: every registered solver) run, and those that run none."""
    from ...solvers import SOLVERS, get_solver

    names = list(SOLVERS) if solvers is None else list(solvers)
    jobs, seen, none = [], set(), []
    for spec in names:
        solver = get_solver(spec)
        kernels = [(kind, _kernel_name(solver, kind)) for kind in _kinds(solver)]
        if all(k is None for _, k in kernels):
            none.append(spec)
        for kind, kernel in kernels:
            if kernel is not None and kernel not in seen:
                seen.add(kernel)
                jobs.append((spec, kind))
    return jobs, none


def _tiny(solver, kind):
    """``(job, run)``: the Job of a tiny solve of ``solver`` on ``kind`` (8 samples of a 2-D Gaussian mixture on
    the VP SDE, 4 steps or the adaptive solver's own) and a call that runs it on ``backend="numba"``."""
    from ...analytic import GaussianMixture
    from ...integrate import solve
    from ...sdes import VPSDE
    from ..job import Job

    sde = VPSDE()
    score = GaussianMixture([0.5, 0.5], [[1.0, 0.0], [-1.0, 0.0]], [0.1, 0.1]).score(sde)
    process = sde.reverse(score) if kind == "sde" else sde.probability_flow(score)
    x0 = sde.prior_sample((8, 2), seed=0)
    steps = {} if solver.adaptive else {"steps": 4}
    grid = np.array([sde.T, sde.eps]) if solver.adaptive else np.linspace(sde.T, sde.eps, 5)
    noise = "bridge" if solver.adaptive and kind == "sde" else "counter"
    job = Job(process, solver, x0, grid, 0, np.arange(8, dtype=np.int64), None, False, True, kind == "sde",
              noise=noise)  # fmt: skip
    return job, (lambda: solve(process, x0, sde.T, sde.eps, solver, backend="numba", **steps))


def _kernel_name(solver, kind):
    """The fused kernel ``solver`` runs on ``kind`` for an analytic score, or None."""
    from .kernels.adaptive import ADAPTIVE_KERNELS
    from .registry import find_kernel

    if solver.adaptive:
        kernel = ADAPTIVE_KERNELS.get((type(solver), kind))
    else:
        kernel = find_kernel(solver, kind)
        if kernel is not None and not kernel.accepts(solver):
            kernel = None
    return None if kernel is None else kernel.name


def warmup(solvers=None, *, report=None) -> list:
    """Compile (or load from numba's disk cache) the fused kernels of ``solvers`` (names or specs; default: every
    registered solver), one tiny solve per kernel on ``backend="numba"``.

    Returns a list of dicts ``{"kernel", "solver", "process", "before", "seconds", "cache_dir"}``: ``before`` is
    the kernel's state before (``"compiled"``, ``"cached"`` or ``"cold"``, see
    :mod:`~sdekit.backends.numba.compile_cost`), ``seconds`` the time the solve took, ``cache_dir`` where numba
    keeps the kernel. ``report(row)``, when given, is called after each kernel (the CLI prints the row)."""
    from ...solvers import get_solver

    rows = []
    jobs, _ = warmup_jobs(solvers)
    for spec, kind in jobs:
        job, run = _tiny(get_solver(spec), kind)
        ready = readiness(job)
        found = kernel_dispatcher(job)
        tic = time.perf_counter()
        sol = run()
        row = {
            "kernel": sol.stats.get("kernel", ""),
            "solver": spec,
            "process": kind,
            "before": "none" if ready is None else ready.state,
            "seconds": time.perf_counter() - tic,
            "cache_dir": None if found is None else cache_dir(found[1]),
        }
        rows.append(row)
        if report is not None:
            report(row)
    return rows
