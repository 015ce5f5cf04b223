"""The law of the Brownian tree's nodes, shared by :mod:`sdekit.brownian` and its compiled ports.

Constants only (no imports from the rest of the package), so that the compiled walker
(:mod:`sdekit.backends.numba.tree`) and the fused adaptive kernels read them without importing
:mod:`sdekit.brownian`, which in turn loads the compiled walker.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TREE_STEP",
    "BRIDGE_STEP",
    "DEFAULT_DEPTH",
    "TOL",
    "SNAP_WINDOW",
    "SNAP_MAX_LEVEL",
    "SPLIT",
    "SPLIT_MEAN",
    "SPLIT_CHOL",
]

TREE_STEP = 1 << 61  # counter steps at and above this are reserved for tree nodes (below PRIOR_STEP)
#: Counter steps ``BRIDGE_STEP + c`` (``c`` the draw number) are reserved for the fresh draws of the bridge noise
#: (:mod:`sdekit.bridge_noise`): above the tree's node steps (``TREE_STEP + heap index < TREE_STEP + 2^41``), below
#: ``PRIOR_STEP = 2^62``.
BRIDGE_STEP = (1 << 61) + (1 << 60)
DEFAULT_DEPTH = 40
#: A query within ``TOL L`` of a node time reads that node's value. Node times at depth <= 40 are at least
#: ``2^-40 L = 9.1e-13 L`` apart (more than ``2 TOL``), so no query is near two of them.
TOL = 1e-13
#: An adaptive step may end up to this fraction of its length early, to land on a shallow node time.
SNAP_WINDOW = 0.25
#: Deepest level a snapped step end may have (a step shorter than ``2^-SNAP_MAX_LEVEL L`` is not snapped).
SNAP_MAX_LEVEL = DEFAULT_DEPTH - 2


def split_coefficients():
    """Conditional law of ``(W(1/2), int_0^{1/2} W)`` given ``(W(1), int_0^1 W)`` for a Brownian motion.

    Covariances in the order ``(w, I, m, I1)`` = ``(W(1), int_0^1 W, W(1/2), int_0^{1/2} W)``, from
    ``Cov(W(a), W(b)) = min(a, b)`` integrated: e.g. ``Cov(I, I1) = int_0^{1/2} (s - s^2/2) ds = 5/48``.
    Returns the regression matrix ``B`` (2, 2) and the Cholesky factor ``C`` (2, 2) of the residual.
    """
    s = np.array(
        [
            [1.0, 1 / 2, 1 / 2, 1 / 8],
            [1 / 2, 1 / 3, 3 / 8, 5 / 48],
            [1 / 2, 3 / 8, 1 / 2, 1 / 8],
            [1 / 8, 5 / 48, 1 / 8, 1 / 24],
        ]
    )
    s11, s12, s22 = s[:2, :2], s[:2, 2:], s[2:, 2:]
    b = np.linalg.solve(s11, s12).T
    cov = s22 - b @ s12
    return b, np.linalg.cholesky(0.5 * (cov + cov.T))


SPLIT_MEAN, SPLIT_CHOL = split_coefficients()
#: The split's constants as python floats, in the order the compiled and torch ports read them.
SPLIT = (
    float(SPLIT_MEAN[0, 0]),
    float(SPLIT_MEAN[0, 1]),
    float(SPLIT_CHOL[0, 0]),
    float(SPLIT_MEAN[1, 0]),
    float(SPLIT_MEAN[1, 1]),
    float(SPLIT_CHOL[1, 0]),
    float(SPLIT_CHOL[1, 1]),
)
