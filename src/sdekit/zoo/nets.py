"""The zoo's torch networks: an EDM-preconditioned denoiser for 8x8 digits and the feature classifier.

This module imports torch; ``sdekit.zoo`` imports it only when a model is built (``sdekit.zoo.digits()``).

Denoiser (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models", table 1)::

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)      c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_data^2)             c_noise = log(sigma) / 4

``F`` is a residual MLP on the 64 pixels: an input layer, ``blocks`` residual blocks (layer norm, SiLU, linear,
plus a projection of the noise embedding, SiLU, linear) and a linear output layer. The noise embedding is
``[c_noise, sin(w_k c_noise), cos(w_k c_noise)]`` with ``w_k`` geometric from 1/2 to 16, followed by a two-layer
MLP. The last layer of each block and the output layer start at zero, so the untrained ``D`` is ``c_skip x``
(the optimal linear denoiser of data with second moment ``sigma_data^2``).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

__all__ = ["precondition", "DigitsDenoiser", "DigitsClassifier", "EVENT_SHAPE"]

EVENT_SHAPE = (1, 8, 8)
N_PIXELS = 64


def precondition(sigma, sigma_data: float):
    """EDM's ``(c_skip, c_out, c_in, c_noise)`` at noise level ``sigma`` (a tensor, any shape, positive)."""
    sd2 = float(sigma_data) ** 2
    s2 = sigma * sigma
    root = torch.sqrt(s2 + sd2)
    return sd2 / (s2 + sd2), sigma * float(sigma_data) / root, 1.0 / root, torch.log(sigma) / 4.0


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _Block(nn.Module):
    def __init__(self, width: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.lin1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.drop = nn.Dropout(dropout)
        self.lin2 = nn.Linear(width, width)
        nn.init.zeros_(self.lin2.weight)
        nn.init.zeros_(self.lin2.bias)

    def forward(self, h, e):
        y = self.lin1(torch.nn.functional.silu(self.norm(h))) + self.emb(e)
        return h + self.lin2(self.drop(torch.nn.functional.silu(y)))


class DigitsDenoiser(nn.Module):
    """EDM denoiser ``D(x, sigma) ~ E[x_0 | x_0 + sigma z = x]`` for 8x8 images (see the module docstring).

    Parameters
    ----------
    sigma_data : float
        EDM's data scale in the preconditioning.
    width, blocks, emb_dim, n_freqs : int
        Hidden width of the MLP, number of residual blocks, width of the noise embedding, number of
        sinusoid frequencies in it.
    dropout : float
        Dropout rate inside the residual blocks (active in training mode only).

    Call ``denoiser(x, sigma)`` with ``x`` a tensor ``(n, 1, 8, 8)`` and ``sigma`` a positive scalar or a tensor
    ``(n,)``; returns a tensor like ``x`` (the network runs in its parameters' dtype, the skip term in ``x``'s).
    """

    event_shape = EVENT_SHAPE

    def __init__(
        self,
        sigma_data: float = 0.85,
        width: int = 128,
        blocks: int = 4,
        emb_dim: int = 64,
        n_freqs: int = 16,
        dropout: float = 0.0,
    ):
        super().__init__()
        if isinstance(sigma_data, bool) or not isinstance(sigma_data, numbers.Real) or not sigma_data > 0:
            raise ValueError(f"sigma_data must be a positive number, got {sigma_data!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.sigma_data = float(sigma_data)
        width, blocks = _positive_int("width", width), _positive_int("blocks", blocks)
        emb_dim, n_freqs = _positive_int("emb_dim", emb_dim), _positive_int("n_freqs", n_freqs)
        self.config = dict(
            sigma_data=self.sigma_data, width=width, blocks=blocks, emb_dim=emb_dim, n_freqs=n_freqs, dropout=dropout
        )
        freqs = torch.logspace(math.log10(0.5), math.log10(16.0), n_freqs, dtype=torch.float64).to(torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)
        self.emb_in = nn.Linear(2 * n_freqs + 1, emb_dim)
        self.emb_out = nn.Linear(emb_dim, emb_dim)
        self.inp = nn.Linear(N_PIXELS, width)
        self.blocks = nn.ModuleList(_Block(width, emb_dim, float(dropout)) for _ in range(blocks))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, N_PIXELS)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed(self, c_noise):
        """Noise embedding ``(n, emb_dim)`` of ``c_noise`` ``(n,)``."""
        arg = c_noise[:, None] * self.freqs.to(c_noise.dtype)
        feats = torch.cat([c_noise[:, None], torch.sin(arg), torch.cos(arg)], dim=1)
        return torch.nn.functional.silu(self.emb_out(torch.nn.functional.silu(self.emb_in(feats))))

    def network(self, x_in, c_noise):
        """The raw network ``F``: ``x_in`` ``(n, 64)`` (already scaled by ``c_in``), ``c_noise`` ``(n,)``."""
        e = self.embed(c_noise)
        h = self.inp(x_in)
        for block in self.blocks:
            h = block(h, e)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))

    def forward(self, x, sigma):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point torch tensor of shape (n, 1, 8, 8), got {type(x).__name__}")
        if x.ndim != 4 or tuple(x.shape[1:]) != EVENT_SHAPE:
            raise ValueError(f"x must have shape (n, 1, 8, 8), got {tuple(x.shape)}")
        n = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(n)
        if tuple(sigma.shape) != (n,):
            raise ValueError(f"sigma must be a scalar or have shape ({n},), got shape {tuple(sigma.shape)}")
        c_skip, c_out, c_in, c_noise = precondition(sigma, self.sigma_data)
        dtype = self.out.weight.dtype
        f = self.network((c_in[:, None, None, None] * x).reshape(n, N_PIXELS).to(dtype), c_noise.to(dtype))
        return c_skip[:, None, None, None] * x + c_out[:, None, None, None] * f.reshape(x.shape).to(x.dtype)


class DigitsClassifier(nn.Module):
    """The digit classifier whose penultimate layer is the Fréchet feature space.

    ``features(x)``: ``x`` ``(n, 1, 8, 8)`` -> ``silu(fc2(silu(fc1(x))))`` ``(n, n_features)``;
    ``forward(x)``: the class logits ``(n, 10)`` (``head`` of the features).
    """

    def __init__(self, hidden: int = 256, n_features: int = 32, n_classes: int = 10):
        super().__init__()
        hidden, n_features = _positive_int("hidden", hidden), _positive_int("n_features", n_features)
        self.config = dict(hidden=hidden, n_features=n_features, n_classes=_positive_int("n_classes", n_classes))
        self.fc1 = nn.Linear(N_PIXELS, hidden)
        self.fc2 = nn.Linear(hidden, n_features)
        self.head = nn.Linear(n_features, n_classes)

    def features(self, x):
        h = torch.nn.functional.silu(self.fc1(x.reshape(x.shape[0], N_PIXELS)))
        return torch.nn.functional.silu(self.fc2(h))

    def forward(self, x):
        return self.head(self.features(x))
