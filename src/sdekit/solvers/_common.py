"""Small pieces shared by the samplers of score-based models (linear-SDE coefficients, data prediction)."""

from __future__ import annotations

import math

from .. import _xp
from ..sdes import LinearSDE


def linear_sde_of(process, solver_name: str) -> LinearSDE:
    """The :class:`LinearSDE` behind a ``ReverseSDE`` / ``ProbabilityFlowODE``; ``ValueError`` otherwise."""
    sde = getattr(process, "sde", None)
    if not isinstance(sde, LinearSDE) or getattr(process, "score", None) is None:
        raise ValueError(
            f"solver {solver_name!r} needs the reverse SDE or probability-flow ODE of a LinearSDE (VPSDE, SubVPSDE, "
            f"VESDE, EDMSDE) with a score; got {process!r}"
        )
    return sde


def check_score_process(process, solver_name: str) -> None:
    """``ValueError`` unless ``process`` carries a score (the reverse SDE or probability-flow ODE of an SDE)."""
    if getattr(process, "score", None) is None or getattr(process, "sde", None) is None:
        raise ValueError(f"solver {solver_name!r} needs a process with a score (sde.reverse(score)); got {process!r}")


def coeffs(sde: LinearSDE, t: float) -> tuple[float, float]:
    """``(alpha(t), sigma(t))`` as python floats."""
    a, s = sde.marginal(float(t))
    return float(a), float(s)


def log_snr(sde: LinearSDE, t: float) -> float:
    return float(sde.log_snr(float(t)))


def score_at(process, x, t):
    """``score(x, t)`` with ``t`` broadcast to shape ``(n,)`` (the score convention)."""
    return process.score(x, _xp.full_time(t, x))


def data_prediction(process, sde: LinearSDE, x, t: float):
    """Tweedie's ``E[x_0 | x_t = x] = (x + sigma^2 score) / alpha`` at a scalar time ``t`` (1 NFE)."""
    return sde.denoise(process.score, x, t)


def sqrt_pos(v: float) -> float:
    """``sqrt(max(v, 0))``: variances computed as differences may round to a tiny negative number."""
    return math.sqrt(v) if v > 0.0 else 0.0
