"""What ``solve`` hands to a backend: the validated :class:`Job`, and the wrapper that checks a user score's output.

Backends import from here (and not from :mod:`sdekit.integrate`, which imports the backends).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _xp
from ..solvers.base import Solver

__all__ = ["Job", "CheckedScore"]


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


class CheckedScore:
    """Wraps a user score: the first call checks the returned shape and dtype, later calls pass through."""

    def __init__(self, score):
        self.score = score
        self.checked = False
        self.event_shape = getattr(score, "event_shape", None)

    def __call__(self, x, t):
        out = self.score(x, t)
        if not self.checked:
            shape, dtype = tuple(getattr(out, "shape", ())), getattr(out, "dtype", None)
            if shape != tuple(x.shape):
                raise ValueError(f"score returned shape {shape}, expected the shape of x {tuple(x.shape)}")
            if _xp.is_torch(x) != _xp.is_torch(out) or dtype != x.dtype:
                raise TypeError(
                    f"score returned {type(out).__name__} of dtype {dtype}, expected "
                    f"{type(x).__name__} of dtype {x.dtype} (the type and dtype of x)"
                )
            self.checked = True
        return out
