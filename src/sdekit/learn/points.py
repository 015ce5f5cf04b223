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

__all__ = [
    "select", "inclusion", "systematic", "ht_mean", "disagreement", "cheap_reference", "warmup_pool", "check_x_T",
]  # fmt: skip


def cheap_reference(process, base, pool, n_steps, t_end, factor=3, coarse=True):
    """``(coarse, fine)``: the outputs of ``base`` from ``pool`` on its default grid of ``n_steps`` and of
    ``factor * n_steps`` steps (``fine`` is the cheap stand-in for the teacher; ``coarse=False``: ``coarse`` is
    ``None``, not computed)."""
    outs = []
    for steps in (n_steps, factor * n_steps) if coarse else (factor * n_steps,):
        grid = make_grid(process.sde, steps, base.default_grid, t_end)
        outs.append(np.asarray(solve(process, pool, float(grid[0]), float(grid[-1]), base, grid=grid).x))
    return (outs[0], outs[1]) if coarse else (None, outs[0])


def disagreement(out, fine) -> np.ndarray:
    """``|out_i - fine_i|`` per point (Euclidean over the event dimensions), shape ``(M,)``."""
    m = out.shape[0]
    return np.sqrt(np.sum((np.asarray(out) - fine).reshape(m, -1) ** 2, axis=1))


def inclusion(q, n, sure=None) -> np.ndarray:
    """``p = min(1, c q)`` with ``sum p = n`` (``0 < n <= len(q)``, ``q > 0``): the inclusion probabilities of a
    sample of ``n`` distinct points proportional to ``q`` where that stays below 1 (those above are taken surely
    and the rest share what remains). ``sure``: a boolean mask of points taken surely whatever their ``q``."""
    q = np.asarray(q, dtype=np.float64)
    if not (0 < n <= len(q)) or not np.all(q > 0):
        raise ValueError(f"inclusion needs 0 < n <= len(q) and q > 0, got n={n}, len(q)={len(q)}")
    p = np.ones_like(q)
    free = np.ones(len(q), dtype=bool) if sure is None else ~np.asarray(sure, dtype=bool)
    if np.sum(~free) > n:
        raise ValueError(f"inclusion: {int(np.sum(~free))} points to take surely, more than n={n}")
    if not free.any():
        return p
    while True:
        c = (n - np.sum(~free)) / np.sum(q[free])
        p[free] = c * q[free]
        over = free & (p > 1.0)
        if not over.any():
            return np.minimum(p, 1.0)
        p[over], free[over] = 1.0, False


def systematic(p, order, u) -> np.ndarray:
    """The rows that systematic sampling takes with inclusion probabilities ``p`` (``sum p`` an integer ``n``),
    the units laid out in ``order``, at the random start ``u`` in ``[0, 1)``: unit ``i`` is taken when one of
    ``u, u + 1, ..., u + n - 1`` falls in its interval of length ``p_i`` (Madow 1949), so for any fixed ``order``
    it is taken with probability exactly ``p_i`` over ``u``."""
    n = int(round(float(np.sum(p))))
    edges = np.concatenate([[0.0], np.cumsum(np.asarray(p)[order])])
    hits = u + np.arange(n)
    return order[np.minimum(np.searchsorted(edges, hits, side="right") - 1, len(order) - 1)]


def select(e, n, seed, sure=0) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, p)``: ``n`` distinct rows of a pool of ``M`` points, row ``i`` included with probability
    ``p_i = min(1, c q_i)``, ``q_i = 1/M + mean_c e_ci / sum_j e_cj`` (:func:`inclusion`) for the disagreements
    ``e`` of one solver, shape ``(M,)``, or of several, ``(C, M)`` (a solver whose ``e`` is all zero or not finite
    adds the uniform ``1/M``); the ``sure`` rows where each solver disagrees most are taken with ``p = 1``. Drawn by
    systematic sampling in a random order (:func:`systematic`: exactly ``n`` rows, each with its ``p_i``); the rows
    in a random order. ``1 / p[rows]`` are the importance weights that make weighted means over the rows estimates
    of means over the pool (Horvitz--Thompson, :func:`ht_mean`)."""
    e = np.atleast_2d(np.asarray(e, dtype=np.float64))
    m = e.shape[1]
    shares = []
    for row in e:
        ok = row.sum() > 0 and np.all(np.isfinite(row))
        shares.append(row / row.sum() if ok else np.full(m, 1.0 / m))
    q = 1.0 / m + np.mean(shares, axis=0)
    mask = None
    if sure:
        mask = np.zeros(m, dtype=bool)
        for row in e:
            if np.all(np.isfinite(row)):
                mask[np.argsort(-row, kind="stable")[:sure]] = True
    p = inclusion(q, n, mask)
    rng = np.random.default_rng(seed)
    order = rng.permutation(m)
    rows = systematic(p, order, rng.uniform())
    return rows[rng.permutation(n)], p


def ht_mean(values, p, m) -> float:
    """The Horvitz--Thompson estimate ``(1/m) sum_i values_i / p_i`` of the mean of a quantity over a pool of ``m``
    points from its ``values`` on a sample drawn with inclusion probabilities ``p`` (those of the sampled rows):
    unbiased over the sampling design for any such design."""
    return float(np.sum(np.asarray(values, dtype=np.float64) / np.asarray(p, dtype=np.float64)) / m)


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
