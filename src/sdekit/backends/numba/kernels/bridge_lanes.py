"""Bridge noise (:mod:`sdekit.bridge_noise`) on the lanes of the fused adaptive kernels: one stack of pieces per
lane, the operations of :class:`sdekit.bridge_noise.BridgeNoise` one lane at a time, the fresh draws of all lanes
in one vectorised batch.

Per lane ``l``: ``bt[l, :k]`` the durations and ``bw[l, :k, :]`` the increments of its pieces, bottom (furthest in
the future) first; the lane scalars ``k`` (pieces), ``c`` (fresh draws so far), ``u`` (pieces the attempt used)
and ``p`` (the piece to split) are rows of the kernels' integer lane table, passed as 1-D views. The stacks move
with their samples when lanes are packed (:func:`~sdekit.backends.numba.kernels.adaptive_lanes.heun_accept`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ....bridge_noise import BRIDGE_DEPTH, BRIDGE_RTOL
from ....tree_law import BRIDGE_STEP
from ..noise import fill_components, stream_key

__all__ = ["bridge_increments", "bridge_walk", "bridge_refine"]

_BRIDGE_STEP = np.uint64(BRIDGE_STEP)


@njit(cache=True, inline="always", error_model="numpy")
def bridge_walk(l, hh, rest, bk, bu, bp, z, bt, bw):
    """Lane ``l``'s attempt of length ``hh`` over its stack (:meth:`sdekit.bridge_noise.BridgeNoise.increment`, the
    same operations): ``z[:, l]`` = the sum of the whole pieces that fit, top first; ``bp[l]`` = the piece to split
    (``-1``: none left, a new piece) or ``-2`` when covered; ``rest[l]`` = the uncovered rest. A full stack first
    merges its two bottom pieces; returns the merges (0 or 1)."""
    d = z.shape[0]
    k = bk[l]
    merged = 0
    if k >= BRIDGE_DEPTH:
        bt[l, 0] += bt[l, 1]
        for j in range(d):
            bw[l, 0, j] += bw[l, 1, j]
        for q in range(1, k - 1):
            bt[l, q] = bt[l, q + 1]
            for j in range(d):
                bw[l, q, j] = bw[l, q + 1, j]
        k -= 1
        bk[l] = k
        merged = 1
    hi = hh * (1.0 + BRIDGE_RTOL)
    lo = hh * (1.0 - BRIDGE_RTOL)
    for j in range(d):
        z[j, l] = 0.0
    acc = 0.0
    p = k - 1
    covered = False
    while p >= 0:
        tau = bt[l, p]
        if not (acc + tau <= hi):
            break
        for j in range(d):
            z[j, l] += bw[l, p, j]
        acc += tau
        p -= 1
        if not (acc < lo):
            covered = True
            break
    bu[l] = k - 1 - p
    bp[l] = -2 if covered else p
    rest[l] = hh - acc
    return merged


@njit(cache=True, inline="always", error_model="numpy")
def bridge_refine(l, q, rest, bk, bu, bp, z, bt, bw, zb):
    """Lane ``l``'s uncovered rest ``s``: split piece ``bp[l]`` at ``s`` by the Brownian bridge (or put a new piece
    ``(s, sqrt(s) xi)`` below all others), with the fresh draw ``xi = zb[:, q]``; adds the part to ``z[:, l]``."""
    d = z.shape[0]
    p = bp[l]
    s = rest[l]
    k = bk[l]
    at = p + 1
    for v in range(k - 1, at - 1, -1):  # pieces from ``at`` up move up one
        bt[l, v + 1] = bt[l, v]
        for j in range(d):
            bw[l, v + 1, j] = bw[l, v, j]
    if p >= 0:
        tau = bt[l, p]
        r = s / tau
        sd = math.sqrt(s * (tau - s) / tau)
        for j in range(d):
            a = r * bw[l, p, j] + sd * zb[j, q]
            bw[l, at, j] = a
            bw[l, p, j] = bw[l, p, j] - a
            z[j, l] += a
        bt[l, at] = s
        bt[l, p] = tau - s
    else:
        sq = math.sqrt(s)
        for j in range(d):
            a = sq * zb[j, q]
            bw[l, 0, j] = a
            z[j, l] += a
        bt[l, 0] = s
    bk[l] = k + 1
    bu[l] += 1


@njit(cache=True, error_model="numpy")
def bridge_increments(L, hh, rest, bk, bc, bu, bp, key, z, bt, bw, zb, slist, sks):
    """``z[:, l]`` = the Brownian increment of lane ``l``'s attempt of length ``hh[l]`` from its stack, for the
    lanes ``l < L`` (the lanes not covered by their stacks draw in one batch: draw ``c`` of a lane is its counter
    stream at step ``BRIDGE_STEP + c``); ``u`` (``bu``) is left for the accept. Returns the stack merges."""
    d = z.shape[0]
    merges = 0
    ns = 0
    for l in range(L):
        merges += bridge_walk(l, hh[l], rest, bk, bu, bp, z, bt, bw)
        if bp[l] >= -1:  # not covered: a fresh draw
            slist[ns] = l
            sks[ns] = stream_key(key[l], _BRIDGE_STEP + np.uint64(bc[l]))
            bc[l] += 1
            ns += 1
    if ns > 0:
        fill_components(sks, ns, 0, zb)
        for q in range(ns):
            bridge_refine(slist[q], q, rest, bk, bu, bp, z, bt, bw, zb)
    for l in range(L):  # the numpy loop's z = dW / sqrt(h), times sqrt(h) in the solver
        sq = math.sqrt(hh[l])
        for j in range(d):
            z[j, l] = sq * (z[j, l] / sq)
    return merges
