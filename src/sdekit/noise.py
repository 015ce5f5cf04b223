"""Counter-based Gaussian noise: the normal for ``(seed, sample i, step k, component j)`` is a pure function.

Algorithm (one definition, implemented for numpy here and for numba and torch in their backends):

1. A stream key per ``(seed, i, k)``::

       key = mix64(mix64(mix64(seed ^ SEED_SALT) + i * GAMMA_SAMPLE) + k * GAMMA_STEP)

2. Components come in pairs ``p = j // 2``. The pair's two 64-bit words are SplitMix64 outputs of the
   stream, ``w1 = mix64(key + (2p + 1) * GAMMA)`` and ``w2 = mix64(key + (2p + 2) * GAMMA)``.
3. Uniforms on the open interval (0, 1): ``u = ((w >> 11) + 0.5) * 2**-53``.
4. Box-Muller: ``r = sqrt(-2 log u1)``; component ``2p`` is ``r cos(2 pi u2)``, component ``2p + 1`` is
   ``r sin(2 pi u2)``.

``mix64`` is the SplitMix64 finaliser (Steele, Lea & Flood 2014; constants of Stafford's "Mix13"), all
arithmetic modulo 2**64. Because nothing depends on the batch, sample ``i`` draws the same numbers in a
batch of 10 or of 10**6, in any chunking and with any number of threads, and numpy, numba and torch agree
to round-off (they differ only in the last bits of ``log``/``cos``/``sin``).

Steps: solvers use ``k = 0, 1, ...`` for the k-th step of a grid; a solver that needs ``m`` normals per
component and step reads components ``j in [0, m * size)``. The prior uses the reserved step ``PRIOR_STEP``
(``2^62``); Brownian-tree nodes use ``TREE_STEP + heap index`` (``TREE_STEP = 2^61``) and the bridge noise's
draws ``BRIDGE_STEP + c`` (``BRIDGE_STEP = 2^61 + 2^60``, :mod:`sdekit.tree_law`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["normals_numpy", "PRIOR_STEP", "check_seed", "check_sample_ids", "mix64_numpy"]

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # SplitMix64 increment (golden ratio)
GAMMA_SAMPLE = 0xD1B54A32D192ED03
GAMMA_STEP = 0xAEF17502108EF2D9
SEED_SALT = 0x5DEECE66D5A5A5A5
MIX_M1 = 0xBF58476D1CE4E5B9
MIX_M2 = 0x94D049BB133111EB
PRIOR_STEP = 1 << 62  # reserved step index for prior samples (fits int64 for the torch port)
TWO_PI = 6.283185307179586
TWO_POW_M53 = 1.0 / 9007199254740992.0


def check_seed(seed) -> int:
    """Validate a seed: a non-negative integer below 2**64."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if seed < 0 or seed > MASK64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed!r}")
    return seed


def check_sample_ids(sample_ids, n: int) -> np.ndarray:
    """Validate per-sample ids: ``n`` distinct non-negative integers (any integer dtype), as an ``int64`` array.

    Two samples with the same id would draw the same prior and the same noise, i.e. be the same sample twice, so
    repeated ids are refused (``ValueError`` naming the first repeated id)."""
    ids = np.asarray(sample_ids)
    if ids.shape != (n,) or ids.dtype.kind not in "iu" or (ids.size and ids.min() < 0):
        raise ValueError(f"sample_ids must be {n} non-negative integers (one id per sample), got {sample_ids!r}")
    ids = ids.astype(np.int64, copy=False)
    unique, counts = np.unique(ids, return_counts=True)
    if unique.size != n:
        k = int(np.argmax(counts > 1))
        raise ValueError(
            f"sample_ids must be distinct (a repeated id draws the same prior and noise, i.e. the same sample "
            f"twice): id {int(unique[k])} appears {int(counts[k])} times among the {n} ids"
        )
    return ids


def mix64_numpy(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX_M2)
    return z ^ (z >> np.uint64(31))


def _as_step_counters(step) -> np.ndarray:
    """``step`` (an int, or ``(n,)`` ints, one per row) as uint64 counters modulo 2**64."""
    if np.ndim(step) == 0:
        return np.uint64(int(step) & MASK64)
    return np.asarray(step).astype(np.uint64)


def stream_keys_numpy(seed: int, sample_ids: np.ndarray, step) -> np.ndarray:
    """The uint64 stream key of each sample for one step (or one step per sample), shape ``(n,)``."""
    with np.errstate(over="ignore"):
        s = mix64_numpy(np.array([seed ^ SEED_SALT], dtype=np.uint64))
        ids = np.asarray(sample_ids).astype(np.uint64)
        k = mix64_numpy(s + ids * np.uint64(GAMMA_SAMPLE))
        return mix64_numpy(k + _as_step_counters(step) * np.uint64(GAMMA_STEP))


def normals_numpy(seed: int, sample_ids, step, size: int) -> np.ndarray:
    """Standard normals of shape ``(n, size)`` for samples ``sample_ids`` (shape ``(n,)``) at ``step``.

    Row ``r`` depends only on ``(seed, sample_ids[r], step)``; column ``j`` of that row is component ``j``.
    ``step`` is one integer for all rows or an ``(n,)`` integer array, one counter step per row.
    """
    keys = stream_keys_numpy(seed, sample_ids, step)[:, None]
    n_pairs = (size + 1) // 2
    with np.errstate(over="ignore"):
        c = np.arange(1, 2 * n_pairs + 1, dtype=np.uint64) * np.uint64(GAMMA)
        w1 = mix64_numpy(keys + c[0::2])
        w2 = mix64_numpy(keys + c[1::2])
    u1 = ((w1 >> np.uint64(11)).astype(np.float64) + 0.5) * TWO_POW_M53
    u2 = ((w2 >> np.uint64(11)).astype(np.float64) + 0.5) * TWO_POW_M53
    r = np.sqrt(-2.0 * np.log(u1))
    theta = TWO_PI * u2
    out = np.empty((keys.shape[0], 2 * n_pairs), dtype=np.float64)
    out[:, 0::2] = r * np.cos(theta)
    out[:, 1::2] = r * np.sin(theta)
    return out[:, :size]
