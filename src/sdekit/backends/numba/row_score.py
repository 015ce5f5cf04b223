"""User scores compiled with numba: :class:`RowScore`, a row function run inside the fused kernels.

A user wraps an ``numba.njit`` function ``score_row(x_row, t, out_row)`` that writes the score of one sample
``x_row`` (a float64 ``(d,)`` array, the flattened event) at time ``t`` (a float) into ``out_row``::

    import numba
    from sdekit.backends.numba import RowScore      # also importable from sdekit.backends.numba_

    @numba.njit
    def my_score(x, t, out):
        for j in range(x.shape[0]):
            out[j] = -x[j]

    score = RowScore(my_score, event_shape=(2,))
    sol = sdekit.sample(sdekit.VPSDE(), score, n=100_000, backend="numba")   # "auto" picks numba too

Every kernel body calls the global name ``score_block`` (:data:`sdekit.backends.numba.registry.score_block`; the
adaptive kernels ``score_lanes``, one time per lane). :meth:`RowScore.kernel` builds a copy of the body whose
globals have those names rebound to adapters that gather one lane of the block into a row, call the user's
function and scatter the result back, and compiles it with the adapters inlined. The output row is filled with
NaN before every call, so a function that leaves part of ``out`` unwritten gives NaN (which ``check_finite``
reports), never the previous sample's numbers or uninitialised memory; the same holds for the batch form below.

The row function's signature is checked when the ``RowScore`` is made: it is compiled for ``(float64[::1],
float64, float64[::1])`` there, and a function that does not type (wrong number of arguments, a return value
it cannot index with) is a ``TypeError`` naming the expected signature, not a numba typing
traceback from inside a kernel. That compilation happens once per process and kernel (it is not cached on disk,
since the cache could not tell two user functions apart). A :class:`RowScore` is also an ordinary score
``score(x, t)`` for the other backends.
"""

from __future__ import annotations

from types import FunctionType

import numpy as np
from numba import njit, types
from numba.core.errors import NumbaError
from numba.core.registry import CPUDispatcher

from ... import _xp
from .registry import Kernel, score_block

__all__ = ["RowScore", "rebind", "ROW_SIGNATURE"]

#: The types a row function is compiled for: one sample ``x_row``, its time, the output row.
ROW_SIGNATURE = (types.float64[::1], types.float64, types.float64[::1])


def rebind(body, name, adapter, lanes_adapter=None):
    """A copy of ``body`` whose global ``score_block`` is ``adapter`` (and ``score_lanes`` is ``lanes_adapter``);
    compiled per process, not cached."""
    g = dict(body.__globals__)
    g["score_block"] = adapter
    if lanes_adapter is not None:
        g["score_lanes"] = lanes_adapter
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
        _check_signature(fn)
        self.fn = fn
        self.event_shape = event_shape
        self._kernels: dict[str, object] = {}
        self._batch = None

    @property
    def numba_row_score(self):
        """The row form the numba backend runs fused (this object)."""
        return self

    def adapter(self):
        fn = self.fn

        @njit(inline="always", error_model="numpy")
        def adapter(xb, L, t, coef, p0, p1, p2, p3, work, out):
            # gather one lane into a row, call the user's row score (on a NaN-filled output row), scatter back
            xr = work[0]
            orow = work[1]
            for l in range(L):
                for j in range(xb.shape[0]):
                    xr[j] = xb[j, l]
                    orow[j] = np.nan
                fn(xr, t, orow)
                for j in range(xb.shape[0]):
                    out[j, l] = orow[j]

        return adapter

    def lanes_adapter(self):
        fn = self.fn

        @njit(inline="always", error_model="numpy")
        def lanes_adapter(xb, L, tl, cl, p0, p1, p2, p3, work, out):
            # the same, each lane at its own time
            xr = work[0]
            orow = work[1]
            for l in range(L):
                for j in range(xb.shape[0]):
                    xr[j] = xb[j, l]
                    orow[j] = np.nan
                fn(xr, tl[l], orow)
                for j in range(xb.shape[0]):
                    out[j, l] = orow[j]

        return lanes_adapter

    def kernel(self, kernel: Kernel):
        """``kernel`` (a fixed-grid :class:`Kernel` or an adaptive kernel: anything with ``name`` and ``body``)
        compiled with this row score inlined (once per process)."""
        if kernel.name not in self._kernels and hasattr(kernel, "row"):
            self._kernels[kernel.name] = kernel.row(self)
        if kernel.name not in self._kernels:
            body = rebind(kernel.body, f"{kernel.body.__name__}_row", self.adapter(), self.lanes_adapter())
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
        out = np.full_like(x2, np.nan)  # what the function leaves unwritten stays NaN (check_finite reports it)
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


def _check_signature(fn):
    """Compile ``fn`` for :data:`ROW_SIGNATURE` now; a function that does not type is a ``TypeError`` here."""
    try:
        fn.compile(ROW_SIGNATURE)
    except (NumbaError, TypeError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()]
        useful = [
            ln for ln in lines if ln and not ln.startswith(("Failed in", "During:", "File", "^", "- ", "Resolution"))
        ]
        first = useful[0] if useful else type(exc).__name__
        name = getattr(fn, "__name__", repr(fn))
        raise TypeError(
            f"RowScore needs fn(x_row, t, out_row) that writes the score of one sample into out_row (x_row and "
            f"out_row float64 arrays of shape (d,), t a float, nothing returned); {name!r} does not compile for "
            f"those arguments: {first}"
        ) from None
