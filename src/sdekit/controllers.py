"""Step-size control for adaptive solvers, one step size per sample.

A controller turns the normalised error of an attempted step (``err <= 1`` means within tolerance) into an
accept/reject decision and the next step size. The PI controller (Gustafsson 1991; Hairer & Wanner,
"Solving ODEs II", sec. IV.2) uses the current and the previous accepted error::

    factor = SAFETY * err^(-beta1) * err_prev^(beta2),  clipped to [MIN_FACTOR, MAX_FACTOR]

After a rejection the step only shrinks (factor capped at 1). Everything works on ``(n,)`` float64 arrays:
numpy arrays, or torch tensors on any device (the device-side adaptive loop; same operations, no host read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _xp

__all__ = ["PIController", "RK45Controller", "SAFETY", "MIN_FACTOR", "MAX_FACTOR", "DOPRI5_BETA"]

# named constants, as in scipy.integrate._ivp.rk
SAFETY = 0.9  # multiply the optimal factor by this to keep the next error below the tolerance
MIN_FACTOR = 0.2  # never shrink a step by more than this
MAX_FACTOR = 10.0  # never grow a step by more than this
DOPRI5_BETA = 0.04  # Hairer's DOPRI5 stabilisation: beta2 = 0.04, beta1 = 1/5 - 0.75 beta2
ERR_FLOOR = 1e-4  # errors below this count as this (Hairer's facold floor), to bound the growth


@dataclass(frozen=True)
class PIController:
    """A PI step-size controller with exponents ``beta1`` (current error) and ``beta2`` (previous error).

    ``beta2 = 0`` gives the classic I controller ``factor = SAFETY err^(-1/(q+1))`` with ``beta1 = 1/(q+1)``.
    """

    beta1: float
    beta2: float = 0.0
    safety: float = SAFETY
    min_factor: float = MIN_FACTOR
    max_factor: float = MAX_FACTOR

    def __post_init__(self):
        for name in ("beta1", "beta2", "safety", "min_factor"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
        if not self.max_factor >= 1.0:
            raise ValueError(f"max_factor must be >= 1, got {self.max_factor!r}")

    def propose(self, h: np.ndarray, err: np.ndarray, err_prev: np.ndarray):
        """``(accept, h_new)`` for attempted step sizes ``h`` (positive) with errors ``err``, all ``(n,)``."""
        if _xp.is_torch(err):
            return self._propose_torch(h, err, err_prev)
        accept = err <= 1.0
        e = np.maximum(err, ERR_FLOOR)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            factor = self.safety * e ** (-self.beta1) * np.maximum(err_prev, ERR_FLOOR) ** self.beta2
        factor = np.where(np.isfinite(factor), factor, self.min_factor)
        factor = np.clip(factor, self.min_factor, self.max_factor)
        factor = np.where(accept, factor, np.minimum(factor, 1.0))
        return accept, h * factor

    def _propose_torch(self, h, err, err_prev):
        # the numpy branch's operations in the same order, on tensors (no host read)
        torch = _xp.lib(err)
        accept = err <= 1.0
        e = torch.clamp(err, min=ERR_FLOOR)
        factor = self.safety * e ** (-self.beta1) * torch.clamp(err_prev, min=ERR_FLOOR) ** self.beta2
        factor = torch.where(torch.isfinite(factor), factor, self.min_factor)
        factor = torch.clamp(factor, self.min_factor, self.max_factor)
        factor = torch.where(accept, factor, torch.clamp(factor, max=1.0))
        return accept, h * factor


@dataclass(frozen=True)
class RK45Controller:
    """scipy ``RK45``'s I controller (Hairer, Norsett & Wanner, "Solving ODEs I", sec. II.4), used by
    :func:`sdekit.likelihood.log_likelihood`'s Dormand--Prince: ``factor = SAFETY err^(-exponent)`` clipped to
    ``[MIN_FACTOR, MAX_FACTOR]``, no growth after a rejected attempt. Unlike :class:`PIController` it does not floor
    the error at ``ERR_FLOOR``, so a step with a tiny error may grow up to ``MAX_FACTOR`` (as ``RK45``'s do).
    A non-finite error rejects and shrinks by ``MIN_FACTOR``. numpy ``(n,)`` float64 arrays.
    """

    exponent: float

    def propose(self, h: np.ndarray, err: np.ndarray, last_rejected: np.ndarray):
        """``(accept, h_new)`` for attempted step sizes ``h`` with errors ``err``; ``last_rejected``: the samples'
        previous attempt was rejected (their step may not grow)."""
        err = np.where(np.isfinite(err), err, np.inf)
        accept = err <= 1.0
        with np.errstate(divide="ignore"):
            factor = np.where(np.isfinite(err), SAFETY * np.maximum(err, 1e-300) ** -self.exponent, 0.0)
        factor = np.clip(factor, MIN_FACTOR, MAX_FACTOR)
        factor = np.where(accept & ~last_rejected, factor, np.minimum(factor, 1.0))  # no growth after a rejection
        return accept, h * factor
