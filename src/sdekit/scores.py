"""Scores from the other parameterisations of diffusion models.

For a linear SDE with ``x_t = alpha x_0 + sigma eps`` (``eps ~ N(0, I)``) the score of ``p_t`` is
``grad log p_t(x) = -E[eps | x_t = x] / sigma = (alpha E[x_0 | x_t = x] - x) / sigma^2``. A network trained to
predict ``eps``, ``x_0``, ``v = alpha eps - sigma x_0`` (Salimans & Ho 2022) or the EDM denoiser
``D(x / alpha; sigma / alpha) = E[x_0 | x_t]`` (Karras et al. 2022) therefore gives the score by an affine map.

Each adapter returns a score ``score(x, t, **cond)`` (``t`` of shape ``(n,)``) working on numpy arrays and torch
tensors; ``t`` is passed through unchanged to the wrapped function, except for the denoiser which receives
the EDM noise level ``sigma(t) / alpha(t)`` of shape ``(n,)``. Keyword arguments (per-sample conditioning, see
``sample(..., cond=...)``) go to the wrapped function unchanged.

:func:`classifier_free_guidance` combines a conditional and an unconditional evaluation of a conditioned score in one
batched call (Ho & Salimans 2022).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

from . import _xp
from .sdes import LinearSDE

__all__ = [
    "score_from_eps",
    "score_from_x0",
    "score_from_v",
    "score_from_denoiser",
    "AdaptedScore",
    "ConditionedScore",
    "GuidedScore",
    "classifier_free_guidance",
    "check_cond",
]


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

    def __call__(self, x, t, **cond):
        alpha, sigma = self.sde.marginal(t)
        fn = self.fn if not cond else functools.partial(self.fn, **cond)
        return self._convert(fn, x, t, _xp.per_sample(alpha, x), _xp.per_sample(sigma, x), alpha, sigma)

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


class ConditionedScore:
    """A score with per-sample conditioning: ``score(x, t, **cond)`` on the rows it is given.

    ``cond`` maps keyword names to arrays or tensors whose leading dimension is the batch size ``n`` (class labels,
    embeddings, guidance weights). Loops that evaluate the score on a subset of the rows (the adaptive solvers) call
    :meth:`restrict` with those rows, so sample ``i`` always sees its own conditioning. ``solve`` and ``sample`` build
    it from their ``cond=`` argument.
    """

    def __init__(self, score, cond: dict, n: int):
        self.score = score
        self.cond = check_cond(cond, n)
        self.n = n
        self.event_shape = getattr(score, "event_shape", None)
        self.fn = score  # the torch module behind it is found through here, as for the adapters

    def __call__(self, x, t):
        if x.shape[0] != self.n:
            raise ValueError(
                f"the score was called on {x.shape[0]} rows but cond has {self.n}; a loop that evaluates a subset "
                "of the samples must restrict the conditioning to them (process.restrict(rows))"
            )
        return self.score(x, t, **self.cond)

    def restrict(self, rows) -> ConditionedScore:
        """The same score on the samples ``rows`` (a numpy integer array) of the batch."""
        return ConditionedScore(self.score, {k: _take_rows(v, rows) for k, v in self.cond.items()}, len(rows))

    def __repr__(self):
        return f"ConditionedScore({self.score!r}, cond keys {sorted(self.cond)})"


class GuidedScore:
    """Classifier-free guidance of a conditioned score (see :func:`classifier_free_guidance`)."""

    def __init__(self, score, scale, null_cond: dict):
        if not callable(score):
            raise TypeError(f"score must be callable score(x, t, **cond), got {score!r}")
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real) or not np.isfinite(scale):
            raise TypeError(f"scale must be a finite real number (the guidance weight), got {scale!r}")
        if not isinstance(null_cond, dict) or not null_cond:
            raise TypeError(
                f"null_cond must be a non-empty dict (keyword name -> the unconditional value), got {null_cond!r}"
            )
        for key in null_cond:
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"null_cond keys must be keyword names, got {key!r}")
        self.score, self.scale, self.null_cond = score, float(scale), dict(null_cond)
        self.fn = score  # the torch module behind it is found through here
        if hasattr(score, "event_shape"):
            self.event_shape = score.event_shape

    def __call__(self, x, t, **cond):
        missing = sorted(set(self.null_cond) - set(cond))
        if missing:
            raise ValueError(
                f"classifier-free guidance replaces cond{missing} by null_cond, but the score was called without "
                f"them (cond keys {sorted(cond)}); pass them in cond=..."
            )
        n = x.shape[0]
        both = {}
        for key, value in cond.items():
            null = self.null_cond.get(key)
            both[key] = _concat([value, value if key not in self.null_cond else _null_rows(key, null, value, n)])
        out = self.score(_concat([x, x]), _concat([t, t]), **both)  # one batched evaluation: (s_c, s_u)
        s_c, s_u = out[:n], out[n:]
        return s_u + self.scale * (s_c - s_u)

    def __repr__(self):
        return f"classifier_free_guidance({self.score!r}, scale={self.scale}, null_cond keys {sorted(self.null_cond)})"


def classifier_free_guidance(score, scale: float, null_cond: dict) -> GuidedScore:
    """Classifier-free guidance (Ho & Salimans 2022): ``s_u + scale (s_c - s_u)``.

    ``score(x, t, **cond)`` is a conditioned score (any of the adapters above wrapping a conditioned network, or a
    score of your own); ``s_c`` is it at the sample's own ``cond`` and ``s_u`` at ``null_cond`` (the "empty" label or
    embedding the network was trained with for the unconditional case). Both come from **one** batched evaluation of
    ``2n`` rows: ``x``, ``t`` and every ``cond`` entry are stacked with their unconditional twins (entries not in
    ``null_cond`` are repeated). ``scale = 1`` is the conditional score, ``0`` the unconditional one, ``> 1`` guides.

    Guidance on the score is guidance on ``eps``, ``x_0``, ``v`` or the EDM denoiser: every adapter is affine in the
    network's output with weights that do not depend on it, and ``s_u + w (s_c - s_u)`` is an affine combination with
    weights summing to 1, so ``score_from_eps(eps_guided) == classifier_free_guidance(score_from_eps(eps))``.

    Parameters
    ----------
    score : callable ``score(x, t, **cond)``
    scale : float
        The guidance weight ``w``.
    null_cond : dict
        Keyword name -> the unconditional value: one row (shape ``cond[key].shape[1:]``, or a python number for a
        scalar label) repeated for every sample, or a full ``(n, ...)`` array.

    Examples
    --------
    Use it with ``sample(..., cond={...})`` (the per-sample conditioning follows chunks and adaptive subsets)::

        guided = classifier_free_guidance(score_from_eps(eps_model, sde), scale=3.0, null_cond={"label": 10})
        sol = sample(sde, guided, n=16, shape=(2,), cond={"label": labels})
    """
    return GuidedScore(score, scale, null_cond)


def _concat(parts):
    if _xp.is_torch(parts[0]):
        return _xp.lib(parts[0]).cat(parts, dim=0)
    return np.concatenate(parts, axis=0)


def _null_rows(key, null, value, n):
    """``null`` (one row, or ``n`` rows) as ``n`` rows like ``value`` (the conditional entry)."""
    row_shape = tuple(value.shape[1:])
    if _xp.is_torch(value):
        torch = _xp.lib(value)
        null = torch.as_tensor(null, dtype=value.dtype, device=value.device)
    else:
        null = np.asarray(null, dtype=value.dtype)
    shape = tuple(null.shape)
    if shape == row_shape:
        return null.expand((n,) + row_shape) if _xp.is_torch(null) else np.broadcast_to(null, (n,) + row_shape)
    if shape == (n,) + row_shape:
        return null
    raise ValueError(
        f"null_cond[{key!r}] must have the shape of one row of cond[{key!r}], {row_shape}, or all {n} rows, "
        f"{(n,) + row_shape}; got shape {shape}"
    )


def _take_rows(v, rows):
    if _xp.is_torch(v):
        return v[_xp.lib(v).as_tensor(rows, dtype=_xp.lib(v).long, device=v.device)]
    return v[rows]


def check_cond(cond, n: int) -> dict:
    """``cond`` checked: a dict of str -> array/tensor with leading dimension ``n`` (``ValueError`` naming the key)."""
    if not isinstance(cond, dict):
        raise TypeError(f"cond must be a dict of per-sample arrays (keyword name -> array), got {type(cond).__name__}")
    for key, value in cond.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"cond keys must be keyword names, got {key!r}")
        shape = getattr(value, "shape", None)
        if shape is None or len(shape) < 1 or shape[0] != n:
            raise ValueError(
                f"cond[{key!r}] must be an array or tensor with leading dimension n = {n} (one row per sample), "
                f"got {type(value).__name__} of shape {None if shape is None else tuple(shape)}"
            )
    return dict(cond)
