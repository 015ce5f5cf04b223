"""The guard of :func:`sdekit.learn.fit`: which candidate solver it returns, chosen on fresh start points that hold
every candidate's rare trajectories (see ``docs/learn.md``, "The guard").

The candidates of a fit differ mostly in the 0.1-1 % of trajectories they send to another mixture component than
the exact flow's, and each switches other start points. A uniform sample of ``n`` fresh points holds a handful of
them at best, so the choice among candidates whose RMS is carried by them is decided by chance. The guard draws a
pool of ``M = oversample * n`` fresh prior points instead and runs every candidate on all of them (cheap: the
candidates' own few steps) against the cheap teacher of :mod:`.points` (the base on three times the steps). It then
samples ``n`` of them (:func:`.points.select`), with inclusion probabilities that grow with the candidates'
disagreements and with the ``sure`` points where each candidate disagrees most taken surely. Only these ``n`` get
the tight teacher solve. Each candidate's squared error is then estimated by Horvitz--Thompson,
``(1/M) sum_{i in sample} d_i^2 / p_i``: unbiased for its mean over the pool, whatever the candidates' switches.
The guard's RMS is the square root of that estimate.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import NonFiniteError
from ..integrate import solve, tweedie_denoise
from .points import cheap_reference, disagreement, ht_mean, select

__all__ = ["guard_errors"]


def _outputs(process, solver, x):
    """``solver``'s output from ``x`` on its own grid (before any denoising), or ``None`` where it fails."""
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(solve(process, x, float(solver.grid[0]), float(solver.grid[-1]), solver,
                                   grid=solver.grid).x)  # fmt: skip
    except (NonFiniteError, FloatingPointError, ValueError):
        return None
    return out if np.all(np.isfinite(out)) else None


def guard_errors(process, candidates, base_solver, n_steps, x_pool, n, *, seed, t_end, denoise, reference):
    """``(errors, info)``: each candidate's estimated RMS endpoint error on the law of the guard pool ``x_pool``
    (``M`` fresh start points, shape ``(M, *event)``) from ``n`` of its points (see the module docstring).

    ``candidates``: name -> solver (each with its own ``grid``); ``base_solver`` on ``n_steps`` steps gives the cheap
    teacher; ``reference(x) -> x_0`` the tight teacher's outputs (denoised when ``denoise``); ``seed`` the sample's
    seed. ``info``: ``guard_pool`` (``M``), ``guard_points`` (``n``), ``guard_sure`` (points with ``p = 1``).
    Where ``M == n`` every point is used with weight 1 (the plain RMS). A candidate that fails gets ``inf``."""
    m = len(x_pool)
    outs = {k: _outputs(process, v, x_pool) for k, v in candidates.items()}
    if m > n:
        fine = cheap_reference(process, base_solver, x_pool, n_steps, t_end, coarse=False)[1]
        e = np.stack([disagreement(o, fine) for o in outs.values() if o is not None] or [np.zeros(m)])
        sure = n // (8 * len(e))  # each candidate's worst points, taken surely (1/8 of the sample at most)
        rows, p = select(e, n, seed, sure=sure)
    else:
        rows, p = np.arange(m), np.ones(m)
    ref = np.asarray(reference(x_pool[rows]))
    errors = {}
    for k, out in outs.items():
        if out is None:
            errors[k] = math.inf
            continue
        y = out[rows]
        if denoise:
            y = tweedie_denoise(process.sde, process.score, y, float(candidates[k].grid[-1]))
        sq = np.sum((np.asarray(y) - ref).reshape(len(rows), -1) ** 2, axis=1)
        err = math.sqrt(ht_mean(sq, p[rows], m))
        errors[k] = err if math.isfinite(err) else math.inf
    info = {"guard_pool": m, "guard_points": len(rows), "guard_sure": int(np.sum(p[rows] >= 1.0)) if m > n else 0}
    return errors, info
