"""Per-step coefficients of the affine multistep samplers, read off their own step code.

DPM-Solver++ (2M, 3M, 2M-SDE), the exponential predictor-corrector engine (``dpmpp_pc``, ``dpmpp_sde_pc`` and their
presets ``dpmpp_3m_pc``, ``dpmpp_3m_sde``), ancestral sampling and reverse diffusion all take, per step ``k`` (left
time ``t_k``), one score evaluation turned into an *evaluation*

    E_k = (e0_k x + e1_k score(x, t_k)) / e2_k           (DPM-Solver++, ancestral: Tweedie's data prediction)

and then an update that is affine in the state, the last few evaluations and the noise::

    [corrector]  x <- cx_k x_prev + sum_{j < nc_k} w_kj E_{k-j} + cz_k z_{k-1}     (x_prev: the last corrected x)
    x' = A_k x + sum_{j < np_k} B_kj E_{k-j} + C_k z_k

with per-step scalars that depend only on the grid and the SDE, never on ``x``. Such a solver's
``affine_coefficients(sde, grid)`` returns them as an :class:`AffineCoefficients`; fused kernels (the numba
backend's affine multistep kernel) and exact-law computations read the step from there instead of re-deriving it.

Because the step is linear, the solvers compute the scalars by running their own step code on *probe* vectors:
unit vectors of :data:`PROBE_SIZE` entries put in place of ``x``, the evaluations ``E_k, E_{k-1}, ...``, the
noise ``z_k``, ``x_prev`` and ``z_{k-1}`` (coordinates :data:`PROBE_X`, :data:`PROBE_E` + j, :data:`PROBE_Z`,
:data:`PROBE_X_PREV`, :data:`PROBE_Z_PREV`); entry ``i`` of the result is the coefficient of input ``i``. The
numbers are therefore those of the solver's step, in the step's own order of operations.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AffineCoefficients",
    "HISTORY",
    "PROBE_X",
    "PROBE_E",
    "PROBE_Z",
    "PROBE_X_PREV",
    "PROBE_Z_PREV",
    "PROBE_SIZE",
    "probe",
    "affine_table",
]

#: Most evaluations one step combines: the largest corrector (``dpmpp_pc``, ``corrector_order=5``) uses
#: ``E_k .. E_{k-4}``.
HISTORY = 5
#: Probe coordinates: the state ``x``, the evaluations ``E_{k-j}`` at ``PROBE_E + j`` (``j < HISTORY``), the step's
#: normals ``z_k``, the last corrected state ``x_prev`` and the previous step's normals ``z_{k-1}``.
PROBE_X, PROBE_E, PROBE_Z, PROBE_X_PREV, PROBE_Z_PREV = 0, 1, 1 + HISTORY, 2 + HISTORY, 3 + HISTORY
PROBE_SIZE = 4 + HISTORY


def probe(i: int) -> np.ndarray:
    """The unit probe vector of coordinate ``i`` (float64, :data:`PROBE_SIZE` entries)."""
    e = np.zeros(PROBE_SIZE)
    e[i] = 1.0
    return e


@dataclass(frozen=True)
class AffineCoefficients:
    """Per-step coefficients of an affine multistep sampler over a grid of ``steps`` steps (module docstring).

    Attributes
    ----------
    ev : ndarray (steps, 3)
        ``e0, e1, e2`` of the evaluation ``E_k = (e0 x + e1 score(x, t_k)) / e2``.
    pred : ndarray (steps, 2 + HISTORY)
        ``A, C, B_0 .. B_{HISTORY-1}`` of the update ``x' = A x + sum_{j < np} B_j E_{k-j} + C z_k``.
    corr : ndarray (steps, 2 + HISTORY)
        ``cx, cz, w_0 .. w_{HISTORY-1}`` of the corrector ``x <- cx x_prev + sum_{j < nc} w_j E_{k-j} + cz z_{k-1}``
        (zeros where there is none).
    counts : ndarray (steps, 5) int64
        ``np, nc, noise, keep_prev, noise_prev``: terms of the update and of the corrector (``nc = 0``: no
        corrector on this step), whether ``z_k`` is drawn, whether ``x`` (after the corrector) is kept as the
        next step's ``x_prev``, and whether the corrector adds ``cz z_{k-1}``. The sums run most recent
        evaluation first, as the solvers' steps do.

    Iterating gives ``ev, pred, corr, counts`` (``ev, pred, corr, counts = solver.affine_coefficients(...)``).
    """

    ev: np.ndarray
    pred: np.ndarray
    corr: np.ndarray
    counts: np.ndarray

    @classmethod
    def zeros(cls, steps: int) -> AffineCoefficients:
        """Tables of ``steps`` steps, all zero (to be filled in by a solver)."""
        return cls(
            np.zeros((steps, 3)),
            np.zeros((steps, 2 + HISTORY)),
            np.zeros((steps, 2 + HISTORY)),
            np.zeros((steps, 5), dtype=np.int64),
        )

    @property
    def steps(self) -> int:
        """Number of steps."""
        return self.ev.shape[0]

    def __iter__(self):
        return iter((self.ev, self.pred, self.corr, self.counts))


def affine_table(solver, sde, grid, stochastic: bool) -> AffineCoefficients:
    """``solver.affine_coefficients(sde, grid)`` for the reverse SDE (``stochastic=True``) or the probability-flow
    ODE of ``sde``: solvers that run both (``sa_solver``) take ``stochastic`` as a keyword, the others ignore it."""
    affine = getattr(solver, "affine_coefficients", None)
    if affine is None:
        raise TypeError(f"no affine multistep coefficients for solver {solver!r}")
    if "stochastic" in inspect.signature(affine).parameters:
        return affine(sde, grid, stochastic=stochastic)
    return affine(sde, grid)
