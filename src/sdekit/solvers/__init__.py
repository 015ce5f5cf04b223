"""Solvers: objects with declared orders, registered by name (see :data:`SOLVERS`)."""

from .base import SOLVERS, Solver, get_solver, register
from .runge_kutta import Euler, Heun, RK4Solver, RungeKutta, rk_step
from .stochastic import EulerMaruyama, brownian_increment
from .tableaus import ButcherTableau

__all__ = [
    "SOLVERS",
    "Solver",
    "get_solver",
    "register",
    "RungeKutta",
    "Euler",
    "Heun",
    "RK4Solver",
    "EulerMaruyama",
    "ButcherTableau",
    "rk_step",
    "brownian_increment",
]
