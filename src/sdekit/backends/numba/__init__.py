"""numba backend: fused whole-trajectory kernels, parallel over samples.

When the process is the reverse SDE or the probability-flow ODE of a :class:`~sdekit.sdes.LinearSDE`, the score
has a compiled form (an analytic density's exact score, or a :class:`RowScore`), ``x0`` is a float64 numpy array
and the solver has a registered kernel, the whole time loop runs compiled (:mod:`~sdekit.backends.numba.fused`);
everything else runs a per-step loop with the noise drawn by the numba generator
(:mod:`~sdekit.backends.numba.per_step`), so ``backend="numba"`` accepts every solver and gives the numpy
backend's samples to round-off. Kernels need no SDE code: the drift of a linear SDE's reverse process at a stage
time ``s`` is ``a(s) x - c g(s)^2 score(x, s)`` (``c = 1`` for the reverse SDE, ``1/2`` for the probability-flow
ODE) and its diffusion ``g(s)``, read from a table the host fills once per solve.

Modules: :mod:`~sdekit.backends.numba.backend` (``run(job)``, the registry's entry), ``registry`` (:class:`Kernel`,
:data:`KERNELS`, :func:`register_kernel`, :func:`find_kernel`, the global ``score_block``), ``_blocks`` (block
layout and the helpers every body inlines), ``noise`` and ``vecmath`` (the counter-based normals and the
vectorisable ``log``/``sin``/``cos``/``exp`` they use), ``scores`` (the analytic densities' compiled scores),
``linked`` (the score and the normals called through a symbol: one compiled copy per process, not one optimised
again into every kernel), ``row_score`` (:class:`RowScore`), ``fused``, ``per_step`` and ``kernels/`` (one module
per kernel family).

User scores compiled with numba::

    import numba
    from sdekit.backends.numba import RowScore

    @numba.njit
    def my_score(x, t, out):                    # x: one sample, float64 (d,); writes the score into out
        for j in range(x.shape[0]):
            out[j] = -x[j]

    score = RowScore(my_score, event_shape=(2,))
    sol = sdekit.sample(sdekit.VPSDE(), score, n=100_000, backend="numba")   # "auto" picks numba too

Adding a kernel
---------------
1. Write the body as an undecorated python function (in ``kernels/``, one module per family, or in your own
   module) with the signature ``body(x, ids, skey, k0, k1, st, coef, sparams, wshape, save_slot, saved, bad,
   check, extra, block)``. It advances the rows of ``x`` (n, d) in place over the steps ``k0 <= k < k1``:
   ``st`` (steps, S) are the stage times, ``coef`` (steps, S, NC + m) the host's table (columns ``h, a(s),
   c g(s)^2, g(s), sqrt|h|``, then the score's constants ``coef[k, i][NC:]``), ``sparams`` the score's four
   arrays, ``extra`` the kernel's own tuple of arrays; the rest is passed on to the block helpers.
2. Follow the pattern of ``_em_body`` in :mod:`~sdekit.backends.numba.kernels.explicit`: ``for blk in
   prange(nb)`` over blocks of ``block`` samples; per block unpack ``p0, p1, p2, p3 = sparams`` and call
   ``open_block`` (state ``xb`` (d, B) lanes last, score buffer, keys, scratch); per step draw normals with
   ``block_normals(kb[:L], k, sk, z)`` (from :mod:`~sdekit.backends.numba.linked`), evaluate
   ``score_block(xb, L, st[k, i], coef[k, i][NC:], p0, p1, p2, p3, work, s)``, update with loops over ``j < d``
   and lanes ``l < L`` on 1-D row views, and finish with ``end_step``; after the grid ``end_block``. Allocate
   scratch per block, never per step.
3. Call the score through the module-level name ``score_block`` imported from
   :mod:`sdekit.backends.numba.registry` (do not bind it to a local): the registered kernel is compiled against
   it (the analytic densities' block score, cached on disk, called through a shared symbol so that the score is
   not compiled into the kernel again), and :class:`RowScore` compiles a copy of the same body whose global
   ``score_block`` is rebound to an adapter that calls the user's row function on each lane. The arguments must
   have the types the host passes (C-contiguous float64 arrays, ``L`` an int64:
   :data:`~sdekit.backends.numba.linked.BLOCK_ARGS`); others are a numba typing error naming them. A kernel called
   from your own code rather than through ``sdekit.sample`` needs :func:`~sdekit.backends.numba.linked.link_all`
   first in the process (a kernel read from the disk cache finds the shared score by name; unlinked, LLVM aborts).
4. Describe what the host prepares with a :class:`Kernel` ``(name, body, stage_times, extra, n_noise,
   grid_extra, process_stage_times, accepts, chunkable)``; take the solver's coefficients from its public
   methods and attributes only (``solver.affine_coefficients(sde, grid)``, ``solver.tableau``, ``solver.levels``).
5. Register it at the end of its module: ``register_kernel(MySolver, "sde", MY_KERNEL)`` (``"ode"`` for the
   probability-flow ODE), and import the module from ``kernels/__init__.py``. The registry imports no kernel,
   so registering makes no import cycle. Look-up walks the solver's MRO and skips a base class's kernel when the
   subclass overrides ``step``.
6. Test it against the numpy backend (to round-off) and, with a :class:`RowScore`, bit for bit against the
   per-step path (a subclass that overrides ``step`` has no kernel), as ``tests/test_numba_samplers.py`` does.
   After editing a kernel module delete its ``__pycache__/*.nbi`` and ``*.nbc`` (numba's disk cache does not see
   edits to helpers it inlined from other modules).
7. Measure its cold compile time (``benchmarks/bench_compile.py``, add a row to its ``KERNEL_JOBS``) and enter
   its ``own`` column in :data:`sdekit.backends.numba.compile_cost.COMPILE_SECONDS`: ``backend="auto"`` weighs it
   against a job's estimated numpy time (:mod:`sdekit.backends.auto`), and ``sdekit warmup`` compiles it ahead of time.

Cold start: a kernel compiles on its first call in a process unless numba's disk cache holds it
(:mod:`~sdekit.backends.numba.compile_cost` says where the cache lives and how ``"auto"`` checks it);
:mod:`~sdekit.backends.numba.warmup` compiles the kernels ahead of time.
"""

from __future__ import annotations

from ._blocks import BLOCK, block_size, end_block, end_step, left_times, open_block
from .backend import run
from .noise import fill_normals
from .registry import KERNELS, NC, Kernel, find_kernel, register_kernel, score_block
from .row_score import RowScore

__all__ = [
    "run",
    "RowScore",
    "Kernel",
    "KERNELS",
    "register_kernel",
    "find_kernel",
    "score_block",
    "NC",
    "BLOCK",
    "block_size",
    "open_block",
    "end_step",
    "end_block",
    "left_times",
    "fill_normals",
]
