"""The result of a solve."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Solution"]


@dataclass
class Solution:
    """Result of :func:`sdekit.solve` / :func:`sdekit.sample`.

    Attributes
    ----------
    x : array (n, *event)
        Final state.
    t : float or array (n,)
        Final time (per sample when samples end at different times).
    ts, xs : arrays or None
        Saved times ``(m,)`` and states ``(m, n, *event)`` when ``save_at`` was given.
    nfe : int
        Drift (score) evaluations per sample.
    stats : dict
        ``steps``, ``accepted``, ``rejected``, ``wall_time`` (s), ``backend``, ``solver``.
    """

    x: Any
    t: Any
    ts: Any = None
    xs: Any = None
    nfe: int = 0
    stats: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        shape = tuple(getattr(self.x, "shape", ()))
        saved = None if self.ts is None else len(self.ts)
        return f"Solution(x.shape={shape}, t={self.t!r}, nfe={self.nfe}, saved={saved}, stats={self.stats})"
