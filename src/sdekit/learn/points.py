"""Which warm-up points :func:`sdekit.learn.fit` fits to: a sample of a pool of start points that holds every
trajectory near a basin boundary, with importance weights (see ``docs/learn.md``, "The rare trajectories").

At 5-10 steps on multimodal data most of the RMS endpoint error is carried by the 0.1-1 % of trajectories that a
solver sends to another mixture component than the exact flow's: they start near a boundary between the flow's
basins. A cheap stand-in for the teacher -- the base solver on ``factor`` times the steps -- flags them: a solver's
disagreement with it is large exactly there. :func:`select` draws the fitted points with probabilities that grow
with the base solver's disagreement (every flagged point is taken surely), and :func:`flagged` finds, for a fitted
candidate, the pool points where *it* disagrees most (a fit moves the shell of switching trajectories: those it
switches are often not the base's).
"""

from __future__ import annotations

import numpy as np

from ..grids import make_grid
from ..integrate import solve
from ..noise import check_seed
from ..validation import positive_int

__all__ = ["select", "inclusion", "disagreement", "cheap_reference", "warmup_pool", "check_x_T"]


def cheap_reference(process, base, pool, n_steps, t_end, factor=3):
    """``(coarse, fine)``: the outputs of ``base`` from ``pool`` on its default grid of ``n_steps`` and of
    ``factor * n_steps`` steps (``fine`` is the cheap stand-in for the teacher)."""
    outs = []
    for steps in (n_steps, factor * n_steps):
        grid = make_grid(process.sde, steps, base.default_grid, t_end)
        outs.append(np.asarray(solve(process, pool, float(grid[0]), float(grid[-1]), base, grid=grid).x))
    return outs[0], outs[1]


def disagreement(out, fine) -> np.ndarray:
    """``|out_i - fine_i|`` per point (Euclidean over the event dimensions), shape ``(M,)``."""
    m = out.shape[0]
    return np.sqrt(np.sum((np.asarray(out) - fine).reshape(m, -1) ** 2, axis=1))


def inclusion(q, n) -> np.ndarray:
    """``p = min(1, c q)`` with ``sum p = n`` (``0 < n <= len(q)``, ``q > 0``): the inclusion probabilities of a
    sample of ``n`` distinct points proportional to ``q`` where that stays below 1 (those above are taken surely
    and the rest share what remains)."""
    q = np.asarray(q, dtype=np.float64)
    if not (0 < n <= len(q)) or not np.all(q > 0):
        raise ValueError(f"inclusion needs 0 < n <= len(q) and q > 0, got n={n}, len(q)={len(q)}")
    p = np.ones_like(q)
    free = np.ones(len(q), dtype=bool)
    while True:
        c = (n - np.sum(~free)) / np.sum(q[free])
        p[free] = c * q[free]
        over = free & (p > 1.0)
        if not over.any():
            return np.minimum(p, 1.0)
        p[over], free[over] = 1.0, False


def select(e, n, seed) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, p)``: ``n`` distinct rows of a pool of ``M = len(e)`` points, row ``i`` included with probability
    ``p_i = min(1, c q_i)``, ``q_i = 1/M + e_i / sum e`` (:func:`inclusion`; uniform where ``e`` is all zero or not
    finite), by systematic sampling in a random order (Madow 1949: exactly ``n`` rows, each with its ``p_i``); the
    rows in a random order. ``1 / p[rows]`` are the importance weights that make weighted means over the rows
    estimates of means over the pool (Horvitz--Thompson)."""
    e = np.asarray(e, dtype=np.float64)
    m = len(e)
    ok = e.sum() > 0 and np.all(np.isfinite(e))
    q = 1.0 / m + (e / e.sum() if ok else np.full(m, 1.0 / m))
    p = inclusion(q, n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(m)
    edges = np.concatenate([[0.0], np.cumsum(p[order])])
    hits = rng.uniform() + np.arange(n)
    rows = order[np.minimum(np.searchsorted(edges, hits, side="right") - 1, m - 1)]
    return rows[rng.permutation(n)], p


def warmup_pool(sde, score, x_T, shape, n, oversample, seed):
    """The pool of warm-up start points (M, *event), float64: ``x_T`` checked, or ``oversample * n`` prior draws."""
    if x_T is None:
        event = shape if shape is not None else getattr(score, "event_shape", None)
        if event is None:
            raise ValueError("give x_T, or shape=(d,), or a score with event_shape")
        event = (int(event),) if np.ndim(event) == 0 else tuple(int(v) for v in event)
        x_T = sde.prior_sample((positive_int("n", n) * positive_int("oversample", oversample),) + event,
                               seed=check_seed(seed))  # fmt: skip
    return check_x_T(x_T, score, shape)


def check_x_T(x_T, score, shape):
    """``x_T`` as float64 ``(n, *event)``, checked against ``shape`` or ``score.event_shape`` (``ValueError``
    naming ``x_T``)."""
    x_T = np.asarray(x_T)
    if x_T.ndim < 2 or x_T.shape[0] < 8 or x_T.dtype.kind != "f":
        raise ValueError(f"x_T must be a float array (n, *event) with n >= 8 warm-up points, got shape "
                         f"{x_T.shape} and dtype {x_T.dtype}")  # fmt: skip
    event = shape if shape is not None else getattr(score, "event_shape", None)
    if event is not None:
        event = (int(event),) if np.ndim(event) == 0 else tuple(int(v) for v in event)
        if tuple(x_T.shape[1:]) != event:
            raise ValueError(f"x_T has shape {x_T.shape}; the score's event shape is {event}: (n, *{event}) needed")
    if not np.all(np.isfinite(x_T)):
        raise ValueError("x_T has non-finite values")
    return x_T.astype(np.float64)
