"""Learned score models that ship with sdekit.

``sdekit.zoo.digits()`` returns a small EDM denoiser trained on scikit-learn's 8x8 digits, its score, the
forward SDE, the train / test split and a Fréchet-distance feature space::

    import sdekit

    zoo = sdekit.zoo.digits()                       # needs torch and scikit-learn: pip install 'sdekit[zoo]'
    sol = sdekit.sample(zoo.sde, zoo.score, n=64, solver="heun", steps=18, grid="karras")
    sdekit.zoo.image_grid(sol.x, "digits.png")
    print(zoo.frechet(sol.x), zoo.floor)            # Fréchet distance to the held-out digits, and its floor

Importing ``sdekit.zoo`` imports neither torch nor scikit-learn; ``digits()`` does. The weights
(``digits.npz``, float32) are reproduced bit for bit by ``scripts/train_digits.py`` (see ``docs/zoo.md``).
"""

from __future__ import annotations

from .data import SIGMA_DATA, DigitsSplit, load_digits_split
from .grid import image_grid, mosaic
from .models import WEIGHTS_PATH, Digits, load_digits

__all__ = [
    "digits",
    "Digits",
    "image_grid",
    "mosaic",
    "load_digits_split",
    "DigitsSplit",
    "SIGMA_DATA",
    "WEIGHTS_PATH",
    "WEIGHTS_SHA256",
]

# SHA-256 of the shipped digits.npz (scripts/train_digits.py with its defaults reproduces it)
WEIGHTS_SHA256 = "66347a5a3b906a9bda8e5b31c4236ea8a4a77458e30a5a89caf7e6a5f2c41438"


def digits(*, device=None) -> Digits:
    """The shipped 8x8-digits score model (see :class:`sdekit.zoo.Digits` for what it holds).

    Parameters
    ----------
    device : torch device or str, optional
        Where the denoiser lives (default CPU, float32).

    Raises
    ------
    ImportError
        When torch or scikit-learn is missing (``pip install 'sdekit[zoo]'``).
    """
    return load_digits(device=device)
