"""Training the zoo's digits models, deterministically (this module imports torch).

``train_digits`` trains both networks that ``sdekit.zoo.digits()`` ships and returns the arrays of its weight
file. Everything is a function of the seed: one CPU thread, ``torch.use_deterministic_algorithms(True)``, and
every random draw (minibatch indices, noise levels, noise, dropout, shifts, initial weights) comes from
generators seeded from it, in a fixed order. Two runs with the same arguments, torch version and CPU give
bit-identical weights.

Denoiser: the EDM loss (Karras et al. 2022, eq. 8 and table 1)::

    E_{sigma, x_0, z} [ lambda(sigma) |D(x_0 + sigma z, sigma) - x_0|^2 ],
    ln sigma ~ N(P_mean, P_std^2),  lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2

with ``P_mean = -1.2``, ``P_std = 1.2`` (the squared norm averaged over the 64 pixels), Adam with a linear
warm-up and a cosine decay of the learning rate, and an exponential moving average (EMA) of the weights, which
is what is shipped. Classifier: cross-entropy with random shifts of up to one pixel, Adam with weight decay.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import time

import numpy as np
import torch

from .data import SIGMA_DATA, load_digits_split
from .nets import DigitsClassifier, DigitsDenoiser

__all__ = [
    "deterministic",
    "edm_loss",
    "train_denoiser",
    "train_classifier",
    "train_digits",
    "state_arrays",
    "DEFAULTS",
]

P_MEAN, P_STD = -1.2, 1.2

# the settings the shipped weights were trained with (scripts/train_digits.py)
DEFAULTS = dict(
    seed=0,
    steps=20_000,
    batch_size=256,
    lr=2e-3,
    warmup=500,
    ema_decay=0.999,
    net=dict(width=128, blocks=4, emb_dim=64, n_freqs=16, dropout=0.0),
    classifier_steps=4_000,
)


@contextlib.contextmanager
def deterministic(threads: int = 1):
    """Run the block with ``threads`` torch threads and deterministic algorithms; restores both afterwards."""
    threads = _positive_int("threads", threads)
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _images(name, x):
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8) or x.shape[0] < 1:
        raise ValueError(f"{name} must be an array of shape (n, 1, 8, 8), got {getattr(x, 'shape', type(x))!r}")
    return x.to(torch.float32)


def edm_loss(denoiser, x0, generator=None, p_mean: float = P_MEAN, p_std: float = P_STD):
    """EDM's weighted denoising loss of ``denoiser`` on the batch ``x0`` ``(n, 1, 8, 8)`` (a scalar tensor).

    ``denoiser`` must carry ``sigma_data``; noise levels and noise come from ``generator``.
    """
    n = x0.shape[0]
    sd = float(denoiser.sigma_data)
    sigma = torch.exp(p_mean + p_std * torch.randn(n, generator=generator, dtype=x0.dtype))
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    d = denoiser(x0 + sigma[:, None, None, None] * z, sigma)
    weight = (sigma * sigma + sd * sd) / (sigma * sd) ** 2
    return (weight * ((d - x0) ** 2).mean(dim=(1, 2, 3))).mean()


def _lr_factor(step, steps, warmup):
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def train_denoiser(
    train,
    *,
    steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    warmup: int = DEFAULTS["warmup"],
    ema_decay: float = DEFAULTS["ema_decay"],
    seed: int = DEFAULTS["seed"],
    sigma_data: float = SIGMA_DATA,
    net: dict | None = None,
    threads: int = 1,
    log_every: int = 0,
):
    """Train a :class:`DigitsDenoiser` with the EDM loss; returns ``(ema_model, losses)``.

    Parameters
    ----------
    train : array ``(n, 1, 8, 8)``
        Training images in ``[-1, 1]``.
    steps, batch_size, lr, warmup, ema_decay : training schedule (Adam; ``warmup`` linear steps, then cosine).
    seed : int
        Seeds the initial weights and every draw.
    net : dict, optional
        Keyword arguments of :class:`DigitsDenoiser` (default ``DEFAULTS["net"]``).
    threads : int
        torch threads while training (bit-for-bit results need the same count every time).
    log_every : int
        Print the mean loss every that many steps (0: silent).

    Returns
    -------
    (DigitsDenoiser, numpy.ndarray)
        The EMA model in eval mode and the per-step losses ``(steps,)``.
    """
    x = _images("train", train)
    steps, batch_size = _positive_int("steps", steps), _positive_int("batch_size", batch_size)
    warmup = _positive_int("warmup", warmup)
    if not 0.0 <= float(ema_decay) < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay!r}")
    net = dict(DEFAULTS["net"] if net is None else net)
    losses = np.empty(steps)
    with deterministic(threads):
        torch.manual_seed(seed)  # initial weights (and dropout masks) come from the global generator
        model = DigitsDenoiser(sigma_data=sigma_data, **net)
        ema = DigitsDenoiser(sigma_data=sigma_data, **net)
        ema.load_state_dict(model.state_dict())
        ema.requires_grad_(False)
        gen = torch.Generator().manual_seed(seed + 1)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        t0 = time.perf_counter()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * _lr_factor(step, steps, warmup)
            idx = torch.randint(x.shape[0], (batch_size,), generator=gen)
            loss = edm_loss(model, x[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.mul_(ema_decay).add_(pm, alpha=1.0 - ema_decay)
            losses[step] = loss.item()
            if log_every and (step + 1) % log_every == 0:
                recent = losses[step + 1 - log_every : step + 1].mean()
                print(f"step {step + 1:6d}  loss {recent:.4f}  {time.perf_counter() - t0:7.1f} s", flush=True)
    return ema.eval(), losses


def _shift(x, gen, max_shift: int):
    """Each image moved by up to ``max_shift`` pixels in each direction, padded with the background -1."""
    if max_shift == 0:
        return x
    n, k = x.shape[0], 2 * max_shift + 1
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, value=-1.0)
    crops = padded.unfold(2, 8, 1).unfold(3, 8, 1)  # (n, 1, k, k, 8, 8)
    dy = torch.randint(k, (n,), generator=gen)
    dx = torch.randint(k, (n,), generator=gen)
    return crops[torch.arange(n), :, dy, dx]


def train_classifier(
    train,
    labels,
    *,
    steps: int = DEFAULTS["classifier_steps"],
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    max_shift: int = 1,
    seed: int = DEFAULTS["seed"],
    threads: int = 1,
):
    """Train the :class:`DigitsClassifier` of the Fréchet features; returns the model in eval mode.

    ``train`` ``(n, 1, 8, 8)`` in ``[-1, 1]``, ``labels`` ``(n,)`` integers ``0..9``; cross-entropy on images
    shifted at random by up to ``max_shift`` pixels, AdamW.
    """
    x = _images("train", train)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if tuple(y.shape) != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    steps, batch_size = _positive_int("steps", steps), _positive_int("batch_size", batch_size)
    with deterministic(threads):
        torch.manual_seed(seed + 2)
        model = DigitsClassifier()
        gen = torch.Generator().manual_seed(seed + 3)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        model.train()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * _lr_factor(step, steps, 1)
            idx = torch.randint(x.shape[0], (batch_size,), generator=gen)
            loss = torch.nn.functional.cross_entropy(model(_shift(x[idx], gen, max_shift)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def state_arrays(prefix: str, module) -> dict:
    """``{prefix + "." + name: float32 array}`` for the persistent state of ``module``."""
    return {f"{prefix}.{k}": v.detach().cpu().numpy().astype(np.float32) for k, v in module.state_dict().items()}


def train_digits(
    *,
    steps: int = DEFAULTS["steps"],
    classifier_steps: int = DEFAULTS["classifier_steps"],
    seed: int = DEFAULTS["seed"],
    log_every: int = 0,
    **options,
) -> dict:
    """Train the denoiser and the feature classifier on the training split; returns the weight-file arrays.

    ``options`` go to :func:`train_denoiser` (``batch_size``, ``lr``, ``warmup``, ``ema_decay``, ``net``,
    ``threads``). The result maps ``"denoiser.*"`` and ``"classifier.*"`` to float32 state arrays and
    ``"config"`` to a JSON string of the settings (write it with ``sdekit.zoo.weights.save_arrays``).
    """
    split = load_digits_split()
    denoiser, losses = train_denoiser(split.train, steps=steps, seed=seed, log_every=log_every, **options)
    classifier = train_classifier(split.train, split.train_labels, steps=classifier_steps, seed=seed)
    settings = {k: v for k, v in options.items() if k != "threads"}
    config = dict(
        denoiser=denoiser.config,
        classifier=classifier.config,
        training=dict(steps=steps, classifier_steps=classifier_steps, seed=seed, **settings),
        final_loss=float(losses[-min(1000, steps) :].mean()),
        torch=torch.__version__,
    )
    arrays = {**state_arrays("denoiser", denoiser), **state_arrays("classifier", classifier)}
    arrays["config"] = np.array(json.dumps(config, sort_keys=True))
    return arrays
