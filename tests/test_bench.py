"""bench: exact laws of affine solvers against Monte Carlo runs, order fits, the compare study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import sdekit
from sdekit import VESDE, VPSDE, Gaussian, bench, metrics
from sdekit.solvers import SOLVERS, FixedStepSolver

GAUSS = Gaussian([0.5, -0.3], [[1.0, 0.6], [0.6, 0.5]])
N_MC = 20000


def _cases():
    out = []
    for name in bench.fixed_step_solvers():
        cls = SOLVERS[name]
        for proc in ("ode", "sde"):
            if getattr(cls, f"is_{proc}", False):
                out.append((name, proc))
    return out


def _moment_check(x, mean, cov, k=4.5):
    """Sample mean and covariance of x against (mean, cov), within k standard errors entrywise."""
    n = x.shape[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) <= k * se_mean), (x.mean(0), mean)
    var = np.diag(cov)
    se_cov = np.sqrt((np.outer(var, var) + cov**2) / n)  # Var of a sample covariance entry under normality
    assert np.all(np.abs(np.cov(x, rowvar=False) - cov) <= k * se_cov), (np.cov(x, rowvar=False), cov)


@pytest.mark.parametrize("solver, process", _cases())
def test_exact_law_agrees_with_monte_carlo(solver, process):
    sde = VPSDE()
    grid = sdekit.grids.make_grid(sde, 6, "uniform")  # few steps: the solver's own bias is large
    # every registered fixed-step solver is affine under Gaussian data (multistep ones by whole-solve probes)
    mean, cov = bench.exact_law(solver, sde, GAUSS, grid, process=process, start="prior")
    sol = sdekit.sample(
        sde, GAUSS.score(sde), n=N_MC, solver=solver, steps=6, grid="uniform", process=process, denoise=False, seed=3
    )
    _moment_check(sol.x, mean, cov)
    if SOLVERS[solver]().order == 1:
        # for first-order solvers the check has power: their law is resolvably different from the exact p(t_end)
        m_true, c_true = GAUSS.mean_cov(grid[-1], sde)
        assert metrics.gaussian_w2(mean, cov, m_true, c_true) > 3 * math.sqrt(np.trace(cov) / N_MC)


def test_exact_law_with_denoising_and_a_ve_sde():
    sde = VESDE()
    mean, cov = bench.exact_law("euler_maruyama", sde, GAUSS, 10, start="prior", denoise=True)
    sol = sdekit.sample(sde, GAUSS.score(sde), n=N_MC, solver="euler_maruyama", steps=10, seed=1)
    _moment_check(sol.x, mean, cov)


def test_exact_law_converges_to_the_exact_marginal():
    sde = VPSDE()
    m_true, c_true = GAUSS.mean_cov(sde.eps, sde)
    errs = []
    for steps in (10, 20, 40):
        mean, cov = bench.exact_law("heun", sde, GAUSS, steps, process="sde")
        errs.append(metrics.gaussian_w2(mean, cov, m_true, c_true))
    # Heun's weak order 2 for additive noise, seen without Monte Carlo noise
    assert bench.fit_order([10, 20, 40], errs, last=None) == pytest.approx(2.0, abs=0.3)
    mean, cov = bench.exact_law("rk4", sde, GAUSS, 400, process="ode")
    assert metrics.gaussian_w2(mean, cov, m_true, c_true) < 1e-7


class _TwoStep(FixedStepSolver):
    """A multistep method (Adams--Bashforth 2 for ODEs) that keeps the last drift in ``ctx.memory``."""

    name = "_test_ab2"
    is_ode = True

    def step(self, process, x, t, t_next, z, ctx):
        f = process.drift(x, t)
        prev = ctx.memory.get("f_prev")
        ctx.memory["f_prev"] = f
        h = t_next - t
        return x + h * f if prev is None else x + h * (1.5 * f - 0.5 * prev)


class _Nonlinear(FixedStepSolver):
    name = "_test_nonlinear"
    is_ode = True

    def step(self, process, x, t, t_next, z, ctx):
        return x + (t_next - t) * process.drift(x, t) + 1e-3 * x**2


def test_exact_law_of_a_multistep_solver():
    # AB2 on the probability-flow ODE: x_out = c + A x_T, so the law is N(c + A m_T, A C_T A^T); the
    # whole-solve probes give A column by column, compared here with a direct solve of the start points
    sde = VPSDE()
    grid = sdekit.grids.make_grid(sde, 12, "uniform")
    mean, cov = bench.exact_law(_TwoStep(), sde, GAUSS, grid)
    m_T, c_T = GAUSS.mean_cov(sde.T, sde)
    pts = m_T + np.vstack([np.zeros(2), np.eye(2)])
    out = sdekit.solve(sde.probability_flow(GAUSS.score(sde)), pts, sde.T, grid[-1], _TwoStep(), grid=grid).x
    a = (out[1:] - out[0]).T
    np.testing.assert_allclose(mean, out[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov, a @ c_T @ a.T, rtol=1e-10, atol=1e-12)
    # and it is not Euler's law (the history is used)
    m_e, c_e = bench.exact_law("euler", sde, GAUSS, grid)
    assert np.abs(c_e - cov).max() > 1e-3


@pytest.mark.parametrize("solver, process", [("heun", "sde"), ("euler_maruyama", "sde"), ("rk4", "ode"), ("pc", "sde")])
def test_exact_law_whole_solve_probes_match_per_step_propagation(solver, process):
    sde = VESDE()
    a = bench.exact_law(solver, sde, GAUSS, 15, process=process, start="prior", denoise=True)
    b = bench.exact_law(solver, sde, GAUSS, 15, process=process, start="prior", denoise=True, method="solve")
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-12)


def test_exact_law_refuses_non_affine_solvers_and_bad_options():
    sde = VPSDE()
    with pytest.raises(ValueError, match="multistep"):
        bench.exact_law(_TwoStep(), sde, GAUSS, 5, method="step")
    with pytest.raises(ValueError, match="method"):
        bench.exact_law("heun", sde, GAUSS, 5, method="fast")
    with pytest.raises(ValueError, match="not affine"):
        bench.exact_law(_Nonlinear(), sde, GAUSS, 5)
    with pytest.raises(ValueError, match="not affine"):
        bench.exact_law(_Nonlinear(), sde, GAUSS, 5, method="solve")
    with pytest.raises(TypeError, match="Gaussian"):
        bench.exact_law("heun", sde, bench.make_density("ring8"), 5)
    with pytest.raises(ValueError, match="start"):
        bench.exact_law("heun", sde, GAUSS, 5, start="data")


def test_fit_order():
    nfe = np.array([8, 16, 32, 64, 128])
    assert bench.fit_order(nfe, 3.0 * nfe**-2.0) == pytest.approx(2.0)
    # points at the floor carry no order information and are left out
    err = np.maximum(5.0 * nfe**-1.0, 0.05)
    assert bench.fit_order(nfe, err, floor=0.06) == pytest.approx(1.0)
    assert math.isnan(bench.fit_order([8], [0.1]))


def test_compare_api_and_outputs(tmp_path):
    res = bench.compare(
        "gaussian",
        "subvp",
        ["euler", "heun"],
        (8, 16, 32, 64),
        n=32,
        n_ode=16,
        grid="log_snr",
        json_path=tmp_path / "r.json",
    )
    assert {(r["solver"], r["process"]) for r in res.rows} == {("euler", "ode"), ("heun", "ode"), ("heun", "sde")}
    assert res.orders[("euler", "ode")] == pytest.approx(1.0, abs=0.25)
    assert res.orders[("heun", "sde")] > 1.6  # weak order 2 (pre-asymptotic at these NFE on this grid)
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["rows"]) == 12 and data["info"]["grid"] == "log_snr"
    assert "order" in res.table() and "total wall time" in res.report()


def test_compare_default_solvers_follow_the_registry():
    assert bench.fixed_step_solvers() == [n for n, c in SOLVERS.items() if not c.adaptive]


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"density": "moons"}, "valid densities"),
        ({"sde": "ou"}, "valid SDEs"),
        ({"solvers": ["magic"]}, "valid solvers"),
        ({"grid": "cubic"}, "valid grids"),
        ({"backend": "jax"}, "valid backends"),
        ({"metric": "kl"}, "valid metrics"),
        ({"nfe": [0]}, "nfe"),
        ({"n": 1}, "n must"),
    ],
)
def test_compare_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        bench.compare(**kwargs)


def test_study_runs_every_combination(tmp_path):
    out = bench.study(
        ("gaussian",),
        ("vp", "edm"),
        ("uniform", "karras"),
        solvers=["heun"],
        nfe=(8, 16),
        n=8,
        n_ode=4,
        csv_path=tmp_path / "all.csv",
    )
    assert [(r.info["sde"].split("(")[0], r.info["grid"]) for r in out] == [
        ("VPSDE", "uniform"),
        ("VPSDE", "karras"),
        ("EDMSDE", "uniform"),
        ("EDMSDE", "karras"),
    ]
    lines = (tmp_path / "all.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 2 * 2  # header + studies x (ode, sde) x budgets
