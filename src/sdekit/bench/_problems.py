"""The problems of :func:`sdekit.bench.compare`: named densities and SDEs, default budgets, the solver list."""

from __future__ import annotations

from ..analytic import DENSITIES, AnalyticDensity
from ..sdes import EDMSDE, VESDE, VPSDE, LinearSDE, SubVPSDE
from ..solvers import SOLVERS

__all__ = [
    "DENSITIES",
    "SDES",
    "DEFAULT_NFE",
    "DEFAULT_GRID",
    "DEFAULT_N",
    "DEFAULT_N_MAX",
    "SDE_NFE_MAX",
    "N_MAX_FACTOR",
    "GRID_DESCRIPTIONS",
    "make_density",
    "make_sde",
    "density_label",
    "fixed_step_solvers",
]

# DENSITIES (name -> (factory, description)) is sdekit.analytic.presets.DENSITIES itself: a density registered
# there (sdekit.analytic.register_density) is a problem here and a --density choice of the CLI.

#: Built-in forward SDEs with their default parameters: name -> class.
SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE, "edm": EDMSDE}

#: Default NFE budgets of :func:`compare` (multiples of 4 so that 1-, 2- and 4-stage solvers use them fully).
#: On the default problem the SDE errors reach the MMD noise floor at n = 4000 around 64 NFE, so 256 adds
#: cost (half the SDE solve time) and no resolved SDE point.
DEFAULT_NFE = (8, 16, 32, 64, 128)

#: Default time grid of :func:`compare`: equal steps in log-SNR, the schedule the DPM-Solver family is built
#: for and a good one for every solver on VP (a uniform grid in ``t`` wastes steps at large ``t``).
DEFAULT_GRID = "log_snr"

#: Default number of SDE samples of :func:`compare` (the MMD noise floor falls like ``1/n`` in ``MMD^2``): the
#: first batch of every SDE cell.
DEFAULT_N = 4000

#: Under the sequential default metric ``mmd_cf`` an SDE cell doubles its samples from ``n`` until resolved, at most
#: to ``n_max``, by default ``n * N_MAX_FACTOR`` (:data:`DEFAULT_N_MAX` for the default ``n``).
N_MAX_FACTOR = 2**10
DEFAULT_N_MAX = DEFAULT_N * N_MAX_FACTOR

#: SDE rows of the default :func:`compare` stop at this NFE budget: beyond it the second-order SDE solvers' law
#: errors on ring8 (about 3e-4 at NFE 128) need about 4 million samples per cell to be resolved (measured: 224 s for
#: one cell on a loaded 2-core machine), against 0.1-0.5 million at NFE 64.
SDE_NFE_MAX = 64

#: One-line descriptions of the grids, for the report header.
GRID_DESCRIPTIONS = {
    "uniform": "equal steps in t",
    "quadratic": "steps shrinking quadratically towards t_end",
    "log_snr": "equal steps in log-SNR log(alpha/sigma), DPM-Solver's schedule",
    "karras": "EDM's schedule in sigma/alpha, rho=7",
}


def make_density(density) -> AnalyticDensity:
    """A density object from a built-in name (see :data:`DENSITIES`) or an :class:`~sdekit.analytic.AnalyticDensity`."""
    if isinstance(density, AnalyticDensity):
        return density
    if isinstance(density, str) and density in DENSITIES:
        return DENSITIES[density][0]()
    raise ValueError(f"unknown density {density!r}; valid densities: {sorted(DENSITIES)}")


def density_label(density) -> tuple[str, str]:
    """``(name, description)`` of the density argument of :func:`compare` (a name, or an object's repr)."""
    if isinstance(density, str):
        return density, DENSITIES[density][1]
    return repr(density), repr(density)


def make_sde(sde) -> LinearSDE:
    """A :class:`LinearSDE` from a built-in name (see :data:`SDES`) or an instance."""
    if isinstance(sde, LinearSDE):
        return sde
    if isinstance(sde, str) and sde in SDES:
        return SDES[sde]()
    raise ValueError(f"unknown sde {sde!r}; valid SDEs: {sorted(SDES)}")


def fixed_step_solvers() -> list[str]:
    """Names of the registered solvers that run on a fixed grid (read from ``SOLVERS`` at call time)."""
    return [name for name, cls in SOLVERS.items() if not getattr(cls, "adaptive", False)]
