"""The Brownian tree of :mod:`sdekit.brownian`, compiled: per-sample chains of nodes that queries resume from.

A *chain* is one sample's list of nested tree nodes from the root (level 0) down to the node that contained its
last query. Each cached level ``k`` holds the node's position ``pos`` at its level, its left end's values
``(wa, ya)``, its increment and area ``(ndw, nin)`` (node-local, see :func:`sdekit.brownian.split_node`), whether
it has been split (``mk``) and then its left half's increment and area ``(dwl, inl)``, and where its right end's
value is (``ib``: ``-2`` for ``hi``, ``k`` for the midpoint of level ``k``). A query pops the nodes that do not
contain its time and descends from the deepest one that does, drawing only the splits not drawn before; the
values are those of the root descent of :class:`sdekit.brownian.BrownianTree` (same nodes, same splits, the same
arithmetic), with the normals of :mod:`sdekit.backends.numba.noise`, so they agree with the numpy tree to
round-off. Levels below ``CACHE_LEVELS`` are not kept: a query that goes deeper (a non-dyadic time, reached through
the tree's full depth) finishes its descent in scratch memory.

The row form (``chain_advance``, ``chain_split``) works on any set of rows: :class:`Chains` keeps one chain per
sample of a solve (the numpy loops' walker, :class:`sdekit.brownian.BrownianPaths`), the fused adaptive kernels
one per lane of a block (they batch the splits of all lanes into one vectorised draw of normals).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ...tree_law import SPLIT, TOL, TREE_STEP
from .noise import normal_pair, sample_keys, serial_and_parallel, stream_key

__all__ = [
    "Chains",
    "ChainState",
    "chain_state",
    "CACHE_LEVELS",
    "chain_reset",
    "chain_advance",
    "chain_split",
    "chain_copy",
    "chain_heap",
    "node_normals",
]

_B00, _B01, _C00, _B10, _B11, _C10, _C11 = SPLIT
_SQRT12 = math.sqrt(12.0)
_TREE_STEP = np.uint64(TREE_STEP)
#: Deepest level a chain keeps (snapped adaptive steps end above it; fixed-grid points below it are not reused).
CACHE_LEVELS = 24


class ChainState(NamedTuple):
    """The chains of ``rows`` rows (samples or lanes), ``D = min(depth, CACHE_LEVELS) + 1`` cached levels each,
    ``size`` components per node; the compiled functions below take it as one record. Per row ``r``:

    * ``lev (rows,) int64``: the level of the deepest node of the chain;
    * ``pos (rows, D) int64``: each cached node's position at its level;
    * ``mk (rows, D) uint8``: 1 once the node's split has been drawn;
    * ``ib (rows, D) int64``: where the node's right end value is (``-2``: ``whi/yhi``, ``k``: level ``k``'s
      midpoint);
    * ``wa, ya (rows, D, size)``: ``(W, Y)`` at the node's left end;
    * ``ndw, nin (rows, D, size)``: the node's increment and area (node-local);
    * ``dwl, inl (rows, D, size)``: its left half's increment and area, once split;
    * ``whi, yhi (rows, size)``: ``(W, Y)`` at the root's right end.
    """

    lev: np.ndarray
    pos: np.ndarray
    mk: np.ndarray
    ib: np.ndarray
    wa: np.ndarray
    ya: np.ndarray
    ndw: np.ndarray
    nin: np.ndarray
    dwl: np.ndarray
    inl: np.ndarray
    whi: np.ndarray
    yhi: np.ndarray


def chain_state(rows: int, depth: int, size: int) -> ChainState:
    """Zeroed chains of ``rows`` rows (see :class:`ChainState`; ``whi``/``yhi`` are written by :func:`chain_reset`)."""
    D = min(depth, CACHE_LEVELS) + 1
    i2 = np.zeros((rows, D), dtype=np.int64)
    return ChainState(np.zeros(rows, dtype=np.int64), i2, np.zeros((rows, D), dtype=np.uint8), i2.copy(),
                      *(np.zeros((rows, D, size)) for _ in range(6)), np.empty((rows, size)),
                      np.empty((rows, size)))  # fmt: skip


@njit(cache=True, inline="always", error_model="numpy")
def node_normals(key, heap, z):
    """The ``z.shape[0]`` (even) normals of the tree node ``heap`` of the sample with key ``key`` into ``z``."""
    sk = stream_key(key, _TREE_STEP + np.uint64(heap))
    for p in range(z.shape[0] // 2):
        a, b = normal_pair(sk, np.uint64(p))
        z[2 * p] = a
        z[2 * p + 1] = b


@njit(cache=True, inline="always", error_model="numpy")
def _split_one(h, ndw, nin, x1, x2):
    sqh = math.sqrt(h)
    h32 = h * sqh
    w_rel = ndw / sqh
    i_rel = nin / h32
    m_rel = _B00 * w_rel + _B01 * i_rel + _C00 * x1
    i1_rel = _B10 * w_rel + _B11 * i_rel + _C10 * x1 + _C11 * x2
    return sqh * m_rel, h32 * i1_rel


@njit(cache=True, inline="always", error_model="numpy")
def chain_reset(r, key, L, z, chain):
    """Row ``r``'s chain (of the :class:`ChainState` ``chain``): the root only, its values drawn (``z``: scratch
    of ``2 size`` floats)."""
    lev, pos, mk, ib, wa, ya, ndw, nin, _, _, whi, yhi = chain
    size = whi.shape[1]
    node_normals(key, 0, z)  # the root's stream is TREE_STEP itself (heap index 0)
    sq = math.sqrt(L)
    l32 = L * sq
    for j in range(size):
        w = sq * z[j]
        y = l32 * (0.5 * z[j] + z[size + j] / _SQRT12)
        whi[r, j] = w
        yhi[r, j] = y
        wa[r, 0, j] = 0.0
        ya[r, 0, j] = 0.0
        ndw[r, 0, j] = w
        nin[r, 0, j] = y
    lev[r] = 0
    pos[r, 0] = 0
    mk[r, 0] = 0
    ib[r, 0] = -2


@njit(cache=True, inline="always", error_model="numpy")
def _end(src, r, j, L, chain):
    """``(W, Y)`` component ``j`` at the right end held by ``src`` (the midpoint of level ``src``, or ``hi``)."""
    if src == -2:
        return chain.whi[r, j], chain.yhi[r, j]
    h = L * math.ldexp(1.0, -src)
    w0 = chain.wa[r, src, j]
    return w0 + chain.dwl[r, src, j], chain.ya[r, src, j] + (0.5 * h) * w0 + chain.inl[r, src, j]


@njit(cache=True, inline="always", error_model="numpy")
def chain_advance(r, tq, key, lo, L, tol, depth, chain, outw, outy, o, z, scratch):
    """Advance row ``r``'s query of time ``tq`` on the tree ``[lo, lo + L]`` (times within ``tol`` of a node's end
    are that end; nodes at level ``depth`` are not split): 1 when done (``W, Y`` written to ``outw[o], outy[o]``),
    0 when the chain's deepest node needs its split drawn first (call :func:`chain_split`, then this again).

    ``chain`` is a :class:`ChainState`; ``z`` (``2 size``) and ``scratch`` (``(4, size)``) are work arrays for the
    levels below the cache. Inlined into its callers (it runs per lane and per query on a few components). The
    hot functions read the record's fields where they use them (``chain.wa[...]``) rather than unpacking all twelve
    on entry: numba counts a reference per unpacked array, which here made the walker 45% slower."""
    size = chain.whi.shape[1]
    J = chain.lev[r]
    while J > 0:
        s = math.ldexp(1.0, -J)
        m = np.float64(chain.pos[r, J])
        if lo + (m * s) * L - tol <= tq <= lo + ((m + 1.0) * s) * L + tol:
            break
        J -= 1
    while True:
        s = math.ldexp(1.0, -J)
        m = chain.pos[r, J]
        fm = np.float64(m)
        a = lo + (fm * s) * L
        if abs(tq - a) <= tol:
            for j in range(size):
                outw[o, j] = chain.wa[r, J, j]
                outy[o, j] = chain.ya[r, J, j]
            chain.lev[r] = J
            return 1
        if abs(tq - (lo + ((fm + 1.0) * s) * L)) <= tol:
            for j in range(size):
                outw[o, j], outy[o, j] = _end(chain.ib[r, J], r, j, L, chain)
            chain.lev[r] = J
            return 1
        h = L * s
        if J >= depth:
            u = (tq - a) / h
            for j in range(size):
                w0 = chain.wa[r, J, j]
                d = chain.ndw[r, J, j]
                outw[o, j] = w0 + u * d
                outy[o, j] = chain.ya[r, J, j] + (u * h) * (w0 + 0.5 * u * d)
            chain.lev[r] = J
            return 1
        if chain.mk[r, J] == 0:
            chain.lev[r] = J
            return 0
        if J == CACHE_LEVELS:
            chain.lev[r] = J
            _descend_uncached(r, tq, key, lo, L, tol, depth, J, chain.pos[r, J], chain, outw, outy, o, z, scratch)
            return 1
        c = lo + ((2.0 * fm + 1.0) * (0.5 * s)) * L
        K = J + 1
        if tq < c:
            chain.pos[r, K] = 2 * m
            chain.ib[r, K] = J
            for j in range(size):
                chain.wa[r, K, j] = chain.wa[r, J, j]
                chain.ya[r, K, j] = chain.ya[r, J, j]
                chain.ndw[r, K, j] = chain.dwl[r, J, j]
                chain.nin[r, K, j] = chain.inl[r, J, j]
        else:
            chain.pos[r, K] = 2 * m + 1
            chain.ib[r, K] = chain.ib[r, J]
            for j in range(size):
                w0 = chain.wa[r, J, j]
                d = chain.dwl[r, J, j]
                chain.wa[r, K, j] = w0 + d
                chain.ya[r, K, j] = chain.ya[r, J, j] + (0.5 * h) * w0 + chain.inl[r, J, j]
                chain.ndw[r, K, j] = chain.ndw[r, J, j] - d
                chain.nin[r, K, j] = chain.nin[r, J, j] - chain.inl[r, J, j] - (0.5 * h) * d
        chain.mk[r, K] = 0
        J = K


@njit(cache=True, inline="always", error_model="numpy")
def _descend_uncached(r, tq, key, lo, L, tol, depth, J, m, chain, outw, outy, o, z, sc):
    """Finish a query below the cache from the split cached node ``J`` (position ``m``), in scratch ``sc``:
    rows ``wa, ya, ndw, nin`` of the current node; splits drawn here, one stream at a time."""
    wa, ya, ndw, nin, dwl, inl = chain.wa, chain.ya, chain.ndw, chain.nin, chain.dwl, chain.inl
    size = sc.shape[1]
    level = J
    # the cached node's split, as if drawn here
    for j in range(size):
        sc[0, j] = wa[r, J, j]
        sc[1, j] = ya[r, J, j]
        sc[2, j] = ndw[r, J, j]
        sc[3, j] = nin[r, J, j]
        z[j] = dwl[r, J, j]
        z[size + j] = inl[r, J, j]
    drawn = True
    while True:
        s = math.ldexp(1.0, -level)
        fm = np.float64(m)
        h = L * s
        if not drawn:
            if level >= depth:
                u = (tq - (lo + (fm * s) * L)) / h
                for j in range(size):
                    outw[o, j] = sc[0, j] + u * sc[2, j]
                    outy[o, j] = sc[1, j] + (u * h) * (sc[0, j] + 0.5 * u * sc[2, j])
                return
            node_normals(key, (np.int64(1) << level) + m, z)
            for j in range(size):
                d, a2 = _split_one(h, sc[2, j], sc[3, j], z[j], z[size + j])
                z[j] = d
                z[size + j] = a2
        c = lo + ((2.0 * fm + 1.0) * (0.5 * s)) * L
        if abs(tq - c) <= tol:
            for j in range(size):
                outw[o, j] = sc[0, j] + z[j]
                outy[o, j] = sc[1, j] + (0.5 * h) * sc[0, j] + z[size + j]
            return
        if tq < c:
            m = 2 * m
            for j in range(size):
                sc[2, j] = z[j]
                sc[3, j] = z[size + j]
        else:
            m = 2 * m + 1
            for j in range(size):
                w0 = sc[0, j]
                d = z[j]
                sc[0, j] = w0 + d
                sc[1, j] = sc[1, j] + (0.5 * h) * w0 + z[size + j]
                sc[2, j] = sc[2, j] - d
                sc[3, j] = sc[3, j] - z[size + j] - (0.5 * h) * d
        level += 1
        drawn = False


@njit(cache=True, inline="always", error_model="numpy")
def chain_split(r, z, L, chain):
    """Draw the split of row ``r``'s deepest node from the node's normals ``z`` (``2 size``: ``x1`` then ``x2``),
    the arithmetic of :func:`sdekit.brownian.split_node`."""
    size = chain.ndw.shape[2]
    J = chain.lev[r]
    h = L * math.ldexp(1.0, -J)
    for j in range(size):
        d, a2 = _split_one(h, chain.ndw[r, J, j], chain.nin[r, J, j], z[j], z[size + j])
        chain.dwl[r, J, j] = d
        chain.inl[r, J, j] = a2
    chain.mk[r, J] = 1


@njit(cache=True, inline="always", error_model="numpy")
def chain_heap(r, chain):
    """Heap index ``2^level + position`` of row ``r``'s deepest node."""
    J = chain.lev[r]
    return (np.int64(1) << J) + chain.pos[r, J]


@njit(cache=True, inline="always", error_model="numpy")
def chain_copy(src, dst, chain):
    """Copy row ``src``'s chain (the levels in use and the root's values) to row ``dst``."""
    lev, pos, mk, ib, wa, ya, ndw, nin, dwl, inl, whi, yhi = chain
    J = lev[src]
    lev[dst] = J
    size = whi.shape[1]
    for k in range(J + 1):
        pos[dst, k] = pos[src, k]
        mk[dst, k] = mk[src, k]
        ib[dst, k] = ib[src, k]
        for j in range(size):
            wa[dst, k, j] = wa[src, k, j]
            ya[dst, k, j] = ya[src, k, j]
            ndw[dst, k, j] = ndw[src, k, j]
            nin[dst, k, j] = nin[src, k, j]
            dwl[dst, k, j] = dwl[src, k, j]
            inl[dst, k, j] = inl[src, k, j]
    for j in range(size):
        whi[dst, j] = whi[src, j]
        yhi[dst, j] = yhi[src, j]


@njit(cache=True, error_model="numpy")
def _init_rows(r0, r1, keys, L, chain):
    """Reset the chains of rows ``r0 .. r1``."""
    z = np.empty(2 * chain.whi.shape[1])
    for r in range(r0, r1):
        chain_reset(r, keys[r], L, z, chain)


@njit(cache=True, error_model="numpy")
def _query_rows(q0, q1, rows, tq, keys, lo, L, tol, depth, chain, outw, outy, splits):
    """Queries ``q0 .. q1``: row ``rows[q]`` at time ``tq[q]`` into ``outw[q], outy[q]``, splits drawn as needed."""
    size = chain.whi.shape[1]
    z = np.empty(2 * size)
    sc = np.empty((4, size))
    for q in range(q0, q1):
        r = rows[q]
        key = keys[r]
        while chain_advance(r, tq[q], key, lo, L, tol, depth, chain, outw, outy, q, z, sc) == 0:
            node_normals(key, chain_heap(r, chain), z)
            chain_split(r, z, L, chain)
            splits[r] += 1


# The parallel bodies hand the record to compiled calls and touch none of its fields themselves: numba's parfors
# (0.68) mishandle a tuple of arrays used directly in a prange body (it fails to compile or loses the writes).
def _init_body(keys, L, chain):
    n = keys.shape[0]
    for blk in prange((n + 63) // 64):
        _init_rows(blk * 64, min(n, blk * 64 + 64), keys, L, chain)


def _query_body(rows, tq, keys, lo, L, tol, depth, chain, outw, outy, splits):
    m = rows.shape[0]
    for blk in prange((m + 63) // 64):
        _query_rows(blk * 64, min(m, blk * 64 + 64), rows, tq, keys, lo, L, tol, depth, chain, outw, outy, splits)


_init_serial, _init_parallel = serial_and_parallel(_init_body)
_query_serial, _query_parallel = serial_and_parallel(_query_body)

#: Below this many rows times components a query runs on one thread (a parallel launch costs a thread wake-up).
_PARALLEL_WORK = 1 << 14


class Chains:
    """One chain per sample of a solve (``n`` samples of ``size`` components), for
    :class:`sdekit.brownian.BrownianPaths`. ``splits`` counts the cached splits each sample has drawn."""

    def __init__(self, seed, sample_ids, lo: float, L: float, size: int, depth: int):
        n = len(sample_ids)
        self.lo, self.L, self.size, self.depth = float(lo), float(L), int(size), int(depth)
        self.tol = TOL * self.L
        self.keys = sample_keys(seed, sample_ids)
        self.chain = chain_state(n, self.depth, self.size)
        self.splits = np.zeros(n, dtype=np.int64)
        init = _init_parallel if n * self.size >= _PARALLEL_WORK else _init_serial
        init(self.keys, self.L, self.chain)

    def query(self, rows, tq):
        m = rows.shape[0]
        outw = np.empty((m, self.size))
        outy = np.empty((m, self.size))
        fn = _query_parallel if m * self.size >= _PARALLEL_WORK else _query_serial
        fn(rows, tq, self.keys, self.lo, self.L, self.tol, self.depth, self.chain, outw, outy, self.splits)
        return outw, outy
