"""The times of a solve: the fixed grid from ``steps``/``grid`` (:func:`resolve_grid`), the save slots of
``save_at`` on it (:func:`resolve_save`), and the stops of an adaptive solve (:func:`adaptive_stops`). ``solve``
calls them once, at the entry (nothing below re-validates)."""

from __future__ import annotations

import numpy as np

from . import _xp
from .grids import make_grid
from .validation import positive_int

__all__ = ["resolve_grid", "resolve_save", "adaptive_stops"]


def resolve_grid(process, t0, t1, steps, grid):
    if grid is None:
        if steps is None:
            raise ValueError("give steps or grid: steps for a uniform grid, grid for an explicit array of times")
        return np.linspace(t0, t1, positive_int("steps", steps) + 1)
    if isinstance(grid, str) or callable(grid):
        # a named schedule between t0 and t1 (they run from high to low noise)
        if steps is None:
            raise ValueError(f"grid={grid!r} is a schedule: give steps too")
        sde = getattr(process, "sde", process)
        if not t1 < t0:
            raise ValueError(f"named grids run backwards in time (t1 < t0); got t0={t0}, t1={t1}: pass an array")
        return make_grid(sde, steps, grid, t_end=t1, t_start=t0)
    if steps is not None:
        raise ValueError(f"give steps or an explicit grid, not both (got steps={steps!r} and a grid array)")
    # the ends are compared at the precision of the grid's own dtype: a float32 grid (k-diffusion's sigmas are)
    # ends at t1 only to float32 precision
    given = grid.detach().cpu().numpy() if _xp.is_torch(grid) else np.asarray(grid)
    resolution = np.finfo(given.dtype).eps if given.dtype.kind == "f" else np.finfo(np.float64).eps
    ts = given.astype(np.float64)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"grid must be a 1-D array of at least 2 times, got shape {ts.shape}")
    if not np.all(np.isfinite(ts)):
        raise ValueError("grid contains NaN or infinite times")
    diffs = np.diff(ts)
    direction = np.sign(t1 - t0)
    if not np.all(diffs * direction > 0):
        want = "decreasing" if direction < 0 else "increasing"
        raise ValueError(f"grid must be strictly {want} from t0={t0} to t1={t1}, got {ts!r}")
    tol = max(1e-12, 8 * resolution) * max(1.0, abs(t0), abs(t1))
    if abs(ts[0] - t0) > tol or abs(ts[-1] - t1) > tol:
        raise ValueError(f"grid must start at t0={t0} and end at t1={t1}, got grid[0]={ts[0]}, grid[-1]={ts[-1]}")
    ts = ts.copy()
    ts[0], ts[-1] = t0, t1
    return ts


def resolve_save(save_at, grid):
    if save_at is None or save_at is False:
        return None
    if save_at is True:
        return frozenset(range(len(grid)))
    wanted = np.atleast_1d(np.asarray(save_at, dtype=np.float64))
    index = []
    scale = max(1.0, float(np.max(np.abs(grid))))
    for s in wanted:
        hits = np.nonzero(np.abs(grid - s) <= 1e-10 * scale)[0]
        if hits.size == 0:
            raise ValueError(f"save_at time {s!r} is not a point of the grid; grid times are {grid!r}")
        index.append(int(hits[0]))
    return frozenset(index)


def adaptive_stops(solver, save_at, t0: float, t1: float) -> np.ndarray:
    """``[t0, save times strictly inside, t1]``: the times every sample of an adaptive solve steps onto exactly
    (its step is shortened to land on the next one), so the states there are saved without interpolation."""
    if save_at is None or save_at is False:
        return np.array([t0, t1])
    if save_at is True:
        raise ValueError(f"save_at=True (every step) needs a fixed grid; the adaptive solver {solver.name!r} takes "
                         f"per-sample steps: pass the times to save at")  # fmt: skip
    wanted = np.atleast_1d(np.asarray(save_at, dtype=np.float64))
    lo, hi = min(t0, t1), max(t0, t1)
    tol = 1e-12 * max(1.0, abs(t0), abs(t1))
    bad = wanted[~np.isfinite(wanted) | (wanted < lo - tol) | (wanted > hi + tol)]
    if bad.size:
        raise ValueError(f"save_at times must lie in [{lo}, {hi}], got {bad[0]!r}")
    inside = np.unique(wanted[(np.abs(wanted - t0) > tol) & (np.abs(wanted - t1) > tol)])
    if t1 < t0:
        inside = inside[::-1]
    return np.concatenate([[t0], inside, [t1]])
