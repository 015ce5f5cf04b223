"""The per-step path: every job the fused kernels do not cover, with the noise drawn by numba.

With a plain python score, Euler--Maruyama on a linear SDE's reverse process calls the score once per step and
does noise and update in one parallel numba pass (:func:`run_em_per_step`); every other case (solvers without a
kernel, other processes, non-float64 states) runs the numpy backend's loop with the numba generator
(:func:`numba_noise`), the same numbers as the numpy backend's.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import prange

from ... import _xp
from ...errors import NonFiniteError
from ...progress import progress_bar
from ..job import Trajectory
from ._blocks import block_size
from .noise import PARALLEL_MIN, fill_normals, normals_into, sample_key, sample_keys, seed_key, serial_and_parallel

__all__ = ["numba_noise", "run_em_per_step"]


def numba_noise(job):
    """``noise(step) -> list of z`` like :func:`sdekit.backends.numpy_.numpy_noise`, drawn by numba."""
    m = job.solver.n_noise
    event = tuple(job.x0.shape[1:])
    size = m * math.prod(event)
    keys = sample_keys(job.seed, job.sample_ids)

    def draw(step):
        out = np.empty((keys.shape[0], size))
        normals_into(keys, np.uint64(step), size, out)
        z = out.reshape((keys.shape[0], m) + event).astype(job.x0.dtype, copy=False)  # the state's dtype
        return [z[:, r] for r in range(m)]

    return draw


def _em_update_body(x, s, ids, skey, k, h, a, g2c, g, sq, block):
    """One Euler--Maruyama step in place, the noise drawn here: ``x += h (a x - g2c s) + g (sq z)``.

    ``x`` and ``s`` are ``(n, d)``; returns True when every entry of the new state is finite.
    """
    n, d = x.shape
    nb = (n + block - 1) // block
    finite = np.ones(nb, dtype=np.bool_)
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        kb = np.empty(block, dtype=np.uint64)
        sk = np.empty(block, dtype=np.uint64)
        z = np.empty((d, block))
        for l in range(L):
            kb[l] = sample_key(skey, np.uint64(ids[i0 + l]))
        fill_normals(kb[:L], k, sk, z)
        acc = 0.0
        for l in range(L):
            xr = x[i0 + l]
            sr = s[i0 + l]
            for j in range(d):
                v = xr[j] + h * (a * xr[j] - g2c * sr[j]) + g * (sq * z[j, l])
                xr[j] = v
                acc += v * 0.0  # 0 while finite, NaN otherwise
        finite[blk] = acc == 0.0
    return finite.all()


_em_update_serial, _em_update_parallel = serial_and_parallel(_em_update_body)


def run_em_per_step(job):
    """Euler--Maruyama with a python score: the score per step in python, noise and update in one numba pass."""
    proc, grid, solver = job.process, job.grid, job.solver
    sde = proc.sde
    shape = job.x0.shape
    n = shape[0]
    x = np.array(job.x0.reshape(n, -1), dtype=np.float64, order="C", copy=True)
    xv = x.reshape(shape)  # a view: the score sees the user's shape
    d = x.shape[1]
    block = block_size(d)
    ids = np.require(job.sample_ids, dtype=np.int64, requirements=["C", "W"])  # one numba type
    skey = seed_key(job.seed)
    w = float(proc.score_weight)
    saved = Trajectory(job.save_index, xv)  # preallocated, as every backend's
    saved.put(0, xv)
    steps = len(grid) - 1
    update = _em_update_parallel if x.size >= PARALLEL_MIN else _em_update_serial
    start = time.perf_counter()
    with progress_bar(steps, job.progress, desc=solver.name) as bar:
        for k in range(steps):
            t, t_next = float(grid[k]), float(grid[k + 1])
            h = t_next - t
            score = proc.score(xv, _xp.full_time(t, xv))
            sc = np.require(np.asarray(score, dtype=np.float64).reshape(n, d), requirements=["C", "W"])
            g = math.sqrt(float(sde.g2(t)))
            ok = update(x, sc, ids, skey, np.uint64(k), h, float(sde.drift_coef(t)), w * g * g, g, abs(h) ** 0.5, block)
            if job.check_finite and not ok:
                raise NonFiniteError(k, t_next)
            saved.put(k + 1, xv)
            bar.update(1)
    stats = {
        "steps": steps,
        "accepted": steps,
        "rejected": 0,
        "wall_time": time.perf_counter() - start,
        "kernel": "per-step euler_maruyama",
    }
    return xv, saved.data, solver.nfe(grid, proc), stats
