"""Analytic data distributions whose noised marginals ``p_t``, scores and flows are known exactly.

Every SDE in :mod:`sdekit.sdes` is linear, with transition kernel ``x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I)``.
If the data law is Gaussian, ``p_0 = N(mu, Sigma)``, then

    p_t = N(alpha mu, alpha^2 Sigma + sigma^2 I),

and a Gaussian mixture ``sum_k w_k N(mu_k, Sigma_k)`` stays a mixture with the same weights and components
``N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)``. Here ``(alpha, sigma) = sde.marginal(t)``.

VE convention (score_sde's, the one documented in :class:`sdekit.sdes.VESDE`): ``p_t`` is the data law convolved
with ``N(0, sigma(t)^2 I)`` for *every* ``t``, including ``t = 0``, where ``sigma(0) = sigma_min > 0``. So
``Gaussian(mu, Sigma).mean_cov(0.0, VESDE(...))`` is ``(mu, Sigma + sigma_min^2 I)``, not the data law; the
data law itself is what you get with ``sde=None`` (only allowed at ``t = 0``).

Modules:

* :mod:`~sdekit.analytic.base` -- :class:`AnalyticDensity`, the contract (and generic mixture formulas), and
  :class:`MixtureParams`, the law ``p_t`` as a Gaussian mixture that metrics, bench and the numba backend read;
  its docstring has the recipe for a new density family;
* :mod:`~sdekit.analytic.mixture` -- :class:`Gaussian`, :class:`GaussianMixture`;
* :mod:`~sdekit.analytic.score` -- :class:`AnalyticScore`, the exact score callable;
* :mod:`~sdekit.analytic.presets` -- the named problems (``ring8``, ``blobs3``, ``gaussian``, ``gaussian10``)
  and :func:`~sdekit.analytic.presets.register_density`.

Shapes: a batch ``x`` is ``(n, d)``; a time ``t`` is a float or an ``(n,)`` array (one time per sample).
Score functions, ``logpdf`` and ``Gaussian.flow`` accept numpy arrays and torch tensors and return results in
``x``'s library, dtype and device. ``sample`` and ``mean_cov`` return float64 numpy arrays.

The densities are immutable (their arrays are read-only): constants converted to a torch dtype/device are
cached on the object, so a sampling loop does not copy them to the device at every step.
"""

from __future__ import annotations

from ._common import DATA_STEP
from .base import AnalyticDensity, MixtureParams
from .mixture import Gaussian, GaussianMixture
from .presets import DENSITIES, register_density
from .score import AnalyticScore

__all__ = [
    "Gaussian",
    "GaussianMixture",
    "AnalyticScore",
    "DATA_STEP",
    "AnalyticDensity",
    "MixtureParams",
    "DENSITIES",
    "register_density",
]
