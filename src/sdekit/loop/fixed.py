"""The fixed-grid driver: one step after the other along a grid, on any array library.

:class:`GridLoop` is the only place outside :mod:`sdekit.solvers` that calls a fixed-step solver's ``step``: the
numpy and torch backends (eager and CUDA-graph capture), the numba backend's per-step path, the exact-law probes of
:mod:`sdekit.bench` and both interop drivers (a whole grid, and the diffusers ``Stepper``, which replays one step
at a time) run their steps through it. A fixed grid is the step-size controller that always accepts: the next time
is ``grid[k + 1]``.

What differs between array libraries is passed in, not written again:

* the noise source ``draw(k) -> list of z`` (counter-based numpy/torch/numba normals or the Brownian tree);
* the finiteness guard: :class:`HostGuard` checks the state on the host after every step (numpy) and raises at
  once; :class:`DeviceGuard` records a float64 sum per step on the device and is read once, after the loop
  (torch: no host synchronisation inside the loop).
"""

from __future__ import annotations

import time

from .. import _xp
from ..backends.job import Trajectory
from ..errors import NonFiniteError
from ..progress import progress_bar
from ..solvers.base import StepContext

__all__ = ["GridLoop", "HostGuard", "DeviceGuard", "guard_for", "grid_stats", "run_grid", "solve_grid"]


class HostGuard:
    """Check the state after each step on the host; :class:`sdekit.NonFiniteError` at the first non-finite one."""

    def __init__(self, grid):
        self.grid = grid

    def __call__(self, k: int, x) -> None:
        if not _xp.isfinite_all(x):
            raise NonFiniteError(k, float(self.grid[k + 1]))

    def check(self) -> None:
        """Nothing left to check (every step was checked as it ended)."""


class DeviceGuard:
    """A device-side record of the steps' finiteness: after step ``k`` the float64 sum of the state goes to
    ``checks[k]`` (a NaN or an infinity anywhere makes it non-finite); :meth:`check` reads the record once.

    ``checks``: a float64 tensor of one entry per step (preallocated by the caller: a CUDA graph records writes into
    it), or ``None`` for a growing list (stacked at the check)."""

    def __init__(self, grid, checks=None):
        self.grid, self.checks, self.recorded = grid, checks, []

    def __call__(self, k: int, x) -> None:
        total = x.detach().sum(dtype=_xp.lib(x).float64)
        if self.checks is not None:
            self.checks[k] = total
        else:
            self.recorded.append(total)

    def check(self) -> None:
        """One host read: raise :class:`sdekit.NonFiniteError` at the first non-finite step."""
        checks = self.checks
        if checks is None:
            if not self.recorded:
                return
            checks = _xp.lib(self.recorded[0]).stack(self.recorded)
        torch = _xp.lib(checks)
        bad = ~torch.isfinite(checks)
        first = int(torch.where(bad.any(), torch.argmax(bad.to(torch.uint8)), -1))  # the single synchronisation
        if first >= 0:
            raise NonFiniteError(first, float(self.grid[first + 1]))


def guard_for(x, grid, enabled: bool = True):
    """The finiteness guard for a state like ``x``: a device record for tensors, a per-step host check otherwise;
    ``None`` when ``enabled`` is false."""
    if not enabled:
        return None
    return DeviceGuard(grid) if _xp.is_torch(x) else HostGuard(grid)


def grid_stats(n_steps: int, start: float) -> dict:
    """The ``stats`` of a fixed-grid solve: every step accepted; ``start`` is its ``perf_counter`` start."""
    return {"steps": n_steps, "accepted": n_steps, "rejected": 0, "wall_time": time.perf_counter() - start}


class GridLoop:
    """A fixed-step ``solver`` driven along ``grid`` (float64, monotone; step ``k`` goes from ``grid[k]`` to
    ``grid[k + 1]``).

    Parameters
    ----------
    solver : FixedStepSolver
    grid : ndarray (n_steps + 1,)
    draw : callable, optional
        ``draw(k) -> list of z``: the step's ``solver.n_noise`` standard-normal fields like the state; ``None`` for an
        ODE.
    guard : HostGuard, DeviceGuard or None
        Called as ``guard(k, x_next)`` after each step.
    context : callable, optional
        ``context(k, memory) -> StepContext`` (default ``StepContext(k, grid, memory)``; the interop drivers count a
        final denoising step in the context's ``n_steps``).
    """

    def __init__(self, solver, grid, *, draw=None, guard=None, context=None):
        self.solver, self.grid, self.draw, self.guard = solver, grid, draw, guard
        self.context = context or (lambda k, memory: StepContext(k, grid, memory))
        self.memory = {}  # the solver's per-solve history (StepContext.memory)

    @property
    def n_steps(self) -> int:
        return len(self.grid) - 1

    def step(self, process, x, k: int, *, z=None, memory=None):
        """Step ``k`` from ``x``: the noise (``draw(k)`` unless ``z`` is given), the solver's step, the guard.

        ``memory``: the per-solve history to use (default the loop's own; the diffusers ``Stepper`` passes a copy
        so that an abandoned replay leaves it as it was). Returns ``(x_next, ctx)``; ``ctx.denoised`` is the
        solver's data prediction when it computes one.
        """
        ctx = self.context(k, self.memory if memory is None else memory)
        if z is None and self.draw is not None:
            z = self.draw(k)
        x_next = self.solver.step(process, x, float(self.grid[k]), float(self.grid[k + 1]), z, ctx)
        if self.guard is not None:
            self.guard(k, x_next)
        return x_next, ctx

    def run(self, process, x, *, saves=None, callback=None, bar=None):
        """Every step from ``x``; returns the final state.

        ``saves``: a :class:`sdekit.backends.job.Trajectory` (``put(k + 1, x)`` after step ``k``); ``callback``:
        ``callback({"step", "t", "x", "denoised"})`` after each step; ``bar``: a progress bar (``update(1)``).
        The guard is called after each step; a :class:`DeviceGuard` is read by the caller (:meth:`check`).
        """
        for k in range(self.n_steps):
            x, ctx = self.step(process, x, k)
            if saves is not None:
                saves.put(k + 1, x)
            if callback is not None:  # nothing of it runs (no host read) without a callback
                callback({"step": k, "t": float(self.grid[k + 1]), "x": x, "denoised": ctx.denoised})
            if bar is not None:
                bar.update(1)
        return x

    def check(self) -> None:
        """Raise for a non-finite step that the guard recorded (a no-op for the host guard or none)."""
        if self.guard is not None:
            self.guard.check()


def run_grid(job, draw=None, guard=None, bar=None):
    """Run the validated ``job`` (a fixed-step solver) on its grid from ``job.x0``: saves, callback, guard.

    ``draw``: the noise source (``None`` for an ODE); ``guard``: the finiteness guard (``None``: no check); ``bar``:
    a progress bar. Returns ``(x, saved)`` (``saved``: the preallocated trajectory, or ``None``); a
    :class:`DeviceGuard` is left for the caller to read.
    """
    saves = Trajectory(job.save_index, job.x0)
    saves.put(0, job.x0)
    loop = GridLoop(job.solver, job.grid, draw=draw, guard=guard)
    x = loop.run(job.process, job.x0, saves=saves, callback=job.callback, bar=bar)
    return x, saves.data


def solve_grid(job, noise, guard=None):
    """``job`` -> ``(x, saved, nfe, stats)`` with the noise source ``noise(job) -> draw`` and the finiteness
    ``guard`` (a :class:`HostGuard` for ``job.check_finite`` when none is given), under a progress bar."""
    start = time.perf_counter()
    if guard is None and job.check_finite:
        guard = HostGuard(job.grid)
    draw = noise(job) if job.stochastic else None
    n_steps = len(job.grid) - 1
    with progress_bar(n_steps, job.progress, desc=job.solver.name) as bar:
        x, saved = run_grid(job, draw, guard, bar)
    if guard is not None:
        guard.check()
    return x, saved, job.solver.nfe(job.grid, job.process), grid_stats(n_steps, start)
