"""The data of the fused adaptive kernels (:mod:`sdekit.backends.numba.kernels.adaptive`): the parameter tables'
layout, the records the phases (:mod:`~sdekit.backends.numba.kernels.adaptive_lanes`) take, and their allocation.

A solve hands its kernel two records, :class:`Solve` (what every task reads) and :class:`Samples` (the samples'
states and counters, written when a sample leaves its lane); each task allocates its working set, :class:`Lanes`
(the per-lane state that moves with its sample when lanes are packed) and :class:`LaneNoise` (the noise sources'
per-lane state and scratch). The records are named tuples of arrays, which numba passes as one argument.

Per-lane scalars live in the rows of ``Lanes.lf`` (float) and ``Lanes.li`` (int), named by the constants below; the
solve's scalar parameters in ``Solve.fp`` (float, ``F_*``) and ``Solve.ip`` (int, ``I_*``).

numba (0.68) mishandles a tuple of arrays used directly in a ``prange`` body (it fails to compile or loses the
writes); the parallel driver only hands the records to the compiled task, which is safe.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ..tree import CACHE_LEVELS, ChainState

__all__ = ["Solve", "Samples", "Lanes", "LaneNoise", "new_lanes", "new_noise", "NLF", "NLI", "T", "NOISE_NONE",
           "NOISE_COUNTER", "NOISE_TREE", "NOISE_BRIDGE"]  # fmt: skip

# float parameters (Solve.fp) and integer parameters (Solve.ip) of a solve, by index
F_RTOL, F_ATOL, F_SAFETY, F_BETA1, F_BETA2, F_MINF, F_MAXF, F_H0, F_LO, F_L, F_TOL, F_W, F_DIR, F_MINSTEP = range(14)
NFP = 14
I_KIND, I_NOISE, I_DEPTH, I_MAXSTEPS, I_CHECK, I_KLOG, I_NTASKS = range(7)
NIP = 7
NOISE_NONE, NOISE_COUNTER, NOISE_TREE, NOISE_BRIDGE = 0, 1, 2, 3

# lane scalars: rows of Lanes.lf (float) and Lanes.li (int)
T, H, EP, TN, HS, HH, ACUR, GCUR, G2CCUR, AN, GN, G2CN, ERR, FIN, BS = range(15)
NLF = 15
# BK, BC, BU, BP: bridge noise (pieces on the stack, fresh draws so far, pieces the attempt used, piece to split)
ROW, NX, ATT, NA, NR, NFE_, NEED, LAST, BK, BC, BU, BP = range(12)
NLI = 12


class Solve(NamedTuple):
    """What every task of a solve reads (``S`` stops, the first the start time and the last the end time).

    * ``stops (S,) float64``: the times a sample must land on (``t0``, the save times, ``t1``);
    * ``save_slot (S,) int64``: the slot of ``Samples.saved`` each stop is saved to (``-1``: not saved);
    * ``fp (NFP,) float64``, ``ip (NIP,) int64``: the scalar parameters (``F_*``, ``I_*``);
    * ``sp (P,) float64``: the SDE's parameters (:func:`~sdekit.backends.numba.kernels.lane_coef.sde_params`);
    * ``ulam, ucnt (K, U) float64``: the distinct eigenvalues of each mixture component's covariance and their
      counts (the score's log-determinants; none read for one component).

    Its fields are arrays, not nested tuples: the parallel driver passes the record on, and numba's parallel
    lowering refuses a tuple inside it.
    """

    stops: np.ndarray
    save_slot: np.ndarray
    fp: np.ndarray
    ip: np.ndarray
    sp: np.ndarray
    ulam: np.ndarray
    ucnt: np.ndarray


class Samples(NamedTuple):
    """The ``n`` samples of a solve, ``d`` components each, and what the kernel writes back per sample.

    * ``x (n, d) float64``: the start states, overwritten with the end states;
    * ``ids (n,) int64``: the sample ids (their noise keys);
    * ``saved (n_saved, n, d) float64``: the states at the saved stops;
    * ``nfe, nacc, nrej (n,) int64``: drift evaluations, accepted and rejected attempts;
    * ``status (n,) int64``: 0 finished, 1 step-size underflow, 2 ``max_steps`` reached;
    * ``tfail (n,) float64``: the time a sample stopped at.
    """

    x: np.ndarray
    ids: np.ndarray
    saved: np.ndarray
    nfe: np.ndarray
    nacc: np.ndarray
    nrej: np.ndarray
    status: np.ndarray
    tfail: np.ndarray


class Lanes(NamedTuple):
    """A task's ``B`` lanes, one sample each: what moves with a sample when the live lanes are packed.

    * ``lf (NLF, B) float64``, ``li (NLI, B) int64``: the per-lane scalars (rows ``T, H, ...``, ``ROW, NX, ...``);
    * ``key (B,) uint64``: the lane's sample key;
    * ``ccur (NCL, B) float64``: the score's constants at the lane's time (``alpha, sigma^2``, log-determinants);
    * ``xb (d, B) float64``: the state;
    * ``fb (d, B) float64``: the drift at the state (``dopri5``: its first stage, a view of the stage array);
    * ``xpb (d, B) float64``: the previous Euler point (``adaptive``'s error scale; unused by ``dopri5``).
    """

    lf: np.ndarray
    li: np.ndarray
    key: np.ndarray
    ccur: np.ndarray
    xb: np.ndarray
    fb: np.ndarray
    xpb: np.ndarray


class LaneNoise(NamedTuple):
    """The per-lane state and scratch of the noise sources of a task's ``B`` lanes (``D`` cached tree levels, a
    bridge stack of ``BD`` pieces); a source that does not run gets size-1 arrays.

    * ``chain``: the lanes' Brownian-tree chains (:class:`~sdekit.backends.numba.tree.ChainState`, ``B`` rows);
    * ``wp, yp (B, d) float64``: ``(W, Y)`` of the tree path at the lane's time; ``qw, qy (B, d)``: at its step end;
    * ``zs (2 d, B) float64``: the normals of a batch of splits; ``zz (2 d,)``, ``sc (4, d)``: the chains' scratch;
    * ``slist, pend (B,) int64``: the lanes of a batch of splits and the lanes whose query is pending;
    * ``sks (B,) uint64``: the stream keys of a batch of draws;
    * ``bt (B, BD) float64``, ``bw (B, BD, d) float64``: each lane's bridge stack (durations and increments);
    * ``zb (d, B) float64``: a batch of fresh bridge draws.
    """

    chain: ChainState
    wp: np.ndarray
    yp: np.ndarray
    qw: np.ndarray
    qy: np.ndarray
    zs: np.ndarray
    zz: np.ndarray
    sc: np.ndarray
    slist: np.ndarray
    pend: np.ndarray
    sks: np.ndarray
    bt: np.ndarray
    bw: np.ndarray
    zb: np.ndarray


@njit(cache=True, error_model="numpy")
def new_lanes(NCL, fb):
    """A task's :class:`Lanes` (``lf``, ``li`` zeroed; filled by ``refill``) around the drift array ``fb``
    (``(d, B)``: the task's own, or ``dopri5``'s first stage)."""
    d, B = fb.shape
    return Lanes(np.zeros((NLF, B)), np.zeros((NLI, B), dtype=np.int64), np.empty(B, dtype=np.uint64),
                 np.empty((NCL, B)), np.empty((d, B)), fb, np.empty((d, B)))  # fmt: skip


@njit(cache=True, error_model="numpy")
def new_noise(d, B, tree_depth, bridge_depth, sized):
    """A task's :class:`LaneNoise`: chains of ``min(tree_depth, CACHE_LEVELS) + 1`` levels and bridge stacks of
    ``bridge_depth`` pieces; with ``sized`` False (no noise) every per-lane array has one row."""
    R = B if sized else 1
    D = min(tree_depth, CACHE_LEVELS) + 1 if sized else 1
    chain = ChainState(np.empty(R, dtype=np.int64), np.empty((R, D), dtype=np.int64),
                       np.empty((R, D), dtype=np.uint8), np.empty((R, D), dtype=np.int64), np.empty((R, D, d)),
                       np.empty((R, D, d)), np.empty((R, D, d)), np.empty((R, D, d)), np.empty((R, D, d)),
                       np.empty((R, D, d)), np.empty((R, d)), np.empty((R, d)))  # fmt: skip
    return LaneNoise(chain, np.empty((R, d)), np.empty((R, d)), np.empty((R, d)), np.empty((R, d)),
                     np.empty((2 * d, R)), np.empty(2 * d), np.empty((4, d)), np.empty(R, dtype=np.int64),
                     np.empty(R, dtype=np.int64), np.empty(R, dtype=np.uint64), np.empty((R, bridge_depth)),
                     np.empty((R, bridge_depth, d)), np.empty((d, R)))  # fmt: skip
