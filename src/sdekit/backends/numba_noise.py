"""The counter-based Gaussian generator of :mod:`sdekit.noise`, compiled with numba.

Same algorithm, same integers: the SplitMix64 hashing is done in ``uint64`` arithmetic, which wraps modulo
2**64 exactly as the numpy implementation does, so the uniforms ``u1, u2`` are bit-identical to numpy's.
The normals ``r cos(2 pi u2)``, ``r sin(2 pi u2)`` with ``r = sqrt(-2 log u1)`` then agree with numpy's to
round-off (about one unit in the last place).

Why not call ``math.log``/``math.cos`` here: those are opaque library calls, and LLVM cannot vectorise a
loop that contains them (numba ships no vector math library on this platform). The transcendental
functions below are branch-free ports of fdlibm's ``e_log.c``, ``k_sin.c`` and ``k_cos.c`` (Sun
Microsystems 1993; the algorithms behind glibc's and musl's ``log``/``sin``/``cos``), each within one
ulp, written with select instead of branches so that a loop over samples compiles to SIMD code. They
are specialised to the arguments the generator produces: ``log`` of a uniform in ``(0, 1]`` and
``sin``/``cos`` of ``2 pi u`` for ``u`` in ``(0, 1)`` (a two-part Cody-Waite reduction by ``pi/2`` is exact
enough there).

Kernels use the generator in two parts so that per-sample work is hoisted out of the time loop:

* :func:`sample_key` (once per sample) ``mix64(mix64(seed ^ SEED_SALT) + i * GAMMA_SAMPLE)``;
* :func:`stream_key` (once per sample and step) ``mix64(sample_key + k * GAMMA_STEP)``;
* :func:`normal_pair` (per pair of components) the two normals of pair ``p`` of a stream.

:func:`normals_numba` is the batch entry point with the signature of :func:`sdekit.noise.normals_numpy`.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from ..noise import GAMMA, GAMMA_SAMPLE, GAMMA_STEP, MASK64, MIX_M1, MIX_M2, SEED_SALT, TWO_PI, TWO_POW_M53

__all__ = ["normals_numba", "fill_normals", "sample_keys", "seed_key", "sample_key", "stream_key", "normal_pair"]

_GAMMA = np.uint64(GAMMA)
_GAMMA_SAMPLE = np.uint64(GAMMA_SAMPLE)
_GAMMA_STEP = np.uint64(GAMMA_STEP)
_M1 = np.uint64(MIX_M1)
_M2 = np.uint64(MIX_M2)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)


# -- bit casts (LLVM bitcast; they vectorise) ---------------------------------------------------------------
@intrinsic
def _f64_bits(typingctx, x):
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, i):
    if i != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


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
    ids = np.ascontiguousarray(sample_ids, dtype=np.int64)
    return _sample_keys(seed_key(seed), ids)


# -- fdlibm log on (0, 1], branch-free ----------------------------------------------------------------------
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01


@njit(cache=True, inline="always", error_model="numpy")
def log_unit(x):
    """``log(x)`` for a normal float64 ``x`` in ``(0, 1]`` (fdlibm ``__ieee754_log``, error < 1 ulp)."""
    ix = _f64_bits(x)
    hx = np.int64(ix >> 32)
    k = (hx >> 20) - 1023
    hx = hx & 0x000FFFFF
    i = (hx + 0x95F64) & 0x100000
    # normalise x into [sqrt(2)/2, sqrt(2)): set the exponent field to 0x3ff or 0x3fe
    xm = _bits_f64(((hx | (i ^ 0x3FF00000)) << 32) | (ix & 0xFFFFFFFF))
    k += i >> 20
    f = xm - 1.0
    s = f / (2.0 + f)
    dk = np.float64(k)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    R = t2 + t1
    hfsq = 0.5 * f * f
    big = ((hx - 0x6147A) | (0x6B851 - hx)) > 0
    ra = dk * _LN2_HI - ((hfsq - (s * (hfsq + R) + dk * _LN2_LO)) - f)
    rb = dk * _LN2_HI - ((s * (f - R) - dk * _LN2_LO) - f)
    return ra if big else rb


# -- fdlibm sin/cos kernels on [-pi/4, pi/4] with a tail y ------------------------------------------------
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
_INVPIO2 = 6.36619772367581382433e-01
_PIO2_1 = 1.57079632673412561417e00  # first 33 bits of pi/2
_PIO2_1T = 6.07710050650619224932e-11  # pi/2 - _PIO2_1


@njit(cache=True, inline="always", error_model="numpy")
def sincos_theta(theta):
    """``(cos(theta), sin(theta))`` for ``0 <= theta < 2 pi + 1`` (fdlibm reduction and kernels)."""
    n = np.int64(theta * _INVPIO2 + 0.5)
    fn = np.float64(n)
    r = theta - fn * _PIO2_1  # exact: fn has 3 bits, _PIO2_1 33 bits
    wt = fn * _PIO2_1T
    x = r - wt
    y = (r - x) - wt
    z = x * x
    v = z * x
    rs = _S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))
    s = x - ((z * (0.5 * y - v * rs) - y) - v * _S1)
    w2 = z * z
    rc = z * (_C1 + z * (_C2 + z * _C3)) + w2 * w2 * (_C4 + z * (_C5 + z * _C6))
    hz = 0.5 * z
    w = 1.0 - hz
    c = w + (((1.0 - w) - hz) + (z * rc - x * y))
    # quadrant q = n mod 4: cos = (c, -s, -c, s)[q], sin = (s, c, -s, -c)[q]
    odd = (n & 1) == 1
    sgn_c = 1.0 - 2.0 * np.float64(((n + 1) >> 1) & 1)
    sgn_s = 1.0 - 2.0 * np.float64((n >> 1) & 1)
    return sgn_c * (s if odd else c), sgn_s * (c if odd else s)


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


@njit(cache=True, error_model="numpy")
def fill_normals(keys, step, skeys, out):
    """``out[j, l]`` = component ``j`` of lane ``l``'s stream at ``step``, for ``l < L = keys.shape[0]``.

    ``keys`` (L,) sample keys; ``skeys`` a uint64 work array of at least ``L`` entries (no allocation here);
    ``out`` of shape ``(m, >= L)``: components first, so that the loop over lanes is contiguous and
    compiles to SIMD code.
    """
    m = out.shape[0]
    L = keys.shape[0]
    k = np.uint64(step)
    for l in range(L):
        skeys[l] = stream_key(keys[l], k)
    for p in range((m + 1) // 2):
        pp = np.uint64(p)
        # 1-D row views: with them LLVM sees a unit-stride loop and vectorises it
        o0 = out[2 * p]
        if 2 * p + 1 < m:
            o1 = out[2 * p + 1]
            for l in range(L):
                a, b = normal_pair(skeys[l], pp)
                o0[l] = a
                o1[l] = b
        else:
            for l in range(L):
                a, b = normal_pair(skeys[l], pp)
                o0[l] = a


@njit(cache=True, parallel=True, error_model="numpy")
def _normals(keys, step, size, out):
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


def normals_numba(seed: int, sample_ids, step: int, size: int) -> np.ndarray:
    """Standard normals of shape ``(n, size)``; same numbers as :func:`sdekit.noise.normals_numpy`."""
    keys = sample_keys(seed, sample_ids)
    out = np.empty((keys.shape[0], int(size)), dtype=np.float64)
    if size > 0 and keys.shape[0] > 0:
        _normals(keys, np.uint64(int(step) & MASK64), int(size), out)
    return out
