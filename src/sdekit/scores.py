"""Scores from the other parameterisations of diffusion models.

For a linear SDE with ``x_t = alpha x_0 + sigma eps`` (``eps ~ N(0, I)``) the score of ``p_t`` is
``grad log p_t(x) = -E[eps | x_t = x] / sigma = (alpha E[x_0 | x_t = x] - x) / sigma^2``. A network trained to
predict ``eps``, ``x_0``, ``v = alpha eps - sigma x_0`` (Salimans & Ho 2022) or the EDM denoiser
``D(x / alpha; sigma / alpha) = E[x_0 | x_t]`` (Karras et al. 2022) therefore gives the score by an affine map.

Each adapter returns a score ``score(x, t)`` (``t`` of shape ``(n,)``) working on numpy arrays and torch
tensors; ``t`` is passed through unchanged to the wrapped function, except for the denoiser which receives
the EDM noise level ``sigma(t) / alpha(t)`` of shape ``(n,)``.
"""

from __future__ import annotations

from . import _xp
from .sdes import LinearSDE

__all__ = ["score_from_eps", "score_from_x0", "score_from_v", "score_from_denoiser", "AdaptedScore"]


class AdaptedScore:
    """A score built from another parameterisation; keeps the model's ``event_shape`` if it has one."""

    def __init__(self, fn, sde, kind, convert):
        if not callable(fn):
            raise TypeError(f"the {kind} model must be callable, got {fn!r}")
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"sde must be a LinearSDE (VPSDE, SubVPSDE, VESDE, EDMSDE), got {sde!r}")
        self.fn, self.sde, self.kind, self._convert = fn, sde, kind, convert
        if hasattr(fn, "event_shape"):
            self.event_shape = fn.event_shape

    def __call__(self, x, t):
        alpha, sigma = self.sde.marginal(t)
        return self._convert(self.fn, x, t, _xp.per_sample(alpha, x), _xp.per_sample(sigma, x), alpha, sigma)

    def __repr__(self):
        return f"score_from_{self.kind}({self.fn!r}, {self.sde!r})"


def score_from_eps(eps_fn, sde) -> AdaptedScore:
    """Score from a noise prediction ``eps_fn(x, t) ~ E[eps | x_t]``: ``score = -eps / sigma(t)``."""
    return AdaptedScore(eps_fn, sde, "eps", lambda f, x, t, a, s, *_: -f(x, t) / s)


def score_from_x0(x0_fn, sde) -> AdaptedScore:
    """Score from a data prediction ``x0_fn(x, t) ~ E[x_0 | x_t]``: ``score = (alpha x0 - x) / sigma^2``."""
    return AdaptedScore(x0_fn, sde, "x0", lambda f, x, t, a, s, *_: (a * f(x, t) - x) / (s * s))


def score_from_v(v_fn, sde) -> AdaptedScore:
    """Score from a v-prediction ``v = alpha eps - sigma x_0`` (Salimans & Ho 2022).

    With ``alpha^2 + sigma^2 = r^2``: ``eps = (sigma x + alpha v) / r^2``, hence
    ``score = -(sigma x + alpha v) / (sigma r^2)``. (VP has ``r = 1``; the formula holds for any linear SDE.)
    """

    def convert(f, x, t, a, s, *_):
        return -(s * x + a * f(x, t)) / (s * (a * a + s * s))

    return AdaptedScore(v_fn, sde, "v", convert)


def score_from_denoiser(denoiser, sde) -> AdaptedScore:
    """Score from an EDM / k-diffusion denoiser ``D(x_hat, sigma_hat) ~ E[x_0 | x_t]``.

    The denoiser works in the scaled variable ``x_hat = x / alpha`` at noise level ``sigma_hat = sigma / alpha``
    (Karras et al. 2022, sec. 4), so ``score = (alpha D(x / alpha, sigma / alpha) - x) / sigma^2``.
    ``sigma_hat`` is passed with shape ``(n,)``.
    """

    def convert(f, x, t, a, s, alpha, sigma):
        sigma_hat = _xp.full_time(sigma / alpha, x) if getattr(sigma, "ndim", 0) == 0 else sigma / alpha
        return (a * f(x / a, sigma_hat) - x) / (s * s)

    return AdaptedScore(denoiser, sde, "denoiser", convert)
