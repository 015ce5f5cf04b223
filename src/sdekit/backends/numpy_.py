"""Reference backend: a vectorised loop over the grid, one solver step per grid interval.

The loop is written with operators that numpy arrays and torch tensors share, so the torch backend reuses
it with its own noise source. Noise for step ``k`` comes from the counter-based generator
(:mod:`sdekit.noise`), so sample ``i`` sees the same numbers whatever the batch.
"""

from __future__ import annotations

import time

import numpy as np

from .. import _xp
from ..brownian import tree_noise
from ..errors import NonFiniteError
from ..noise import normals_numpy
from ..progress import progress_bar
from ..solvers.base import StepContext
from . import adaptive as adaptive_loop
from .job import Trajectory


def numpy_noise(job):
    """``noise(step) -> list of z`` drawing ``job.solver.n_noise`` standard-normal fields like ``x``."""
    m = job.solver.n_noise
    event = job.x0.shape[1:]
    size = int(np.prod(event, dtype=np.int64))

    def draw(step):
        z = normals_numpy(job.seed, job.sample_ids, step, m * size)
        z = z.reshape((z.shape[0], m) + event).astype(job.x0.dtype, copy=False)  # the state's dtype
        return [z[:, r] for r in range(m)]

    return draw


def run(job):
    """Run ``job`` on numpy arrays: the adaptive loop for adaptive solvers, else the fixed-grid loop with the
    counter-based or (``job.noise == "tree"``) the Brownian-tree noise."""
    if job.solver.adaptive:
        return adaptive_loop.run(job)
    return fixed_grid_loop(job, noise=tree_noise if job.noise == "tree" and job.stochastic else None)


def fixed_grid_loop(job, noise=None):
    """The fixed-grid loop on numpy arrays (or, given a ``noise`` source, any array library with numpy
    operators: the torch backend runs it with Brownian-tree noise, the numba backend with numba noise)."""
    solver, process, grid = job.solver, job.process, job.grid
    draw = (noise or numpy_noise)(job) if job.stochastic else None
    x = job.x0
    saved = Trajectory(job.save_index, x)
    saved.put(0, x)
    memory = {}  # the solver's per-solve history (StepContext.memory)
    start = time.perf_counter()
    n_steps = len(grid) - 1
    with progress_bar(n_steps, job.progress, desc=solver.name) as bar:
        for k in range(n_steps):
            t, t_next = float(grid[k]), float(grid[k + 1])
            z = draw(k) if draw is not None else None
            ctx = StepContext(k, grid, memory)
            x = solver.step(process, x, t, t_next, z, ctx)
            if job.check_finite and not _xp.isfinite_all(x):
                raise NonFiniteError(k, t_next)
            saved.put(k + 1, x)
            if job.callback is not None:
                job.callback({"step": k, "t": t_next, "x": x, "denoised": ctx.denoised})
            bar.update(1)
    return x, saved.data, solver.nfe(grid, process), fixed_grid_stats(n_steps, start)


def fixed_grid_stats(n_steps: int, start: float) -> dict:
    """The ``stats`` of a fixed-grid solve: every step accepted; ``start`` is its ``perf_counter`` start."""
    return {"steps": n_steps, "accepted": n_steps, "rejected": 0, "wall_time": time.perf_counter() - start}
