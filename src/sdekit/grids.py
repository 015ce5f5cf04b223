"""Time grids for sampling: decreasing 1-D arrays from ``T`` to ``t_end`` with ``steps + 1`` points.

* ``uniform``   -- equal steps in ``t`` (score_sde's default).
* ``quadratic`` -- ``t_k = t_end + (T - t_end) (1 - k/N)^2``: steps shrink quadratically towards the data
  (the "quadratic" schedule of DDIM, Song et al. 2021a).
* ``log_snr``   -- equal steps in ``lambda = log(alpha / sigma)`` (DPM-Solver's ``logSNR`` schedule).
* ``karras``    -- EDM's schedule (Karras et al. 2022, eq. 5) in the noise level ``sigma/alpha``:
  ``s_k = (s_max^(1/rho) + k/N (s_min^(1/rho) - s_max^(1/rho)))^rho``, then mapped back to ``t``.
* ``time_uniform`` -- zju-pi/diff-sampler's "time_uniform" schedule: polynomial (exponent ``rho``, default 2;
  ``rho = 1`` is uniform) in the time ``tau`` of the VP SDE whose noise levels at ``tau = 1`` and ``tau = 1e-3``
  are those of ``t_start`` and ``t_end``, ``tau_k = (1 + k/N (1e-3^(1/rho) - 1))^rho``, mapped to ``t`` through the
  noise level. For score_sde's VP SDE on its own range that VP time is ``t`` itself (DPM-Solver's "time_uniform"
  at ``rho = 1``). When ``t_end`` is not small next to ``T`` the fit is made linear (:func:`vp_fit`) so that the
  grid still decreases.

Grids chosen for one solver and budget by optimisation: ``sdekit.grids.optimize``, which is
:func:`sdekit.grid_search.optimize` (that module needs the solvers and ``solve``, which import this one, so the name
is resolved on first use by this module's ``__getattr__``, PEP 562).

Every grid function has the signature ``grid(sde, steps, t_end=None, t_start=None, **options)`` (``t_start``
defaults to ``sde.T``) and the registry :data:`GRIDS` maps names to them.
"""

from __future__ import annotations

import numpy as np

from .validation import in_interval, positive_int, positive_number

__all__ = ["uniform", "quadratic", "log_snr", "karras", "time_uniform", "GRIDS", "get_grid", "make_grid"]


def _validate(sde, steps, t_end, t_start):
    steps = positive_int("steps", steps)
    t_end = in_interval("t_end", sde.eps if t_end is None else t_end, 0.0, sde.T, what=f"(0, T) = (0, {sde.T})")
    t_start = sde.T if t_start is None else t_start
    t_start = in_interval("t_start", t_start, t_end, sde.T, closed="right", what=f"(t_end, T] = ({t_end}, {sde.T}]")
    return steps, t_end, t_start


def _pin_ends(ts, t_start, t_end):
    # the mapped grids (log-SNR, Karras) pass through an inverse; pin the ends so they are exact
    ts[0], ts[-1] = t_start, t_end
    return ts


def uniform(sde, steps: int, t_end: float | None = None, t_start: float | None = None) -> np.ndarray:
    """``steps`` equal steps from ``t_start`` (default ``sde.T``) down to ``t_end`` (default ``sde.eps``)."""
    steps, t_end, t_start = _validate(sde, steps, t_end, t_start)
    return np.linspace(t_start, t_end, steps + 1)


def quadratic(sde, steps: int, t_end: float | None = None, t_start: float | None = None) -> np.ndarray:
    """Steps that shrink quadratically towards ``t_end``: ``t_k = t_end + (T - t_end)(1 - k/N)^2``."""
    steps, t_end, t_start = _validate(sde, steps, t_end, t_start)
    u = 1.0 - np.arange(steps + 1) / steps
    return _pin_ends(t_end + (t_start - t_end) * u * u, t_start, t_end)


def _needs_linear(sde, name):
    if not hasattr(sde, "log_snr") or not hasattr(sde, "t_from_log_snr"):
        raise ValueError(f"grid {name!r} needs a LinearSDE (with log_snr), got {sde!r}")


def log_snr(sde, steps: int, t_end: float | None = None, t_start: float | None = None) -> np.ndarray:
    """Equal steps in ``lambda(t) = log(alpha / sigma)`` between ``lambda(t_start)`` and ``lambda(t_end)``."""
    steps, t_end, t_start = _validate(sde, steps, t_end, t_start)
    _needs_linear(sde, "log_snr")
    lam = np.linspace(float(sde.log_snr(t_start)), float(sde.log_snr(t_end)), steps + 1)
    return _pin_ends(np.asarray(sde.t_from_log_snr(lam), dtype=np.float64), t_start, t_end)


def karras(sde, steps: int, t_end: float | None = None, t_start: float | None = None, rho: float = 7.0) -> np.ndarray:
    """EDM's schedule with exponent ``rho`` (Karras et al. 2022, eq. 5), in ``sigma/alpha``, mapped to ``t``."""
    steps, t_end, t_start = _validate(sde, steps, t_end, t_start)
    _needs_linear(sde, "karras")
    rho = positive_number("rho", rho)
    lam_max, lam_min = float(sde.log_snr(t_end)), float(sde.log_snr(t_start))
    k = np.arange(steps) / steps  # the last point is t_end itself
    if -lam_min < 700.0:
        # k-diffusion's get_sigmas_karras, in sigma / alpha = e^{-lambda}
        s_max, s_min = np.exp(-lam_min), np.exp(-lam_max)
        lam = -np.log((s_max ** (1.0 / rho) + k * (s_min ** (1.0 / rho) - s_max ** (1.0 / rho))) ** rho)
    else:  # sigma_max^(1/rho) overflows (a VP beta_max in the thousands): the same ramp in log space
        la, lb = -lam_min / rho, -lam_max / rho
        lam = -rho * (la + np.log1p(k * np.expm1(lb - la)))
    lam = np.append(lam, lam_max)
    return _pin_ends(np.asarray(sde.t_from_log_snr(lam), dtype=np.float64), t_start, t_end)


VP_EPS = 1e-3  # diff-sampler's epsilon_s: the VP time of the last level of the time-uniform schedule


def vp_fit(s_max: float, s_min: float, eps_s: float = VP_EPS) -> tuple[float, float, float]:
    """``(beta_d, beta_min, eps)`` of the VP SDE ``s(tau)^2 = exp(beta_d tau^2 / 2 + beta_min tau) - 1`` with noise
    levels ``s(1) = s_max`` and ``s(eps) = s_min`` (diff-sampler's fit; score_sde's VP has ``beta_d = beta_max -
    beta_min``). ``eps`` is ``eps_s`` unless that fit would not be monotone (``s_min`` not small next to ``s_max``:
    ``log(1 + s_min^2) > eps_s log(1 + s_max^2)``); then ``eps = log(1 + s_min^2) / log(1 + s_max^2)`` and the fit is
    linear in ``tau`` (``beta_d = 0``)."""
    a1, a0 = float(np.log1p(s_max**2)), float(np.log1p(s_min**2))
    eps = max(eps_s, a0 / a1)
    beta_d = 0.0 if eps > eps_s else 2.0 * (a0 / eps - a1) / (eps - 1.0)
    return float(beta_d), float(a1 - 0.5 * beta_d), float(eps)


def time_uniform(
    sde, steps: int, t_end: float | None = None, t_start: float | None = None, rho: float = 2.0
) -> np.ndarray:
    """diff-sampler's time-uniform schedule: polynomial with exponent ``rho`` in VP time (see the module docstring)."""
    steps, t_end, t_start = _validate(sde, steps, t_end, t_start)
    _needs_linear(sde, "time_uniform")
    rho = positive_number("rho", rho)
    s_max = np.exp(-float(sde.log_snr(t_start)))
    s_min = np.exp(-float(sde.log_snr(t_end)))
    beta_d, beta_min, eps = vp_fit(s_max, s_min)
    tau = (1.0 + np.arange(steps + 1) / steps * (eps ** (1.0 / rho) - 1.0)) ** rho
    s = np.sqrt(np.expm1(0.5 * beta_d * tau * tau + beta_min * tau))
    return _pin_ends(np.asarray(sde.t_from_log_snr(-np.log(s)), dtype=np.float64), t_start, t_end)


GRIDS = {"uniform": uniform, "quadratic": quadratic, "log_snr": log_snr, "karras": karras, "time_uniform": time_uniform}


def get_grid(name: str):
    """The grid function registered under ``name``."""
    try:
        return GRIDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown grid {name!r}; valid grids: {sorted(GRIDS)}") from None


def make_grid(
    sde, steps: int, grid="uniform", t_end: float | None = None, t_start: float | None = None, **options
) -> np.ndarray:
    """A decreasing grid from ``t_start`` (default ``sde.T``) to ``t_end``: ``grid`` is a name or a callable.

    A callable takes ``(sde, steps, t_end)`` (and ``t_start=`` when one is given).
    """
    fn = grid if callable(grid) else get_grid(grid)
    if t_start is None:
        return fn(sde, steps, t_end, **options)
    return fn(sde, steps, t_end, t_start=t_start, **options)


def __getattr__(name):
    # ``optimize`` lives in sdekit.grid_search (it needs the solvers and ``solve``, which import this module)
    if name == "optimize":
        from importlib import import_module

        return import_module("sdekit.grid_search").optimize
    raise AttributeError(f"module 'sdekit.grids' has no attribute {name!r}")
