"""sdekit.learn's joint stage (``fit(joint=...)``): Gauss--Newton on all coefficients and offsets recovers a solver
whose endpoints are reachable, never raises the training error, and its option's bad values are named."""

from __future__ import annotations

import numpy as np
import pytest

from sdekit import EDMSDE, GaussianMixture, sample
from sdekit.grids import make_grid
from sdekit.learn import LearnedSolver, fit
from sdekit.learn.joint import gauss_newton

SDE = EDMSDE()
MIX = GaussianMixture(weights=[0.6, 0.4], means=[[-1.5, 0.0], [1.5, 0.5]], covs=[[0.1, 0.2], [0.3, 0.05]])


def test_gauss_newton_recovers_reachable_endpoints():
    """The targets are the outputs of a perturbed solver on the same grid: the residual's minimum is 0, at the
    perturbed coefficients; Gauss--Newton from the unperturbed one gets there."""
    score = MIX.score(SDE)
    grid = make_grid(SDE, 5, "time_uniform")
    start = LearnedSolver.from_base(SDE, "ipndm(afs=True)", grid, denoise=False)
    rng = np.random.default_rng(1)
    mask = np.arange(start.weights.shape[1])[None] < start.orders[:, None]
    weights = start.weights + np.where(mask, rng.normal(0.0, 0.02, start.weights.shape), 0.0)
    offsets = np.r_[0.0, rng.normal(0.0, 0.05, 4)]  # the analytic first step has no score call to offset
    scales = 1.0 + rng.normal(0.0, 0.01, 5)
    target = LearnedSolver(SDE, "", grid, weights, start.orders, scales, offsets, afs=True, denoise=False)
    x = SDE.prior_sample((64, 2), seed=2)
    ref = sample(SDE, score, x_T=x, solver=target, denoise=False).x

    def residual(solver):
        return sample(SDE, score, x_T=x, solver=solver, denoise=False).x - ref

    before = float(np.sqrt(np.mean(np.sum(residual(start) ** 2, axis=1))))
    few, rms_few, runs_few = gauss_newton(residual, start, 3)
    fitted, rms, runs = gauss_newton(residual, start, 30)
    # the minimum is 0 (the first step's scale and weight act on the same value: not its point, only its value)
    assert rms <= rms_few < before and rms < 1e-3 * before
    assert abs(float(np.sqrt(np.mean(np.sum(residual(fitted) ** 2, axis=1)))) - rms) <= 1e-9 * before
    n_par = 5 + int(start.orders.sum()) + 4  # scales, weights up to each order, offsets of the 4 score calls
    assert runs_few >= 1 + 3 * (n_par + 1) and runs >= runs_few  # Jacobians, then tried steps
    assert np.array_equal(fitted.grid, grid) and np.array_equal(fitted.orders, start.orders)


def test_joint_stage_never_raises_the_training_error_and_is_guarded():
    fitted = fit(SDE, MIX.score(SDE), 5, n=96, denoise=False, seed=2, guard=256, max_evals=150, joint=3)
    rep = fitted.report
    assert "joint" in rep["train"] and rep["polish_evals"]["joint"] > 1
    assert rep["train"]["joint"] <= min(v for k, v in rep["train"].items() if k not in ("base", "joint"))
    assert rep["guard"][rep["choice"]] <= rep["guard"]["base"]


def test_joint_is_on_by_default_and_zero_turns_it_off():
    a = fit(SDE, MIX.score(SDE), 4, n=48, denoise=False, seed=3, guard=0, max_evals=40)
    b = fit(SDE, MIX.score(SDE), 4, n=48, denoise=False, seed=3, guard=0, max_evals=40, joint=0)
    assert "joint" in a.report["train"] and "joint" not in b.report["train"]
    # the stages before it are the same: their candidates' errors agree
    for key in ("base", "least_squares", "polished", "mined"):
        assert a.report["train"][key] == b.report["train"][key]


def test_bad_joint_is_named():
    score = MIX.score(SDE)
    with pytest.raises(ValueError, match="joint"):
        fit(SDE, score, 4, n=16, joint=-1, polish=False, guard=0)
    with pytest.raises(TypeError, match="joint"):
        fit(SDE, score, 4, n=16, joint=2.5, polish=False, guard=0)


def test_joint_keeps_the_offsets_at_zero_without_offsets():
    fitted = fit(SDE, MIX.score(SDE), 5, n=48, denoise=False, seed=4, guard=0, max_evals=30, offsets=False, joint=3)
    assert "joint" in fitted.report["train"]
    assert np.all(fitted.offsets == 0.0)
