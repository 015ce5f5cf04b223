"""Brownian-tree noise: one Brownian path per (seed, sample), queried on any grid.

With the default counter-based noise a solver on 20 steps and one on 200 steps see unrelated noise. With
``noise="tree"`` every sample owns one Brownian path ``W`` on the solve interval ``[lo, hi]``, and a solver
reads its increments ``W(t_next) - W(t)`` from that path: a sample at 20 steps and at 200 steps are two
discretisations of one path, and an adaptive solver that rejects a step and retries a shorter one stays
on the same path.

Construction (a virtual Brownian tree, as in Gaines & Lyons 1997 and Li et al. 2020, carrying the time
integral as well). The tree also carries ``Y(t) = int_lo^t W(s) ds``, so that the second random variable of
order-1.5 schemes, ``I10 = int_t^{t+h} (W(s) - W(t)) ds``, is consistent with the same path:

* root: ``W(lo) = Y(lo) = 0``; over ``L = hi - lo``, ``W(hi) = sqrt(L) xi_1`` and
  ``Y(hi) = L^{3/2} (xi_1 / 2 + xi_2 / sqrt(12))`` (the exact joint law of ``(W, int W)``);
* a node ``[a, b]`` of length ``h`` with known ``(W, Y)`` at both ends is split at ``c = (a + b) / 2`` by
  drawing ``W(c)`` and ``Y(c)`` from their exact conditional Gaussian law given the four end values
  (:data:`_SPLIT_MEAN`, :data:`_SPLIT_CHOL`, derived below from the covariance of ``(W, int W)``);
* the two normals of a node come from the counter-based generator of :mod:`sdekit.noise`, keyed by
  ``(seed, sample id, TREE_STEP + heap index of the node)``, so the path depends on nothing else.

A query at time ``t`` descends from the root until a node midpoint equals ``t`` (to ``1e-12 L``; exact for
dyadic points such as uniform grids of ``2^m`` steps) or until ``depth`` levels (default 40, resolution
``2^-40 L``); below that resolution ``W`` is interpolated linearly. Queries are vectorised over samples
and allow a different time for each sample (per-sample adaptive steps).
"""

from __future__ import annotations

import numpy as np

from . import _xp
from .noise import normals_numpy

__all__ = ["BrownianTree", "TREE_STEP", "tree_noise", "normals_rows"]

TREE_STEP = 1 << 61  # counter steps at and above this are reserved for tree nodes (below PRIOR_STEP)
DEFAULT_DEPTH = 40


def _split_coefficients():
    """Conditional law of ``(W(1/2), int_0^{1/2} W)`` given ``(W(1), int_0^1 W)`` for a Brownian motion.

    Covariances in the order ``(w, I, m, I1)`` = ``(W(1), int_0^1 W, W(1/2), int_0^{1/2} W)``, from
    ``Cov(W(a), W(b)) = min(a, b)`` integrated: e.g. ``Cov(I, I1) = int_0^{1/2} (s - s^2/2) ds = 5/48``.
    Returns the regression matrix ``B`` (2, 2) and the Cholesky factor ``C`` (2, 2) of the residual.
    """
    s = np.array(
        [
            [1.0, 1 / 2, 1 / 2, 1 / 8],
            [1 / 2, 1 / 3, 3 / 8, 5 / 48],
            [1 / 2, 3 / 8, 1 / 2, 1 / 8],
            [1 / 8, 5 / 48, 1 / 8, 1 / 24],
        ]
    )
    s11, s12, s22 = s[:2, :2], s[:2, 2:], s[2:, 2:]
    b = np.linalg.solve(s11, s12).T
    cov = s22 - b @ s12
    return b, np.linalg.cholesky(0.5 * (cov + cov.T))


_SPLIT_MEAN, _SPLIT_CHOL = _split_coefficients()
_SQRT12 = float(np.sqrt(12.0))


def normals_rows(seed: int, sample_ids: np.ndarray, steps: np.ndarray, size: int) -> np.ndarray:
    """Counter-based standard normals ``(n, size)`` with a different counter step for each row.

    :func:`sdekit.noise.normals_numpy` with ``(n,)`` steps: with all steps equal it returns exactly
    ``normals_numpy(seed, sample_ids, step, size)``.
    """
    return normals_numpy(seed, sample_ids, np.asarray(steps), size)


class BrownianTree:
    """Brownian paths ``W`` (and ``Y = int W``) on ``[min(t0, t1), max(t0, t1)]``, one per sample.

    Parameters
    ----------
    seed : int
    sample_ids : (n,) integers
        Global sample indices; path ``i`` depends only on ``(seed, sample_ids[i])``.
    t0, t1 : float
        Ends of the interval (either order).
    size : int
        Number of independent components (the flattened event size).
    depth : int
        Maximal tree depth; time resolution ``2^-depth |t1 - t0|``.
    """

    def __init__(self, seed: int, sample_ids, t0: float, t1: float, size: int, depth: int = DEFAULT_DEPTH):
        if not (isinstance(depth, int) and 1 <= depth <= 60):
            raise ValueError(f"depth must be an integer in [1, 60], got {depth!r}")
        self.seed = int(seed)
        self.sample_ids = np.asarray(sample_ids, dtype=np.int64)
        self.lo, self.hi = (float(t0), float(t1)) if t0 < t1 else (float(t1), float(t0))
        if not self.hi > self.lo:
            raise ValueError(f"the tree interval must have positive length, got t0={t0!r}, t1={t1!r}")
        self.size = int(size)
        self.depth = depth
        n = self.sample_ids.shape[0]
        L = self.hi - self.lo
        xi = normals_rows(self.seed, self.sample_ids, np.full(n, TREE_STEP), 2 * self.size)
        xi1, xi2 = xi[:, : self.size], xi[:, self.size :]
        self._w_hi = np.sqrt(L) * xi1
        self._y_hi = L**1.5 * (0.5 * xi1 + xi2 / _SQRT12)
        self._tol = 1e-12 * L
        # the nodes visited by the last common-time query, root first: (a, b, heap index, Wa, Wb, Ya, Yb)
        self._path = [(self.lo, self.hi, 1, np.zeros((n, self.size)), self._w_hi, np.zeros((n, self.size)), self._y_hi)]

    def _split(self, ids, node, a, b, wa, wb, ya, yb):
        """``(c, W(c), Y(c))`` at the midpoint of node(s) ``[a, b]`` (arrays over samples, or scalars a, b)."""
        h = np.asarray(b - a, dtype=np.float64)
        sqh = np.sqrt(h)[..., None] if h.ndim else np.sqrt(h)
        h32 = (h**1.5)[..., None] if h.ndim else h**1.5
        hh = h[..., None] if h.ndim else h
        w_rel = (wb - wa) / sqh
        i_rel = (yb - ya - hh * wa) / h32
        if np.ndim(node):
            xi = normals_rows(self.seed, ids, TREE_STEP + node, 2 * self.size)
        else:
            xi = normals_numpy(self.seed, ids, TREE_STEP + int(node), 2 * self.size)
        x1, x2 = xi[:, : self.size], xi[:, self.size :]
        m_rel = _SPLIT_MEAN[0, 0] * w_rel + _SPLIT_MEAN[0, 1] * i_rel + _SPLIT_CHOL[0, 0] * x1
        i1_rel = _SPLIT_MEAN[1, 0] * w_rel + _SPLIT_MEAN[1, 1] * i_rel + _SPLIT_CHOL[1, 0] * x1 + _SPLIT_CHOL[1, 1] * x2
        return 0.5 * (a + b), wa + sqh * m_rel, ya + (0.5 * hh) * wa + h32 * i1_rel

    def _evaluate_common(self, t: float):
        """All samples at one time: one descent, resumed from the deepest cached node that contains ``t``."""
        path, tol = self._path, self._tol
        while len(path) > 1 and not (path[-1][0] - tol <= t <= path[-1][1] + tol):
            path.pop()
        for _ in range(self.depth + 1 - len(path) + 1):
            a, b, node, wa, wb, ya, yb = path[-1]
            if abs(t - a) <= tol:
                return wa, ya
            if abs(t - b) <= tol:
                return wb, yb
            if len(path) > self.depth:
                break
            c, wc, yc = self._split(self.sample_ids, node, a, b, wa, wb, ya, yb)
            if t < c:
                path.append((a, c, 2 * node, wa, wc, ya, yc))
            else:
                path.append((c, b, 2 * node + 1, wc, wb, yc, yb))
        a, b, node, wa, wb, ya, yb = path[-1]
        s = (t - a) / (b - a)
        dw = wb - wa
        return wa + s * dw, ya + (s * (b - a)) * (wa + 0.5 * s * dw)

    def evaluate(self, t, rows=None):
        """``(W(t), Y(t))``, each ``(m, size)`` float64, for the samples ``rows`` (default all).

        ``t`` is a float or an ``(m,)`` array of times in ``[lo, hi]``.
        """
        if rows is None and np.ndim(t) == 0:
            w, y = self._evaluate_common(float(t))
            return w.copy(), y.copy()  # the cached path must not be changed through the results
        rows = np.arange(self.sample_ids.shape[0]) if rows is None else np.asarray(rows)
        m = rows.shape[0]
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), (m,))
        ids = self.sample_ids[rows]
        a = np.full(m, self.lo)
        b = np.full(m, self.hi)
        wa = np.zeros((m, self.size))
        ya = np.zeros((m, self.size))
        wb = self._w_hi[rows].copy()
        yb = self._y_hi[rows].copy()
        w_out = np.empty((m, self.size))
        y_out = np.empty((m, self.size))
        node = np.ones(m, dtype=np.int64)  # heap index: root 1, children 2k and 2k+1
        at_lo = np.abs(t - self.lo) <= self._tol
        at_hi = np.abs(t - self.hi) <= self._tol
        w_out[at_lo], y_out[at_lo] = 0.0, 0.0
        w_out[at_hi], y_out[at_hi] = wb[at_hi], yb[at_hi]
        live = np.flatnonzero(~(at_lo | at_hi))
        for _ in range(self.depth):
            if live.size == 0:
                break
            c, wc, yc = self._split(ids[live], node[live], a[live], b[live], wa[live], wb[live], ya[live], yb[live])
            tl = t[live]
            hit = np.abs(tl - c) <= self._tol
            left = (tl < c) & ~hit
            right = ~(left | hit)
            idx_hit, idx_left, idx_right = live[hit], live[left], live[right]
            w_out[idx_hit], y_out[idx_hit] = wc[hit], yc[hit]
            b[idx_left], wb[idx_left], yb[idx_left] = c[left], wc[left], yc[left]
            node[idx_left] = 2 * node[idx_left]
            a[idx_right], wa[idx_right], ya[idx_right] = c[right], wc[right], yc[right]
            node[idx_right] = 2 * node[idx_right] + 1
            live = live[~hit]
        if live.size:
            # below the tree's resolution: linear interpolation of W (and its exact integral)
            h = b[live] - a[live]
            s = ((t[live] - a[live]) / h)[:, None]
            dw = wb[live] - wa[live]
            w_out[live] = wa[live] + s * dw
            y_out[live] = ya[live] + (s * h[:, None]) * (wa[live] + 0.5 * s * dw)
        return w_out, y_out

    def increment(self, t, t_next, rows=None, start=None):
        """``(dW, I10)`` over the step from ``t`` to ``t_next`` (either direction), each ``(m, size)``.

        ``dW = W(t_next) - W(t)`` and ``I10 = int (W(s) - W(t)) ds`` over the step, with ``s`` running from
        ``t`` towards ``t_next`` (for a backward step this is the reversed path, again a Brownian motion).
        ``start`` optionally gives the already known ``(W(t), Y(t))``.
        """
        w0, y0 = self.evaluate(t, rows) if start is None else start
        w1, y1 = self.evaluate(t_next, rows)
        h = np.broadcast_to(np.asarray(t_next, dtype=np.float64) - np.asarray(t, dtype=np.float64), (w0.shape[0],))
        sign = np.sign(h)[:, None]
        i10 = sign * (y1 - y0) - np.abs(h)[:, None] * w0
        return w1 - w0, i10, (w1, y1)

    @staticmethod
    def standardise(dw, i10, h):
        """Two independent standard normals ``(z0, z1)`` equivalent to ``(dW, I10)`` over a step ``|h|``.

        ``dW = sqrt(|h|) z0`` and ``I10 = |h|^{3/2} (z0 + z1 / sqrt(3)) / 2`` (the convention the solvers use).
        """
        ah = np.abs(np.asarray(h, dtype=np.float64))
        ah = ah[:, None] if ah.ndim == 1 else ah
        z0 = dw / np.sqrt(ah)
        z1 = np.sqrt(3.0) * (2.0 * i10 / ah**1.5 - z0)
        return z0, z1


def tree_noise(job):
    """A noise source ``draw(k) -> list of z`` for a fixed grid, reading the Brownian path of a tree.

    The first ``solver.n_brownian`` fields are the standardised increments of the path over
    ``[grid[k], grid[k + 1]]`` (``z0 = dW / sqrt|h|``, then ``z1`` carrying ``I10``, see
    :meth:`BrownianTree.standardise`); further fields (corrector or churn noise, which discretise no path)
    come from the counter-based generator as with ``noise="counter"``. Arrays are like ``job.x0``.
    """
    solver, grid, x0 = job.solver, job.grid, job.x0
    m = solver.n_noise
    nb = min(solver.n_brownian, m)
    event = tuple(x0.shape[1:])
    size = int(np.prod(event, dtype=np.int64))
    tree = BrownianTree(job.seed, job.sample_ids, grid[0], grid[-1], size)
    cache = {"k": None, "val": None}

    def draw(k):
        t, t_next = float(grid[k]), float(grid[k + 1])
        start = cache["val"] if cache["k"] == k else None
        dw, i10, end = tree.increment(t, t_next, start=start)
        cache["k"], cache["val"] = k + 1, end
        z0, z1 = BrownianTree.standardise(dw, i10, t_next - t)
        fields = [z0, z1][:nb]
        if m > nb:
            extra = normals_numpy(job.seed, job.sample_ids, k, m * size)
            fields += [extra[:, r * size : (r + 1) * size] for r in range(nb, m)]
        n = x0.shape[0]
        return [_xp.asarray_like(f.reshape((n,) + event), x0) for f in fields]

    return draw
