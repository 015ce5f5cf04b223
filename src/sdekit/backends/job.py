"""What ``solve`` hands to a backend: the validated :class:`Job`, and the wrapper that checks a user score's output.

Backends import from here (and not from :mod:`sdekit.integrate`, which imports the backends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _xp
from ..solvers.base import Solver

__all__ = ["Job", "CheckedScore", "Trajectory", "StepCallback"]


@dataclass
class Job:
    """Validated arguments of one solve, handed to a backend (nothing in it needs re-checking)."""

    process: Any
    solver: Solver
    x0: Any
    grid: np.ndarray  # float64, monotone, grid[0] = t0, grid[-1] = t1
    seed: int
    sample_ids: np.ndarray  # (n,) global sample indices (noise counters)
    save_index: frozenset | None
    progress: bool
    check_finite: bool
    stochastic: bool
    rtol: float | None = None
    atol: float | None = None
    noise: str = "counter"  # "counter" (fresh normals per step) or "tree" (one Brownian path per sample)
    callback: Any = None  # callback(info) after each step, or None


class CheckedScore:
    """Wraps a user score and checks every output: its shape must be ``x``'s (a cheap tuple comparison on each
    call, so an ``(n, 1)`` output on a later call cannot broadcast into garbage), its array library ``x``'s, and
    its dtype ``x``'s or a wider float (cast down to ``x``'s: the state keeps one dtype for the whole solve, as
    numpy code that mixes in float64 constants would otherwise promote a float32 state). A narrower dtype (the
    score cannot deliver the state's precision) or a non-float output is a ``TypeError``."""

    def __init__(self, score):
        self.score = score
        self.calls = 0
        self.event_shape = getattr(score, "event_shape", None)

    def restrict(self, rows):
        """Checked on the samples ``rows`` (passes through to a per-sample score's own ``restrict``)."""
        inner = getattr(self.score, "restrict", None)
        return self if inner is None else CheckedScore(inner(rows))

    def __call__(self, x, t):
        out = self.score(x, t)
        self.calls += 1
        shape = tuple(getattr(out, "shape", ()))
        if shape != tuple(x.shape):
            raise ValueError(
                f"score returned shape {shape} on call {self.calls}, expected the shape of x {tuple(x.shape)}"
            )
        dtype = out.dtype
        if dtype != x.dtype:
            if _xp.is_torch(x) != _xp.is_torch(out) or not _wider_float(dtype, x.dtype):
                raise TypeError(
                    f"score returned {type(out).__name__} of dtype {dtype}, expected "
                    f"{type(x).__name__} of dtype {x.dtype} (the type and dtype of x)"
                )
            out = out.to(x.dtype) if _xp.is_torch(out) else out.astype(x.dtype)
        return out


def _wider_float(dtype, state_dtype) -> bool:
    """True when ``dtype`` is a floating dtype at least as wide as the state's (numpy or torch dtypes)."""
    if isinstance(dtype, np.dtype):
        return dtype.kind == "f" and dtype.itemsize >= np.dtype(state_dtype).itemsize
    return bool(dtype.is_floating_point) and dtype.itemsize >= state_dtype.itemsize


class Trajectory:
    """The states a solve saves, preallocated once: ``data`` of shape ``(len(save_index), *x.shape)`` in ``x``'s
    library, dtype and device (no list of states stacked at the end, which held the trajectory twice).

    ``slot(k)`` is the row of grid (or stop) index ``k``, ``None`` when ``k`` is not saved; ``put(k, x)`` writes
    ``x`` there. With no ``save_index`` the trajectory is empty and ``data`` is ``None``.
    """

    def __init__(self, save_index, x):
        order = sorted(save_index) if save_index is not None else []
        self.slots = {k: i for i, k in enumerate(order)}
        self.data = None
        if order:
            shape = (len(order), *tuple(x.shape))
            if _xp.is_torch(x):
                self.data = _xp.lib(x).empty(shape, dtype=x.dtype, device=x.device)
            else:
                self.data = np.empty(shape, dtype=x.dtype)

    def slot(self, k: int):
        return self.slots.get(k)

    def put(self, k: int, x) -> None:
        i = self.slots.get(k)
        if i is not None:
            self.data[i] = x


class StepCallback:
    """The user's ``callback(info)`` seen through one contract, whatever loop calls it.

    ``info["t"]`` is always a float64 numpy array of shape ``(n,)``: every sample's time after the step (all equal on
    a fixed grid; per sample in the adaptive loops, whose ``step`` counts attempts). ``info["x"]`` (the state after
    the step) and ``info["denoised"]`` (or ``None``) cannot change the run: numpy arrays are passed as read-only
    views (an in-place edit raises ``ValueError``), torch tensors as copies (``clone``, on their device, no host
    read). Keep them as they are; they are not overwritten by later steps.
    """

    def __init__(self, callback, n: int):
        self.callback, self.n = callback, n

    def _guarded(self, a):
        if a is None:
            return None
        if _xp.is_torch(a):
            return a.detach().clone()
        view = a.view()
        view.flags.writeable = False
        return view

    def _times(self, t):
        if _xp.is_torch(t):
            t = t.detach().cpu().double().numpy()
        t = np.asarray(t, dtype=np.float64)
        return np.full(self.n, float(t)) if t.ndim == 0 else t.copy()

    def __call__(self, info):
        info = dict(info, t=self._times(info["t"]), x=self._guarded(info["x"]))
        info["denoised"] = self._guarded(info.get("denoised"))
        self.callback(info)
