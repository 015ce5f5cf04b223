"""sdekit.learn's weights on past states (``state_history``): zero weights leave the base solver bit for bit, the
step is the documented recursion, fitting and sampling agree, files round-trip (and version-1 files load), and bad
values are named."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sdekit import EDMSDE, Gaussian, GaussianMixture, sample
from sdekit.grids import make_grid
from sdekit.learn import LearnedSolver, fit, load

SDE = EDMSDE()
MIX = GaussianMixture(weights=[0.6, 0.4], means=[[-1.5, 0.0], [1.5, 0.5]], covs=[[0.1, 0.2], [0.3, 0.05]])
GAUSS = Gaussian([0.5, -1.0], [0.2, 0.02])


def _rms(x, y):
    return float(np.sqrt(np.mean(np.sum((np.asarray(x) - np.asarray(y)) ** 2, axis=1))))


@pytest.mark.parametrize("base", ["ipndm(afs=True)", "ipndm_v", "deis(order=4, afs=True)"])
def test_zero_state_weights_leave_the_base_bit_for_bit(base):
    score = MIX.score(SDE)
    grid = make_grid(SDE, 6, "time_uniform")
    x = SDE.prior_sample((40, 2), seed=3)
    plain = LearnedSolver.from_base(SDE, base, grid)
    zero = LearnedSolver(SDE, base, grid, plain.weights, plain.orders, afs=plain.afs, state_weights=np.zeros((6, 3)))
    a = sample(SDE, score, x_T=x, solver=zero)
    np.testing.assert_array_equal(a.x, sample(SDE, score, x_T=x, solver=plain).x)
    np.testing.assert_array_equal(a.x, sample(SDE, score, x_T=x, solver=base, grid=grid).x)


def test_state_weights_act_as_documented():
    """A hand-written run of x_hat_{k+1} = scale_k x_hat_k + sum_j sw[k, j-1] x_hat_{k-j} + sum_j w[k, j] eps_{k-j}
    (EDM: alpha = 1, sigma = t, no offsets, no analytic first step)."""
    score = MIX.score(SDE)
    grid = make_grid(SDE, 5, "time_uniform")
    rng = np.random.default_rng(0)
    orders = np.minimum(np.arange(5) + 1, 3)
    weights = np.where(np.arange(3)[None] < orders[:, None], rng.normal(0.0, 0.5, (5, 3)), 0.0)
    weights[:, 0] += np.diff(grid)  # an Euler-like step plus noise, to keep the states finite
    scales = 1.0 + rng.normal(0.0, 0.05, 5)
    sw = np.tril(rng.normal(0.0, 0.1, (5, 2)), k=-1)  # sw[k, j - 1] = 0 for j > k
    solver = LearnedSolver(SDE, "", grid, weights, orders, scales, afs=False, state_weights=sw)
    x = SDE.prior_sample((30, 2), seed=6)
    out = sample(SDE, score, x_T=x, solver=solver, denoise=False).x
    states, eps = [x], []
    for k in range(5):
        eps.insert(0, -grid[k] * score(states[-1], np.full(30, grid[k])))
        nxt = scales[k] * states[-1]
        nxt = nxt + sum(sw[k, j - 1] * states[-1 - j] for j in range(1, min(k, 2) + 1))
        states.append(nxt + sum(weights[k, j] * eps[j] for j in range(orders[k])))
    np.testing.assert_allclose(out, states[-1], rtol=1e-13, atol=1e-13)
    assert np.count_nonzero(sw) == 7


def test_fit_with_state_history_reports_the_error_sample_gives():
    score = GAUSS.score(SDE)
    x = SDE.prior_sample((64, 2), seed=9)

    def teacher(x_T):
        return GAUSS.flow(x_T, SDE.T, SDE.eps, SDE)

    fitted = fit(SDE, score, 5, x_T=x, denoise=False, teacher=teacher, holdout=0.0, guard=0, polish=False,
                 state_history=2, mine=0)  # fmt: skip
    rep = fitted.report
    assert rep["choice"] == "least_squares" and rep["train"]["least_squares"] < rep["train"]["base"]
    assert fitted.state_weights.shape == (fitted.n_steps, 2) and np.count_nonzero(fitted.state_weights) > 0
    assert np.all(np.triu(fitted.state_weights) == 0.0)
    got = _rms(sample(SDE, score, x_T=x, solver=fitted, denoise=False).x, teacher(x))
    assert math.isclose(got, rep["train"]["least_squares"], rel_tol=1e-9)


def test_state_weights_round_trip_and_version_1_files_load(tmp_path):
    score = MIX.score(SDE)
    fitted = fit(SDE, score, 5, n=48, denoise=False, guard=0, polish=False, state_history=2, mine=0)
    path = tmp_path / "s.json"
    fitted.save(path)
    again = load(path, sde=SDE)
    np.testing.assert_array_equal(again.state_weights, fitted.state_weights)
    x = SDE.prior_sample((20, 2), seed=8)
    a = sample(SDE, score, x_T=x, solver=fitted, denoise=False).x
    np.testing.assert_array_equal(sample(SDE, score, x_T=x, solver=again, denoise=False).x, a)
    # a file of format version 1 (before state weights) loads as a solver without them
    plain = LearnedSolver.from_base(SDE, "ipndm(afs=True)", make_grid(SDE, 5, "time_uniform"), denoise=False)
    old = plain.to_dict()
    del old["state_weights"]
    old["format"] = "sdekit.learn/1"
    (tmp_path / "v1.json").write_text(json.dumps(old))
    v1 = load(tmp_path / "v1.json")
    assert v1.state_weights.shape == (5, 0)
    np.testing.assert_array_equal(sample(SDE, score, x_T=x, solver=v1).x, sample(SDE, score, x_T=x, solver=plain).x)


def test_bad_state_history_and_state_weights_are_named():
    score = MIX.score(SDE)
    with pytest.raises(ValueError, match="state_history"):
        fit(SDE, score, 4, n=16, state_history=-1)
    with pytest.raises(TypeError, match="state_history"):
        fit(SDE, score, 4, n=16, state_history=1.5)
    grid = make_grid(SDE, 4, "time_uniform")
    plain = LearnedSolver.from_base(SDE, "ipndm", grid)
    with pytest.raises(ValueError, match="state_weights"):
        LearnedSolver(SDE, "", grid, plain.weights, plain.orders, state_weights=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="state_weights"):  # a weight on a state before the start
        LearnedSolver(SDE, "", grid, plain.weights, plain.orders, state_weights=np.eye(4, 2))
    with pytest.raises(ValueError, match="state_weights"):
        LearnedSolver(SDE, "", grid, plain.weights, plain.orders, state_weights=np.r_[[[0.0]], np.full((3, 1), np.nan)])
