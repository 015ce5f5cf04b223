"""``sdekit.grids.optimize``: grids fitted to one solver and budget. Never worse than the starting grid on
the points it was fitted to; better on held-out start points; an ordinary grid for every entry point."""

from __future__ import annotations

import numpy as np
import pytest

from sdekit import EDMSDE, VPSDE, Gaussian, GaussianMixture, sample, solve
from sdekit.grid_search import grid_error, steps_for_budget
from sdekit.grids import GRIDS, make_grid, optimize
from sdekit.solvers import AnalyticFirstStep

MIX = GaussianMixture(weights=[0.7, 0.3], means=[[-1.0, 0.4], [1.4, -0.6]], covs=[0.2, 0.03])


def _problem(sde=None):
    sde = sde or EDMSDE()
    score = MIX.score(sde)
    pf = sde.probability_flow(score)
    warm = sde.prior_sample((48, 2), seed=11)
    test = sde.prior_sample((200, 2), seed=12)
    tight = dict(rtol=1e-10, atol=1e-10)
    ref_w = solve(pf, warm, sde.T, sde.eps, "dopri5", **tight).x
    ref_t = solve(pf, test, sde.T, sde.eps, "dopri5", **tight).x
    return sde, score, pf, warm, test, ref_w, ref_t


def test_time_uniform_is_a_named_grid():
    assert "time_uniform" in GRIDS
    sde = VPSDE()
    g = make_grid(sde, 6, "time_uniform", rho=2.0)
    assert g[0] == sde.T and g[-1] == sde.eps and np.all(np.diff(g) < 0)


@pytest.mark.parametrize("solver,init", [("ipndm", "time_uniform"), ("unipc", "karras")])
def test_never_worse_than_its_start_and_better_on_held_out_points(solver, init):
    sde, score, pf, warm, test, ref_w, ref_t = _problem()
    g0 = make_grid(sde, 6, init)
    g = optimize(sde, score, solver, 6, x_T=warm, init=init, maxiter=100)
    assert g.shape == (7,) and g[0] == sde.T and g[-1] == sde.eps and np.all(np.diff(g) < 0)
    assert grid_error(pf, solver, warm, g, ref_w) <= grid_error(pf, solver, warm, g0, ref_w)
    assert grid_error(pf, solver, test, g, ref_t) < 0.9 * grid_error(pf, solver, test, g0, ref_t)
    # an ordinary grid: sample() takes it (and counts the budget it was fitted to)
    assert sample(sde, score, x_T=test[:4], solver=solver, grid=g, denoise=False).nfe == 6


def test_denoise_and_free_first_step_are_counted():
    sde, score, pf, warm, *_ = _problem()
    assert len(optimize(sde, score, "ipndm", 6, x_T=warm, denoise=True, maxiter=20)) == 6  # 5 steps + denoise
    afs = AnalyticFirstStep("unipc", order=2)
    g = optimize(sde, score, afs, 6, x_T=warm, maxiter=20)
    assert len(g) == 8 and afs.nfe(g, pf) == 6  # 7 steps, the first one free
    assert steps_for_budget(afs, pf, 6, sde.eps, False) == 7


def test_gaussian_data_uses_the_exact_flow_and_vp():
    sde = VPSDE()
    data = Gaussian([0.5, -0.2], [[0.4, 0.1], [0.1, 0.2]])
    score = data.score(sde)
    warm = sde.prior_sample((16, 2), seed=3)
    g = optimize(sde, score, "deis", 5, x_T=warm, density=data, init=["time_uniform", "log_snr"], maxiter=100)
    pf = sde.probability_flow(score)
    exact = data.flow(warm, sde.T, sde.eps, sde)
    g0 = make_grid(sde, 5, "time_uniform")
    assert grid_error(pf, "deis", warm, g, exact) <= grid_error(pf, "deis", warm, g0, exact)


def test_dp_method_is_gits():
    # GITS picks grid points of a fine schedule by Euler costs along a teacher trajectory: the result is a subset of
    # that schedule, and Euler (ipndm of order 1: Euler in EDM's variables) on it beats Euler on the schedule's own
    # coarse version on held-out points
    sde, score, pf, warm, test, ref_w, ref_t = _problem()
    g = optimize(sde, score, "ipndm(order=1)", 8, x_T=warm, method="dp", init="karras", teacher_steps=40)
    fine = make_grid(sde, 40, "karras")
    assert len(g) == 9 and np.all(np.isin(g, fine)) and g[0] == sde.T and g[-1] == sde.eps
    coarse = make_grid(sde, 8, "karras")
    assert grid_error(pf, "ipndm(order=1)", test, g, ref_t) < grid_error(pf, "ipndm(order=1)", test, coarse, ref_t)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"solver": "euler_maruyama"}, "ODE solvers"), ({"method": "adam"}, "method"), ({"nfe": 1, "denoise": True},
     "does not buy"), ({"init": []}, "init"), ({"init": [np.linspace(80.0, 0.002, 4)]}, "init grid"),
     ({"method": "dp", "teacher_steps": 3}, "teacher_steps must be at least the grid's 5 steps")],
)  # fmt: skip
def test_bad_arguments(kwargs, match):
    sde, score, pf, warm, *_ = _problem()
    args = {"solver": "ipndm", "nfe": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        optimize(sde, score, args.pop("solver"), args.pop("nfe"), x_T=warm, **args)


def test_holdout_falls_back_on_all_warm_up_points():
    sde, score, pf, warm, test, ref_w, ref_t = _problem()
    g0 = make_grid(sde, 5, "time_uniform")
    g = optimize(sde, score, "ipndm", 5, x_T=warm, init="time_uniform", holdout=0.25, degree=2, maxiter=40)
    assert grid_error(pf, "ipndm", warm, g, ref_w) <= grid_error(pf, "ipndm", warm, g0, ref_w)
    with pytest.raises(ValueError, match="holdout"):
        optimize(sde, score, "ipndm", 5, x_T=warm, holdout=1.0)
