"""Exact law of a sampler's output on Gaussian data, for tests.

Every sampler here is affine in (x_T, noise) when the data are Gaussian (the score is affine in x), so its
output is ``c + A x_T + sum_k B_k z_k``. Running the solver once on a batch of probe rows -- the mean of
``x_T`` with all noise zero, unit perturbations of ``x_T``, and unit noise at one step and component each --
recovers ``c``, ``A`` and every ``B_k``, hence the exact mean and covariance of the output: no Monte Carlo.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import sqrtm

from sdekit.backends import numpy_ as numpy_loop
from sdekit.integrate import Job
from sdekit.solvers import get_solver


def gaussian_w2(m1, c1, m2, c2) -> float:
    """Exact 2-Wasserstein distance between two Gaussians."""
    r2 = sqrtm(c2)
    cross = sqrtm(r2 @ c1 @ r2)
    val = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2.0 * np.real(cross))
    return float(np.sqrt(max(val, 0.0)))


def exact_output_law(process, solver, grid, mean_T, cov_T, **options):
    """Mean ``(d,)`` and covariance ``(d, d)`` of an affine sampler's output started from ``N(mean_T, cov_T)``."""
    solver = get_solver(solver, **options)
    d = mean_T.shape[0]
    n_steps = len(grid) - 1
    m = solver.n_noise
    n_rows = 1 + d + n_steps * m * d
    x0 = np.tile(mean_T, (n_rows, 1))
    x0[1 : 1 + d] += np.eye(d)

    def noise(job):
        def draw(k):
            z = np.zeros((m, n_rows, d))
            base = 1 + d + k * m * d
            for r in range(m):
                rows = base + r * d + np.arange(d)
                z[r, rows, np.arange(d)] = 1.0
            return [z[r] for r in range(m)]

        return draw

    job = Job(process=process, solver=solver, x0=x0, grid=np.asarray(grid, dtype=np.float64), seed=0,
              sample_ids=np.arange(n_rows), save_index=None, progress=False, check_finite=True,
              stochastic=solver.is_sde and m > 0)  # fmt: skip
    x, _, _, _ = numpy_loop.run(job, noise=noise)
    c = x[0]
    A = (x[1 : 1 + d] - c).T  # column j: response to e_j in x_T
    B = (x[1 + d :] - c).T  # one column per (step, field, component)
    return c, A @ cov_T @ A.T + B @ B.T
