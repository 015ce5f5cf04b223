"""Vectorisable elementary functions for the numba kernels: ``log``, ``sin``/``cos`` and ``exp``.

``math.log``, ``math.exp`` and friends are opaque library calls in numba, and LLVM cannot vectorise a loop
that contains them (numba ships no vector math library here). The functions below are branch-free ports of
fdlibm's ``e_log.c``, ``e_exp.c``, ``k_sin.c`` and ``k_cos.c`` (Sun Microsystems 1993, the algorithms behind
the C libraries' ``log``/``exp``/``sin``/``cos``), each within one ulp, written with selects instead of branches
so that loops over samples compile to SIMD code. Each is specialised to the arguments sdekit gives it:

* :func:`log_unit` -- ``log(x)`` for normal ``x`` in ``(0, 1]`` (uniforms of the noise generator);
* :func:`sincos_theta` -- ``cos`` and ``sin`` of ``theta`` in ``[0, 2 pi + 1)`` (a two-part Cody--Waite
  reduction by ``pi/2`` keeps 66 bits of ``pi/2``, plenty there);
* :func:`exp_nonpos` -- ``exp(x)`` for ``x <= 0`` (mixture responsibilities), 0 below ``-708``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["log_unit", "log_pos", "sincos_theta", "exp_nonpos", "exp_vec", "expm1_nonpos", "f64_bits", "bits_f64"]


# -- bit casts (LLVM bitcast; they vectorise) ---------------------------------------------------------------
@intrinsic
def f64_bits(typingctx, x):
    """The bits of a float64 as an int64 (``f64_bits(x)`` in compiled code; a bitcast, no conversion)."""
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def bits_f64(typingctx, i):
    """The float64 whose bits are the int64 ``i`` (the inverse of :func:`f64_bits`)."""
    if i != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


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
    ix = f64_bits(x)
    hx = np.int64(ix >> 32)
    k = (hx >> 20) - 1023
    hx = hx & 0x000FFFFF
    i = (hx + 0x95F64) & 0x100000
    # normalise x into [sqrt(2)/2, sqrt(2)): set the exponent field to 0x3ff or 0x3fe
    xm = bits_f64(((hx | (i ^ 0x3FF00000)) << 32) | (ix & 0xFFFFFFFF))
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


# -- fdlibm exp on (-inf, 0], branch-free ---------------------------------------------------------------------
_INVLN2 = 1.44269504088896338700e00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08


@njit(cache=True, inline="always", error_model="numpy")
def exp_nonpos(x):
    """``exp(x)`` for ``x <= 0`` (fdlibm ``__ieee754_exp``, error < 1 ulp); 0 for ``x < -708`` and for NaN."""
    ok = x >= -708.0
    xc = x if ok else 0.0
    k = np.int64(xc * _INVLN2 - 0.5)  # round to nearest (xc <= 0, conversion truncates towards zero)
    fk = np.float64(k)
    hi = xc - fk * _LN2_HI
    lo = fk * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    scale = bits_f64((k + 1023) << 52)  # 2**k, normal for k >= -1022
    return y * scale if ok else 0.0


@njit(cache=True, inline="always", error_model="numpy")
def exp_vec(x):
    """``exp(x)`` for ``|x| <= 708`` (fdlibm ``__ieee754_exp``, branch-free, error < 1 ulp); the argument is clipped
    to that range (the fused adaptive kernels' step-size factors and VE noise levels stay far inside it)."""
    xc = min(max(x, -708.0), 708.0)
    k = np.int64(xc * _INVLN2 + (0.5 if xc >= 0.0 else -0.5))  # round to nearest
    fk = np.float64(k)
    hi = xc - fk * _LN2_HI
    lo = fk * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    return y * bits_f64((k + 1023) << 52)


@njit(cache=True, inline="always", error_model="numpy")
def log_pos(x):
    """``log(x)`` for a positive normal float64 (the algorithm of :func:`log_unit`, which is not limited to
    ``(0, 1]``)."""
    return log_unit(x)


@njit(cache=True, inline="always", error_model="numpy")
def expm1_nonpos(x):
    """``exp(x) - 1`` for ``x <= 0`` without cancellation (Kahan's ``(u - 1) x / log(u)``, ``u = exp(x)``: a few
    ulp), branch-free."""
    u = exp_nonpos(x)
    um1 = u - 1.0
    small = u == 1.0
    tiny = um1 == -1.0
    den = log_unit(u if not (small or tiny) else 0.5)
    v = um1 * x / den
    return x if small else (-1.0 if tiny else v)
