"""Brownian-tree noise: one Brownian path per (seed, sample), queried on any grid.

With the default counter-based noise a solver on 20 steps and one on 200 steps see unrelated noise. With
``noise="tree"`` every sample owns one Brownian path ``W`` on the solve interval ``[lo, hi]``, and a solver
reads its increments ``W(t_next) - W(t)`` from that path: a sample at 20 steps and at 200 steps are two
discretisations of one path, and an adaptive solver that rejects a step and retries a shorter one stays
on the same path.

Construction (a virtual Brownian tree, as in Gaines & Lyons 1997 and Li et al. 2020, carrying the time
integral as well). The tree also carries ``Y(t) = int_lo^t W(s) ds``, so that the second random variable of
order-1.5 schemes, ``I10 = int_t^{t+h} (W(s) - W(t)) ds``, is consistent with the same path:

* nodes are the dyadic intervals of ``[lo, hi]``: node ``(level l, position m)`` spans the times
  ``lo + (m 2^-l) L`` to ``lo + ((m + 1) 2^-l) L`` (``L = hi - lo``; ``m 2^-l`` is exact, one rounding each
  for the product and the sum) and has length exactly ``h = L 2^-l``; its heap index is ``2^l + m``;
* root: ``W(lo) = Y(lo) = 0``; ``W(hi) = sqrt(L) xi_1`` and ``Y(hi) = L sqrt(L) (xi_1 / 2 + xi_2 / sqrt(12))``
  (the exact joint law of ``(W, int W)``);
* a node of length ``h`` with known ``(W, Y)`` at both ends is split at its midpoint by drawing ``W`` and ``Y``
  there from their exact conditional Gaussian law given the four end values
  (:data:`sdekit.tree_law.SPLIT_MEAN`, :data:`~sdekit.tree_law.SPLIT_CHOL`, derived from the covariance of
  ``(W, int W)``), with the scales ``sqrt(h)`` and ``h sqrt(h)``;
* the two normals of a node come from the counter-based generator of :mod:`sdekit.noise`, keyed by
  ``(seed, sample id, TREE_STEP + heap index of the node)``, so the path depends on nothing else.

A query at time ``t`` descends from the root until a node end or midpoint lies within ``TOL L`` of ``t``
(``TOL = 1e-13``: exact for dyadic points such as uniform grids of ``2^m`` steps, and for grids computed to
round-off of them) or until ``depth`` levels (default 40, resolution ``2^-40 L``); below that resolution ``W``
is interpolated linearly. ``W(t)`` is therefore a function of ``(seed, id, t)`` alone: the same value for any
order of queries, any batch, any grid.

Cost
----
A query costs one split (two normals per component) per level it descends. Three things keep that small:

* :class:`BrownianPaths` keeps each sample's chain of nodes from the root to its last query, with the midpoints
  already drawn, and descends only from the deepest node that contains the next query (compiled with numba when
  it is installed; otherwise it falls back to the root descent of :class:`BrownianTree`, same values);
* the adaptive solvers land their steps on shallow node times: :func:`snap_step` shortens a step by at most
  :data:`SNAP_WINDOW` of its length so that it ends on the shallowest dyadic time of that window, which a chain
  reaches in about two splits per attempted step (measured: 1.9 splits per attempt, 2% more attempts);
* fixed grids whose points are dyadic (uniform grids of ``2^m`` steps) need about one split per step; other
  fixed grids reach each point through ``depth - log2(steps)`` levels (about 30 at 1000 steps): the price of a
  path that every grid shares.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

from . import _xp
from .noise import normals_numpy

__all__ = [
    "BrownianTree",
    "BrownianPaths",
    "TREE_STEP",
    "DEFAULT_DEPTH",
    "TOL",
    "SNAP_WINDOW",
    "snap_step",
    "node_time",
    "tree_noise",
    "normals_rows",
]

from .tree_law import (  # noqa: F401  (re-exported)
    DEFAULT_DEPTH,
    SNAP_MAX_LEVEL,
    SNAP_WINDOW,
    SPLIT,
    SPLIT_CHOL,
    SPLIT_MEAN,
    TOL,
    TREE_STEP,
)

_SQRT12 = float(np.sqrt(12.0))


def normals_rows(seed: int, sample_ids: np.ndarray, steps: np.ndarray, size: int) -> np.ndarray:
    """Counter-based standard normals ``(n, size)`` with a different counter step for each row.

    :func:`sdekit.noise.normals_numpy` with ``(n,)`` steps: with all steps equal it returns exactly
    ``normals_numpy(seed, sample_ids, step, size)``.
    """
    return normals_numpy(seed, sample_ids, np.asarray(steps), size)


def node_time(lo: float, L: float, k, level):
    """The time ``lo + (k 2^-level) L`` of the dyadic point ``k 2^-level`` (``k`` and ``level`` integers or arrays)."""
    return lo + (k * np.ldexp(1.0, -np.asarray(level))) * L


def split_node(h, ndw, nin, x1, x2):
    """Split a node of length ``h`` whose increment is ``ndw = W(b) - W(a)`` and whose area is
    ``nin = int_a^b (W - W(a)) = Y(b) - Y(a) - h W(a)``, given two standard normals: ``(dwl, inl)``, the increment
    and area of its left half. The midpoint's values are ``W(c) = W(a) + dwl`` and
    ``Y(c) = Y(a) + (h / 2) W(a) + inl``; the right half has increment ``ndw - dwl`` and area
    ``nin - inl - (h / 2) dwl``. Node-local quantities keep deep levels exact (``Y`` itself is ``O(1)``, a deep
    node's area ``O(h^1.5)``). The arithmetic every implementation (numpy, numba, torch) repeats in this order.
    """
    b00, b01, c00, b10, b11, c10, c11 = SPLIT
    sqh = np.sqrt(h) if isinstance(h, np.ndarray) else math.sqrt(h)
    h32 = h * sqh
    w_rel = ndw / sqh
    i_rel = nin / h32
    m_rel = b00 * w_rel + b01 * i_rel + c00 * x1
    i1_rel = b10 * w_rel + b11 * i_rel + c10 * x1 + c11 * x2
    return sqh * m_rel, h32 * i1_rel


def root_values(xi1, xi2, L: float):
    """``(W(hi), Y(hi))`` from the root's two normals (also the root's increment and area)."""
    sq = math.sqrt(L)
    return sq * xi1, (L * sq) * (0.5 * xi1 + xi2 / _SQRT12)


class BrownianTree:
    """Brownian paths ``W`` (and ``Y = int W``) on ``[min(t0, t1), max(t0, t1)]``, one per sample.

    The reference implementation (numpy, a descent from the root for every query; the last common-time path is
    kept). :class:`BrownianPaths` reads the same paths faster.

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
        self.L = self.hi - self.lo
        xi = normals_rows(self.seed, self.sample_ids, np.full(n, TREE_STEP), 2 * self.size)
        self._w_hi, self._y_hi = root_values(xi[:, : self.size], xi[:, self.size :], self.L)
        self._tol = TOL * self.L
        zeros = np.zeros((n, self.size))
        # the chain of the last common query, root first: [level, m, (Wa, Ya, increment, area), split or None]
        self._path = [[0, 0, (zeros, zeros, self._w_hi, self._y_hi), None]]

    def _normals(self, ids, heap):
        xi = normals_rows(self.seed, ids, TREE_STEP + heap, 2 * self.size)
        return xi[:, : self.size], xi[:, self.size :]

    def _evaluate_common(self, t: float):
        """All samples at one time: one descent, resumed from the deepest cached node that contains ``t``."""
        path, tol, lo, L = self._path, self._tol, self.lo, self.L
        while len(path) > 1:
            level, m = path[-1][0], path[-1][1]
            if node_time(lo, L, m, level) - tol <= t <= node_time(lo, L, m + 1, level) + tol:
                break
            path.pop()
        while True:
            level, m, (wa, ya, ndw, nin), split = path[-1]
            h = L * 2.0**-level
            if abs(t - node_time(lo, L, m, level)) <= tol:
                return wa, ya
            if abs(t - node_time(lo, L, m + 1, level)) <= tol:
                return self._end_value(len(path) - 1)
            if level >= self.depth:
                return _interpolate(t, node_time(lo, L, m, level), h, wa, ndw, ya)
            if split is None:
                x1, x2 = self._normals(self.sample_ids, (1 << level) + m)
                split = path[-1][3] = split_node(h, ndw, nin, x1, x2)
            dwl, inl = split
            if t < node_time(lo, L, 2 * m + 1, level + 1):
                path.append([level + 1, 2 * m, (wa, ya, dwl, inl), None])
            else:
                wc, yc = _midpoint(h, wa, ya, dwl, inl)
                path.append([level + 1, 2 * m + 1, (wc, yc, ndw - dwl, nin - inl - (0.5 * h) * dwl), None])

    def _end_value(self, k):
        """``(W, Y)`` at the right end of the cached node ``k``: the midpoint of its nearest ancestor that it is
        the left half of, or ``hi``."""
        path = self._path
        for j in range(k, 0, -1):
            if path[j][1] % 2 == 0:  # a left half: its right end is the parent's midpoint
                level, _, (wa, ya, _, _), (dwl, inl) = path[j - 1]
                return _midpoint(self.L * 2.0**-level, wa, ya, dwl, inl)
        return self._w_hi, self._y_hi

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
        lo, L, tol = self.lo, self.L, self._tol
        pos = np.zeros(m, dtype=np.int64)  # position of each row's node at the current level
        wa = np.zeros((m, self.size))
        ya = np.zeros((m, self.size))
        ndw = self._w_hi[rows].copy()
        nin = self._y_hi[rows].copy()
        w_out = np.empty((m, self.size))
        y_out = np.empty((m, self.size))
        at_lo = np.abs(t - node_time(lo, L, 0, 0)) <= tol
        at_hi = np.abs(t - node_time(lo, L, 1, 0)) <= tol
        w_out[at_lo], y_out[at_lo] = 0.0, 0.0
        w_out[at_hi], y_out[at_hi] = ndw[at_hi], nin[at_hi]
        live = np.flatnonzero(~(at_lo | at_hi))
        for level in range(self.depth):
            if live.size == 0:
                break
            h = L * 2.0**-level
            p = pos[live]
            x1, x2 = self._normals(ids[live], (1 << level) + p)
            dwl, inl = split_node(h, ndw[live], nin[live], x1, x2)
            wc, yc = _midpoint(h, wa[live], ya[live], dwl, inl)
            c = node_time(lo, L, 2 * p + 1, level + 1)
            tl = t[live]
            hit = np.abs(tl - c) <= tol
            left = (tl < c) & ~hit
            right = ~(left | hit)
            idx_hit, idx_left, idx_right = live[hit], live[left], live[right]
            w_out[idx_hit], y_out[idx_hit] = wc[hit], yc[hit]
            ndw[idx_left], nin[idx_left] = dwl[left], inl[left]
            pos[idx_left] = 2 * pos[idx_left]
            ndw[idx_right] = ndw[idx_right] - dwl[right]
            nin[idx_right] = nin[idx_right] - inl[right] - (0.5 * h) * dwl[right]
            wa[idx_right], ya[idx_right] = wc[right], yc[right]
            pos[idx_right] = 2 * pos[idx_right] + 1
            live = live[~hit]
        if live.size:
            # below the tree's resolution: linear interpolation of W (and its exact integral)
            h = L * 2.0**-self.depth
            a = node_time(lo, L, pos[live], self.depth)
            w_out[live], y_out[live] = _interpolate(t[live][:, None], a[:, None], h, wa[live], ndw[live], ya[live])
        return w_out, y_out

    def increment(self, t, t_next, rows=None, start=None):
        """``(dW, I10)`` over the step from ``t`` to ``t_next`` (either direction), each ``(m, size)``.

        ``dW = W(t_next) - W(t)`` and ``I10 = int (W(s) - W(t)) ds`` over the step, with ``s`` running from
        ``t`` towards ``t_next`` (for a backward step this is the reversed path, again a Brownian motion).
        ``start`` optionally gives the already known ``(W(t), Y(t))``.
        """
        w0, y0 = self.evaluate(t, rows) if start is None else start
        w1, y1 = self.evaluate(t_next, rows)
        dw, i10 = increment_from(w0, y0, w1, y1, np.asarray(t_next, dtype=np.float64) - np.asarray(t, dtype=np.float64))
        return dw, i10, (w1, y1)

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


def _midpoint(h, wa, ya, dwl, inl):
    """The absolute ``(W, Y)`` at a node's midpoint from its left end and the left half's increment and area."""
    return wa + dwl, ya + (0.5 * h) * wa + inl


def _interpolate(t, a, h, wa, dw, ya):
    """Linear interpolation of ``W`` inside a leaf ``[a, a + h]`` (increment ``dw``) and the exact integral of that
    line."""
    s = (t - a) / h
    return wa + s * dw, ya + (s * h) * (wa + 0.5 * s * dw)


def increment_from(w0, y0, w1, y1, h):
    """``(dW, I10)`` of a step of signed length ``h`` (a float or ``(m,)``) from the path values at its ends."""
    h = np.broadcast_to(np.asarray(h, dtype=np.float64), (w0.shape[0],))
    sign = np.sign(h)[:, None]
    return w1 - w0, sign * (y1 - y0) - np.abs(h)[:, None] * w0


def snap_step(t, h, direction: float, lo: float, L: float, xp=np):
    """Where an adaptive step of length ``h`` (``>= 0``) from ``t`` ends: the shallowest tree node time between
    ``t + direction (1 - SNAP_WINDOW) h`` and ``t + direction h``, or the far end when no node of level at most
    :data:`SNAP_MAX_LEVEL` lies there.

    ``t`` and ``h`` are ``(m,)`` float64 arrays (numpy, or torch with ``xp=torch``). The rule is exact arithmetic
    on dyadic numbers, repeated operation for operation by the compiled and torch loops, so every backend lands
    on the same times: in the window ``[ua, ub]`` (tree coordinates ``(t - lo) / L``) of width
    ``w = f 2^e`` (``f`` in ``[0.5, 1)``) there is a point ``k 2^-l`` at ``l = 1 - e`` (at ``l + 1`` when rounding
    made ``w`` look wider), at most two, and the even ``k`` is the shallower one.
    """
    near = t + direction * ((1.0 - SNAP_WINDOW) * h)
    far = t + direction * h
    ua = (xp.minimum(near, far) - lo) / L
    ub = (xp.maximum(near, far) - lo) / L
    w = ub - ua
    e = xp.frexp(w)[1]
    level = xp.clip(1 - e, 0, SNAP_MAX_LEVEL + 1)
    scale = xp.ldexp(xp.ones_like(w), level)
    kl = xp.ceil(ua * scale)
    kh = xp.floor(ub * scale)
    wider = kh < kl
    level = xp.where(wider, level + 1, level)
    scale = xp.where(wider, scale * 2.0, scale)
    kl = xp.ceil(ua * scale)
    kh = xp.floor(ub * scale)
    odd = xp.remainder(kh, 2.0) != 0.0
    k = xp.where(odd & (kh - 1.0 >= kl), kh - 1.0, kh)
    ok = (w > 0.0) & (level <= SNAP_MAX_LEVEL) & (k >= kl)
    return xp.where(ok, lo + (k / scale) * L, far)


def _compiled_available() -> bool:
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):
        return False


class BrownianPaths:
    """The paths of :class:`BrownianTree`, read by a walker that keeps each sample's chain of nodes.

    ``query(t, rows)`` returns ``(W(t), Y(t))`` for the samples ``rows``; each sample's chain runs from the root
    to the node of its last query, with the midpoints drawn on the way, so the next query descends only from the
    deepest node that contains it (the nodes a monotone sweep leaves behind are dropped). The values are the
    tree's, whatever the order of the queries. Compiled with numba when it is installed (``compiled=None``
    decides by that); otherwise every query descends from the root (:meth:`BrownianTree.evaluate`).
    """

    def __init__(self, seed, sample_ids, t0, t1, size, depth: int = DEFAULT_DEPTH, compiled=None):
        self.tree = BrownianTree(seed, sample_ids, t0, t1, size, depth)
        self.lo, self.hi, self.L, self.size, self.depth = self.tree.lo, self.tree.hi, self.tree.L, size, depth
        self.compiled = _compiled_available() if compiled is None else bool(compiled)
        self._chains = None
        if self.compiled:
            from .backends.numba.tree import Chains

            self._chains = Chains(self.tree.seed, self.tree.sample_ids, self.lo, self.L, size, depth)

    @property
    def splits(self) -> int:
        """Node splits drawn so far (compiled walker; 0 otherwise)."""
        return 0 if self._chains is None else int(self._chains.splits.sum())

    def query(self, t, rows=None):
        """``(W(t), Y(t))``, each ``(m, size)``; ``t`` a float or ``(m,)``, ``rows`` the samples (default all)."""
        if self._chains is None:
            return self.tree.evaluate(t, rows)
        n = self.tree.sample_ids.shape[0]
        rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        tq = np.ascontiguousarray(np.broadcast_to(np.asarray(t, dtype=np.float64), rows.shape))
        return self._chains.query(rows, tq)


def tree_noise(job):
    """A noise source ``draw(k) -> list of z`` for a fixed grid, reading the Brownian path of a tree.

    The first ``solver.n_brownian`` fields are the standardised increments of the path over
    ``[grid[k], grid[k + 1]]`` (``z0 = dW / sqrt|h|``, then ``z1`` carrying ``I10``, see
    :meth:`BrownianTree.standardise`); further fields (corrector or churn noise, which discretise no path)
    come from the counter-based generator as with ``noise="counter"``. Arrays are like ``job.x0``. The path is
    read by a :class:`BrownianPaths` walker (compiled when numba is installed).
    """
    solver, grid, x0 = job.solver, job.grid, job.x0
    m = solver.n_noise
    nb = min(solver.n_brownian, m)
    event = tuple(x0.shape[1:])
    size = int(np.prod(event, dtype=np.int64))
    paths = BrownianPaths(job.seed, job.sample_ids, grid[0], grid[-1], size)
    cache = {"k": None, "val": None}

    def draw(k):
        t, t_next = float(grid[k]), float(grid[k + 1])
        w0, y0 = cache["val"] if cache["k"] == k else paths.query(t)
        w1, y1 = paths.query(t_next)
        cache["k"], cache["val"] = k + 1, (w1, y1)
        dw, i10 = increment_from(w0, y0, w1, y1, t_next - t)
        z0, z1 = BrownianTree.standardise(dw, i10, t_next - t)
        fields = [z0, z1][:nb]
        if m > nb:
            extra = normals_numpy(job.seed, job.sample_ids, k, m * size)
            fields += [extra[:, r * size : (r + 1) * size] for r in range(nb, m)]
        n = x0.shape[0]
        return [_xp.asarray_like(f.reshape((n,) + event), x0) for f in fields]

    return draw
