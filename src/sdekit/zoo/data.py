"""The 8x8 digits of scikit-learn, split once into training and held-out test images.

``sklearn.datasets.load_digits()`` ships 1797 grey-scale digits (UCI "optical recognition of handwritten
digits") with integer pixels in ``0..16``; they come inside the scikit-learn wheel, so nothing is downloaded.
Pixels are mapped to ``[-1, 1]`` by ``x = p / 8 - 1``.

The split does not use a random generator (so it cannot change with a numpy version): within each class the
images are taken in dataset order and every fifth one (the 0th, 5th, 10th, ... of that class) is held out.
That gives 364 test images (35 to 37 per class) and 1433 training images, stratified by class.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["DigitsSplit", "load_digits_split", "PIXEL_SCALE", "TEST_EVERY", "SIGMA_DATA"]

PIXEL_SCALE = 8.0  # x = p / PIXEL_SCALE - 1 maps 0..16 onto [-1, 1]
TEST_EVERY = 5  # every 5th image of each class is held out
# EDM's sigma_data: the root mean square of the training pixels in [-1, 1] (0.846), rounded. EDM's c_skip is the
# optimal linear coefficient for data with E[x^2] = sigma_data^2, hence the second moment and not the variance.
SIGMA_DATA = 0.85

INSTALL_HINT = "pip install 'sdekit[zoo]'"


class DigitsSplit(NamedTuple):
    """Images ``(n, 1, 8, 8)`` float32 in ``[-1, 1]`` and labels ``(n,)`` int64 of the fixed split."""

    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray


def _sklearn_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(f"sdekit.zoo needs scikit-learn for the 8x8 digits: {INSTALL_HINT}") from None
    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def split_mask(labels: np.ndarray, every: int = TEST_EVERY) -> np.ndarray:
    """Boolean ``(n,)`` mask of the held-out images: every ``every``-th image of each class, in dataset order."""
    labels = np.asarray(labels)
    rank = np.zeros(labels.shape[0], dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(idx.size)
    return rank % every == 0


def load_digits_split() -> DigitsSplit:
    """The 1797 digits as a fixed train / test split (see the module docstring).

    Returns
    -------
    DigitsSplit
        ``train`` (1433, 1, 8, 8), ``test`` (364, 1, 8, 8), float32 in ``[-1, 1]``; ``train_labels``,
        ``test_labels`` int64 digit classes ``0..9``.

    Raises
    ------
    ImportError
        When scikit-learn is not installed.
    """
    images, labels = _sklearn_digits()
    x = (images / PIXEL_SCALE - 1.0).astype(np.float32)[:, None, :, :]
    test = split_mask(labels)
    return DigitsSplit(x[~test], labels[~test], x[test], labels[test])
