"""Learned few-step solvers: :func:`fit` a probability-flow solver's steps, time offsets and history weights to
teacher trajectories of any score, starting from a proven solver (``ipndm(afs=True)`` by default), and use it as
an ordinary solver (``sample(sde, score, x_T=x, solver=fitted)``); :func:`load` what ``fitted.save(path)`` wrote.
See ``docs/learn.md`` for the method, its references and its limits.
"""

from .fit import DEFAULT_BASE, fit
from .solver import LearnedSolver, load

__all__ = ["fit", "load", "LearnedSolver", "DEFAULT_BASE"]
