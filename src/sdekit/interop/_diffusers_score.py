"""The network -> score direction of the diffusers interop: :func:`score_from_diffusers` and the conversion of a
network output (``epsilon`` / ``v_prediction`` / ``sample``) to a score, shared with :class:`SdekitScheduler` (see
:mod:`sdekit.interop.diffusers`)."""

from __future__ import annotations

import torch

from .. import _xp
from ..discrete_vp import DiscreteVPSDE
from ._diffusers_config import alphas_cumprod_of, config_dict, training_betas

__all__ = ["score_from_diffusers", "sde_from_diffusers", "DiffusersScore", "PREDICTION_TYPES", "score_of_output",
           "split_learned_variance", "check_prediction_type", "alphas_cumprod", "LEARNED_VARIANCE"]  # fmt: skip

#: The network outputs sdekit converts to a score (diffusers' names).
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
LEARNED_VARIANCE = ("learned", "learned_range")


# -- the training schedule ---------------------------------------------------------------------------------


def alphas_cumprod(config: dict, name: str) -> torch.Tensor:
    """``alphas_cumprod`` of a diffusers config, computed as diffusers' schedulers do (float32)."""
    return alphas_cumprod_of(training_betas(config, name), bool(config.get("rescale_betas_zero_snr", False)))


def sde_from_diffusers(scheduler_config) -> DiscreteVPSDE:
    """The :class:`sdekit.DiscreteVPSDE` of a diffusers scheduler or scheduler config (its training schedule).

    A scheduler object's own ``alphas_cumprod`` is used when it has one; a config is read as diffusers' schedulers
    read it (``beta_schedule`` ``linear`` / ``scaled_linear`` / ``squaredcos_cap_v2`` or ``trained_betas``,
    ``rescale_betas_zero_snr``), in float32 like them.
    """
    ac = getattr(scheduler_config, "alphas_cumprod", None)
    if ac is None:
        ac = alphas_cumprod(config_dict(scheduler_config, "scheduler_config"), "scheduler_config")
    return DiscreteVPSDE(alphas_cumprod=ac)


def check_prediction_type(value, name: str) -> str:
    if value not in PREDICTION_TYPES:
        raise ValueError(f"{name} must be one of {list(PREDICTION_TYPES)}, got {value!r}")
    return value


def score_of_output(prediction_type: str, out, x, alpha, sigma):
    """The score at ``x`` from a network output of ``prediction_type``; ``alpha``, ``sigma`` broadcast with ``x``."""
    if prediction_type == "epsilon":
        return -out / sigma
    if prediction_type == "sample":
        return (alpha * out - x) / (sigma * sigma)
    # v = alpha eps - sigma x0 (Salimans & Ho 2022): eps = (sigma x + alpha v) / (alpha^2 + sigma^2)
    return -(sigma * x + alpha * out) / (sigma * (alpha * alpha + sigma * sigma))


def split_learned_variance(out, channels: int, variance_type, name: str = "the network's output"):
    """The prediction half of a learned-variance output (``2 * channels`` channels: prediction, then variance, as
    diffusers' ``DDPMScheduler.step`` splits it); any other channel count with a learned variance is refused."""
    if variance_type not in LEARNED_VARIANCE:
        return out
    if out.ndim < 2 or out.shape[1] != 2 * channels:
        raise ValueError(
            f"variance_type={variance_type!r} means {name} has twice the state's channels (the prediction, then the "
            f"variance), {2 * channels}, got shape {tuple(out.shape)}; a network that predicts only the mean has "
            "variance_type=None (or 'fixed_small')"
        )
    return out[:, :channels]


# -- network -> score --------------------------------------------------------------------------------------


class DiffusersScore:
    """The score of a diffusers network (see :func:`score_from_diffusers`)."""

    def __init__(self, unet, sde: DiscreteVPSDE, prediction_type: str, variance_type=None):
        if not callable(unet):
            raise TypeError(f"unet must be a callable network unet(x, timestep, **cond), got {unet!r}")
        self.fn, self.sde, self.prediction_type, self.variance_type = unet, sde, prediction_type, variance_type
        cfg = getattr(unet, "config", None)
        size, channels = getattr(cfg, "sample_size", None), getattr(cfg, "in_channels", None)
        if size is not None and channels is not None:
            size = (size, size) if isinstance(size, int) else tuple(size)
            self.event_shape = (int(channels), *(int(s) for s in size))
        out_channels = getattr(cfg, "out_channels", None)
        if variance_type in LEARNED_VARIANCE and channels is not None and out_channels is not None:
            if int(out_channels) != 2 * int(channels):
                raise ValueError(
                    f"scheduler_config['variance_type']={variance_type!r} needs a network with twice its input "
                    f"channels (the prediction, then the variance); unet has in_channels={channels}, "
                    f"out_channels={out_channels}"
                )
        param = next(unet.parameters(), None) if isinstance(unet, torch.nn.Module) else None
        self._dtype = param.dtype if param is not None else None

    def __call__(self, x, t, **cond):
        if not _xp.is_torch(x):
            raise TypeError(
                "a diffusers network takes torch tensors; sample with backend='torch' (or pass x_T as a tensor)"
            )
        sde = self.sde
        timestep = sde.timestep(t).clamp(0.0, sde.num_timesteps - 1.0)  # the trained range (k-diffusion clamps too)
        dtype = self._dtype or x.dtype
        out = self.fn(x.to(dtype), timestep.to(dtype), **cond)
        out = out.sample if hasattr(out, "sample") else (out[0] if isinstance(out, tuple) else out)
        out = split_learned_variance(out, x.shape[1], self.variance_type).to(x.dtype)
        alpha, sigma = sde.marginal(t)
        return score_of_output(self.prediction_type, out, x, _xp.per_sample(alpha, x), _xp.per_sample(sigma, x))

    def __repr__(self):
        return f"score_from_diffusers({type(self.fn).__name__}, {self.sde!r}, prediction_type={self.prediction_type!r})"


def score_from_diffusers(unet, scheduler_config):
    """``(sde, score)`` for a diffusers network trained on a DDPM schedule.

    Parameters
    ----------
    unet : callable ``unet(x, timestep, **cond)``
        A ``UNet2DModel`` / ``UNet2DConditionModel``-style network (output ``.sample`` or a tuple); ``cond``
        (``sample(..., cond={"class_labels": ...})``) is passed through.
    scheduler_config : dict or scheduler
        The config of the scheduler it was trained with (``pipe.scheduler.config``) or the scheduler itself: its
        training schedule gives the :class:`sdekit.DiscreteVPSDE`, its ``prediction_type`` (``"epsilon"``,
        ``"v_prediction"`` or ``"sample"``) the conversion.

    Notes
    -----
    The network is evaluated at ``timestep = sde.timestep(t)`` (real-valued, clamped to ``[0, N - 1]``; ``t = (tau +
    1) / N``), in its parameters' dtype, and its output is converted to ``grad log p_t``. Example::

        sde, score = score_from_diffusers(pipe.unet, pipe.scheduler.config)
        sol = sdekit.sample(sde, score, n=4, solver="dpmpp_3m_pc", steps=20)   # x_T on the unet's device and dtype
    """
    config = config_dict(scheduler_config, "scheduler_config")
    sde = sde_from_diffusers(scheduler_config)
    prediction_type = check_prediction_type(config.get("prediction_type", "epsilon"),
                                             "scheduler_config['prediction_type']")  # fmt: skip
    return sde, DiffusersScore(unet, sde, prediction_type, config.get("variance_type"))
