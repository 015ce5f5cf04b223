"""A fixed feature space for Fréchet distances between sets of 8x8 digits (numpy only).

Features are the 32 penultimate activations ``silu(fc2(silu(fc1(x))))`` of a small classifier (64 -> 256 -> 32
-> 10, about 25 k parameters, test accuracy about 97 %) trained once on the training split, with random one-pixel
shifts; its weights ship in the zoo's weight file. Why a learned, nonlinear feature map and not, say, a PCA
whitening of the pixels: in any *linear* feature space the Fréchet distance depends on the pixel mean and
covariance alone, so a Gaussian fitted to the training pixels -- blurry blobs, no digits -- would score as well
as real digits. The classifier's features separate the classes and react to strokes, like the Inception
features behind FID (Heusel et al. 2017), at the scale of 8x8 images.

The Fréchet distance between the Gaussians fitted to two feature sets is
``FD = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1 C_2)^{1/2})``, the square of ``sdekit.metrics.gaussian_w2``.
It is biased upwards for finite samples (roughly by ``tr(C_1)/n_1 + tr(C_2)/n_2``), so compare numbers at the
same sample sizes.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..metrics import gaussian_w2

__all__ = ["classifier_features", "frechet_distance", "as_images"]

FEATURE_KEYS = ("classifier.fc1.weight", "classifier.fc1.bias", "classifier.fc2.weight", "classifier.fc2.bias")


def _silu(z):
    """``z sigmoid(z)`` with the logistic function computed without overflow (``scipy.special.expit``): samples far
    outside the data range (a diverging few-step solver) give pre-activations below -709, where ``exp(-z)``
    overflows and ``z / (1 + exp(-z))`` warned although its value (-0) was right."""
    return z * expit(z)


def as_images(name: str, x) -> np.ndarray:
    """``x`` (numpy array or torch tensor ``(n, 1, 8, 8)`` or ``(n, 8, 8)``) as float64 numpy ``(n, 1, 8, 8)``."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of shape (n, 1, 8, 8), got {type(x).__name__}") from None
    if arr.ndim == 3 and arr.shape[1:] == (8, 8):
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1:] != (1, 8, 8) or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, 1, 8, 8) (or (n, 8, 8)), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values")
    return arr


def classifier_features(params: dict, x) -> np.ndarray:
    """The ``(n, k)`` features of images ``x`` ``(n, 1, 8, 8)`` in ``[-1, 1]``; ``params`` holds ``FEATURE_KEYS``."""
    arr = as_images("x", x)
    w1, b1, w2, b2 = (np.asarray(params[k], dtype=np.float64) for k in FEATURE_KEYS)
    h = _silu(arr.reshape(arr.shape[0], -1) @ w1.T + b1)
    return _silu(h @ w2.T + b2)


def frechet_distance(f1, f2) -> float:
    """Fréchet distance between the Gaussians fitted to feature sets ``f1`` ``(n1, k)`` and ``f2`` ``(n2, k)``."""
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    for name, f in (("f1", f1), ("f2", f2)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must have shape (n, k) with n >= 2, got {f.shape}")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"f1 and f2 must have the same number of features, got {f1.shape[1]} and {f2.shape[1]}")
    c1, c2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    return gaussian_w2(f1.mean(0), c1, f2.mean(0), c2) ** 2
