"""The counter-based Gaussian generator of :mod:`sdekit.noise`, compiled with numba.

Same algorithm, same integers: the SplitMix64 hashing is done in ``uint64`` arithmetic, which wraps modulo
2**64 exactly as the numpy implementation does, so the uniforms ``u1, u2`` are bit-identical to numpy's.
The normals ``r cos(2 pi u2)``, ``r sin(2 pi u2)`` with ``r = sqrt(-2 log u1)`` then agree with numpy's to
round-off (about one unit in the last place).

``log``, ``sin`` and ``cos`` come from :mod:`sdekit.backends.numba.vecmath` (fdlibm ports that vectorise), so a
loop over samples that draws normals compiles to SIMD code.

Kernels use the generator in three parts, so that per-sample work is hoisted out of the time loop:

* :func:`sample_key` (once per sample) ``mix64(mix64(seed ^ SEED_SALT) + i * GAMMA_SAMPLE)``;
* :func:`stream_key` (once per sample and step) ``mix64(sample_key + k * GAMMA_STEP)``;
* :func:`normal_pair` (per pair of components) the two normals of pair ``p`` of a stream.

:func:`normals_numba` is the batch entry point with the signature of :func:`sdekit.noise.normals_numpy`.
"""

from __future__ import annotations

from types import FunctionType

import numpy as np
from numba import njit, prange

from ...noise import GAMMA, GAMMA_SAMPLE, GAMMA_STEP, MASK64, MIX_M1, MIX_M2, SEED_SALT, TWO_PI, TWO_POW_M53
from .vecmath import log_unit, sincos_theta

__all__ = [
    "normals_numba",
    "normals_into",
    "fill_normals",
    "fill_components",
    "sample_keys",
    "seed_key",
    "sample_key",
    "stream_key",
    "normal_pair",
    "mix64",
    "PARALLEL_MIN",
    "serial_and_parallel",
]

_GAMMA = np.uint64(GAMMA)
_GAMMA_SAMPLE = np.uint64(GAMMA_SAMPLE)
_GAMMA_STEP = np.uint64(GAMMA_STEP)
_M1 = np.uint64(MIX_M1)
_M2 = np.uint64(MIX_M2)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)


# -- hashing --------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always", error_model="numpy")
def mix64(z):
    """SplitMix64 finaliser on a ``uint64`` (wrapping arithmetic)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def seed_key(seed: int) -> np.uint64:
    """``mix64(seed ^ SEED_SALT)`` computed on the host (python ints, exact)."""
    z = (int(seed) ^ SEED_SALT) & MASK64
    z = ((z ^ (z >> 30)) * MIX_M1) & MASK64
    z = ((z ^ (z >> 27)) * MIX_M2) & MASK64
    return np.uint64(z ^ (z >> 31))


@njit(cache=True, inline="always", error_model="numpy")
def sample_key(skey, i):
    """Per-sample key ``mix64(skey + i * GAMMA_SAMPLE)``; ``skey`` from :func:`seed_key`, ``i`` a uint64."""
    return mix64(skey + i * _GAMMA_SAMPLE)


@njit(cache=True, inline="always", error_model="numpy")
def stream_key(key, step):
    """Stream key of one sample at one step: ``mix64(sample_key + step * GAMMA_STEP)`` (``step`` a uint64)."""
    return mix64(key + step * _GAMMA_STEP)


@njit(cache=True, error_model="numpy")
def _sample_keys(skey, ids):
    out = np.empty(ids.shape[0], dtype=np.uint64)
    for r in range(ids.shape[0]):
        out[r] = sample_key(skey, np.uint64(ids[r]))
    return out


def sample_keys(seed: int, sample_ids) -> np.ndarray:
    """The per-sample keys (uint64, shape ``(n,)``) of ``sample_ids`` under ``seed``."""
    ids = np.require(sample_ids, dtype=np.int64, requirements=["C", "W"])  # one numba type
    return _sample_keys(seed_key(seed), ids)


@njit(cache=True, inline="always", error_model="numpy")
def normal_pair(key, p):
    """Components ``2p`` and ``2p + 1`` of the stream ``key`` (a uint64 stream key; ``p`` a uint64)."""
    c1 = (np.uint64(2) * p + np.uint64(1)) * _GAMMA
    w1 = mix64(key + c1)
    w2 = mix64(key + c1 + _GAMMA)
    # (w >> 11) < 2**53 fits int64: the signed conversion is the same number and vectorises
    u1 = (np.float64(np.int64(w1 >> _S11)) + 0.5) * TWO_POW_M53
    u2 = (np.float64(np.int64(w2 >> _S11)) + 0.5) * TWO_POW_M53
    r = np.sqrt(-2.0 * log_unit(u1))
    c, s = sincos_theta(TWO_PI * u2)
    return r * c, r * s


@njit(cache=True, inline="always", error_model="numpy")
def fill_components(skeys, L, c0, out):
    """``out[j, l]`` = component ``c0 + j`` of lane ``l``'s stream, for ``j < out.shape[0]`` and ``l < L``.

    ``skeys`` holds the lanes' stream keys (:func:`stream_key`); ``out`` is ``(m, >= L)``, components first, so
    that the loop over lanes is contiguous and compiles to SIMD code. Components come in Box--Muller pairs
    ``(2p, 2p + 1)``; a range that starts or ends inside a pair takes one of its two numbers.
    """
    m = out.shape[0]
    for p in range(c0 // 2, (c0 + m - 1) // 2 + 1):
        pp = np.uint64(p)
        j0 = 2 * p - c0
        # 1-D row views: with them LLVM sees a unit-stride loop and vectorises it
        if j0 >= 0 and j0 + 1 < m:
            o0, o1 = out[j0], out[j0 + 1]
            for l in range(L):
                a, b = normal_pair(skeys[l], pp)
                o0[l] = a
                o1[l] = b
        elif j0 >= 0:  # the range ends after the first number of the pair
            o0 = out[j0]
            for l in range(L):
                o0[l] = normal_pair(skeys[l], pp)[0]
        else:  # the range starts with the second number of the pair
            o1 = out[j0 + 1]
            for l in range(L):
                o1[l] = normal_pair(skeys[l], pp)[1]


@njit(cache=True, error_model="numpy")
def fill_normals(keys, step, skeys, out):
    """``out[j, l]`` = component ``j`` of lane ``l``'s stream at ``step``, for ``l < L = keys.shape[0]``.

    ``keys`` (L,) sample keys; ``skeys`` a uint64 work array of at least ``L`` entries (no allocation here);
    ``out`` of shape ``(m, >= L)`` (see :func:`fill_components`).
    """
    L = keys.shape[0]
    k = np.uint64(step)
    for l in range(L):
        skeys[l] = stream_key(keys[l], k)
    fill_components(skeys, L, 0, out)


#: Below this many numbers per call the loops run on one thread: a parallel launch costs a thread wake-up,
#: which on a busy machine can take milliseconds, far more than the work.
PARALLEL_MIN = 1 << 20


def serial_and_parallel(body, **options):
    """Two compiled versions of ``body`` (which loops with ``prange``): one thread, and parallel.

    They get distinct names so that their on-disk caches do not collide.
    """
    serial = FunctionType(body.__code__, body.__globals__, body.__name__ + "_serial")
    serial.__qualname__ = body.__qualname__ + "_serial"
    return (
        njit(cache=True, error_model="numpy", **options)(serial),
        njit(cache=True, parallel=True, error_model="numpy", **options)(body),
    )


def _normals_body(keys, step, size, out):
    n = keys.shape[0]
    block = 256
    nb = (n + block - 1) // block
    for b in prange(nb):
        i0 = b * block
        i1 = min(n, i0 + block)
        buf = np.empty((size, i1 - i0))
        skeys = np.empty(i1 - i0, dtype=np.uint64)
        fill_normals(keys[i0:i1], step, skeys, buf)
        for r in range(i1 - i0):
            for j in range(size):
                out[i0 + r, j] = buf[j, r]


_normals_serial, _normals_parallel = serial_and_parallel(_normals_body)


def normals_into(keys, step, size, out):
    """Fill ``out`` (n, size) with the normals of the streams ``keys`` (n,) at ``step`` (a uint64)."""
    fn = _normals_parallel if out.size >= PARALLEL_MIN else _normals_serial
    fn(keys, step, size, out)


def normals_numba(seed: int, sample_ids, step: int, size: int) -> np.ndarray:
    """Standard normals of shape ``(n, size)``; same numbers as :func:`sdekit.noise.normals_numpy`."""
    keys = sample_keys(seed, sample_ids)
    out = np.empty((keys.shape[0], int(size)), dtype=np.float64)
    if size > 0 and keys.shape[0] > 0:
        normals_into(keys, np.uint64(int(step) & MASK64), int(size), out)
    return out
