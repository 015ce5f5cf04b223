"""Brownian-tree noise: consistency of one path across grids and queries, its law, its counter keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdekit import GeneralSDE, solve
from sdekit.brownian import BrownianTree, normals_rows
from sdekit.noise import normals_numpy
from sdekit.tree_law import SPLIT_CHOL


def test_normals_rows_matches_counter_generator():
    ids = np.array([0, 3, 7, 1000])
    for step in (0, 5, 1 << 61):
        got = normals_rows(11, ids, np.full(4, step), 5)
        np.testing.assert_array_equal(got, normals_numpy(11, ids, step, 5))
    mixed = normals_rows(11, ids, np.array([1, 2, 3, 4]), 3)
    for r, s in enumerate([1, 2, 3, 4]):
        np.testing.assert_array_equal(mixed[r], normals_numpy(11, ids[r : r + 1], s, 3)[0])


def test_split_law_is_a_proper_gaussian():
    # the conditional covariance of (W(1/2), int_0^1/2 W) given the parent is positive definite
    assert np.all(np.diag(SPLIT_CHOL) > 0)


@settings(derandomize=True, deadline=None, max_examples=25)
@given(ts=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=6))
def test_queries_do_not_depend_on_order_or_batch(ts):
    tree = BrownianTree(5, np.arange(6), 0.0, 2.0, 3)
    ref = {t: tree.evaluate(t) for t in ts}
    for t in reversed(ts):
        w, y = tree.evaluate(t)
        np.testing.assert_array_equal(w, ref[t][0])
        np.testing.assert_array_equal(y, ref[t][1])
    # sample 4's path does not depend on the other samples in the batch
    sub = BrownianTree(5, np.array([4]), 0.0, 2.0, 3)
    for t in ts:
        np.testing.assert_array_equal(sub.evaluate(t)[0][0], ref[t][0][4])
    # per-sample query times: each row equals its own single-time query
    per = tree.evaluate(np.array((ts * 6)[:6]))
    for r, t in enumerate((ts * 6)[:6]):
        np.testing.assert_array_equal(per[0][r], ref[t][0][r])


def test_path_law():
    # W(t) ~ N(0, t), Y(t) = int_0^t W has variance t^3/3 and covariance t^2/2 with W(t); an increment over
    # [s, t] and its I10 have variances (t-s) and (t-s)^3/3, covariance (t-s)^2/2, and are independent of
    # W(s). 20000 samples: relative standard errors ~ 1-2%, so the 6% tolerance is > 3 standard errors.
    n = 20000
    tree = BrownianTree(3, np.arange(n), 0.0, 2.0, 1)
    t, s = 1.3, 0.7  # not dyadic: reached through the resolution limit
    w, y = tree.evaluate(t)
    assert abs(w.var() / t - 1) < 0.06
    assert abs(y.var() / (t**3 / 3) - 1) < 0.06
    assert abs(np.mean(w * y) / (t**2 / 2) - 1) < 0.06
    dw, i10, _ = tree.increment(s, t)
    h = t - s
    assert abs(dw.var() / h - 1) < 0.06 and abs(i10.var() / (h**3 / 3) - 1) < 0.06
    assert abs(np.mean(dw * i10) / (h**2 / 2) - 1) < 0.06
    assert abs(np.corrcoef(dw[:, 0], tree.evaluate(s)[0][:, 0])[0, 1]) < 0.03
    z0, z1 = BrownianTree.standardise(dw, i10, h)
    cov = np.cov(z0[:, 0], z1[:, 0])
    np.testing.assert_allclose(cov, np.eye(2), atol=0.05)
    # a backward step sees the reversed path: same increment with the opposite sign, I10 of the reversed path
    dwb, i10b, _ = tree.increment(t, s)
    np.testing.assert_allclose(dwb, -dw, atol=1e-12)
    assert abs(i10b.var() / (h**3 / 3) - 1) < 0.06


def test_tree_noise_gives_one_path_for_every_grid():
    # dx = dW: Euler-Maruyama is exact for any grid, so with one path per sample every grid gives W(T)
    sde = GeneralSDE(lambda x, t: 0.0 * x, lambda x, t: 1.0 + 0.0 * x, noise="additive")
    x0 = np.zeros((8, 2))
    a = solve(sde, x0, 0.0, 1.0, "euler_maruyama", steps=20, noise="tree", seed=9).x
    b = solve(sde, x0, 0.0, 1.0, "euler_maruyama", steps=200, noise="tree", seed=9).x
    grid = np.sort(np.r_[0, np.random.default_rng(1).uniform(0, 1, 37), 1])
    c = solve(sde, x0, 0.0, 1.0, "euler_maruyama", grid=grid, noise="tree", seed=9).x
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(a, c, atol=1e-5)  # non-dyadic points: linear interpolation below 2^-40
    counter = solve(sde, x0, 0.0, 1.0, "euler_maruyama", steps=20, seed=9).x
    assert not np.allclose(a, counter)
    # the integral of W is carried too: SRA1's I10 on dx = t dW... sum of I10 pieces equals the coarse I10
    tree = BrownianTree(9, np.arange(8), 0.0, 1.0, 2)
    dw, i10, _ = tree.increment(0.0, 0.5)
    dw1, i101, _ = tree.increment(0.0, 0.25)
    dw2, i102, _ = tree.increment(0.25, 0.5)
    np.testing.assert_allclose(dw, dw1 + dw2, atol=1e-13)
    np.testing.assert_allclose(i10, i101 + 0.25 * dw1 + i102, atol=1e-13)


def test_bad_input():
    with pytest.raises(ValueError, match="depth"):
        BrownianTree(0, np.arange(2), 0.0, 1.0, 1, depth=0)
    with pytest.raises(ValueError, match="positive length"):
        BrownianTree(0, np.arange(2), 1.0, 1.0, 1)
    sde = GeneralSDE(lambda x, t: 0.0 * x, lambda x, t: 1.0 + 0.0 * x, noise="additive")
    with pytest.raises(ValueError, match="noise"):
        solve(sde, np.zeros((2, 1)), 0.0, 1.0, "euler_maruyama", steps=4, noise="sobol")
