"""sdekit: numerical SDE solvers for score-based generative models.

Public names only; see the modules for details.
"""

from . import analytic, bench, distributed, grid_search, grids, likelihood, metrics, noise, scores, solvers, zoo
from ._version import __version__ as __version__
from .analytic import Gaussian, GaussianMixture
from .discrete_vp import DiscreteVPSDE
from .errors import NonFiniteError
from .integrate import sample, solve, tweedie_denoise
from .scores import score_from_denoiser, score_from_eps, score_from_v, score_from_x0
from .sdes import (
    EDMSDE,
    SDE,
    VESDE,
    VPSDE,
    GeneralSDE,
    LinearSDE,
    ProbabilityFlowODE,
    ReverseSDE,
    SubVPSDE,
)
from .solution import Solution
from .solvers import SOLVERS, get_solver

__all__ = [
    "SDE",
    "LinearSDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "EDMSDE",
    "GeneralSDE",
    "DiscreteVPSDE",
    "ReverseSDE",
    "ProbabilityFlowODE",
    "Gaussian",
    "GaussianMixture",
    "NonFiniteError",
    "Solution",
    "SOLVERS",
    "get_solver",
    "solve",
    "sample",
    "tweedie_denoise",
    "score_from_eps",
    "score_from_x0",
    "score_from_v",
    "score_from_denoiser",
    "analytic",
    "bench",
    "distributed",
    "likelihood",
    "metrics",
    "grids",
    "grid_search",
    "noise",
    "scores",
    "solvers",
    "zoo",
]


def __getattr__(name):
    # sdekit.learn is imported on first use (it is not needed to sample)
    if name == "learn":
        import importlib

        return importlib.import_module(".learn", __name__)
    raise AttributeError(f"module 'sdekit' has no attribute {name!r}")
