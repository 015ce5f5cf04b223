"""Bridge noise for adaptive SDE steps: each sample keeps the Brownian increments it has drawn over its future,
and refines them by Brownian bridges (rejection sampling with memory, Rackauckas & Nie 2017).

With ``noise="bridge"`` an adaptive solver reads the increment of its step from a per-sample stack of *pieces*
of its Brownian path ahead of its current time: ``(tau_j, dW_j)``, a duration ``tau_j > 0`` and the path's
increment over it (``(size,)``), the top piece starting at the sample's current time and each piece below it
starting where the one above ends. Durations are positive, in the loop's direction of time.

Definition (the numpy version below and the fused numba kernel of
:mod:`sdekit.backends.numba.kernels.adaptive_lanes` implement it operation for operation):

* **Fresh draws.** Draw number ``c`` of sample ``i`` is the ``size``-vector of counter-based normals of
  :mod:`sdekit.noise` at step ``BRIDGE_STEP + c`` (``normals_numpy(seed, i, BRIDGE_STEP + c, size)``), and
  then ``c += 1``; ``c`` starts at 0. An attempt draws at most once.
* **Attempt of length h.** Walk the stack from the top, summing whole pieces while
  ``acc_tau + tau_top <= h (1 + 1e-12)``; once ``acc_tau >= h (1 - 1e-12)`` the attempt is covered (the last
  piece is taken as exactly the rest). If it is not covered, with ``s = h - acc_tau``:

  - the next piece ``(tau, dW)`` is split at ``s`` by the Brownian bridge,
    ``a = (s / tau) dW + sqrt(s (tau - s) / tau) xi``, into ``(s, a)`` followed by ``(tau - s, dW - a)``;
  - or, when the stack is exhausted, a new piece ``(s, sqrt(s) xi)`` is put below all others;

  (``xi`` a fresh draw) and ``a`` is added. The attempt's increment is the sum, in that order (top first).
  The stack is refined in place: every piece the attempt used stays on it, ``used`` counts them.
* **Accept** removes the ``used`` top pieces (the path moved past them). **Reject** keeps the stack as it is:
  the retry, shorter, reads the same pieces and splits them further, so every increment the loop has looked at
  stays part of the path.
* **Bounded depth.** A stack holds at most :data:`BRIDGE_DEPTH` pieces. An attempt that starts on a full stack
  first merges its two bottom pieces (the furthest in the future, adjacent in time) into one (sum of durations,
  sum of increments).

Law. Splits draw from the exact conditional law of a Brownian motion given the increments already drawn, and
a rejection keeps what was drawn, so the accepted path is one Brownian path revealed lazily (the loop's accept
and reject decisions only choose where it is looked at): its increments are exact Brownian increments for any
rule of accepting and rejecting, unlike fresh noise per attempt (``noise="counter"``), where the rejections
select the noise. A merge forgets the value of the path at one future time that the loop has looked at; that
selection is then lost, so the law is exact as long as no stack overflows (``merges`` counts them; the adaptive
loop reports them as ``stats["bridge_merges"]``, per sample). This is Rackauckas & Nie's RSwM3 (the variant that
keeps every value it has drawn), with a fixed-depth stack: C. Rackauckas and Q. Nie, "Adaptive methods for
stochastic differential equations via natural embeddings and rejection sampling with memory", Discrete Contin.
Dyn. Syst. B 22(7), 2017.

A sample's path depends on ``(seed, sample id, its own sequence of attempted steps and decisions)`` and on
nothing else: not on the batch, the chunking, the threads or the backend. Unlike ``noise="tree"`` it is *not*
the same path for different step sequences (another tolerance gives another path): the draws are indexed by
their order, not by time. In exchange an attempt costs at most one draw of ``size`` normals and a few vector
additions, with no dependence on the depth of a tree.
"""

from __future__ import annotations

import numpy as np

from .noise import normals_numpy
from .tree_law import BRIDGE_STEP

__all__ = ["BridgeNoise", "BRIDGE_STEP", "BRIDGE_DEPTH", "BRIDGE_RTOL"]

#: Most pieces one sample's stack holds (the fused numba kernel uses the same bound).
BRIDGE_DEPTH = 32
#: Relative tolerance of "the piece covers the rest of the step" (durations are sums of differences of times).
BRIDGE_RTOL = 1e-12


class BridgeNoise:
    """The stacks of ``n`` samples, as fixed-depth arrays.

    Parameters
    ----------
    seed : int
        The counter generator's seed.
    sample_ids : (n,) int
        Global id of each sample (its fresh draws depend on it).
    size : int
        Components of one increment (the event size of the state).

    Attributes
    ----------
    tau : (n, capacity) float64
        Durations of the pieces, bottom first: piece ``k[i] - 1`` is the top of sample ``i``'s stack.
    dw : (n, capacity, size) float64
        The increments of the pieces.
    k : (n,) int64
        Pieces on each stack.
    count : (n,) int64
        Fresh draws so far per sample (draw ``c`` reads counter step ``BRIDGE_STEP + c``).
    used : (n,) int64
        Top pieces the last attempt of each sample used (what :meth:`accept` removes).
    merges : (n,) int64
        Overflow merges per sample.

    ``capacity`` starts small and doubles when a stack needs it, up to :data:`BRIDGE_DEPTH`.
    """

    def __init__(self, seed: int, sample_ids, size: int, depth: int = BRIDGE_DEPTH):
        if depth < 2:
            raise ValueError(f"depth must be at least 2 (an overflow merges two pieces), got {depth!r}")
        self.seed = int(seed)
        self.ids = np.asarray(sample_ids, dtype=np.int64)
        self.size = int(size)
        self.depth = int(depth)
        n = self.ids.shape[0]
        cap = min(4, self.depth)
        self.tau = np.zeros((n, cap))
        self.dw = np.zeros((n, cap, self.size))
        self.k = np.zeros(n, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        self.used = np.zeros(n, dtype=np.int64)
        self.merges = np.zeros(n, dtype=np.int64)

    def _grow(self, need: int):
        cap = self.tau.shape[1]
        if need <= cap:
            return
        new = min(self.depth, max(need, 2 * cap))
        n = self.tau.shape[0]
        self.tau = np.concatenate([self.tau, np.zeros((n, new - cap))], axis=1)
        self.dw = np.concatenate([self.dw, np.zeros((n, new - cap, self.size))], axis=1)

    def _merge_bottom(self, rows: np.ndarray):
        """Merge the two bottom pieces of the full stacks ``rows`` into one (pieces above move down one)."""
        self.tau[rows, 0] += self.tau[rows, 1]
        self.dw[rows, 0] += self.dw[rows, 1]
        self.tau[rows, 1:-1] = self.tau[rows, 2:]
        self.dw[rows, 1:-1] = self.dw[rows, 2:]
        self.k[rows] -= 1
        self.merges[rows] += 1

    def draw(self, rows: np.ndarray) -> np.ndarray:
        """The next fresh draw of each of ``rows``, ``(len(rows), size)`` (their counters advance)."""
        z = normals_numpy(self.seed, self.ids[rows], BRIDGE_STEP + self.count[rows], self.size)
        self.count[rows] += 1
        return z

    def increment(self, rows, h) -> np.ndarray:
        """The Brownian increments ``(len(rows), size)`` of attempts of lengths ``h > 0`` (``(len(rows),)``) from
        the current times of samples ``rows`` (distinct indices); refines their stacks (see the module)."""
        rows = np.asarray(rows, dtype=np.int64)
        h = np.broadcast_to(np.asarray(h, dtype=np.float64), rows.shape)
        m = rows.shape[0]
        full = rows[self.k[rows] >= self.depth]
        if full.size:
            self._merge_bottom(full)
        self._grow(int(self.k[rows].max(initial=0)) + 1)
        acc = np.zeros((m, self.size))
        acc_tau = np.zeros(m)
        pos = self.k[rows] - 1  # the next piece to read, per row
        open_ = np.ones(m, dtype=bool)  # not covered yet
        walking = np.ones(m, dtype=bool)  # open, and every piece so far fitted
        lim_hi = h * (1.0 + BRIDGE_RTOL)
        lim_lo = h * (1.0 - BRIDGE_RTOL)
        while True:  # whole pieces, top first
            cand = np.flatnonzero(walking & (pos >= 0))
            if cand.size == 0:
                break
            tau = self.tau[rows[cand], pos[cand]]
            fit = acc_tau[cand] + tau <= lim_hi[cand]
            walking[cand[~fit]] = False
            take = cand[fit]
            acc[take] += self.dw[rows[take], pos[take]]
            acc_tau[take] += tau[fit]
            pos[take] -= 1
            open_[take] = acc_tau[take] < lim_lo[take]
            walking[take] = open_[take]
        used = self.k[rows] - 1 - pos
        need = np.flatnonzero(open_)
        if need.size:
            r = rows[need]
            s = h[need] - acc_tau[need]
            xi = self.draw(r)
            p = pos[need]
            split = p >= 0
            a = np.empty((need.size, self.size))
            if np.any(split):
                qs = np.flatnonzero(split)
                rs, ps, ss = r[qs], p[qs], s[qs]
                tau = self.tau[rs, ps]
                dw = self.dw[rs, ps]
                a[qs] = (ss / tau)[:, None] * dw + np.sqrt(ss * (tau - ss) / tau)[:, None] * xi[qs]
                self._insert(rs, ps + 1, ss, a[qs], tau - ss, dw - a[qs])
            if not np.all(split):
                qf = np.flatnonzero(~split)
                a[qf] = np.sqrt(s[qf])[:, None] * xi[qf]
                self._insert(r[qf], np.zeros(qf.size, dtype=np.int64), s[qf], a[qf], None, None)
            acc[need] += a
            used[need] += 1
        self.used[rows] = used
        return acc

    def _insert(self, rows, at, tau_new, dw_new, tau_below, dw_below):
        """Insert piece ``(tau_new, dw_new)`` at position ``at`` of each stack (the pieces from ``at`` up move up
        one); with ``tau_below``, the piece at ``at - 1`` (the one split) becomes ``(tau_below, dw_below)``."""
        top = self.k[rows]
        for lev in range(int(top.max(initial=0)) - 1, -1, -1):  # move up, from the top down
            mv = np.flatnonzero((lev < top) & (lev >= at))
            if mv.size:
                rr = rows[mv]
                self.tau[rr, lev + 1] = self.tau[rr, lev]
                self.dw[rr, lev + 1] = self.dw[rr, lev]
        self.tau[rows, at] = tau_new
        self.dw[rows, at] = dw_new
        if tau_below is not None:
            self.tau[rows, at - 1] = tau_below
            self.dw[rows, at - 1] = dw_below
        self.k[rows] += 1

    def accept(self, rows):
        """Samples ``rows`` accepted their last attempt: the pieces it used leave their stacks."""
        rows = np.asarray(rows, dtype=np.int64)
        self.k[rows] -= self.used[rows]
        self.used[rows] = 0

    def reject(self, rows):
        """Samples ``rows`` rejected their last attempt: their stacks keep every piece (nothing to do but forget
        the count of used pieces)."""
        self.used[np.asarray(rows, dtype=np.int64)] = 0
