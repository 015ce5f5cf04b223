"""numba backend: fused whole-trajectory kernels, parallel over samples.

Fused path
----------
When the process is the reverse SDE or the probability-flow ODE of a :class:`~sdekit.sdes.LinearSDE`, the
score has a compiled form (an analytic density's exact score, or a :class:`RowScore`), ``x0`` is a float64
numpy array and the solver has a registered kernel, the whole time loop runs compiled. Samples are cut into
blocks of :func:`block_size` samples (512 for small events); ``prange`` hands blocks to threads and each block
runs every step of the grid before the next block starts, so its state stays in cache and nothing is
allocated per step. Inside a block the state is stored lanes last, ``(d, B)``, so that the noise, the score
and the update are loops over samples with unit stride that compile to SIMD code. The counter-based normals
come from :func:`sdekit.backends.numba_noise.fill_normals`, so sample ``i`` sees the same numbers as on the
numpy backend, whatever the block, the batch or the number of threads.

Kernels need no SDE code: the drift of a linear SDE's reverse process at a stage time ``s`` is
``a(s) x - c g(s)^2 score(x, s)`` (``c = 1`` for the reverse SDE, ``1/2`` for the probability-flow ODE) and
its diffusion is ``g(s)``. The host evaluates, once per solve, the stage times ``st`` (steps, S) and a table
``coef`` (steps, S, 5 + m) whose columns are ``h, a(s), c g(s)^2, g(s), sqrt(|h|)`` followed by the ``m``
per-stage constants of the score (for analytic densities ``alpha, sigma^2`` and log-determinants, see
:mod:`sdekit.backends.numba_scores`).

Kernel registry
---------------
:data:`KERNELS` maps ``(solver class, process kind)`` (kind ``"sde"`` or ``"ode"``) to a :class:`Kernel`: the
undecorated kernel body, a function giving the stage times of every step, a function giving the solver's
coefficients as a tuple of arrays, and the number of normal fields per step. The body is a python function
that calls the global name ``score_block`` (a body written in another module imports it,
``from sdekit.backends.numba_ import score_block``, so that :class:`RowScore` can rebind it). A solver adds
its kernel with::

    register_kernel(MySolver, "sde", Kernel("my_solver", body, stage_times, extra, n_noise=1))

Kernels registered: Euler--Maruyama, stochastic Heun and explicit Runge--Kutta (here);
:mod:`~sdekit.backends.numba_multistep` (``dpmpp_2m``, ``dpmpp_3m``, ``dpmpp_3m_pc``, ``dpmpp_pc``,
``dpmpp_2m_sde``, ``dpmpp_3m_sde``, ``dpmpp_sde_pc``, ``ancestral``, ``reverse_diffusion``: one affine
multistep kernel driven by per-step coefficient tables), :mod:`~sdekit.backends.numba_edm` (``edm``),
:mod:`~sdekit.backends.numba_sra` (``sra1`` and any SRA tableau), :mod:`~sdekit.backends.numba_pc` (``pc``
with the ``"sigma"`` step rule and a reverse-diffusion or ancestral predictor) and
:mod:`~sdekit.backends.numba_annealed` (``annealed_langevin``).

Look-up walks the solver's MRO; an entry found on a base class is used only if the solver does not
override that class's ``step`` (a subclass with its own update never runs its parent's kernel). A body has
the signature ``body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra,
block)`` and advances the rows of ``x`` (n, d) in place over the steps ``k0 <= k < k1``; read
:func:`_em_body` for the pattern (``_start_block``, ``fill_normals``, ``score_block``, ``_end_step``,
``_end_block``).

Everything else runs a per-step loop with the noise drawn by the numba generator (the same numbers). With a
plain python score, Euler--Maruyama on a linear SDE's reverse process calls the score once per step and does
noise and update in one parallel numba pass (``_em_update_body``); every other case (solvers without a kernel,
other processes, non-float64 states) runs the numpy backend's loop with numba noise. So ``backend="numba"``
accepts every solver and gives the numpy backend's samples to round-off.

User scores compiled with numba
-------------------------------
Wrap an ``numba.njit`` function ``score_row(x_row, t, out_row)`` that writes the score of one sample
``x_row`` (a float64 ``(d,)`` array, the flattened event) at time ``t`` (a float) into ``out_row``::

    import numba
    from sdekit.backends.numba_ import RowScore

    @numba.njit
    def my_score(x, t, out):
        for j in range(x.shape[0]):
            out[j] = -x[j]

    score = RowScore(my_score, event_shape=(2,))
    sol = sdekit.sample(sdekit.VPSDE(), score, n=100_000, backend="numba")   # "auto" picks numba too

The kernels are specialised to the function and inline it; that compilation happens once per process and
solver (it is not cached on disk, since the cache could not tell two user functions apart). A
:class:`RowScore` is also an ordinary score ``score(x, t)`` for the other backends.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FunctionType

import numpy as np
from numba import njit, prange
from numba.core.registry import CPUDispatcher

from .. import _xp
from ..errors import NonFiniteError
from ..progress import progress_bar
from ..sdes import LinearSDE, ProbabilityFlowODE, ReverseSDE
from ..solvers.runge_kutta import Heun, RungeKutta
from ..solvers.stochastic import EulerMaruyama
from . import numpy_
from .job import CheckedScore
from .numba_math import _f64_bits
from .numba_noise import PARALLEL_MIN, _normals, fill_normals, sample_key, sample_keys, seed_key, serial_and_parallel
from .numba_scores import analytic_block_score, analytic_coef, analytic_params, analytic_work_rows, is_analytic_score

__all__ = ["run", "RowScore", "Kernel", "KERNELS", "register_kernel", "find_kernel", "BLOCK"]

#: Most samples per block (small events); a block's state, noise and scratch stay in cache for the whole grid.
BLOCK = 512
_EXP_MASK = 0x7FF0000000000000  # exponent field of a float64
#: Columns of ``coef`` before the score's own constants: h, a(s), c g(s)^2, g(s), sqrt(|h|).
NC = 5

# The name the kernel bodies call. The module-level compiled kernels see the analytic block score and are
# cached on disk; kernels for a user's RowScore are built from the same bodies with this name rebound.
score_block = analytic_block_score


def block_size(d: int) -> int:
    """Samples per block for events of ``d`` components: about 128 KiB of state, between 8 and :data:`BLOCK`.

    Large blocks amortise the per-block-step overhead (measured: d = 2 runs 15% faster with 512 samples than
    with 64; d = 64 is flat from 64 to 256). The block does not change the numbers (noise is per sample).
    """
    return int(max(8, min(BLOCK, 16384 // max(d, 1))))


# -- block helpers (inlined into the kernels) -----------------------------------------------------------------
@njit(cache=True, inline="always", error_model="numpy")
def _start_block(x, ids, skey, i0, L, xb, kb):
    """Load rows ``i0 .. i0 + L`` of ``x`` into ``xb`` (d, B), lanes last, and their noise keys into ``kb``."""
    d = x.shape[1]
    for l in range(L):
        kb[l] = sample_key(skey, np.uint64(ids[i0 + l]))
        for j in range(d):
            xb[j, l] = x[i0 + l, j]


@njit(cache=True, inline="always", error_model="numpy")
def _open_block(x, ids, skey, i0, L, block, wshape):
    """The buffers every fused kernel needs for one block, with rows ``i0 .. i0 + L`` loaded.

    Returns ``(kb, sk, xb, s, fin, work)``: noise keys of the block's samples and scratch for their step keys,
    the state ``(d, B)`` lanes last, the score ``(d, B)``, the finiteness scratch and the score's work array.
    """
    d = x.shape[1]
    kb = np.empty(block, dtype=np.uint64)
    sk = np.empty(block, dtype=np.uint64)
    xb = np.empty((d, block))
    s = np.empty((d, block))
    fin = np.empty(block)
    work = np.empty((wshape[0], wshape[1]))
    _start_block(x, ids, skey, i0, L, xb, kb)
    return kb, sk, xb, s, fin, work


@njit(cache=True, inline="always", error_model="numpy")
def _end_step(xb, L, i0, blk, k, check, bad, fin, slot, saved):
    """After step ``k``: note the block's first non-finite step in ``bad[blk]``; copy the block to its save slot."""
    d = xb.shape[0]
    if check and bad[blk] < 0:
        # an integer OR over the exponent bits (all ones only for inf and NaN) compiles to SIMD code
        acc = 0
        for j in range(d):
            xj = xb[j]
            for l in range(L):
                acc |= (_f64_bits(xj[l]) & _EXP_MASK) == _EXP_MASK
        if acc != 0:
            bad[blk] = k
    if slot >= 0:
        for l in range(L):
            for j in range(d):
                saved[slot, i0 + l, j] = xb[j, l]


@njit(cache=True, inline="always", error_model="numpy")
def _end_block(xb, L, x, i0):
    d = x.shape[1]
    for l in range(L):
        for j in range(d):
            x[i0 + l, j] = xb[j, l]


# -- kernel bodies (undecorated; compiled below) -------------------------------------------------------------
def _em_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """Euler--Maruyama: ``x' = x + h (a x - c g^2 s) + g (sqrt|h| z)`` (the numpy solver's order of operations)."""
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        # unpacked once per block: unpacking per call would cost atomic reference counting
        p0, p1, p2, p3 = sparams
        z = np.empty((d, block))
        kb, sk, xb, s, fin, work = _open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            fill_normals(kb[:L], k, sk, z)
            c = coef[k, 0]
            h, a, g2c, g, sq = c[0], c[1], c[2], c[3], c[4]
            score_block(xb, L, st[k, 0], c[NC:], p0, p1, p2, p3, work, s)
            for j in range(d):
                xj, sj, zj = xb[j], s[j], z[j]
                for l in range(L):
                    xj[l] = xj[l] + h * (a * xj[l] - g2c * sj[l]) + g * (sq * zj[l])
            _end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        _end_block(xb, L, x, i0)


def _stochastic_heun_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """Stochastic Heun for additive noise (see :class:`sdekit.solvers.Heun`), stages at ``t`` and ``t_next``."""
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        z = np.empty((d, block))
        f0 = np.empty((d, block))
        xp = np.empty((d, block))
        kb, sk, xb, s, fin, work = _open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            fill_normals(kb[:L], k, sk, z)
            c0 = coef[k, 0]
            c1 = coef[k, 1]
            h, sq, g0, g1 = c0[0], c0[4], c0[3], c1[3]
            score_block(xb, L, st[k, 0], c0[NC:], p0, p1, p2, p3, work, s)
            for j in range(d):
                xj, sj, zj, fj, pj = xb[j], s[j], z[j], f0[j], xp[j]
                for l in range(L):
                    dw = sq * zj[l]
                    zj[l] = dw
                    fj[l] = c0[1] * xj[l] - c0[2] * sj[l]
                    pj[l] = xj[l] + h * fj[l] + g0 * dw
            score_block(xp, L, st[k, 1], c1[NC:], p0, p1, p2, p3, work, s)
            for j in range(d):
                xj, sj, zj, fj, pj = xb[j], s[j], z[j], f0[j], xp[j]
                for l in range(L):
                    f1 = c1[1] * pj[l] - c1[2] * sj[l]
                    xj[l] = xj[l] + (0.5 * h) * (fj[l] + f1) + (0.5 * (g0 + g1)) * zj[l]
            _end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        _end_block(xb, L, x, i0)


def _rk_body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, check, extra, block):
    """Explicit Runge--Kutta for the probability-flow ODE; ``extra = (A (S, S), b (S,))`` of the tableau."""
    A, bw = extra
    S = bw.shape[0]
    n, d = x.shape
    nb = (n + block - 1) // block
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        p0, p1, p2, p3 = sparams
        ks = np.empty((S, d, block))
        xi = np.empty((d, block))
        kb, sk, xb, s, fin, work = _open_block(x, ids, skey, i0, L, block, wshape)
        for k in range(k0, k1):
            h = coef[k, 0, 0]
            for i in range(S):
                for j in range(d):
                    xij, xj = xi[j], xb[j]
                    for l in range(L):
                        xij[l] = xj[l]
                    for q in range(i):
                        if A[i, q] != 0.0:
                            f = h * A[i, q]
                            kq = ks[q, j]
                            for l in range(L):
                                xij[l] = xij[l] + f * kq[l]
                c = coef[k, i]
                score_block(xi, L, st[k, i], c[NC:], p0, p1, p2, p3, work, s)
                for j in range(d):
                    kij, xij, sj = ks[i, j], xi[j], s[j]
                    for l in range(L):
                        kij[l] = c[1] * xij[l] - c[2] * sj[l]
            for j in range(d):
                xj = xb[j]
                for l in range(L):
                    incr = bw[0] * ks[0, j, l]
                    for i in range(1, S):
                        incr = incr + bw[i] * ks[i, j, l]
                    xj[l] = xj[l] + h * incr
            _end_step(xb, L, i0, blk, k, check, bad, fin, save_slot[k + 1], saved)
        _end_block(xb, L, x, i0)


# -- registry -------------------------------------------------------------------------------------------------
@dataclass
class Kernel:
    """A fused kernel: ``body`` (see the module docstring) and what the host prepares for it.

    ``stage_times(solver, grid) -> (steps, S)`` times at which the drift is evaluated in each step;
    ``extra(solver) -> tuple of arrays`` the solver's coefficients; ``n_noise`` normal fields per step;
    ``grid_extra(solver, process, grid) -> tuple of arrays``, when given, replaces ``extra`` (per-step
    coefficients that depend on the grid and the SDE); ``accepts(solver)`` False sends a configuration the
    kernel does not cover to the per-step path; ``process_stage_times(solver, process, grid)``, when
    given, replaces ``stage_times`` (stage times that depend on the SDE); ``chunkable=False`` for kernels that
    keep a history across steps inside the call (they run the whole grid in one call, even with a progress bar).
    """

    name: str
    body: Callable
    stage_times: Callable
    extra: Callable = lambda solver: ()  # noqa: E731
    n_noise: int = 0
    grid_extra: Callable | None = None
    process_stage_times: Callable | None = None
    accepts: Callable = lambda solver: True  # noqa: E731
    chunkable: bool = True
    _compiled: object = None

    def analytic(self):
        """The kernel compiled against the analytic row score (cached on disk)."""
        if self._compiled is None:
            self._compiled = njit(cache=True, parallel=True, error_model="numpy")(self.body)
        return self._compiled


KERNELS: dict[tuple[type, str], Kernel] = {}


def register_kernel(solver_cls: type, kind: str, kernel: Kernel) -> None:
    """Register ``kernel`` for solver class ``solver_cls`` on processes of ``kind`` (``"sde"`` or ``"ode"``)."""
    if kind not in ("sde", "ode"):
        raise ValueError(f"kind must be one of ['sde', 'ode'], got {kind!r}")
    if not isinstance(kernel, Kernel):
        raise TypeError(f"kernel must be a Kernel, got {type(kernel).__name__}")
    KERNELS[(solver_cls, kind)] = kernel


def find_kernel(solver, kind: str) -> Kernel | None:
    """The registered kernel for ``solver`` on a ``kind`` process, or None (see the module docstring)."""
    for cls in type(solver).__mro__:
        kernel = KERNELS.get((cls, kind))
        if kernel is not None:
            if cls is type(solver) or getattr(type(solver), "step", None) is getattr(cls, "step", None):
                return kernel
            return None
    return None


def _left_times(solver, grid):
    return grid[:-1, None].copy()


def _heun_times(solver, grid):
    return np.stack([grid[:-1], grid[1:]], axis=1)


def _rk_times(solver, grid):
    h = grid[1:] - grid[:-1]
    return grid[:-1, None] + solver.tableau.c[None, :] * h[:, None]


def _rk_extra(solver):
    # writable copies: the tableau's arrays are read-only, a different numba type
    return (np.array(solver.tableau.a, order="C", copy=True), np.array(solver.tableau.b, copy=True))


_EM = Kernel("euler_maruyama", _em_body, _left_times, n_noise=1)
_RK = Kernel("runge_kutta", _rk_body, _rk_times, _rk_extra)
_SHEUN = Kernel("stochastic_heun", _stochastic_heun_body, _heun_times, n_noise=1)
register_kernel(EulerMaruyama, "sde", _EM)
register_kernel(RungeKutta, "ode", _RK)
register_kernel(Heun, "ode", _RK)
register_kernel(Heun, "sde", _SHEUN)
# the affine multistep kernel (DPM-Solver++, ancestral, reverse diffusion) registers itself on import
from . import numba_annealed, numba_edm, numba_multistep, numba_pc, numba_sra  # noqa: E402, F401


# -- user row scores ------------------------------------------------------------------------------------------
def _rebind(body, name, adapter):
    """A copy of ``body`` whose global ``score_block`` is ``adapter`` (compiled per process, not cached)."""
    g = dict(body.__globals__)
    g["score_block"] = adapter
    return FunctionType(body.__code__, g, name, body.__defaults__, body.__closure__)


def _batch_body(x, t, out):
    for i in range(x.shape[0]):
        score_block(x[i], t[i], out[i])


class RowScore:
    """A score given as a numba-compiled row function, run inside the fused kernels.

    Parameters
    ----------
    fn : numba.njit function ``fn(x_row, t, out_row)``
        Writes the score of one sample ``x_row`` (float64 ``(d,)``, the flattened event) at time ``t``
        (float) into ``out_row`` (float64 ``(d,)``). It must not keep references to its arguments.
    event_shape : int or tuple of int
        Shape of one sample; ``d = prod(event_shape)``.

    A ``RowScore`` is also an ordinary score ``score(x, t)`` (``x`` of shape ``(n, *event_shape)``, numpy or
    CPU torch; ``t`` a float or ``(n,)``), evaluated row by row in compiled code, so every backend accepts it.
    """

    def __init__(self, fn, event_shape):
        if not isinstance(fn, CPUDispatcher):
            raise TypeError(f"fn must be a numba.njit function fn(x_row, t, out_row), got {fn!r}")
        if isinstance(event_shape, (int, np.integer)) and not isinstance(event_shape, bool):
            event_shape = (int(event_shape),)
        try:
            if isinstance(event_shape, (str, bytes)):
                raise TypeError
            event_shape = tuple(int(s) for s in event_shape)
        except (TypeError, ValueError):
            raise TypeError(f"event_shape must be an int or a tuple of ints, got {event_shape!r}") from None
        if len(event_shape) < 1 or any(s < 1 for s in event_shape):
            raise ValueError(f"event_shape must be a non-empty tuple of positive sizes, got {event_shape!r}")
        self.fn = fn
        self.event_shape = event_shape
        self._kernels: dict[str, object] = {}
        self._batch = None

    @property
    def numba_row_score(self):
        """The row form the numba backend runs fused (this object)."""
        return self

    def _adapter(self):
        fn = self.fn

        @njit(inline="always", error_model="numpy")
        def adapter(xb, L, t, coef, p0, p1, p2, p3, work, out):
            # gather one lane into a row, call the user's row score, scatter back
            xr = work[0]
            orow = work[1]
            for l in range(L):
                for j in range(xb.shape[0]):
                    xr[j] = xb[j, l]
                fn(xr, t, orow)
                for j in range(xb.shape[0]):
                    out[j, l] = orow[j]

        return adapter

    def kernel(self, kernel: Kernel):
        """``kernel`` compiled with this row score inlined (once per process)."""
        if kernel.name not in self._kernels:
            body = _rebind(kernel.body, f"{kernel.body.__name__}_row", self._adapter())
            self._kernels[kernel.name] = njit(parallel=True, error_model="numpy")(body)
        return self._kernels[kernel.name]

    def __call__(self, x, t):
        torch_in = _xp.is_torch(x)
        xn = x.detach().cpu().numpy() if torch_in else np.asarray(x)
        n = xn.shape[0]
        if tuple(xn.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (n, *{self.event_shape}), got shape {tuple(xn.shape)}")
        tn = t.detach().cpu().numpy() if _xp.is_torch(t) else t
        tn = np.ascontiguousarray(np.broadcast_to(np.asarray(tn, dtype=np.float64), (n,)))
        x2 = np.ascontiguousarray(xn.reshape(n, -1), dtype=np.float64)
        out = np.empty_like(x2)
        if self._batch is None:
            fn = self.fn
            g = dict(_batch_body.__globals__)
            g["score_block"] = fn
            self._batch = njit(error_model="numpy")(FunctionType(_batch_body.__code__, g, "row_score_batch"))
        self._batch(x2, tn, out)
        out = out.reshape(xn.shape).astype(xn.dtype, copy=False)
        return _xp.asarray_like(out, x) if torch_in else out

    def __repr__(self):
        return f"RowScore({getattr(self.fn, '__name__', self.fn)!r}, event_shape={self.event_shape})"


# -- host side ------------------------------------------------------------------------------------------------
def _fused_plan(job):
    """``(kernel, compiled, sparams, wshape, score_coef(times))`` when ``job`` can run fused, else None."""
    proc = job.process
    # exact types: a subclass may change the drift, which the kernels could not know
    if type(proc) not in (ReverseSDE, ProbabilityFlowODE) or not isinstance(proc.sde, LinearSDE):
        return None
    x0 = job.x0
    if not isinstance(x0, np.ndarray) or x0.dtype != np.float64:
        return None
    kernel = find_kernel(job.solver, "sde" if job.stochastic else "ode")
    if kernel is None or not kernel.accepts(job.solver):
        return None
    score = proc.score
    if is_analytic_score(score):
        if x0.shape[1:] != (score.density.dim,):
            return None
        params = analytic_params(score.density)
        density, score_sde = score.density, score.sde
        return (
            kernel,
            kernel.analytic(),
            params,
            (analytic_work_rows(params), block_size(x0.shape[1])),
            (lambda ts: analytic_coef(density, score_sde, ts)),
        )
    row = getattr(score, "numba_row_score", None)
    if isinstance(row, RowScore) and tuple(x0.shape[1:]) == row.event_shape:
        dummy = (np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1, 1)), np.zeros(1))
        d = math.prod(row.event_shape)
        return kernel, row.kernel(kernel), dummy, (2, d), (lambda ts: np.zeros(ts.shape + (0,)))
    return None


def _coef_table(job, st, score_coef):
    """``coef`` (steps, S, NC + m): ``h, a(s), c g(s)^2, g(s), sqrt|h|`` and the score's constants."""
    proc, grid = job.process, job.grid
    sde = proc.sde
    h = grid[1:] - grid[:-1]
    a = np.asarray(sde.drift_coef(st), dtype=np.float64) + np.zeros(st.shape)
    g = np.sqrt(np.asarray(sde.g2(st), dtype=np.float64) + np.zeros(st.shape))
    w = float(proc.score_weight)  # 1 for the reverse SDE, 1/2 for the probability-flow ODE
    extra = score_coef(st)
    coef = np.empty(st.shape + (NC + extra.shape[-1],))
    coef[..., 0] = h[:, None]
    coef[..., 1] = a
    # w g^2 written as the process's drift computes it, from g = sqrt(g^2)
    coef[..., 2] = w * g * g
    coef[..., 3] = g
    coef[..., 4] = (np.abs(h) ** 0.5)[:, None]
    coef[..., NC:] = extra
    return coef


def _run_fused(job, plan):
    kernel, compiled, sparams, wshape, score_coef = plan  # wshape: scratch (rows, cols) of the score
    solver, grid = job.solver, job.grid
    steps = len(grid) - 1
    n = job.x0.shape[0]
    # the one copy of the state; sample keys are derived per block inside the kernel
    x = np.array(job.x0.reshape(n, -1), dtype=np.float64, order="C", copy=True)
    d = x.shape[1]
    block = block_size(d)
    if kernel.process_stage_times is None:
        st = kernel.stage_times(solver, grid)
    else:
        st = kernel.process_stage_times(solver, job.process, grid)
    st = np.ascontiguousarray(st, dtype=np.float64)
    coef = _coef_table(job, st, score_coef)
    ids = np.require(job.sample_ids, dtype=np.int64, requirements=["C", "W"])  # one numba type
    skey = seed_key(job.seed)
    save_slot = np.full(steps + 1, -1, dtype=np.int64)
    order = sorted(job.save_index) if job.save_index is not None else []
    for slot, idx in enumerate(order):
        save_slot[idx] = slot
    saved = np.empty((len(order), n, d)) if order else np.zeros((1, 1, 1))
    if 0 in order:
        saved[save_slot[0]] = x
    bad = np.full((n + block - 1) // block, -1, dtype=np.int64)  # first non-finite step of each block
    extra = kernel.extra(solver) if kernel.grid_extra is None else kernel.grid_extra(solver, job.process, grid)
    # without a progress bar the kernel runs the whole grid in one call
    chunks = max(1, min(steps, 50)) if job.progress and kernel.chunkable else 1
    bounds = np.linspace(0, steps, chunks + 1).round().astype(np.int64)
    start = time.perf_counter()
    with progress_bar(steps, job.progress, desc=solver.name) as bar:
        for c in range(chunks):
            k0, k1 = int(bounds[c]), int(bounds[c + 1])
            compiled(
                x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad, job.check_finite, extra, block
            )
            bar.update(k1 - k0)
            if job.check_finite and np.any(bad >= 0):
                k = int(bad[bad >= 0].min())
                raise NonFiniteError(k, float(grid[k + 1]))
    shape = job.x0.shape
    stats = {
        "steps": steps,
        "accepted": steps,
        "rejected": 0,
        "wall_time": time.perf_counter() - start,
        "kernel": f"fused {kernel.name}",
    }
    xs = [saved[s].reshape(shape) for s in range(len(order))]
    return x.reshape(shape), xs, solver.nfe_per_step * steps, stats


def numba_noise(job):
    """``noise(step) -> list of z`` like :func:`sdekit.backends.numpy_.numpy_noise`, drawn by numba."""
    m = job.solver.n_noise
    event = tuple(job.x0.shape[1:])
    size = m * math.prod(event)
    keys = sample_keys(job.seed, job.sample_ids)

    def draw(step):
        out = np.empty((keys.shape[0], size))
        _normals(keys, np.uint64(step), size, out)
        z = out.reshape((keys.shape[0], m) + event)
        return [z[:, r] for r in range(m)]

    return draw


def _em_update_body(x, s, ids, skey, k, h, a, g2c, g, sq, block):
    """One Euler--Maruyama step in place, the noise drawn here: ``x += h (a x - g2c s) + g (sq z)``.

    ``x`` and ``s`` are ``(n, d)``; returns True when every entry of the new state is finite.
    """
    n, d = x.shape
    nb = (n + block - 1) // block
    finite = np.ones(nb, dtype=np.bool_)
    for blk in prange(nb):
        i0 = blk * block
        L = min(n, i0 + block) - i0
        kb = np.empty(block, dtype=np.uint64)
        sk = np.empty(block, dtype=np.uint64)
        z = np.empty((d, block))
        for l in range(L):
            kb[l] = sample_key(skey, np.uint64(ids[i0 + l]))
        fill_normals(kb[:L], k, sk, z)
        acc = 0.0
        for l in range(L):
            xr = x[i0 + l]
            sr = s[i0 + l]
            for j in range(d):
                v = xr[j] + h * (a * xr[j] - g2c * sr[j]) + g * (sq * z[j, l])
                xr[j] = v
                acc += v * 0.0  # 0 while finite, NaN otherwise
        finite[blk] = acc == 0.0
    return finite.all()


_em_update_serial, _em_update_parallel = serial_and_parallel(_em_update_body)


def _run_em_per_step(job):
    """Euler--Maruyama with a python score: the score per step in python, noise and update in one numba pass."""
    proc, grid, solver = job.process, job.grid, job.solver
    sde = proc.sde
    shape = job.x0.shape
    n = shape[0]
    x = np.array(job.x0.reshape(n, -1), dtype=np.float64, order="C", copy=True)
    xv = x.reshape(shape)  # a view: the score sees the user's shape
    d = x.shape[1]
    block = block_size(d)
    ids = np.require(job.sample_ids, dtype=np.int64, requirements=["C", "W"])  # one numba type
    skey = seed_key(job.seed)
    w = float(proc.score_weight)
    saved = [xv.copy()] if job.save_index is not None and 0 in job.save_index else []
    steps = len(grid) - 1
    update = _em_update_parallel if x.size >= PARALLEL_MIN else _em_update_serial
    start = time.perf_counter()
    with progress_bar(steps, job.progress, desc=solver.name) as bar:
        for k in range(steps):
            t, t_next = float(grid[k]), float(grid[k + 1])
            h = t_next - t
            score = proc.score(xv, _xp.full_time(t, xv))
            sc = np.require(np.asarray(score, dtype=np.float64).reshape(n, d), requirements=["C", "W"])
            g = math.sqrt(float(sde.g2(t)))
            ok = update(x, sc, ids, skey, np.uint64(k), h, float(sde.drift_coef(t)), w * g * g, g, abs(h) ** 0.5, block)
            if job.check_finite and not ok:
                raise NonFiniteError(k, t_next)
            if job.save_index is not None and (k + 1) in job.save_index:
                saved.append(xv.copy())
            bar.update(1)
    stats = {
        "steps": steps,
        "accepted": steps,
        "rejected": 0,
        "wall_time": time.perf_counter() - start,
        "kernel": "per-step euler_maruyama",
    }
    return xv, saved, solver.nfe_per_step * steps, stats


def run(job):
    """Run ``job``: fused when possible, else a per-step loop with numba noise (see the module docstring)."""
    plan = _fused_plan(job)
    if plan is not None:
        return _run_fused(job, plan)
    score = getattr(job.process, "score", None)
    if score is not None:
        # the same first-call check as the numpy backend
        job = dataclasses.replace(job, process=type(job.process)(job.process.sde, CheckedScore(score)))
        if (
            type(job.process) is ReverseSDE
            and isinstance(job.process.sde, LinearSDE)
            and isinstance(job.x0, np.ndarray)
            and job.x0.dtype == np.float64
            and find_kernel(job.solver, "sde") is _EM
        ):
            return _run_em_per_step(job)
    x, xs, nfe, stats = numpy_.fixed_grid_loop(job, noise=numba_noise)
    stats["kernel"] = "per-step"
    return x, xs, nfe, stats
