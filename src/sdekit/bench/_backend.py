"""Which backend runs each SDE cell of :func:`sdekit.bench.compare` by default: numba where its kernel pays.

With ``backend=None`` (the default of ``compare`` and ``sdekit compare``) the ODE rows run on numpy and the SDE
rows on numba's fused kernels *where a kernel pays for what it costs before it runs*, else on numpy. The rule is
:mod:`sdekit.backends.auto`'s, applied in a way that keeps a table reproducible:

1. Once per table, in the calling process, :func:`sde_kernel_costs` looks up the fused kernel of each SDE row and
   its state (:func:`sdekit.backends.numba.compile_cost.dispatcher_readiness`): compiled in this process (cost
   0), in numba's disk cache (a load, ~1 s) or cold (its measured compile time). A row without a fused kernel
   (``dpm_adaptive``, a density without a compiled score) has no cost entry: it runs on numpy, as numba's per-step
   loop is no faster. The costs travel with the :class:`~sdekit.bench._plan.Problem` to every cell, on a Dask
   worker too, so a serial and a distributed run of a table make the same choices.
2. Each cell then decides from its own size alone (:func:`cell_backend`): numba when the fused kernel saves more
   than that cost (``(1 - FUSED_FRACTION)`` of the estimated numpy time,
   :func:`sdekit.backends.auto.numpy_seconds_for`), numpy otherwise. A cell of a sequential metric
   (``mmd_cf``, which doubles its sample until the error is resolved) runs its first batch on numpy unless the
   kernel pays for that batch alone; after each batch on numpy it predicts its final sample from its error and
   resolution so far (:func:`predicted_samples`, the resolution falling like ``n^-1/2``) and runs the remaining
   batches on numba once they pay for the kernel.

So small rows never wait on the compiler (on the default table, Euler--Maruyama, EDM, restart, PC, ancestral sampling
and reverse diffusion draw 4000 samples per cell and take 0.5-2 s per row on numpy against 8-17 s to compile their
kernel), and the rows that draw hundreds of thousands of samples compile theirs (benchmarks/README.md, "Cold
start"). A cell charges the whole cost to itself (the choice must not depend on the order in which
cells run), so a middling row may run numpy although another row compiled its kernel already. numba and numpy
give the same samples to round-off (counter-based normals), so the choice moves the table's figures by round-off
at most; the ``backend`` column of each row says which ran (``"numpy, then numba"``: the first batch on numpy, the
rest on numba), and ``info["sde_kernels"]`` the kernel states the table started from. An explicit ``backend``
(``"numba"``, ``"numpy"``, ...) runs every SDE cell on it, as before.
"""

from __future__ import annotations

import math

from ..backends.auto import FUSED_FRACTION, numpy_seconds_for, score_width

__all__ = ["sde_kernel_costs", "cell_backend", "predicted_samples", "FAST_BACKEND", "SLOW_BACKEND"]

#: The backend of the SDE cells whose kernel pays, and of the others.
FAST_BACKEND = "numba"
SLOW_BACKEND = "numpy"


def sde_kernel_costs(problem, runs) -> tuple[dict, dict]:
    """``(costs, states)`` of the SDE ``runs`` of ``problem``: ``costs[run.name]`` the seconds its fused kernel
    costs before it runs (0, a cache load or a compilation), absent for a run without a fused kernel;
    ``states[run.name]`` a description (``"affine_multistep cold"``, ``"none (no fused kernel)"``)."""
    costs, states = {}, {}
    sde_runs = [r for r in runs if r.process == "sde"]
    if not sde_runs:
        return costs, states
    try:
        from ..backends.numba.compile_cost import dispatcher_readiness
        from ..backends.numba.host_scores import is_analytic_score
        from ..backends.numba.registry import find_kernel
    except ImportError:  # numba not installed: every SDE row runs numpy
        return costs, {r.name: "none (numba not installed)" for r in sde_runs}
    analytic = is_analytic_score(problem.density.score(problem.sde))
    for run in sde_runs:
        kernel = find_kernel(run.solver, "sde") if analytic else None
        if kernel is None or not kernel.accepts(run.solver):
            states[run.name] = "none (no fused kernel)"
            continue
        ready = dispatcher_readiness(kernel.name, kernel.analytic())
        costs[run.name] = ready.seconds
        states[run.name] = f"{ready.kernel} {ready.state}"
    return costs, states


def cell_backend(problem, run, n: int, evaluations: int, calls: int = 1) -> str:
    """The backend of ``calls`` solves of ``run`` on ``n`` samples in all, ``evaluations`` score evaluations per
    sample (module docstring). Not weighing (an explicit backend, or an ODE row): the problem's backend."""
    if run.process != "sde" or not problem.weigh_sde:
        return problem.backend_for(run.process)
    cost = problem.sde_costs.get(run.name)
    if cost is None:
        return SLOW_BACKEND
    width = score_width(problem.density.score(problem.sde))
    saving = (1.0 - FUSED_FRACTION) * numpy_seconds_for(evaluations, n, problem.density.dim, width, calls)
    return FAST_BACKEND if saving > cost else SLOW_BACKEND


def predicted_samples(n0: int, error: float, resolution: float, n_max: int, stop: float) -> int:
    """The sample a sequential cell will have drawn when it stops, predicted from its estimate ``error`` (and its
    ``resolution``) after ``n0`` samples: the total doubles from ``n0`` until ``error > stop * resolution *
    sqrt(n0 / n)`` or ``n_max`` is reached (the error taken as fixed, the resolution as falling like ``n^-1/2``; a
    non-positive or non-finite error: ``n_max``)."""
    n = n0
    ok = math.isfinite(error) and error > 0.0
    while n < n_max and not (ok and error > stop * resolution * math.sqrt(n0 / n)):
        n = min(2 * n, n_max)
    return n
