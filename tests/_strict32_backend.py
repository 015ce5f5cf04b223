"""A backend registered from outside sdekit on another array type: ``Strict32``, float32 arrays that refuse to be
promoted (any operation whose floating result is not float32 raises ``TypeError``), so a solve through it shows that
nothing in the loop or the solvers silently widens or drops the state's type.

It is the "Adding a backend" recipe of ``docs/architecture.md``: array operations only (the state type, the noise
source, the finiteness guard), and one registry entry; the loops are sdekit's drivers (:mod:`sdekit.loop`), so fixed
grids, adaptive steps, tree and bridge noise, ``save_at``, ``cond``, callbacks, progress and stats come with them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sdekit.brownian import tree_noise
from sdekit.loop import adaptive as adaptive_loop
from sdekit.loop import solve_grid
from sdekit.noise import normals_numpy

NAME = "strict32"


class Strict32(np.ndarray):
    """A float32 array whose floating results must stay float32 (numpy's operators and functions otherwise)."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        args = [a.view(np.ndarray) if isinstance(a, Strict32) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Strict32) else o for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if isinstance(result, tuple):
            return tuple(_wrap(r, ufunc) for r in result)
        return _wrap(result, ufunc)


def _wrap(result, ufunc):
    if isinstance(result, np.ndarray) and result.dtype.kind == "f":
        if result.dtype != np.float32:
            raise TypeError(f"{ufunc.__name__} promoted a Strict32 state to {result.dtype}")
        return result.view(Strict32)
    return result


def as_state(x):
    """A float32 numpy array as this backend's array."""
    return np.asarray(x, dtype=np.float32).view(Strict32)


def noise(job):
    """``draw(k) -> list of z``: the counter-based normals of every backend, as ``Strict32`` fields."""
    m, event = job.solver.n_noise, tuple(job.x0.shape[1:])
    size = int(np.prod(event, dtype=np.int64))

    def draw(k):
        z = normals_numpy(job.seed, job.sample_ids, k, m * size).astype(np.float32)
        return [as_state(z[:, r * size : (r + 1) * size].reshape((-1,) + event)) for r in range(m)]

    return draw


def run(job):
    """The driver of :mod:`sdekit.loop` on ``Strict32`` states."""
    if job.x0.dtype != np.float32:
        raise TypeError(f"backend {NAME!r} runs float32 states, got {job.x0.dtype}")
    job = dataclasses.replace(job, x0=as_state(job.x0))
    if job.solver.adaptive:
        return adaptive_loop.run(job)
    source = tree_noise if job.noise == "tree" and job.stochastic else noise
    return solve_grid(job, source)  # the host finiteness guard when job.check_finite
