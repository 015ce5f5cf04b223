"""Flow-matching noise levels of diffusers' VP schedulers (``use_flow_sigmas=True`` of UniPC and DPM-Solver
multistep) in :class:`~sdekit.interop.diffusers.SdekitScheduler` (``state_variable="flow"``).

A flow-matching model's latents are ``x_f = (1 - s) x_0 + s eps`` at the flow level ``s`` in ``(0, 1)``, its timestep
``s N`` (``N = num_train_timesteps``), its output the velocity ``v = eps - x_0`` (``prediction_type=
"flow_prediction"``; ``x_0 = x_f - s v``) or the noise. This is the VP process of the same signal-to-noise ratio,
``r = s / (1 - s)`` (the EDM level ``sigma / alpha``), with the latents rescaled: the VP state is ``x = (alpha +
sigma) x_f`` (``alpha = 1 / sqrt(1 + r^2)``, ``sigma = r alpha``), since ``1 - s = alpha / (alpha + sigma)``. The
solvers see only ``log r``, so DPM-Solver and UniPC on the VP state are diffusers' flow-sigma methods, which work with
``log((1 - s) / s)``; the scheduler converts the latents at each step, as it does for ``state_variable="sigma"``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "FLOW_CLASSES",
    "FLOW_PREDICTION",
    "uses_flow_sigmas",
    "flow_alphas_cumprod",
    "flow_levels",
    "flow_x0",
]

FLOW_PREDICTION = "flow_prediction"
#: the diffusers classes whose flow sigmas sdekit runs (their methods on the VP state are DPM-Solver's and UniPC's)
FLOW_CLASSES = ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler")


def uses_flow_sigmas(name: str, config) -> bool:
    """Whether a config of diffusers class ``name`` (one of ``FLOW_CLASSES``) asks for flow-matching noise levels."""
    return name in FLOW_CLASSES and bool(config.get("use_flow_sigmas", False))


def flow_alphas_cumprod(n: int) -> torch.Tensor:
    """The VP table of a flow model's ``n`` training timesteps: timestep ``i`` at flow level ``s = i / n`` (timestep
    0, ``s = 0``, is the data: ``s = 1 / (2n)`` there), ``abar = (1 - s)^2 / ((1 - s)^2 + s^2)``; float64."""
    s = np.arange(n, dtype=np.float64) / n
    s[0] = 0.5 / n
    return torch.tensor((1 - s) ** 2 / ((1 - s) ** 2 + s**2), dtype=torch.float64)


def flow_levels(sigmas: np.ndarray) -> np.ndarray:
    """EDM levels ``r = s / (1 - s)`` of flow levels ``s`` (a final 0 stays 0)."""
    s = np.asarray(sigmas, dtype=np.float64)
    return s / (1.0 - s)


def flow_x0(out, x, alpha: float, sigma: float):
    """The data prediction ``x_0 = x_f - s v`` of a velocity ``out`` at the VP state ``x`` (``x_f = x / (alpha +
    sigma)``, ``s = sigma / (alpha + sigma)``)."""
    return (x - sigma * out) / (alpha + sigma)


def check_flow_prediction(prediction_type, state_variable) -> bool:
    """Whether ``prediction_type`` is flow's own (``"flow_prediction"`` with flow latents); ``ValueError`` for
    ``"v_prediction"`` with flow latents (diffusers' flow-sigma classes read it in flow's own alpha and sigma, another
    network output than the VP velocity sdekit reads). The others are checked by ``check_prediction_type``."""
    if state_variable == "flow" and prediction_type == "v_prediction":
        raise ValueError(
            "prediction_type='v_prediction' with flow sigmas is not supported (diffusers reads it with flow's alpha "
            "= 1 - s, sigma = s); use 'flow_prediction', 'epsilon' or 'sample'"
        )
    return prediction_type == FLOW_PREDICTION and state_variable == "flow"
