"""The few-step solvers (ipndm, ipndm_v, deis, unipc, restart, sa_solver, AnalyticFirstStep) with the entry points'
features: per-sample ``cond``, the step callback's ``denoised``, default grids, option checking, the numba
backend's per-step fallback and ``compare``'s NFE budgets."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit import VPSDE, Gaussian, sample
from sdekit.solvers import AnalyticFirstStep, get_solver

SDE = VPSDE()
MEANS = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])
NEW = ["ipndm", "ipndm_v", "deis", "unipc", "restart", "sa_solver"]


def class_score(x, t, label):
    """The exact score of N(MEANS[label], 0.1 I) under VP: each sample's own class."""
    alpha, sigma = SDE.marginal(t)
    a, s2 = alpha[:, None], (sigma**2)[:, None]
    return -(x - a * MEANS[np.asarray(label)]) / (a * a * 0.1 + s2)


def _solver(spec):
    return AnalyticFirstStep("unipc") if spec == "unipc+afs" else get_solver(spec)


@pytest.mark.parametrize("spec", NEW + ["ipndm(afs=True)", "unipc+afs", "sa_solver(tau=0.0)"])
def test_each_sample_sees_its_own_label(spec):
    labels = np.random.default_rng(0).integers(0, 3, size=30)
    x = sample(SDE, class_score, n=30, shape=(2,), solver=_solver(spec), steps=12, seed=3, cond={"label": labels}).x
    nearest = np.argmin(((x[:, None, :] - MEANS[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest, labels)


@pytest.mark.parametrize("spec", NEW + ["deis(afs=True)", "unipc(prediction='noise')", "unipc+afs"])
def test_callback_denoised_is_the_data_prediction_at_the_steps_start(spec):
    data = Gaussian([0.5, -0.5], 0.3)
    score = data.score(SDE)
    solver = _solver(spec)
    x_T = SDE.prior_sample((5, 2), seed=1)
    seen = []
    grid = sdekit.grids.make_grid(SDE, 7, solver.default_grid)
    sample(SDE, score, x_T=x_T, solver=solver, grid=grid, seed=0, callback=seen.append, backend="numpy")
    assert [info["step"] for info in seen] == list(range(7))
    starts = [x_T] + [info["x"] for info in seen[:-1]]
    analytic_first = "afs" in spec
    for k, (info, x) in enumerate(zip(seen, starts)):
        if k == 0 and analytic_first:  # the first data prediction is the analytic one, not the score's
            continue
        alpha, sigma = SDE.marginal(float(grid[k]))
        tweedie = (x + sigma**2 * score(x, np.full(5, grid[k]))) / alpha
        np.testing.assert_allclose(info["denoised"], tweedie, rtol=1e-10, atol=1e-12)


def test_default_grids_per_family():
    expected = {"ipndm": "time_uniform", "ipndm_v": "time_uniform", "deis": "time_uniform",
                "unipc": "time_uniform", "sa_solver": "log_snr", "restart": "time_uniform"}  # fmt: skip
    score = Gaussian([0.5, -0.5], 0.3).score(SDE)
    x_T = SDE.prior_sample((4, 2), seed=3)
    for name, grid in expected.items():
        assert get_solver(name).default_grid == grid
        a = sample(SDE, score, x_T=x_T, solver=name, steps=6, seed=1).x
        b = sample(SDE, score, x_T=x_T, solver=name, steps=6, seed=1, grid=grid).x
        np.testing.assert_array_equal(a, b)
    assert AnalyticFirstStep("dpmpp_pc").default_grid == "log_snr"


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("ipndm", {"order": 5}, "order"),
        ("ipndm_v", {"afs": "yes"}, "afs"),
        ("deis", {"variant": "cubic"}, "variant"),
        ("unipc", {"variant": "bh3"}, "variant"),
        ("unipc", {"prediction": "score"}, "prediction"),
        ("unipc", {"disable_corrector": 3}, "disable_corrector"),
        ("restart", {"restart_interval": (2.0, 0.1)}, "restart_interval"),
        ("restart", {"K": -1}, "K"),
        ("sa_solver", {"tau": -1.0}, "tau"),
        ("sa_solver", {"tau_interval": (1.0, 0.5)}, "tau_interval"),
        ("sa_solver", {"predictor_order": 0}, "predictor_order"),
    ],
)
def test_bad_options_name_the_option(name, options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        get_solver(name, **options)


@pytest.mark.parametrize("name", NEW)
def test_unknown_options_list_the_constructors(name):
    with pytest.raises(ValueError, match="unknown option") as exc:
        get_solver(name, nope=1)
    for option in sdekit.solvers.base.solver_options(name):
        assert option in str(exc.value)


@pytest.mark.parametrize("spec", NEW)
def test_numba_backend_runs_the_step_with_numba_noise(spec):
    # backend="numba" runs the affine multistep kernel (issue 23) or, for restart, its own kernel; "auto" runs numba
    # once the kernel is compiled in the process
    score = Gaussian([0.5, -0.5], 0.3).score(SDE)
    ref = sample(SDE, score, n=6, solver=spec, steps=8, seed=2, backend="numpy")
    nb = sample(SDE, score, n=6, solver=spec, steps=8, seed=2, backend="numba")
    auto = sample(SDE, score, n=6, solver=spec, steps=8, seed=2)
    assert nb.stats["kernel"] == ("fused restart" if spec == "restart" else "fused affine_multistep")
    assert auto.stats["backend"] == "numba"
    np.testing.assert_allclose(nb.x, ref.x, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(auto.x, nb.x)
    assert nb.nfe == ref.nfe


def test_compare_keeps_every_run_within_its_budget():
    result = sdekit.bench.compare(
        solvers=["restart", "ipndm", "sa_solver"], nfe=[6, 10], density="ring8", n=64, n_ode=16, seed=0
    )
    rows = [r for r in result.rows if r["steps"] > 0]
    assert {r["solver"] for r in rows} == {"restart", "ipndm", "sa_solver"}
    for r in rows:
        assert 0 < r["nfe"] <= r["nfe_budget"] and np.isfinite(r["error"])
    assert any(r["solver"] == "restart" and r["nfe"] > 2 * r["steps"] for r in rows)  # the restarts are counted
