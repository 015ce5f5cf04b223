"""Shared compiled helpers that every fused kernel calls through a symbol instead of linking a copy of them.

numba links the module of every function a kernel calls into the kernel's own module and optimises and
generates machine code for the whole again, so each kernel used to re-optimise the analytic score (measured:
about 2 s of the ~9 s a cold Euler--Maruyama kernel took on a quiet machine, the score's own first compilation
another ~4 s, paid again by the next kernel). A :class:`SharedFunction` avoids that: a kernel's call to it is
one external call, per block and step, to a symbol whose address is the helper's compiled C entry point
(numba's cfunc wrapper of the helper's specialisation). The helper is compiled once per argument signature and
process (from numba's disk cache when it is there), whatever the number of kernels that call it.

How a kernel finds the helper: at the call, the kernel's code declares an external function named
:meth:`SharedFunction.symbol` of the signature; :meth:`SharedFunction.link` compiles (or loads) the helper and
registers that name with LLVM's symbol table (``llvmlite.binding.add_symbol``), which the JIT consults when it
loads a kernel, whether just compiled or read from numba's disk cache. The name depends only on the helper and
the argument types, so a cached kernel stays valid across processes. Linking happens

* while a kernel compiles (the call's code generation links the signature it calls), and
* before a compiled kernel runs, which may load it from the cache: :func:`link_all` links every declared
  signature of the helpers a kernel family calls (:data:`FIXED_GRID` in
  :func:`~sdekit.backends.numba.fused.run_fused`, :data:`ADAPTIVE` in
  :func:`~sdekit.backends.numba.kernels.adaptive.run_adaptive`). A kernel that is handed out
  (:meth:`~sdekit.backends.numba.registry.Kernel.analytic`) is not loaded or compiled yet, so asking for it costs
  nothing. Code that calls a kernel dispatcher itself must call :func:`link_all` first: a kernel loaded from the
  cache with an unregistered symbol makes LLVM abort the process.

The signatures are declared (:data:`BLOCK_ARGS`, :data:`LANES_ARGS`: the types the host passes); a call whose
arguments do not convert to one of them is a numba typing error naming them. The numbers are those of a linked
call: the helper is the same code, compiled without fast-math, so LLVM may not reorder its arithmetic either way.
"""

from __future__ import annotations

import hashlib

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from .noise import fill_normals
from .scores import analytic_block_score, analytic_lanes_score

__all__ = [
    "SharedFunction",
    "SCORE_BLOCK",
    "SCORE_LANES",
    "NORMALS",
    "BLOCK_ARGS",
    "LANES_ARGS",
    "NORMALS_ARGS",
    "FIXED_GRID",
    "ADAPTIVE",
    "link_all",
    "call_score_block",
    "call_score_lanes",
    "call_fill_normals",
    "block_normals",
]

_F1 = types.float64[::1]
_F2 = types.float64[:, ::1]
_F3 = types.float64[:, :, ::1]
_U1 = types.uint64[::1]

#: Argument types of ``score_block(xb, L, t, coef_row, means, eigvals, eigvecs, log_weights, work, out)`` as the
#: fused kernels call it (C-contiguous float64 arrays from the host, ``L`` an int64, ``t`` a float64).
BLOCK_ARGS = ((_F2, types.int64, types.float64, _F1, _F2, _F2, _F3, _F1, _F2, _F2),)

#: Argument types of ``score_lanes(xb, L, tl, cl, means, eigvals, eigvecs, log_weights, work, out)`` (a time and
#: a column of constants per lane).
LANES_ARGS = ((_F2, types.int64, _F1, _F2, _F2, _F2, _F3, _F1, _F2, _F2),)

#: Argument types of ``fill_normals(keys, step, skeys, out)`` as the fixed-grid kernels call it once per block and
#: step (the block's sample keys, the step index, scratch for the stream keys, the normals ``(m, B)``).
NORMALS_ARGS = ((_U1, types.int64, _U1, _F2),)


class SharedFunction:
    """A numba function called by the kernels through a registered symbol, one compiled copy per signature.

    ``dispatcher`` is an ``njit`` function (``cache=True``, returning nothing); ``signatures`` the argument-type
    tuples a kernel may call it with.
    """

    def __init__(self, name: str, dispatcher, signatures):
        self.name = name
        self.dispatcher = dispatcher
        self.signatures = tuple(tuple(s) for s in signatures)
        self._linked: dict[tuple, int] = {}

    def symbol(self, argtypes) -> str:
        """The symbol name of the specialisation for ``argtypes`` (stable across processes)."""
        digest = hashlib.sha1(repr(tuple(argtypes)).encode()).hexdigest()[:16]
        return f"sdekit_shared_{self.name}_{digest}"

    def link(self, argtypes) -> int:
        """Compile (or load from the disk cache) the specialisation for ``argtypes``, register its symbol and
        return its address; done once per process and signature."""
        argtypes = tuple(argtypes)
        addr = self._linked.get(argtypes)
        if addr is None:
            cres = self.dispatcher.get_compile_result(types.none(*argtypes))
            addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_cfunc_wrapper_name)
            llvm.add_symbol(self.symbol(argtypes), addr)
            self._linked[argtypes] = addr
        return addr

    def linked(self) -> bool:
        """True when every declared signature is linked in this process."""
        return all(s in self._linked for s in self.signatures)

    def match(self, typingctx, args):
        """The declared signature that ``args`` (numba types) convert to; a ``TypingError`` naming them if none."""
        for formal in self.signatures:
            if len(formal) == len(args) and all(
                a == f or typingctx.can_convert(a, f) is not None for a, f in zip(args, formal)
            ):
                return formal
        raise TypingError(
            f"{self.name} takes arguments of types {', '.join(str(tuple(s)) for s in self.signatures)}; "
            f"got {tuple(args)}"
        )

    def codegen(self, formal):
        """A numba intrinsic code generator that calls the specialisation ``formal`` through its symbol."""

        def gen(context, builder, signature, args):
            self.link(formal)
            vals = [context.cast(builder, v, a, f) for v, a, f in zip(args, signature.args, formal)]
            fnty = ir.FunctionType(context.get_value_type(types.none), [context.get_value_type(f) for f in formal])
            fn = cgutils.get_or_insert_function(builder.module, fnty, self.symbol(formal))
            builder.call(fn, vals)
            return context.get_dummy_value()

        return gen


#: The analytic densities' block score (:func:`~sdekit.backends.numba.scores.analytic_block_score`).
SCORE_BLOCK = SharedFunction("score_block", analytic_block_score, BLOCK_ARGS)
#: The analytic densities' lane score (:func:`~sdekit.backends.numba.scores.analytic_lanes_score`).
SCORE_LANES = SharedFunction("score_lanes", analytic_lanes_score, LANES_ARGS)
#: The counter-based normals of a block (:func:`~sdekit.backends.numba.noise.fill_normals`).
NORMALS = SharedFunction("fill_normals", fill_normals, NORMALS_ARGS)


#: What the fixed-grid kernels call (:func:`~sdekit.backends.numba.fused.run_fused` links them).
FIXED_GRID = (SCORE_BLOCK, NORMALS)
#: What the fused adaptive kernels call (:func:`~sdekit.backends.numba.kernels.adaptive.run_adaptive` links it).
ADAPTIVE = (SCORE_LANES,)


def link_all(shared=FIXED_GRID + ADAPTIVE) -> None:
    """Link every declared signature of the shared helpers ``shared`` (before a kernel that calls them is run or
    loaded from the cache); what is linked already costs nothing."""
    for fn in shared:
        if not fn.linked():
            for argtypes in fn.signatures:
                fn.link(argtypes)


@intrinsic
def call_score_block(typingctx, xb, L, t, coef, p0, p1, p2, p3, work, out):
    """``analytic_block_score(...)`` through :data:`SCORE_BLOCK`'s symbol (numba code only)."""
    args = (xb, L, t, coef, p0, p1, p2, p3, work, out)
    formal = SCORE_BLOCK.match(typingctx, args)
    return types.none(*args), SCORE_BLOCK.codegen(formal)


@intrinsic
def call_score_lanes(typingctx, xb, L, tl, cl, p0, p1, p2, p3, work, out):
    """``analytic_lanes_score(...)`` through :data:`SCORE_LANES`'s symbol (numba code only)."""
    args = (xb, L, tl, cl, p0, p1, p2, p3, work, out)
    formal = SCORE_LANES.match(typingctx, args)
    return types.none(*args), SCORE_LANES.codegen(formal)


@intrinsic
def call_fill_normals(typingctx, keys, step, skeys, out):
    """``fill_normals(...)`` through :data:`NORMALS`' symbol (numba code only)."""
    args = (keys, step, skeys, out)
    formal = NORMALS.match(typingctx, args)
    return types.none(*args), NORMALS.codegen(formal)


@njit(inline="always", error_model="numpy")
def block_normals(keys, step, skeys, out):
    """What the fixed-grid kernel bodies call for a block's normals at a step: ``fill_normals(keys, step, skeys,
    out)`` (same arguments, same numbers) through the shared symbol."""
    call_fill_normals(keys, step, skeys, out)
