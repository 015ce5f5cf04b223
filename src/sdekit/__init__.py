"""sdekit: numerical SDE solvers for score-based generative models.

Public names only; see the modules for details.
"""

from . import analytic, bench, distributed, grids, likelihood, metrics, noise, scores, solvers, zoo
from .analytic import Gaussian, GaussianMixture
from .errors import NonFiniteError
from .integrate import sample, solve, tweedie_denoise
from .scores import score_from_denoiser, score_from_eps, score_from_v, score_from_x0
from .sdes import (
    EDMSDE,
    SDE,
    VESDE,
    VPSDE,
    DiscreteVPSDE,
    GeneralSDE,
    LinearSDE,
    ProbabilityFlowODE,
    ReverseSDE,
    SubVPSDE,
)
from .solution import Solution
from .solvers import SOLVERS, get_solver

__version__ = "0.1.0"

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
    "noise",
    "scores",
    "solvers",
    "zoo",
]
