"""``Digits``: the shipped 8x8-digits score model with its data and its Fréchet feature space."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..scores import score_from_denoiser
from ..sdes import EDMSDE
from .data import INSTALL_HINT, load_digits_split
from .frechet import as_images, classifier_features, frechet_distance
from .weights import load_arrays, sha256_file

__all__ = ["Digits", "load_digits", "WEIGHTS_PATH"]

WEIGHTS_PATH = Path(__file__).with_name("digits.npz")


@dataclass(frozen=True, repr=False, eq=False)
class Digits:
    """A learned score model of scikit-learn's 8x8 digits (built by :func:`sdekit.zoo.digits`).

    Attributes
    ----------
    sde : EDMSDE
        ``EDMSDE()`` (``sigma(t) = t`` from 80 to 0.002, Karras et al. 2022), the process the denoiser was
        trained for; any ``LinearSDE`` works with ``score_from_denoiser(denoiser, sde)``.
    score : AdaptedScore
        ``score_from_denoiser(denoiser, sde)``: ``score(x, t)`` with ``x`` a tensor ``(n, 1, 8, 8)``, ``t``
        ``(n,)``; its ``event_shape`` is ``(1, 8, 8)`` and its ``fn`` the torch module, so
        ``sdekit.sample(sde, score, n=...)`` runs on the torch backend without further arguments.
    denoiser : DigitsDenoiser
        The EDM-preconditioned ``D(x, sigma)`` (a ``torch.nn.Module``, eval mode, parameters frozen).
    shape : tuple
        ``(1, 8, 8)``.
    sigma_data : float
        EDM's ``sigma_data`` of the preconditioning (0.85, the RMS of the training pixels).
    train, test : numpy.ndarray
        The fixed split (1433 and 364 images), float32 ``(n, 1, 8, 8)`` in ``[-1, 1]`` (``p / 8 - 1`` for the
        original pixels ``p`` in ``0..16``).
    train_labels, test_labels : numpy.ndarray
        int64 classes ``(n,)``.
    floor : float
        ``frechet(train)``: the Fréchet distance of the training digits to the test digits, what a perfect
        model of the training data would score up to sampling error.
    config : dict
        The architecture and training settings stored in the weight file.
    sha256 : str
        SHA-256 of the weight file that was loaded.
    """

    sde: object
    score: object
    denoiser: object
    shape: tuple
    sigma_data: float
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray
    config: dict
    sha256: str
    feature_params: dict = field(default_factory=dict)
    floor: float = float("nan")

    def features(self, x) -> np.ndarray:
        """Fréchet features ``(n, 32)`` (float64) of images ``x`` ``(n, 1, 8, 8)``, numpy array or tensor."""
        return classifier_features(self.feature_params, x)

    def frechet(self, x, reference=None) -> float:
        """Fréchet distance of images ``x`` ``(n, 1, 8, 8)`` (n >= 2) to ``reference`` (default: the test split).

        See ``sdekit.zoo.frechet`` for the feature space; samples are used as they are (not clipped).
        """
        ref = self.test if reference is None else reference
        return frechet_distance(self.features(as_images("x", x)), self.features(as_images("reference", ref)))

    def __repr__(self):
        n_params = sum(int(np.prod(p.shape)) for p in self.denoiser.parameters())
        return (
            f"Digits(sde={self.sde!r}, shape={self.shape}, sigma_data={self.sigma_data}, "
            f"denoiser={n_params} parameters, train={self.train.shape[0]}, test={self.test.shape[0]}, "
            f"floor={self.floor:.4g})"
        )


def load_digits(path=None, *, device=None) -> Digits:
    """Build :class:`Digits` from the weight file at ``path`` (default: the one shipped in the package).

    ``device`` (a torch device or its name) is where the denoiser lives; default CPU.
    """
    split = load_digits_split()  # first, so a missing scikit-learn is reported before anything else
    try:
        import torch

        from .nets import DigitsDenoiser
    except ImportError:
        raise ImportError(f"sdekit.zoo.digits needs torch: {INSTALL_HINT}") from None
    path = WEIGHTS_PATH if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no weight file at {str(path)!r} (scripts/train_digits.py writes it)")
    arrays = load_arrays(path)
    if "config" not in arrays:
        raise ValueError(f"path: {str(path)!r} is not a zoo weight file (no 'config' entry)")
    config = json.loads(str(arrays["config"]))
    denoiser = DigitsDenoiser(**config["denoiser"])
    prefix = "denoiser."
    state = {k[len(prefix) :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)}
    denoiser.load_state_dict(state)
    denoiser.requires_grad_(False)
    denoiser.eval()
    if device is not None:
        denoiser.to(device)
    sde = EDMSDE()
    feature_params = {k: v for k, v in arrays.items() if k.startswith("classifier.")}
    model = Digits(
        sde=sde,
        score=score_from_denoiser(denoiser, sde),
        denoiser=denoiser,
        shape=tuple(denoiser.event_shape),
        sigma_data=denoiser.sigma_data,
        train=split.train,
        test=split.test,
        train_labels=split.train_labels,
        test_labels=split.test_labels,
        config=config,
        sha256=sha256_file(path),
        feature_params=feature_params,
    )
    object.__setattr__(model, "floor", model.frechet(split.train))
    return model
