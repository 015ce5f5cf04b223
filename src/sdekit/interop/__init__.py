"""Interoperability: torchsde, k-diffusion and diffusers, both ways.

* :func:`to_torchsde` -- an sdekit process for ``torchsde.sdeint`` (:mod:`sdekit.interop.torchsde`).
* :func:`k_diffusion_sampler` -- any fixed-step sdekit solver with k-diffusion's sampler signature; a k-diffusion
  denoiser is a score through :func:`sdekit.score_from_denoiser` (:mod:`sdekit.interop.k_diffusion`).
* :class:`SdekitScheduler` -- any fixed-step sdekit solver as a diffusers scheduler; :func:`score_from_diffusers` --
  a diffusers network and its scheduler config as ``(sde, score)`` (:mod:`sdekit.interop.diffusers`).

Everything here needs torch; the diffusers names import diffusers on first use.
"""

from __future__ import annotations

from .k_diffusion import KDiffusionSampler, k_diffusion_sampler, load_k_diffusion_sampling
from .torchsde import TorchsdeProcess, to_torchsde

_DIFFUSERS_NAMES = ("SdekitScheduler", "score_from_diffusers", "sde_from_diffusers", "DiffusersScore")

__all__ = [
    "to_torchsde",
    "TorchsdeProcess",
    "k_diffusion_sampler",
    "KDiffusionSampler",
    "load_k_diffusion_sampling",
    *_DIFFUSERS_NAMES,
]


def __getattr__(name):
    if name in _DIFFUSERS_NAMES:  # diffusers is imported only when one of its names is used
        from . import diffusers as _diffusers

        return getattr(_diffusers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_DIFFUSERS_NAMES))
