"""The ``solver`` entry of an :class:`~sdekit.interop.diffusers.SdekitScheduler`: a registered fixed-step solver, or
a learned few-step solver (:mod:`sdekit.learn`) as the steps of a diffusers pipeline.

A learned solver runs on the grid it was fitted on, for the process it was fitted for. For a pipeline that process is
the scheduler's own (``scheduler.sde``, the DDPM schedule as a :class:`~sdekit.discrete_vp.DiscreteVPSDE`): fit with
``sdekit.learn.fit(scheduler.sde, score, nfe)``, save the result, and name the file as the scheduler's solver
(``SdekitScheduler(solver="fitted.json")``; the config stores the path). ``set_timesteps`` then announces the model
timesteps of the fitted grid, whose final denoising step is the scheduler's (``final_sigmas_type="zero"``) when the
solver was fitted with ``denoise=True``.
"""

from __future__ import annotations

import numpy as np

from ..solvers import get_solver

__all__ = ["solver_from_spec", "own_grid_points", "check_fitted_for"]


def solver_from_spec(spec: str, options: dict):
    """The solver named by a scheduler's ``solver`` entry: a registered solver's spec built with ``options``, or the
    path of a learned solver's saved file (``*.json``, read by :func:`sdekit.learn.load`; it takes no options).
    ``ValueError`` for an adaptive solver: it chooses its own steps."""
    if not spec.endswith(".json"):
        solver = get_solver(spec, **options)
        if solver.adaptive:
            raise ValueError(
                f"solver {solver.name!r} chooses its own (per-sample) steps and cannot run on a pipeline's "
                "timesteps, one network call at a time; use a fixed-step solver"
            )
        return solver
    if options:
        raise ValueError(f"solver={spec!r} is a learned solver's file; it takes no solver options, got {options!r}")
    from ..learn import load

    return load(spec)


def own_grid_points(solver, cfg, sde, n, timesteps, sigmas):
    """``(taus, None)``: the model timesteps of the fitted grid of a solver that runs on its own grid (a learned solver:
    ``solver.fixed_grid``), for ``set_timesteps(num_inference_steps=n)`` with ``n`` its number of points, of a scheduler
    with config ``cfg`` on ``sde``; ``None`` for any other solver. ``ValueError`` for another ``n``, for ``timesteps`` /
    ``sigmas``, and for a final step other than the one it was fitted for."""
    grid = getattr(solver, "fixed_grid", None)
    if grid is None:
        return None
    if timesteps is not None or sigmas is not None:
        raise ValueError(
            "a learned solver runs on the grid it was fitted on: call set_timesteps(num_inference_steps) (its "
            f"{len(grid)} step points), not timesteps= or sigmas="
        )
    if n != len(grid):
        raise ValueError(
            f"num_inference_steps must be {len(grid)} for this learned solver (the step points of the grid it was "
            f"fitted on, {solver.nfe_budget} network evaluations), got {n!r}"
        )
    final_sigmas_type = cfg.final_sigmas_type
    if solver.denoise != (final_sigmas_type == "zero"):
        want = "'zero'" if solver.denoise else "'sigma_min'"
        raise ValueError(
            f"final_sigmas_type must be {want} for this learned solver (fitted with denoise={solver.denoise}), got "
            f"{final_sigmas_type!r}"
        )
    return np.asarray(sde.timestep(grid), dtype=np.float64), None


def check_fitted_for(solver, sde) -> None:
    """``ValueError`` when ``solver`` is a learned solver fitted for another process than the scheduler's ``sde``
    (another training schedule)."""
    if getattr(solver, "fixed_grid", None) is None:
        return
    from ..learn.solver import same_sde

    if not same_sde(solver.sde, sde):
        raise ValueError(
            f"the learned solver was fitted for {solver.sde!r} and this scheduler's training schedule is another "
            f"({sde!r}: num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas); fit it on "
            "scheduler.sde"
        )
