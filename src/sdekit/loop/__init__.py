"""The integration driver: the loop around a solver's step, written once for every Python backend.

* :mod:`sdekit.loop.fixed` -- fixed grids (:class:`GridLoop`): noise, ``solver.step``, the finiteness guard, saves,
  callback, progress and stats. A fixed grid is the controller that always accepts.
* :mod:`sdekit.loop.adaptive` -- per-sample adaptive steps: propose a step, draw its noise (counter, Brownian tree
  or bridge), :func:`attempt` (``solver.attempt`` with the finiteness guard folded into the error), ask the
  controller (:class:`sdekit.controllers.PIController`), accept or reject per sample, save at stops. The host
  mode reads the decisions every attempt (numpy, and torch with a callback or tree noise); the torch backend's
  device-side working set (:mod:`sdekit.backends.torch_adaptive`) runs the same attempt with masks and reads the
  host every ``k`` attempts.

Backends supply array operations only (the noise source, the guard, the state); see ``docs/architecture.md``.
"""

from __future__ import annotations

from .fixed import DeviceGuard, GridLoop, HostGuard, grid_stats, guard_for, run_grid, solve_grid

__all__ = ["GridLoop", "HostGuard", "DeviceGuard", "guard_for", "grid_stats", "run_grid", "solve_grid"]
