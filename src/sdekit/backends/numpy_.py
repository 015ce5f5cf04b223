"""Reference backend: numpy arrays, the counter-based noise drawn by numpy, the finiteness checked on the host.

Array operations only: the loops are the drivers of :mod:`sdekit.loop` (the fixed-grid :class:`~sdekit.loop.GridLoop`
and the adaptive host loop). Noise for step ``k`` comes from the counter-based generator (:mod:`sdekit.noise`), so
sample ``i`` sees the same numbers whatever the batch.
"""

from __future__ import annotations

import numpy as np

from ..brownian import tree_noise
from ..loop import adaptive as adaptive_loop
from ..loop import solve_grid
from ..noise import normals_numpy

__all__ = ["run", "numpy_noise"]


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
    return solve_grid(job, tree_noise if job.noise == "tree" and job.stochastic else numpy_noise)
