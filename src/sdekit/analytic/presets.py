"""Named analytic problems: the densities ``sdekit compare`` knows by name (``--density``).

:data:`DENSITIES` maps a name to ``(factory, description)``; ``sdekit.bench.DENSITIES`` is the same table, so a
density registered here with :func:`register_density` is a problem of ``bench.compare`` and a choice of the
command line's ``--density`` with no other edit.
"""

from __future__ import annotations

import numpy as np

from .base import AnalyticDensity
from .mixture import Gaussian, GaussianMixture

__all__ = ["DENSITIES", "register_density", "ring8", "blobs3", "gaussian", "gaussian10"]


def ring8() -> GaussianMixture:
    """2-D mixture of 8 isotropic Gaussians (variance 0.05) on a circle of radius 2."""
    angles = 2.0 * np.pi * np.arange(8) / 8
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(np.full(8, 1.0 / 8), means, np.full(8, 0.05))


def gaussian() -> Gaussian:
    """2-D correlated Gaussian."""
    return Gaussian([0.5, -0.3], [[1.0, 0.6], [0.6, 0.5]])


def blobs3() -> GaussianMixture:
    """2-D mixture of 3 unequal Gaussians with diagonal covariances."""
    return GaussianMixture(
        [0.5, 0.3, 0.2],
        [[-1.5, 0.0], [1.0, 1.0], [1.0, -1.2]],
        [[0.3, 0.1], [0.05, 0.2], [0.1, 0.1]],
    )


def gaussian10() -> Gaussian:
    """10-D Gaussian with a full covariance (a fixed random one)."""
    rng = np.random.default_rng(1234)
    a = rng.standard_normal((10, 10)) / np.sqrt(10)
    return Gaussian(rng.standard_normal(10) * 0.5, a @ a.T + 0.1 * np.eye(10))


#: Built-in densities: name -> (factory, description).
DENSITIES = {
    "ring8": (ring8, "2-D mixture of 8 isotropic Gaussians (variance 0.05) on a circle of radius 2"),
    "blobs3": (blobs3, "2-D mixture of 3 unequal Gaussians with diagonal covariances"),
    "gaussian": (gaussian, "2-D correlated Gaussian (exact flow and exact solver laws)"),
    "gaussian10": (gaussian10, "10-D Gaussian with a full covariance (exact flow and exact solver laws)"),
}


def register_density(name: str, factory, description: str = "") -> None:
    """Register ``factory() -> AnalyticDensity`` under ``name`` (a new entry: names are not replaced).

    The factory is called once here to check that it builds an :class:`AnalyticDensity`.
    """
    if not isinstance(name, str) or not name or name in DENSITIES:
        raise ValueError(f"density name {name!r} is empty or registered twice")
    if not callable(factory) or not isinstance(factory(), AnalyticDensity):
        raise TypeError(f"factory must be a callable returning an sdekit AnalyticDensity, got {factory!r}")
    DENSITIES[name] = (factory, str(description))
