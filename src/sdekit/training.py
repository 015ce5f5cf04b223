"""Training a score model: continuous denoising score matching (Song et al. 2021, eq. 7).

For a linear SDE, ``x_t = alpha(t) x_0 + sigma(t) z`` with ``z ~ N(0, I)``, and the conditional score is
``grad log p(x_t | x_0) = -z / sigma(t)``. Denoising score matching (Vincent 2011) regresses the model on it::

    L(theta) = E_{t ~ U[eps, T]} E_{x_0, z} [ lambda(t) / 2 * || s_theta(x_t, t) + z / sigma(t) ||^2 ]

whose minimiser over all functions is the true score of ``p_t`` (for every ``t`` with ``lambda(t) > 0``).
The weightings here are those of score_sde (``losses.py::get_sde_loss_fn`` with ``reduce_mean=False``):

* ``"sigma2"``: ``lambda = sigma(t)^2``, i.e. ``|| sigma s_theta + z ||^2 / 2`` -- the eps-prediction loss of
  DDPM when ``s_theta = -eps_theta / sigma``;
* ``"likelihood"``: ``lambda = g(t)^2``, which makes the loss an upper bound on the negative log-likelihood
  up to a constant (Song, Durkan, Murray & Ermon 2021, "Maximum Likelihood Training of Score-Based Diffusion
  Models", thm. 1).

The squared norm is summed over the event axes (``/ 2``) and averaged over the batch.
"""

from __future__ import annotations

import torch

from . import _xp
from .sdes import LinearSDE
from .validation import in_interval

__all__ = ["dsm_loss", "WEIGHTINGS"]

WEIGHTINGS = ("sigma2", "likelihood")
REDUCTIONS = ("mean", "none")


def dsm_loss(
    score_model,
    x0,
    sde,
    weighting: str = "sigma2",
    eps: float = 1e-5,
    *,
    t=None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
):
    """Continuous denoising score-matching loss of ``score_model`` on the data batch ``x0``.

    Parameters
    ----------
    score_model : callable ``score_model(x, t)``
        An ``nn.Module`` or any callable (e.g. ``sdekit.score_from_eps(eps_net, sde)``); ``x`` of shape
        ``(n, *event)``, ``t`` of shape ``(n,)``; returns a tensor like ``x``.
    x0 : tensor ``(n, *event)``
        Floating-point data batch; noise and times are drawn on its device in its dtype.
    sde : LinearSDE
        The forward process (``VPSDE``, ``SubVPSDE``, ``VESDE``, ``EDMSDE``).
    weighting : {"sigma2", "likelihood"}
        ``lambda(t) = sigma(t)^2`` or ``g(t)^2`` (see the module docstring).
    eps : float
        Times are uniform on ``[eps, T]`` (small ``t`` makes the regression target ``z / sigma`` explode).
    t : tensor ``(n,)``, optional
        Fixed times instead of uniform draws (for evaluation on a fixed set).
    generator : torch.Generator, optional
        Source of the times and the noise ``z`` (on ``x0``'s device); default: torch's global generator.
    reduction : {"mean", "none"}
        The batch mean (a scalar) or the per-sample losses ``(n,)``.

    Returns
    -------
    tensor
        Differentiable with respect to the model's parameters.
    """
    if not callable(score_model):
        raise TypeError(f"score_model must be callable score_model(x, t), got {score_model!r}")
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
        raise TypeError(f"x0 must be a floating-point torch tensor, got {type(x0).__name__}")
    if x0.ndim < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape (n, *event_shape) with n >= 1, got shape {tuple(x0.shape)}")
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"sde must be a LinearSDE (VPSDE, SubVPSDE, VESDE, EDMSDE), got {sde!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {list(WEIGHTINGS)}, got {weighting!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    eps = in_interval("eps", eps, 0.0, sde.T, what=f"(0, T) = (0, {sde.T})")
    n = x0.shape[0]
    opts = dict(device=x0.device, dtype=x0.dtype)
    if t is None:
        t = torch.rand(n, generator=generator, **opts) * (sde.T - float(eps)) + float(eps)
    else:
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n,):
            raise ValueError(f"t must be a tensor of shape ({n},), got {t!r}")
        t = t.to(**opts)
    z = torch.randn(x0.shape, generator=generator, **opts)
    alpha, sigma = sde.marginal(t)
    a, s = _xp.per_sample(alpha, x0), _xp.per_sample(sigma, x0)
    x_t = a * x0 + s * z
    score = score_model(x_t, t)
    if tuple(score.shape) != tuple(x0.shape):
        raise ValueError(f"score_model returned shape {tuple(score.shape)}, expected {tuple(x0.shape)}")
    event_ndim = x0.ndim - 1
    if weighting == "sigma2":
        per_sample = 0.5 * _xp.sum_last((s * score + z) ** 2, event_ndim)
    else:
        per_sample = 0.5 * sde.g2(t) * _xp.sum_last((score + z / s) ** 2, event_ndim)
    return per_sample.mean() if reduction == "mean" else per_sample
