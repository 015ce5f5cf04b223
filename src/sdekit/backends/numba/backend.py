"""The numba backend's entry point, :func:`run` (what :mod:`sdekit.backends.registry` calls).

A job runs fused when it can (:mod:`sdekit.backends.numba.fused`: the whole time loop compiled, parallel over
samples); otherwise it runs the per-step path (:mod:`sdekit.backends.numba.per_step`) with the same first-call
check of the score as the numpy backend. So ``backend="numba"`` accepts every solver and gives the numpy
backend's samples to round-off.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...brownian import tree_noise
from ...loop import adaptive as adaptive_loop
from ...loop import solve_grid
from ...sdes import LinearSDE, ReverseSDE
from ..job import CheckedScore
from .fused import fused_plan, run_fused
from .kernels import EULER_MARUYAMA
from .kernels.adaptive import adaptive_plan, run_adaptive
from .per_step import numba_noise, run_em_per_step
from .registry import find_kernel

__all__ = ["run"]


def run(job):
    """Run ``job`` -> ``(x, saved, nfe, stats)``: fused when possible, else a per-step loop with numba noise.

    A step callback needs python between steps, so a job with one runs the per-step loop (same numbers). Adaptive
    solvers run their fused kernels (:mod:`~sdekit.backends.numba.kernels.adaptive`) when the score and the SDE
    have compiled forms, else the numpy backend's adaptive loop; fixed grids with ``noise="tree"`` run the per-step
    loop with the compiled tree walker (:class:`sdekit.brownian.BrownianPaths`)."""
    if job.solver.adaptive:
        plan = adaptive_plan(job)
        if plan is not None:
            return run_adaptive(job, plan)
        return adaptive_loop.run(_checked(job))
    tree = job.noise == "tree" and job.stochastic
    plan = fused_plan(job) if job.callback is None and not tree else None
    if plan is not None:
        return run_fused(job, plan)
    job = _checked(job)
    if tree:
        x, xs, nfe, stats = solve_grid(job, tree_noise)
        stats["kernel"] = "per-step, tree noise"
        return x, xs, nfe, stats
    if getattr(job.process, "score", None) is not None:
        if (
            type(job.process) is ReverseSDE
            and isinstance(job.process.sde, LinearSDE)
            and isinstance(job.x0, np.ndarray)
            and job.x0.dtype == np.float64
            and find_kernel(job.solver, "sde") is EULER_MARUYAMA
            and job.callback is None
        ):
            return run_em_per_step(job)
    x, xs, nfe, stats = solve_grid(job, numba_noise)
    stats["kernel"] = "per-step"
    return x, xs, nfe, stats


def _checked(job):
    """``job`` with its score wrapped in the same output check as the numpy backend's."""
    score = getattr(job.process, "score", None)
    if score is None:
        return job
    return dataclasses.replace(job, process=type(job.process)(job.process.sde, CheckedScore(score)))
