"""sdekit: numerical SDE solvers for score-based generative models.

Public names only; see the modules for details.

``import sdekit`` loads the core (processes, solvers, backends' registry, ``solve``/``sample``, the analytic
densities) and neither scipy nor the workbench: ``sdekit.bench``, ``sdekit.zoo``, ``sdekit.distributed``,
``sdekit.likelihood``, ``sdekit.metrics``, ``sdekit.grid_search`` and ``sdekit.interop`` are imported the first time
they are used (PEP 562 module ``__getattr__``; ``import sdekit.bench`` works as always).
"""

import importlib

from . import analytic, grids, noise, scores, solvers
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

#: Subpackages loaded on first use: attribute name -> module (the workbench and the optional integrations).
_LAZY_MODULES = {
    "bench": ".bench",
    "distributed": ".distributed",
    "grid_search": ".grid_search",
    "interop": ".interop",
    "likelihood": ".likelihood",
    "metrics": ".metrics",
    "zoo": ".zoo",
}


def __getattr__(name):
    module = _LAZY_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'sdekit' has no attribute {name!r}")
    value = importlib.import_module(module, __name__)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES))
