"""Solvers: objects with declared orders, registered by name (see :data:`SOLVERS`)."""

from .adaptive import AdaptiveSDE, Dopri5
from .base import (
    SOLVERS,
    FixedStepSolver,
    Preset,
    Solver,
    StepContext,
    get_solver,
    parse_solver_spec,
    register,
    register_preset,
    registry_rows,
)
from .dpm_adaptive import DPMSolverAdaptive
from .dpm_solver import DPMSolverPP2M, DPMSolverPP2MSDE, DPMSolverPP3M
from .edm import EDMSampler
from .runge_kutta import Euler, Heun, RK4Solver, RungeKutta, rk_step
from .score_based import Ancestral, AnnealedLangevin, Langevin, PredictorCorrector, ReverseDiffusion
from .sra import SRA1Solver
from .stochastic import EulerMaruyama, brownian_increment
from .tableaus import ButcherTableau

__all__ = [
    "SOLVERS",
    "Solver",
    "FixedStepSolver",
    "StepContext",
    "Preset",
    "register_preset",
    "get_solver",
    "parse_solver_spec",
    "register",
    "registry_rows",
    "RungeKutta",
    "Euler",
    "Heun",
    "RK4Solver",
    "EulerMaruyama",
    "ButcherTableau",
    "rk_step",
    "brownian_increment",
    "ReverseDiffusion",
    "Ancestral",
    "Langevin",
    "PredictorCorrector",
    "AnnealedLangevin",
    "EDMSampler",
    "SRA1Solver",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "DPMSolverPP2MSDE",
    "AdaptiveSDE",
    "Dopri5",
    "DPMSolverAdaptive",
]

from .exp_pc import ExpPredictorCorrector, ExpPredictorCorrectorSDE  # noqa: E402

__all__ += ["ExpPredictorCorrector", "ExpPredictorCorrectorSDE"]

from .dpm_single import DPMSolverSinglestep  # noqa: E402

__all__ += ["DPMSolverSinglestep"]

# the few-step solvers
from .afs import AnalyticFirstStep  # noqa: E402
from .deis import DEIS  # noqa: E402
from .ipndm import IPNDM, IPNDMV  # noqa: E402
from .restart import Restart  # noqa: E402
from .sa_solver import SASolver  # noqa: E402
from .unipc import UniPC  # noqa: E402

__all__ += ["IPNDM", "IPNDMV", "DEIS", "UniPC", "Restart", "SASolver", "AnalyticFirstStep"]

# DPM-Solver-2 in the noise level (k-diffusion's sample_dpm_2, diffusers' KDPM2 schedulers)
from .dpm2 import DPM2, DPM2Ancestral  # noqa: E402

__all__ += ["DPM2", "DPM2Ancestral"]
