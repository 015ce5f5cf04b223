"""Core solvers: convergence orders on exact Gaussian answers, weak/strong order of the SDE solvers.

Every order test fits the slope of log(error) against log(step) on nested grids; SDE tests use common
random numbers (the coarse Brownian increments are sums of the fine ones), and weak errors come from the exact
law of the Euler--Maruyama output (no Monte Carlo noise).
"""

import numpy as np
import pytest

from sdekit import EDMSDE, VPSDE, Gaussian, get_solver, solve
from sdekit.solvers import StepContext, tableaus

SDE = VPSDE()
DATA = Gaussian(mean=[1.0, -0.5], cov=[[0.5, 0.2], [0.2, 0.3]])
T0, T1 = 1.0, 0.05  # stop before the stiff end near t = 0, so the asymptotic regime is reached quickly


def fitted_order(steps, errors):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


def test_tableaus_satisfy_their_order_conditions():
    for tab in (tableaus.EULER, tableaus.HEUN2, tableaus.RK4):
        b, c, a = tab.b, tab.c, tab.a
        conditions = {1: [b.sum() - 1]}
        conditions[2] = [b @ c - 1 / 2]
        conditions[3] = [b @ c**2 - 1 / 3, b @ a @ c - 1 / 6]
        conditions[4] = [b @ c**3 - 1 / 4, b @ (c * (a @ c)) - 1 / 8, b @ a @ c**2 - 1 / 12, b @ a @ a @ c - 1 / 24]
        for p, residuals in conditions.items():
            met = np.allclose(residuals, 0, atol=1e-15)
            assert met == (p <= tab.order), (tab, p)


def test_tableau_validation_rejects_inconsistent_coefficients():
    with pytest.raises(ValueError, match="sum to c"):
        tableaus.ButcherTableau(c=[0.0, 0.5], a=[[0, 0], [1.0, 0]], b=[0.5, 0.5], order=2)
    with pytest.raises(ValueError, match="sum to 1"):
        tableaus.ButcherTableau(c=[0.0, 1.0], a=[[0, 0], [1.0, 0]], b=[0.5, 0.6], order=2)
    with pytest.raises(ValueError, match="lower triangular"):
        tableaus.ButcherTableau(c=[1.0, 1.0], a=[[0, 1.0], [1.0, 0]], b=[0.5, 0.5], order=2)


@pytest.mark.parametrize(
    "solver, steps",
    [("euler", [32, 64, 128, 256]), ("heun", [16, 32, 64, 128]), ("rk4", [8, 16, 32, 64])],
)
def test_ode_solvers_converge_at_their_order_on_the_exact_gaussian_flow(solver, steps):
    x_T = DATA.sample(64, seed=3, t=T0, sde=SDE)
    exact = DATA.flow(x_T, T0, T1, SDE)
    ode = SDE.probability_flow(DATA.score(SDE))
    errors = [np.abs(solve(ode, x_T, T0, T1, solver, steps=n).x - exact).max() for n in steps]
    order = get_solver(solver).order
    assert fitted_order(steps, errors) == pytest.approx(order, abs=0.2)
    assert errors[-1] < errors[0]


def test_ode_solve_runs_forwards_too():
    # the flow from data to noise is the inverse map; RK4 reproduces it
    x0 = DATA.sample(16, seed=1, t=T1, sde=SDE)
    sol = solve(SDE.probability_flow(DATA.score(SDE)), x0, T1, T0, "rk4", steps=64)
    np.testing.assert_allclose(sol.x, DATA.flow(x0, T1, T0, SDE), atol=1e-6)


def _increments(n_paths, d, n_fine, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_fine, n_paths, d))


def _solve_on_fixed_path(solver, process, x, grid, z_fine):
    """Integrate with the coarse Brownian increments aggregated from fine standard-normal draws."""
    n_fine = z_fine.shape[0]
    n = len(grid) - 1
    block = n_fine // n
    h_fine = abs(grid[-1] - grid[0]) / n_fine
    for k in range(n):
        dw = np.sqrt(h_fine) * z_fine[k * block : (k + 1) * block].sum(axis=0)
        h = abs(grid[k + 1] - grid[k])
        x = solver.step(process, x, grid[k], grid[k + 1], [dw / np.sqrt(h)], StepContext(k, np.asarray(grid)))
    return x


@pytest.mark.parametrize("name", ["euler_maruyama", "heun"])
def test_sde_solvers_have_strong_order_one_for_additive_noise(name):
    """Additive noise: EM and stochastic Heun converge strongly with order 1 (common random numbers)."""
    solver = get_solver(name)
    rev = SDE.reverse(DATA.score(SDE))
    n_fine = 2048
    z = _increments(400, 2, n_fine, seed=11)
    x_T = DATA.sample(400, seed=2, t=T0, sde=SDE)
    ref = _solve_on_fixed_path(solver, rev, x_T, np.linspace(T0, T1, n_fine + 1), z)
    steps = [16, 32, 64, 128]
    errors = [
        np.mean(np.linalg.norm(_solve_on_fixed_path(solver, rev, x_T, np.linspace(T0, T1, n + 1), z) - ref, axis=1))
        for n in steps
    ]
    assert fitted_order(steps, errors) == pytest.approx(solver.strong_order, abs=0.2)


def _exact_affine_law(solver, process, grid, mean, var):
    """Mean and variance after the solver, for a diagonal affine model: each step is x' = A x + b + C z."""
    for k in range(len(grid) - 1):
        t, tn = grid[k], grid[k + 1]
        zero = np.zeros((1, mean.size))
        base = solver.step(process, mean[None], t, tn, [zero], {})[0]
        a = solver.step(process, mean[None] + 1.0, t, tn, [zero], {})[0] - base
        c = solver.step(process, mean[None], t, tn, [zero + 1.0], {})[0] - base
        mean, var = base, a * a * var + c * c
    return mean, var


@pytest.mark.parametrize("sde", [VPSDE(), EDMSDE(sigma_max=5.0)], ids=["vp", "edm"])
def test_euler_maruyama_has_weak_order_one_exact_law(sde):
    data = Gaussian(mean=[0.7, -1.0], cov=[0.3, 1.2])  # diagonal: the law factorises per component
    rev = sde.reverse(data.score(sde))
    t1 = sde.eps + 0.05 * (sde.T - sde.eps)
    m_T, c_T = data.mean_cov(sde.T, sde)
    m_1, c_1 = data.mean_cov(t1, sde)
    steps = [20, 40, 80, 160, 320]
    errors = []
    for n in steps:
        m, v = _exact_affine_law(get_solver("euler_maruyama"), rev, np.linspace(sde.T, t1, n + 1), m_T, np.diag(c_T))
        errors.append(np.abs(m - m_1).sum() + np.abs(v - np.diag(c_1)).sum())
    assert fitted_order(steps, errors) == pytest.approx(1.0, abs=0.2)


def test_euler_maruyama_monte_carlo_matches_its_exact_law():
    """The Monte Carlo output of solve() has the law computed exactly above (5 standard errors)."""
    sde = VPSDE()
    data = Gaussian(mean=[0.7, -1.0], cov=[0.3, 1.2])
    rev = sde.reverse(data.score(sde))
    n = 40000
    x_T = data.sample(n, seed=9, t=1.0, sde=sde)
    sol = solve(rev, x_T, 1.0, 0.1, steps=25, seed=4)
    m_T, c_T = data.mean_cov(1.0, sde)
    m, v = _exact_affine_law(get_solver("euler_maruyama"), rev, np.linspace(1.0, 0.1, 26), m_T, np.diag(c_T))
    np.testing.assert_array_less(np.abs(sol.x.mean(0) - m), 5 * np.sqrt(v / n))
    np.testing.assert_array_less(np.abs(sol.x.var(0) - v), 5 * v * np.sqrt(2 / n))
