"""A user's numba-compiled row score, shared by the numba test modules (one function, compiled once)."""

import numpy as np
from numba import njit

MU = np.array([1.0, -2.0])
LAM = np.array([0.5, 2.0])


@njit
def user_row(x, t, out):
    # exact score of N(MU, diag(LAM)) under the default VPSDE, written by hand
    B = 0.1 * t + 0.5 * (20.0 - 0.1) * t * t
    alpha = np.exp(-0.5 * B)
    s2 = -np.expm1(-B)
    for j in range(x.shape[0]):
        out[j] = -(x[j] - alpha * MU[j]) / (alpha * alpha * LAM[j] + s2)
