"""Adaptive solvers in log-SNR time: the change of variables ``lambda = log(alpha(t) / sigma(t))``.

A linear SDE's processes (the reverse SDE, the probability-flow ODE, the forward SDE itself) are stiff in their
own time near the data end: under EDM the probability-flow drift is ``(x - D(x, sigma)) / sigma`` with ``sigma = t``
(Karras et al. 2022, eq. 4), whose Jacobian grows like ``1 / sigma`` as ``sigma -> sigma_min``, so an explicit
adaptive solver takes many small steps there (or, at loose tolerances, is unstable). In the log-SNR variable
``lambda(t) = log(alpha(t) / sigma(t))`` (Lu et al. 2022, "DPM-Solver", sec. 3.1, the change of variables behind
its exponential integrators) the same flow is smooth: ``dx/dlambda = D - x`` under EDM, with a Jacobian in
``(-1, 0]`` for a Gaussian target.

The change of variables. ``lambda`` is strictly monotone in ``t`` (decreasing), with

    dlambda/dt = a(t) - sigma'(t) / sigma(t) = -g(t)^2 / (2 sigma(t)^2),   so   dt/dlambda = -2 sigma^2 / g^2,

(from ``g^2 = (sigma^2)' - 2 a sigma^2``, the identity every :class:`~sdekit.sdes.LinearSDE` satisfies). A process
``dx = F(x, t) dt + G(t) dW_t`` becomes, with ``t = t(lambda)``,

    dx = F(x, t(lambda)) dt/dlambda dlambda + G(t(lambda)) sqrt(|dt/dlambda|) dW_lambda,

where ``W_lambda`` is a standard Brownian motion in ``lambda`` (the time-changed ``W_t``: its increment over
``[lambda, lambda + h]`` has the variance ``|t(lambda + h) - t(lambda)|`` of ``W_t``'s, to first order in ``h``, and
the Ito integrals agree in law). The process's diffusion ``G = g`` (the reverse SDE's and the forward SDE's) gives
the diffusion ``g sqrt(2 sigma^2 / g^2) = sqrt(2) sigma(t)`` in ``lambda``-time. The exact law of the solution at
every time is unchanged; only the discretisation lives in ``lambda``, so a solver's steps (and its Brownian path,
with ``noise="tree"``) are laid out in ``lambda``.

Under EDM (``alpha = 1``, ``sigma = t``): ``lambda = -log sigma``, ``dt/dlambda = -sigma``; the probability-flow
ODE reads ``dx/dlambda = D - x`` and the reverse SDE ``dx = 2 (D - x) dlambda + sqrt(2) sigma dW_lambda``.

:func:`sdekit.solve` applies this when an adaptive solver is built with ``time="log_snr"`` (``Dopri5``,
``AdaptiveSDE``): it wraps the process in :class:`LogSNRTime`, maps the stops (``t0``, the ``save_at`` times,
``t1``) to ``lambda``, and returns the states at the original times.
"""

from __future__ import annotations

import math

import numpy as np

from . import _xp
from .sdes import LinearSDE

__all__ = ["TIME_VARIABLES", "check_time_variable", "LogSNRTime", "in_log_snr_time"]

#: The time variables an adaptive solver can integrate in: the process's own time ``"t"`` (default) or the
#: log-SNR ``"log_snr"`` (:class:`LogSNRTime`).
TIME_VARIABLES = ("t", "log_snr")

_SQRT2 = math.sqrt(2.0)


def check_time_variable(name: str, value, also: tuple = ()) -> str:
    """``value`` if it is one of :data:`TIME_VARIABLES` (or of ``also``), else a ``ValueError`` naming the argument
    ``name`` and the valid values."""
    valid = TIME_VARIABLES + tuple(also)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")
    return value


class LogSNRTime:
    """``process`` written in the log-SNR time ``lambda = log(alpha(t) / sigma(t))`` of its linear SDE.

    Has the process protocol (``drift(x, lam)``, ``diffusion(x, lam)``, ``restrict(rows)``) with times in
    ``lambda`` (floats or per-sample ``(n,)`` arrays / tensors):

    * ``drift(x, lam) = F(x, t) dt/dlambda`` with ``t = t(lambda)`` and ``dt/dlambda = -2 sigma(t)^2 / g(t)^2``;
    * ``diffusion(x, lam) = sqrt(2) sigma(t)`` (``g(t) sqrt(|dt/dlambda|)``) for an SDE, ``None`` for the ODE.

    Parameters
    ----------
    process : ReverseSDE, ProbabilityFlowODE or LinearSDE
        A process of a :class:`~sdekit.sdes.LinearSDE` (a forward linear SDE is its own process); the ``score`` it
        calls is its own (``solve`` checks it, the wrapper does not expose it).
    """

    def __init__(self, process):
        sde = getattr(process, "sde", process)
        if not isinstance(sde, LinearSDE):
            raise ValueError(f"time='log_snr' needs a linear SDE (alpha, sigma and their log-SNR); got {sde!r}")
        self.process = process
        self.sde = sde
        self.is_sde = bool(getattr(process, "is_sde", True))  # a forward SDE has no flag: it is one
        self.noise = getattr(process, "noise", "additive")

    # -- the two clocks ---------------------------------------------------------------------------------
    def time_of(self, lam):
        """``t(lambda)``: the process's time at log-SNR ``lam`` (:meth:`LinearSDE.t_from_log_snr`)."""
        return self.sde.t_from_log_snr(lam)

    def log_snr_of(self, t):
        """``lambda(t) = log(alpha(t) / sigma(t))`` (:meth:`LinearSDE.log_snr`)."""
        return self.sde.log_snr(t)

    def dt_dlam(self, t):
        """``dt/dlambda = -2 sigma(t)^2 / g(t)^2`` at the process time ``t`` (negative: ``lambda`` falls with ``t``)."""
        _, sigma = self.sde.marginal(t)
        return -2.0 * sigma * sigma / self.sde.g2(t)

    # -- the process protocol ---------------------------------------------------------------------------
    def drift(self, x, lam):
        """``F(x, t(lambda)) dt/dlambda``, like ``x``."""
        t = self.time_of(lam)
        return _xp.per_sample(self.dt_dlam(t), x) * self.process.drift(x, t)

    def diffusion(self, x, lam):
        """``sqrt(2) sigma(t(lambda))`` broadcastable to ``x`` (the SDE's ``g sqrt|dt/dlambda|``); ``None`` for an
        ODE."""
        if not self.is_sde:
            return None
        _, sigma = self.sde.marginal(self.time_of(lam))
        return _xp.per_sample(_SQRT2 * sigma, x)

    def restrict(self, rows):
        """The wrapper of the process on the samples ``rows`` (a per-sample conditioning follows them)."""
        inner = self.process.restrict(rows)
        return self if inner is self.process else LogSNRTime(inner)

    def __repr__(self):
        return f"LogSNRTime({self.process!r})"


def in_log_snr_time(process, stops: np.ndarray, callback=None):
    """What an adaptive solve in log-SNR time runs: ``(LogSNRTime(process), lambda stops, callback)``.

    ``stops`` are the solve's ``[t0, save times..., t1]`` (float64, monotone), mapped to ``lambda`` (monotone the
    other way); the ``callback``, if any, is wrapped so that its ``info["t"]`` holds process times again. Raises a
    ``ValueError`` naming ``time`` when a stop's log-SNR is not finite (``t = 0``, where ``sigma = 0``).
    """
    wrapped = LogSNRTime(process)
    with np.errstate(divide="ignore", invalid="ignore"):  # lambda(0) = +inf is refused below
        lam = np.asarray(wrapped.log_snr_of(np.asarray(stops, dtype=np.float64)), dtype=np.float64)
    if not np.all(np.isfinite(lam)):
        bad = stops[~np.isfinite(lam)][0]
        raise ValueError(f"time='log_snr' needs a finite log-SNR at every stop; lambda(t={bad!r}) is not finite")
    if lam.shape[0] > 1 and not np.all(np.diff(lam) * np.sign(lam[-1] - lam[0]) > 0):
        raise ValueError(f"time='log_snr': the stops {stops!r} are too close to map to distinct log-SNR times")
    if callback is None:
        return wrapped, lam, None

    def in_process_time(info):
        callback({**info, "t": np.asarray(wrapped.time_of(np.asarray(info["t"], dtype=np.float64)))})

    return wrapped, lam, in_process_time
