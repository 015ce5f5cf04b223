"""Forward SDEs of score-based generative modelling and the processes derived from them.

A forward Ito SDE ``dx = f(x, t) dt + g(x, t) dW`` on ``[0, T]`` carries data (t = 0) to noise (t = T).
Given a score ``s(x, t) ~ grad log p_t(x)`` it defines

* the reverse-time SDE ``dx = [f - g^2 s] dt + g dW_bar``, integrated from ``T`` down to ``t_end``,
* the probability-flow ODE ``dx = [f - g^2 s / 2] dt``, which has the same marginals ``p_t``.

(Anderson 1982; Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential
Equations", eqs. 6 and 13.)

Linear SDEs (affine drift ``f = a(t) x``, state-independent ``g(t)``) have Gaussian transition kernels
``x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I)`` with ``a = alpha'/alpha`` and ``g^2 = (sigma^2)' - 2 a sigma^2``.
All of VP, sub-VP, VE and EDM are linear; they are written here through ``alpha(t)``, ``sigma(t)``,
``a(t)`` and ``g(t)^2`` only, which is what the analytic densities, the log-SNR grids and the exponential
integrators need.

Every coefficient function accepts python floats, numpy arrays and torch tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import _xp
from .noise import PRIOR_STEP, check_sample_ids, check_seed, normals_numpy
from .validation import positive_number

__all__ = [
    "SDE",
    "LinearSDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "EDMSDE",
    "GeneralSDE",
    "ReverseSDE",
    "ProbabilityFlowODE",
]


class SDE:
    """A forward Ito SDE ``dx = f(x, t) dt + g(x, t) dW`` on ``[0, T]`` (abstract).

    Attributes
    ----------
    T : float
        Final time of the forward process; sampling starts here.
    eps : float
        Default end time for sampling (the reverse process stops at ``t_end = eps``).
    noise : {"additive", "diagonal"}
        ``"additive"`` when ``g`` depends on ``t`` only.
    default_grid : str
        The schedule (a name in ``sdekit.grids.GRIDS``) of solvers whose family has none of its own (the
        ``"uniform"`` family: ``Solver.grid_for``): ``"uniform"`` (equal steps in ``t``), ``"karras"`` for EDM.
    adaptive_time : str
        The variable an adaptive solver built with ``time="auto"`` (``dopri5``'s default) steps in
        (``AdaptiveSolver.time_for``): ``"t"``, ``"log_snr"`` for EDM.
    """

    T: float = 1.0
    eps: float = 1e-3
    noise: str = "additive"
    default_grid: str = "uniform"
    adaptive_time: str = "t"

    def drift(self, x, t):
        """``f(x, t)``; ``x`` of shape ``(n, *event)``, ``t`` a scalar or ``(n,)``."""
        raise NotImplementedError

    def diffusion(self, x, t):
        """``g(x, t)``, broadcastable to ``x`` (diagonal noise)."""
        raise NotImplementedError

    def reverse(self, score: Callable) -> ReverseSDE:
        """The reverse-time SDE ``dx = [f - g^2 score] dt + g dW_bar`` (integrate with decreasing t)."""
        return ReverseSDE(self, score)

    def probability_flow(self, score: Callable) -> ProbabilityFlowODE:
        """The probability-flow ODE ``dx = [f - g^2 score / 2] dt`` (Song et al. 2021, eq. 13)."""
        return ProbabilityFlowODE(self, score)

    def restrict(self, rows):
        """The process on the samples ``rows`` of the batch (a forward SDE has nothing per sample: itself)."""
        return self

    def divergence_correction(self, x, t):
        """The reverse-time drift correction ``div(g g^T) = 2 g dg/dx`` of state-dependent diagonal noise
        (Anderson 1982), like ``x``; ``None`` for additive noise (no correction)."""
        return None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict:
        return {"T": self.T}


class LinearSDE(SDE):
    """Affine drift ``f = a(t) x`` and state-independent ``g(t)``: ``x_t | x_0 ~ N(alpha x_0, sigma^2 I)``.

    Subclasses implement ``_alpha_sigma(t)``, ``drift_coef(t)`` and ``g2(t)``; everything else (marginals,
    log-SNR, prior, drift, diffusion) follows. ``p_t`` is the data law scaled by ``alpha(t)`` and convolved
    with ``N(0, sigma(t)^2 I)``, for every ``t`` in ``[0, T]``.
    """

    noise = "additive"
    prior_std: float = 1.0

    # -- coefficients (floats, numpy arrays or torch tensors) -------------------------------------
    def _alpha_sigma(self, t):
        raise NotImplementedError

    def drift_coef(self, t):
        """Drift coefficient ``a(t) = d log alpha / dt`` (the drift is ``a(t) x``); float, array or tensor like ``t``.

        The numba kernels, the likelihood and the exact laws read the linear SDE through this and :meth:`g2`."""
        raise NotImplementedError

    def g2(self, t):
        """Squared diffusion ``g(t)^2 = d sigma^2/dt - 2 a sigma^2``; float, array or tensor like ``t``."""
        raise NotImplementedError

    def marginal(self, t):
        """``(alpha(t), sigma(t))`` of the transition kernel ``x_t | x_0 ~ N(alpha x_0, sigma^2 I)``."""
        return self._alpha_sigma(t)

    def tweedie(self, x, t, score_value):
        """Tweedie's formula ``E[x_0 | x_t = x] = (x + sigma(t)^2 score) / alpha(t)`` (Efron 2011) from the score's
        value ``score_value`` at ``(x, t)``: the data prediction every solver, the final denoising step and the
        interop drivers use (this is the only place it is written).

        ``t``: a scalar (python or numpy float: the coefficients enter as python floats, which keep ``x``'s dtype) or
        per-sample times of shape ``(n,)`` in ``x``'s library (no host read). ``x``, ``score_value``: ``(n, *event)``.
        """
        if getattr(t, "ndim", 0) == 0:
            alpha, sigma = (float(c) for c in self.marginal(float(t)))
        else:
            alpha, sigma = self.marginal(t)
            alpha, sigma = _xp.per_sample(alpha, x), _xp.per_sample(sigma, x)
        return (x + (sigma * sigma) * score_value) / alpha

    def denoise(self, score, x, t):
        """Tweedie's ``E[x_0 | x_t = x]`` (see :meth:`tweedie`) with one evaluation of ``score(x, t)`` (``t`` broadcast
        to shape ``(n,)``, the score convention)."""
        return self.tweedie(x, t, score(x, _xp.full_time(t, x)))

    def marginal_prob(self, x0, t):
        """``(mean, std)`` of ``x_t | x_0``, as in score_sde: ``mean`` like ``x0``, ``std`` like ``t``."""
        alpha, sigma = self._alpha_sigma(t)
        return _xp.per_sample(alpha, x0) * x0, sigma

    def log_snr(self, t):
        """``lambda(t) = log(alpha(t) / sigma(t))``, decreasing in ``t``."""
        alpha, sigma = self._alpha_sigma(t)
        xp = _xp.lib(t)
        return xp.log(alpha) - xp.log(sigma)

    def t_from_log_snr(self, lam):
        """Inverse of :meth:`log_snr`."""
        raise NotImplementedError

    def edm_sigma(self, t):
        """The EDM noise level ``sigma(t) / alpha(t) = exp(-lambda(t))``."""
        alpha, sigma = self._alpha_sigma(t)
        return sigma / alpha

    def drift(self, x, t):
        return _xp.per_sample(self.drift_coef(t), x) * x

    def diffusion(self, x, t):
        return _xp.per_sample(_xp.lib(t).sqrt(self.g2(t)), x)

    # -- prior -------------------------------------------------------------------------------------
    def prior_sample(self, shape, seed: int = 0, like=None, sample_ids=None):
        """Samples of the prior ``N(0, prior_std^2 I)`` of shape ``shape = (n, *event)``.

        Sample ``i`` depends only on ``(seed, sample_ids[i])`` (default ids ``0 .. n-1``), so a batch drawn in
        chunks with their ids equals the batch drawn at once. ``like``: an array or tensor whose library, dtype
        and device the result takes (numpy float64 by default).
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or any(s < 0 for s in shape):
            raise ValueError(f"shape must be (n, *event_shape) with non-negative sizes, got {shape!r}")
        ids = np.arange(shape[0]) if sample_ids is None else check_sample_ids(sample_ids, shape[0])
        z = normals_numpy(check_seed(seed), ids, PRIOR_STEP, int(np.prod(shape[1:], dtype=np.int64)))
        z = z.reshape(shape) * self.prior_std
        if like is not None:
            return _xp.asarray_like(z, like)
        return z

    def prior_logpdf(self, x):
        """Per-sample log density of the prior, shape ``(n,)``."""
        d = int(np.prod(x.shape[1:]))
        sq = _xp.sum_last(x * x, x.ndim - 1)
        return -0.5 * d * math.log(2 * math.pi * self.prior_std**2) - 0.5 * sq / self.prior_std**2


class VPSDE(LinearSDE):
    """Variance-preserving SDE (DDPM's continuous limit): ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW``.

    ``beta(t) = beta_min + t (beta_max - beta_min)``; ``alpha = exp(-B/2)``, ``sigma^2 = 1 - exp(-B)`` with
    ``B(t) = int_0^t beta``. Prior ``N(0, I)``. Defaults as in Song et al. 2021.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-3):
        self.beta_min = positive_number("beta_min", beta_min)
        self.beta_max = positive_number("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got beta_min={beta_min!r}, beta_max={beta_max!r}")
        self.T = positive_number("T", T)
        self.eps = positive_number("eps", eps)
        if self.eps >= self.T:
            raise ValueError(f"eps must be smaller than T={self.T}, got {eps!r}")

    def _params(self):
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "T": self.T}

    def _beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _B(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def _t_from_B(self, B):
        xp = _xp.lib(B)
        db = self.beta_max - self.beta_min
        # root of db/2 t^2 + beta_min t - B = 0, written without cancellation
        return 2.0 * B / (self.beta_min + xp.sqrt(self.beta_min**2 + 2.0 * db * B))

    def _alpha_sigma(self, t):
        xp = _xp.lib(t)
        B = self._B(t)
        return xp.exp(-0.5 * B), xp.sqrt(-xp.expm1(-B))

    def drift_coef(self, t):
        return -0.5 * self._beta(t)

    def g2(self, t):
        return self._beta(t)

    def log_snr(self, t):
        xp = _xp.lib(t)
        B = self._B(t)
        # lambda = -B/2 - log(1 - e^{-B})/2 = -log(e^B - 1)/2, stable for small and large B
        return -0.5 * _log_expm1(B, xp)

    def t_from_log_snr(self, lam):
        # B = log(1 + e^{-2 lambda}); beyond e^700 (beta_max in the thousands) log1p(e^v) = v + log1p(e^{-v})
        xp = _xp.lib(lam)
        v = -2.0 * lam
        small = xp.log1p(xp.exp(_xp.clip_above(v, 700.0)))
        return self._t_from_B(xp.where(v < 700.0, small, v + xp.log1p(xp.exp(-xp.abs(v)))))


class SubVPSDE(VPSDE):
    """sub-VP SDE (Song et al. 2021): ``dx = -beta x / 2 dt + sqrt(beta (1 - exp(-2B))) dW``.

    ``alpha = exp(-B/2)``, ``sigma = 1 - exp(-B)``. Prior ``N(0, I)``.
    """

    def _alpha_sigma(self, t):
        xp = _xp.lib(t)
        B = self._B(t)
        return xp.exp(-0.5 * B), -xp.expm1(-B)

    def g2(self, t):
        xp = _xp.lib(t)
        return self._beta(t) * (-xp.expm1(-2.0 * self._B(t)))

    def log_snr(self, t):
        xp = _xp.lib(t)
        # alpha / sigma = 1 / (2 sinh(B/2)); for B beyond 1400 (sinh overflows) -B/2 - log(1 - e^{-B})
        B = self._B(t)
        small = -xp.log(2.0 * xp.sinh(0.5 * _xp.clip_above(B, 1400.0)))
        return xp.where(B < 1400.0, small, -0.5 * B - xp.log(-xp.expm1(-B)))

    def t_from_log_snr(self, lam):
        # B = 2 asinh(e^{-lambda} / 2); beyond e^700, asinh(y) = log(2 y) + O(1 / y^2) = -lambda to round-off
        xp = _xp.lib(lam)
        small = 2.0 * xp.arcsinh(0.5 * xp.exp(_xp.clip_above(-lam, 700.0)))
        return self._t_from_B(xp.where(-lam < 700.0, small, -2.0 * lam))


class VESDE(LinearSDE):
    """Variance-exploding SDE (SMLD/NCSN's continuous limit): ``dx = sigma(t) sqrt(2 log(smax/smin)) dW``.

    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` and ``alpha = 1``. Convention of score_sde:
    ``p_t`` is the data convolved with ``N(0, sigma(t)^2 I)`` for every ``t``, so ``p_0`` itself carries the
    small noise ``sigma_min``; the SDE moves ``p_s`` to ``p_t`` exactly because ``g^2 = d sigma^2 / dt``.
    Prior ``N(0, sigma_max^2 I)``.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0, eps: float = 1e-5):
        self.sigma_min = positive_number("sigma_min", sigma_min)
        self.sigma_max = positive_number("sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must exceed sigma_min, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        self.T = positive_number("T", T)
        self.eps = positive_number("eps", eps)
        if self.eps >= self.T:
            raise ValueError(f"eps must be smaller than T={self.T}, got {eps!r}")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.prior_std = self.sigma_max

    def _params(self):
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "T": self.T}

    def _sigma(self, t):
        xp = _xp.lib(t)
        return self.sigma_min * xp.exp(self._log_ratio * t / self.T)

    def _alpha_sigma(self, t):
        s = self._sigma(t)
        return 1.0 + 0.0 * s, s

    def drift_coef(self, t):
        return 0.0 * t

    def g2(self, t):
        s = self._sigma(t)
        return 2.0 * self._log_ratio / self.T * s * s

    def drift(self, x, t):
        return 0.0 * x

    def log_snr(self, t):
        return -(math.log(self.sigma_min) + self._log_ratio * t / self.T)

    def t_from_log_snr(self, lam):
        return (-lam - math.log(self.sigma_min)) * self.T / self._log_ratio


class EDMSDE(LinearSDE):
    """The SDE of Karras et al. 2022 (EDM): ``alpha = 1``, ``sigma(t) = t``, ``dx = sqrt(2 t) dW``.

    Time is the noise level: ``T = sigma_max``, ``eps = sigma_min``. Prior ``N(0, sigma_max^2 I)``. Equal steps in
    ``t`` are equal steps in ``sigma``, far too coarse near the data, so the default schedule of the solvers without
    one of their own is EDM's ``"karras"`` (``default_grid``; see ``Solver.grid_for``).
    """

    default_grid = "karras"  # EDM's schedule (Karras et al. 2022, eq. 5, rho = 7) for every sampler of the paper
    adaptive_time = "log_snr"  # dx/dlambda = D - x: not stiff near sigma_min, unlike dx/dsigma = (x - D) / sigma

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        self.sigma_min = positive_number("sigma_min", sigma_min)
        self.sigma_max = positive_number("sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must exceed sigma_min, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        self.T = self.sigma_max
        self.eps = self.sigma_min
        self.prior_std = self.sigma_max

    def _params(self):
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}

    def _alpha_sigma(self, t):
        return 1.0 + 0.0 * t, 1.0 * t

    def drift_coef(self, t):
        return 0.0 * t

    def g2(self, t):
        return 2.0 * t

    def drift(self, x, t):
        return 0.0 * x

    def log_snr(self, t):
        return -_xp.lib(t).log(t)

    def t_from_log_snr(self, lam):
        return _xp.lib(lam).exp(-lam)


class GeneralSDE(SDE):
    """Any user SDE ``dx = drift(x, t) dt + diffusion(x, t) dW`` with diagonal noise.

    Parameters
    ----------
    drift, diffusion : callable ``(x, t) -> array``
        ``t`` is passed as a 1-D array ``(n,)``; ``diffusion`` returns an array broadcastable to ``x``.
    T : float
        Final time.
    noise : {"diagonal", "additive"}
        Declare ``"additive"`` when ``diffusion`` does not depend on ``x`` (solvers such as stochastic Heun
        rely on it).
    diffusion_dx : callable, optional
        ``d g_i / d x_i`` (same shapes as ``diffusion``). The reverse-time SDE of a state-dependent diffusion
        needs it: its drift is ``f - g^2 score - 2 g dg/dx``.
    eps : float
        Default end time for sampling.
    """

    def __init__(self, drift, diffusion, T: float = 1.0, noise: str = "diagonal", diffusion_dx=None, eps: float = 1e-3):
        if not callable(drift):
            raise TypeError(f"drift must be callable, got {drift!r}")
        if not callable(diffusion):
            raise TypeError(f"diffusion must be callable, got {diffusion!r}")
        if noise not in ("additive", "diagonal"):
            raise ValueError(f"noise must be one of ['additive', 'diagonal'], got {noise!r}")
        if diffusion_dx is not None and not callable(diffusion_dx):
            raise TypeError(f"diffusion_dx must be callable or None, got {diffusion_dx!r}")
        self._drift, self._diffusion, self._diffusion_dx = drift, diffusion, diffusion_dx
        self.T = positive_number("T", T)
        self.eps = positive_number("eps", eps)
        if self.eps >= self.T:
            raise ValueError(f"eps must be smaller than T={self.T}, got {eps!r}")
        self.noise = noise

    def _params(self):
        return {"drift": self._drift, "diffusion": self._diffusion, "T": self.T, "noise": self.noise}

    def drift(self, x, t):
        out = self._drift(x, _xp.full_time(t, x))
        if tuple(getattr(out, "shape", ())) != tuple(x.shape):  # every call: a later (n, 1) would broadcast
            raise ValueError(f"drift returned shape {tuple(getattr(out, 'shape', ()))}, expected x's {tuple(x.shape)}")
        return out

    def diffusion(self, x, t):
        out = self._diffusion(x, _xp.full_time(t, x))
        shape = tuple(getattr(out, "shape", ()))
        if len(shape) > x.ndim or any(s not in (1, n) for s, n in zip(shape[::-1], tuple(x.shape)[::-1])):
            raise ValueError(f"diffusion returned shape {shape}, which does not broadcast to x's {tuple(x.shape)}")
        return out

    def divergence_correction(self, x, t):
        if self.noise == "additive":
            return None
        if self._diffusion_dx is None:
            raise ValueError(
                "the reverse-time SDE of a GeneralSDE with noise='diagonal' needs diffusion_dx (d g / d x); "
                "pass diffusion_dx=... or declare noise='additive' if the diffusion does not depend on x"
            )
        tt = _xp.full_time(t, x)
        return 2.0 * self._diffusion(x, tt) * self._diffusion_dx(x, tt)


class _ScoreDrivenProcess:
    """A process built from a forward SDE and a score: drift ``f - w g^2 score`` (``w = score_weight``)."""

    score_weight: float = 1.0

    def __init__(self, sde: SDE, score: Callable):
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdekit.SDE, got {sde!r}")
        if not callable(score):
            raise TypeError(f"score must be callable score(x, t), got {score!r}")
        self.sde = sde
        self.score = score
        self.T, self.eps = sde.T, sde.eps

    def drift(self, x, t):
        g = self.sde.diffusion(x, t)
        return self.sde.drift(x, t) - (self.score_weight * g * g) * self.score(x, _xp.full_time(t, x))

    def restrict(self, rows):
        """The process on the samples ``rows`` of the batch: the same, with a per-sample score (conditioning)
        restricted to those rows; itself when the score has nothing per sample. Loops that evaluate a subset of
        the samples (the adaptive solvers) call this."""
        restrict = getattr(self.score, "restrict", None)
        return self if restrict is None else type(self)(self.sde, restrict(rows))

    def __repr__(self):
        return f"{type(self).__name__}({self.sde!r}, score={self.score!r})"


class ReverseSDE(_ScoreDrivenProcess):
    """The reverse-time SDE ``dx = [f - g^2 score] dt + g dW_bar`` of a forward SDE; integrate from T down.

    ``score(x, t)`` receives ``t`` of shape ``(n,)``. For state-dependent diagonal noise the drift also
    carries the divergence term ``- d(g^2)/dx`` (Anderson 1982).
    """

    is_sde = True
    score_weight = 1.0

    def __init__(self, sde: SDE, score: Callable):
        super().__init__(sde, score)
        self.noise = sde.noise

    def drift(self, x, t):
        out = super().drift(x, t)
        corr = self.sde.divergence_correction(x, t)
        return out if corr is None else out - corr

    def diffusion(self, x, t):
        return self.sde.diffusion(x, t)


class ProbabilityFlowODE(_ScoreDrivenProcess):
    """The probability-flow ODE ``dx = [f - g^2 score / 2] dt``: same marginals as the SDE, deterministic."""

    is_sde = False
    noise = None
    score_weight = 0.5

    def __init__(self, sde: SDE, score: Callable):
        super().__init__(sde, score)
        if sde.noise != "additive":
            raise ValueError(
                "the probability-flow ODE is implemented for additive noise (g independent of x); "
                f"got an SDE with noise={sde.noise!r}"
            )

    def diffusion(self, x, t):
        return None


def _log_expm1(B, xp):
    """``log(exp(B) - 1)`` without overflow for large ``B`` or cancellation for small ``B``."""
    if xp is np and np.ndim(B) == 0:
        B = float(B)
        return B + math.log(-math.expm1(-B))
    return B + xp.log(-xp.expm1(-B))
