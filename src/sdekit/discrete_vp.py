"""The VP SDE of a trained discrete (DDPM) noise schedule, as a continuous-time linear SDE.

Networks trained with a table of ``N`` betas (DDPM, Stable Diffusion, diffusers' ``DDPMScheduler``) know
``alpha_bar_i`` only at the integer timesteps; :class:`DiscreteVPSDE` interpolates the table in continuous
time so that every sdekit solver and grid applies to them (see ``docs/models.md``).
"""

from __future__ import annotations

import math

import numpy as np

from . import _xp
from .sdes import LinearSDE

__all__ = ["DiscreteVPSDE"]


class DiscreteVPSDE(LinearSDE):
    """The VP SDE of a trained discrete (DDPM) schedule: ``betas`` or ``alphas_cumprod`` of ``N`` timesteps.

    A DDPM network is trained at the discrete timesteps ``tau = 0 .. N-1`` with ``x_tau = sqrt(abar_tau) x_0 +
    sqrt(1 - abar_tau) eps``. In the EDM noise level ``s = sqrt((1 - abar) / abar)`` (``sigma / alpha``) the schedule
    is made continuous as k-diffusion's discrete wrappers (``DiscreteSchedule.t_to_sigma``) and diffusers'
    ``_sigma_to_t`` do: ``log s`` is interpolated linearly between consecutive timesteps. Time is DPM-Solver's
    convention for discrete models (Lu et al. 2022, appendix): ``t = (tau + 1) / N``, so ``T = 1`` is the last
    trained timestep and ``eps = 1 / N`` the first. Then ``alpha = 1 / sqrt(1 + s^2)`` and ``sigma = s alpha`` (variance
    preserving), ``a(t) = -sigma^2 dlog s/dt`` and ``g^2 = 2 sigma^2 dlog s/dt``, which is what every solver reads.

    Outside the trained range: below the first timestep (``0 <= t < 1/N``) the level falls linearly to ``s = 0`` at
    ``t = 0`` (``p_0`` is the data); above the last one (``t > T``, which EDM's churn can reach) ``log s`` continues
    along the last segment. :meth:`timestep` and :meth:`t_from_timestep` map between ``t`` and the model's (real-valued)
    timestep; a model is evaluated at ``timestep(t)``, integer at the trained points.

    Parameters
    ----------
    betas : (N,) array, optional
        The training betas (``abar = cumprod(1 - betas)``).
    alphas_cumprod : (N,) array, optional
        ``abar`` itself, strictly decreasing in ``(0, 1)`` (give exactly one of the two). float32 schedules (diffusers
        keeps them in float32) are taken at their float32 values.
    """

    def __init__(self, betas=None, alphas_cumprod=None):
        if (betas is None) == (alphas_cumprod is None):
            raise ValueError("give exactly one of betas and alphas_cumprod (the trained DDPM schedule)")
        name = "betas" if betas is not None else "alphas_cumprod"
        values = _float64_vector(name, betas if betas is not None else alphas_cumprod)
        if betas is not None:
            if not np.all((values > 0) & (values < 1)):
                raise ValueError(f"betas must lie in (0, 1), got min {values.min()!r}, max {values.max()!r}")
            ac = np.cumprod(1.0 - values)
        else:
            ac = values
        if not np.all((ac > 0) & (ac < 1)):
            raise ValueError(
                f"{name} must give alphas_cumprod in (0, 1) (a last value of 0 is a zero-terminal-SNR schedule, "
                f"whose noise level is infinite at T); got min {ac.min()!r}, max {ac.max()!r}"
            )
        if not np.all(np.diff(ac) < 0):
            raise ValueError(f"{name} must give a strictly decreasing alphas_cumprod (noise grows with the timestep)")
        self.alphas_cumprod = ac
        self.num_timesteps = n = len(ac)
        #: ``log s`` at the trained timesteps (``s = sqrt((1 - abar) / abar)``, increasing)
        self.log_sigmas = 0.5 * (np.log1p(-ac) - np.log(ac))
        self.T = 1.0
        self.eps = 1.0 / n
        self._torch_tables = {}

    def _params(self):
        return {"num_timesteps": self.num_timesteps}

    @property
    def sigmas(self) -> np.ndarray:
        """The EDM noise levels ``s = sigma / alpha`` of the trained timesteps, increasing (k-diffusion's sigmas)."""
        return np.exp(self.log_sigmas)

    @property
    def sigma_min(self) -> float:
        return float(np.exp(self.log_sigmas[0]))

    @property
    def sigma_max(self) -> float:
        return float(np.exp(self.log_sigmas[-1]))

    # -- time <-> timestep ----------------------------------------------------------------------------------
    def timestep(self, t):
        """The model's timestep ``tau = N t - 1`` of time ``t`` (float, array or tensor; real-valued)."""
        return self.num_timesteps * t - 1.0

    def t_from_timestep(self, timestep):
        """The time ``t = (tau + 1) / N`` of a model timestep."""
        return (timestep + 1.0) / self.num_timesteps

    # -- the interpolated schedule ------------------------------------------------------------------------
    def _tables(self, like):
        """``log s`` and its per-timestep slopes in ``like``'s library (cached per torch device and dtype)."""
        if not _xp.is_torch(like):
            return self.log_sigmas, np.diff(self.log_sigmas)
        key = (like.device, like.dtype)
        if key not in self._torch_tables:
            torch = _xp.lib(like)
            ls = torch.as_tensor(self.log_sigmas, dtype=like.dtype, device=like.device)
            self._torch_tables[key] = (ls, ls[1:] - ls[:-1])
        return self._torch_tables[key]

    def _log_level(self, t):
        """``(log s(t), sigma^2 dlog s/dt)`` like ``t`` (python floats for a float ``t``); the second factor is
        finite at ``t = 0``, where ``sigma = 0``."""
        scalar = not _xp.is_torch(t) and np.ndim(t) == 0
        if scalar:
            t = np.asarray(float(t))
        xp = _xp.lib(t)
        ls_tab, slope_tab = self._tables(t)
        n = self.num_timesteps
        tau = n * t - 1.0
        idx = xp.floor(tau).clip(0, n - 2)
        i = idx.long() if _xp.is_torch(idx) else np.asarray(idx).astype(np.int64)
        w = tau - idx
        # linear in log s between consecutive timesteps (k-diffusion's t_to_sigma), continued beyond the last one
        inside = (1.0 - w) * ls_tab[i] + w * ls_tab[i + 1]
        # below the first timestep: s = s_0 (tau + 1), falling to 0 at t = 0
        below = tau < 0.0
        u = xp.where(below, (tau + 1.0).clip(0.0, 1.0), 1.0)
        with np.errstate(divide="ignore"):
            ls = xp.where(below, ls_tab[0] + xp.log(u), inside)
        s2 = xp.exp(2.0 * ls)
        # sigma^2 dlog s/dtau with sigma^2 = s^2 / (1 + s^2); on the extension s^2 / (1 + s^2) / (tau + 1), written
        # as s_0^2 (tau + 1) / (1 + s^2) so that it is finite (0) at t = 0
        var_slope = xp.where(below, xp.exp(2.0 * ls_tab[0]) * u / (1.0 + s2), s2 / (1.0 + s2) * slope_tab[i]) * n
        if scalar:
            return float(ls), float(var_slope)
        return ls, var_slope

    def _alpha_sigma(self, t):
        ls = self._log_level(t)[0]
        if isinstance(ls, float):
            log_alpha = -0.5 * (max(2.0 * ls, 0.0) + math.log1p(math.exp(-abs(2.0 * ls))))  # -softplus(2 ls) / 2
            return math.exp(log_alpha), math.exp(ls + log_alpha)
        xp = _xp.lib(ls)
        log_alpha = -0.5 * xp.logaddexp(xp.zeros_like(ls), 2.0 * ls)
        return xp.exp(log_alpha), xp.exp(ls + log_alpha)

    def drift_coef(self, t):
        return -self._log_level(t)[1]

    def g2(self, t):
        return 2.0 * self._log_level(t)[1]

    def log_snr(self, t):
        return -self._log_level(t)[0]

    def edm_sigma(self, t):
        ls = self._log_level(t)[0]
        return math.exp(ls) if isinstance(ls, float) else _xp.lib(ls).exp(ls)

    def t_from_log_snr(self, lam):
        """Inverse of :meth:`log_snr` (on the extensions too: ``t -> 0`` as ``lambda -> inf``)."""
        scalar = not _xp.is_torch(lam) and np.ndim(lam) == 0
        if scalar:
            lam = np.asarray(float(lam))
        xp = _xp.lib(lam)
        ls_tab, slope_tab = self._tables(lam)
        n = self.num_timesteps
        ls = -lam
        if xp is np:
            i = np.asarray(np.searchsorted(ls_tab, ls, side="right") - 1).clip(0, n - 2)
        else:
            i = (xp.searchsorted(ls_tab, ls.reshape(-1).contiguous(), right=True) - 1).clip(0, n - 2).reshape(ls.shape)
        tau = i + (ls - ls_tab[i]) / slope_tab[i]
        t = xp.where(ls < ls_tab[0], xp.exp((ls - ls_tab[0]).clip(None, 0.0)) / n, (tau + 1.0) / n)
        return float(t) if scalar else t


def _float64_vector(name, values) -> np.ndarray:
    """A schedule given as an array, tensor or list: a float64 numpy vector of at least 2 finite entries."""
    if _xp.is_torch(values):
        values = values.detach().cpu().double().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D array of numbers, got {type(values).__name__}") from None
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 entries, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr.copy()
