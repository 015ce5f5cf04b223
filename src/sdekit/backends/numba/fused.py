"""The fused path: plan a job onto a registered kernel, prepare its tables, run it over the whole grid.

A job runs fused when the process is the reverse SDE or the probability-flow ODE of a
:class:`~sdekit.sdes.LinearSDE` (exact types), ``x0`` is a float64 numpy array, the solver has a registered
kernel that accepts it (:func:`~sdekit.backends.numba.registry.find_kernel`) and the score has a compiled form:
an analytic density's exact score or a :class:`~sdekit.backends.numba.RowScore`.

The host evaluates, once per solve, the stage times ``st`` (steps, S) and a table ``coef`` (steps, S, NC + m)
whose columns are ``h, a(s), c g(s)^2, g(s), sqrt(|h|)`` (``c = 1`` for the reverse SDE, ``1/2`` for the
probability-flow ODE) followed by the ``m`` per-stage constants of the score (for analytic densities ``alpha,
sigma^2`` and log-determinants, see :mod:`sdekit.backends.numba.host_scores`), then calls the compiled kernel on
chunks of steps of about :data:`CALL_SECONDS` each (Ctrl-C and the progress bar act between calls; a kernel with
``chunkable=False``, the multistep family, runs in one call). The counter-based normals come from
:func:`sdekit.backends.numba.noise.fill_normals`, so sample ``i`` sees the same numbers as on the numpy
backend, whatever the block, the batch or the number of threads.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ...errors import NonFiniteError
from ...progress import progress_bar
from ...sdes import LinearSDE, ProbabilityFlowODE, ReverseSDE
from ._blocks import block_size
from .host_scores import analytic_coef, analytic_params, analytic_work_rows, is_analytic_score
from .linked import FIXED_GRID, NORMALS, link_all
from .noise import seed_key
from .registry import NC, find_kernel
from .row_score import RowScore

__all__ = ["fused_plan", "coef_table", "run_fused", "CALL_SECONDS"]

#: A fused kernel returns to python about this often (seconds): Ctrl-C interrupts a solve between calls, and the
#: progress bar moves at that pace.
CALL_SECONDS = 0.25


def fused_plan(job):
    """``(kernel, compiled, sparams, wshape, score_coef(times))`` when ``job`` can run fused, else None."""
    proc = job.process
    # exact types: a subclass may change the drift, which the kernels could not know
    if type(proc) not in (ReverseSDE, ProbabilityFlowODE) or not isinstance(proc.sde, LinearSDE):
        return None
    x0 = job.x0
    if not isinstance(x0, np.ndarray) or x0.dtype != np.float64:
        return None
    kernel = find_kernel(job.solver, "sde" if job.stochastic else "ode")
    if kernel is None or not kernel.accepts(job.solver):
        return None
    score = proc.score
    if is_analytic_score(score):
        if x0.shape[1:] != (score.density.dim,):
            return None
        params = analytic_params(score.density)
        density, score_sde = score.density, score.sde
        return (
            kernel,
            kernel.analytic(),
            params,
            (analytic_work_rows(params), block_size(x0.shape[1])),
            (lambda ts: analytic_coef(density, score_sde, ts)),
        )
    row = getattr(score, "numba_row_score", None)
    if isinstance(row, RowScore) and tuple(x0.shape[1:]) == row.event_shape:
        dummy = (np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1, 1)), np.zeros(1))
        d = math.prod(row.event_shape)
        return kernel, row.kernel(kernel), dummy, (2, d), (lambda ts: np.zeros(ts.shape + (0,)))
    return None


def coef_table(job, st, score_coef):
    """``coef`` (steps, S, NC + m): ``h, a(s), c g(s)^2, g(s), sqrt|h|`` and the score's constants."""
    proc, grid = job.process, job.grid
    sde = proc.sde
    h = grid[1:] - grid[:-1]
    a = np.asarray(sde.drift_coef(st), dtype=np.float64) + np.zeros(st.shape)
    g = np.sqrt(np.asarray(sde.g2(st), dtype=np.float64) + np.zeros(st.shape))
    w = float(proc.score_weight)  # 1 for the reverse SDE, 1/2 for the probability-flow ODE
    extra = score_coef(st)
    coef = np.empty(st.shape + (NC + extra.shape[-1],))
    coef[..., 0] = h[:, None]
    coef[..., 1] = a
    # w g^2 written as the process's drift computes it, from g = sqrt(g^2)
    coef[..., 2] = w * g * g
    coef[..., 3] = g
    coef[..., 4] = (np.abs(h) ** 0.5)[:, None]
    coef[..., NC:] = extra
    return coef


def run_fused(job, plan):
    kernel, compiled, sparams, wshape, score_coef = plan  # wshape: scratch (rows, cols) of the score
    solver, grid = job.solver, job.grid
    steps = len(grid) - 1
    n = job.x0.shape[0]
    # the one copy of the state; sample keys are derived per block inside the kernel
    x = np.array(job.x0.reshape(n, -1), dtype=np.float64, order="C", copy=True)
    d = x.shape[1]
    block = block_size(d)
    if kernel.process_stage_times is None:
        st = kernel.stage_times(solver, grid)
    else:
        st = kernel.process_stage_times(solver, job.process, grid)
    st = np.ascontiguousarray(st, dtype=np.float64)
    coef = coef_table(job, st, score_coef)
    ids = np.require(job.sample_ids, dtype=np.int64, requirements=["C", "W"])  # one numba type
    skey = seed_key(job.seed)
    save_slot = np.full(steps + 1, -1, dtype=np.int64)
    order = sorted(job.save_index) if job.save_index is not None else []
    for slot, idx in enumerate(order):
        save_slot[idx] = slot
    saved = np.empty((len(order), n, d)) if order else np.zeros((1, 1, 1))
    if 0 in order:
        saved[save_slot[0]] = x
    bad = np.full((n + block - 1) // block, -1, dtype=np.int64)  # first non-finite step of each block
    extra = kernel.extra(solver) if kernel.grid_extra is None else kernel.grid_extra(solver, job.process, grid)
    # the shared helpers' symbols, before the kernel is compiled or loaded (a RowScore kernel calls its own score)
    link_all(FIXED_GRID if is_analytic_score(job.process.score) else (NORMALS,))
    # Chunks of steps sized to take about CALL_SECONDS each (a short first chunk measures the cost per step), so
    # Ctrl-C and the progress bar act between kernel calls; a kernel that is not chunkable runs in one call.
    start = time.perf_counter()
    k0 = 0
    chunk = max(1, min(steps, 16)) if kernel.chunkable else steps
    with progress_bar(steps, job.progress, desc=solver.name) as bar:
        while k0 < steps:
            k1 = min(steps, k0 + chunk)
            tic = time.perf_counter()
            compiled(
                x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, job.check_finite, extra, block
            )
            per_step = (time.perf_counter() - tic) / (k1 - k0)
            bar.update(k1 - k0)
            if job.check_finite and np.any(bad >= 0):
                k = int(bad[bad >= 0].min())
                raise NonFiniteError(k, float(grid[k + 1]))
            chunk = int(min(max(1.0, CALL_SECONDS / max(per_step, 1e-9)), 8 * chunk))
            k0 = k1
    shape = job.x0.shape
    stats = {
        "steps": steps,
        "accepted": steps,
        "rejected": 0,
        "wall_time": time.perf_counter() - start,
        "kernel": f"fused {kernel.name}",
    }
    xs = saved.reshape((len(order), *shape)) if order else None  # one array, as every backend's
    return x.reshape(shape), xs, solver.nfe(grid, job.process), stats
