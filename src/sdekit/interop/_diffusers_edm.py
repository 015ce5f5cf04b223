"""diffusers' EDM schedulers (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``) in
:class:`~sdekit.interop.diffusers.SdekitScheduler`: their noise levels as an sdekit process, their timesteps and their
preconditioning (Karras et al. 2022, "Elucidating the design space of diffusion-based generative models", Table 1).

These classes have no DDPM training schedule: the network is trained on noise levels ``s`` (the EDM variable: latents
``x_s = x_0 + s eps``), its input is ``c_in x_s``, its timestep ``c_noise = log(s) / 4`` and its denoised estimate
``D = c_skip x_s + c_out F`` with ``c_in = 1 / sqrt(s^2 + sd^2)``, ``c_skip = sd^2 / (s^2 + sd^2)`` and
``c_out = +- s sd / sqrt(s^2 + sd^2)`` (``+`` for ``prediction_type="epsilon"``, ``-`` for ``"v_prediction"``, as
diffusers defines them; ``sd`` is ``sigma_data``). sdekit runs them on the VP process of the same levels,
``abar = 1 / (1 + s^2)`` (the VP state ``x = x_s / sqrt(1 + s^2)``), on which the same solver is the same method:
DPM-Solver++ and DDIM depend on the noise levels through ``log s`` only, and the state's scale cancels.
"""

from __future__ import annotations

import diffusers
import numpy as np
import torch

from ._diffusers_config import EDM_CLASSES, keys_of

__all__ = ["EDM_CLASSES", "edm_source", "edm_alphas_cumprod", "edm_training_points", "edm_input_scale",
           "edm_denoised", "check_edm_prediction"]  # fmt: skip


def edm_source(name: str, config: dict):
    """An instance of EDM scheduler class ``name`` built from the entries of ``config`` that it takes (its
    ``prediction_type`` checked by :func:`check_edm_prediction`)."""
    check_edm_prediction(config.get("prediction_type", "epsilon"))
    cls = getattr(diffusers, name)
    return cls.from_config(keys_of(cls, dict(config)))


def edm_training_points(src):
    """``(timesteps (N,), levels (N+1,))`` of EDM scheduler ``src`` before ``set_timesteps``: its training levels
    (decreasing, float32 as diffusers keeps them) with their ``c_noise`` timesteps, and its final level."""
    return src.timesteps.detach().cpu().double().numpy(), src.sigmas.detach().cpu().double().numpy()


def edm_alphas_cumprod(src) -> torch.Tensor:
    """``abar = 1 / (1 + s^2)`` (float64, ``(N,)``, decreasing) of the training levels ``s`` of EDM scheduler ``src``,
    in increasing order of ``s``: the VP process whose noise levels they are."""
    _, levels = edm_training_points(src)
    s = np.unique(levels[:-1])  # (sorted, increasing)
    return torch.tensor(1.0 / (1.0 + s * s), dtype=torch.float64)


def edm_input_scale(s: float, sigma_data: float) -> float:
    """``c_in = 1 / sqrt(s^2 + sigma_data^2)``: the network's input is ``c_in x_s``."""
    return 1.0 / (s * s + sigma_data * sigma_data) ** 0.5


def check_edm_prediction(prediction_type) -> None:
    """``ValueError`` for a ``prediction_type`` other than ``"epsilon"`` and ``"v_prediction"`` (the two that
    diffusers' ``precondition_outputs`` defines; it accepts ``"sample"`` in the constructor and fails at the step)."""
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(
            "prediction_type must be 'epsilon' or 'v_prediction' for an EDM scheduler's network, got "
            f"{prediction_type!r}"
        )


def edm_denoised(prediction_type: str, out, x_s, s: float, sigma_data: float):
    """``D = c_skip x_s + c_out F`` of network output ``F`` at level ``s`` (diffusers' ``precondition_outputs``),
    for the ``prediction_type`` of :func:`check_edm_prediction`."""
    check_edm_prediction(prediction_type)
    var = s * s + sigma_data * sigma_data
    c_out = s * sigma_data / var**0.5
    return (sigma_data * sigma_data / var) * x_s + (c_out if prediction_type == "epsilon" else -c_out) * out
