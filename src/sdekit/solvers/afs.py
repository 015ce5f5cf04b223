"""The analytical first step (AFS) for any one-evaluation-per-step ODE solver (zju-pi/diff-sampler's ``afs`` option,
Zhou et al. 2024, "Fast ODE-based Sampling for Diffusion Models in Around 5 Steps", sec. 3.3).

At the start of sampling, at the largest noise level ``s = sigma / alpha``, the state is nearly pure noise and the
noise prediction is nearly ``eps = x_hat / sqrt(sigma_data^2 + s^2)`` (``x_hat = x / alpha``; exact in the limit of
large ``s`` whatever the data, with ``sigma_data = 1`` as in diff-sampler). The first step uses that value in
place of a score evaluation, which leaves one more evaluation of the budget for the rest of the grid.

:class:`AnalyticFirstStep` wraps a solver: on step 0 the wrapped solver sees the same process with that analytic
score, so it takes the value into its history exactly as it would an evaluated one; later steps are unchanged.
``ipndm``, ``ipndm_v`` and ``deis`` have it built in (``afs=True``, the same numbers); this wrapper gives it to the
others (``unipc``, ``dpmpp_pc``, ``dpmpp_3m``, ...). It is an unregistered solver object: pass an instance,
``sample(..., solver=AnalyticFirstStep("dpmpp_pc", order=3))``.
"""

from __future__ import annotations

import math

from ..validation import positive_number
from ._common import coeffs, linear_sde_of
from .affine import affine_table
from .base import FixedStepSolver, get_solver

__all__ = ["AnalyticFirstStep", "analytic_score_factor"]


def analytic_score_factor(sde, t: float, sigma_data: float) -> float:
    """``q`` with the analytic first step's score ``q x``: ``eps = x_hat / sqrt(sigma_data^2 + s^2)``, score ``=
    -eps / sigma``."""
    alpha, sigma = coeffs(sde, t)
    s = sigma / alpha
    return -1.0 / (alpha * sigma * math.sqrt(sigma_data**2 + s * s))


class _AnalyticScore:
    """The score whose noise prediction is ``x_hat / sqrt(sigma_data^2 + s^2)`` (no network call)."""

    def __init__(self, sde, sigma_data: float):
        self.sde, self.sigma_data = sde, sigma_data

    def __call__(self, x, t):
        tt = float(t[0]) if getattr(t, "ndim", 0) else float(t)
        return x * analytic_score_factor(self.sde, tt, self.sigma_data)


class AnalyticFirstStep(FixedStepSolver):
    """``solver`` (a name, spec or instance; ``options`` for its constructor) whose first step uses the analytic
    noise prediction instead of a score evaluation (see the module docstring). NFE: the wrapped solver's less one.
    Orders, kind and history are the wrapped solver's (the analytic value is exact as ``s -> infinity``, so the
    observed order on grids that start at a large noise level is unchanged)."""

    def __init__(self, solver, sigma_data: float = 1.0, **options):
        inner = get_solver(solver, **options)
        problems = [why for bad, why in (
            (not inner.is_ode, "it does not integrate ODEs"),
            (inner.adaptive, "it chooses its own steps (adaptive)"),
            (inner.nfe_per_step != 1, f"it takes {inner.nfe_per_step} NFE per step"),
        ) if bad]  # fmt: skip
        if problems:
            raise ValueError(
                f"AnalyticFirstStep wraps fixed-step ODE solvers with 1 NFE per step; solver {inner.name!r} cannot be "
                f"wrapped: {'; '.join(problems)}"
            )
        self.inner = inner
        self.sigma_data = positive_number("sigma_data", sigma_data)
        self.name = f"{inner.name}+afs"
        self.is_ode, self.is_sde = True, False
        self.order, self.nfe_per_step = inner.order, 1
        self.multistep_order = inner.multistep_order
        self.default_grid = inner.default_grid

    def __repr__(self):
        return f"AnalyticFirstStep({self.inner!r}, sigma_data={self.sigma_data})"

    def check_process(self, process):
        linear_sde_of(process, self.name)
        self.inner.check_process(process)

    def nfe(self, grid, process=None) -> int:
        return self.inner.nfe(grid, process) - 1

    @property
    def has_affine_coefficients(self) -> bool:
        """True when the wrapped solver has :meth:`affine_coefficients` that fit the affine kernel."""
        inner = self.inner
        return callable(getattr(inner, "affine_coefficients", None)) and getattr(inner, "has_affine_coefficients", True)

    def affine_coefficients(self, sde, grid, stochastic: bool = False):
        """The wrapped solver's :class:`~sdekit.solvers.affine.AffineCoefficients` with the first evaluation taken on
        the analytic score ``q x``: ``E_0 = ((e0 + e1 q) x + 0 score) / e2``, no score evaluation (``TypeError``
        when the wrapped solver has none)."""
        if not self.has_affine_coefficients:
            raise TypeError(f"the wrapped solver {self.inner.name!r} has no affine coefficients")
        tab = affine_table(self.inner, sde, grid, stochastic)
        e0, e1, e2 = tab.ev[0]
        q = analytic_score_factor(sde, float(grid[0]), self.sigma_data)
        tab.ev[0] = e0 + e1 * q, 0.0, e2
        return tab

    def step(self, process, x, t, t_next, z, ctx):
        if ctx.index == 0:
            process = type(process)(process.sde, _AnalyticScore(process.sde, self.sigma_data))
        return self.inner.step(process, x, t, t_next, z, ctx)
