"""Convergence orders: ODE solvers on the exact Gaussian probability flow, strong orders on nested grids with
one Brownian path (tree noise), weak order from exact laws. Slopes are fitted over the step counts listed."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from sdekit import EDMSDE, VPSDE, Gaussian, GeneralSDE, solve
from sdekit.bench import exact_law
from sdekit.grids import make_grid
from sdekit.metrics import gaussian_w2
from sdekit.solvers import StepContext, get_solver

DATA = Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 1.5]]))


def _slope(steps, errs):
    return -np.polyfit(np.log(steps), np.log(errs), 1)[0]


# (solver, options, step counts): each range is in the asymptotic regime of that method on this flow
ODE_CASES = [
    ("euler", {}, [32, 64, 128, 256]),
    ("heun", {}, [32, 64, 128, 256]),
    ("rk4", {}, [16, 32, 64, 128]),
    ("dpmpp_2m", {}, [32, 64, 128, 256]),
    ("dpmpp_3m", {}, [32, 64, 128, 256]),
    ("dpmpp_2m", {"prediction": "noise"}, [32, 64, 128, 256]),  # DPM-Solver (noise prediction), diffusers' "dpmsolver"
    ("dpmpp_3m", {"prediction": "noise"}, [32, 64, 128, 256]),
    ("dpmpp_3m_pc", {}, [32, 64, 128, 256]),
    ("dpm2", {}, [32, 64, 128, 256]),  # k-diffusion's sample_dpm_2 (diffusers' KDPM2)
    # single-step DPM-Solver(++): groups of `order` steps (24..192 steps: whole groups of 3)
    ("dpmpp_single", {"order": 1}, [24, 48, 96, 192]),
    ("dpmpp_single", {"order": 2}, [24, 48, 96, 192]),
    ("dpmpp_single", {"order": 3}, [24, 48, 96, 192]),
    ("dpmpp_single", {"order": 3, "variant": "heun"}, [24, 48, 96, 192]),
    ("dpmpp_single", {"order": 2, "variant": "heun", "prediction": "noise"}, [24, 48, 96, 192]),
    ("dpmpp_single", {"order": 3, "prediction": "noise"}, [24, 48, 96, 192]),
    ("sra1", {}, [32, 64, 128, 256]),  # deterministic order 2 when run without noise (probability-flow ODE)
]


@pytest.mark.parametrize("solver,options,steps", ODE_CASES)
def test_ode_order_on_exact_flow(solver, options, steps):
    # EDM SDE with the Karras grid; the reference is the exact probability-flow map of Gaussian data.
    sde = EDMSDE()
    score = DATA.score(sde)
    s = get_solver(solver, **options)
    x_T = sde.prior_sample((32, 2), seed=1)
    exact = DATA.flow(x_T, sde.T, sde.eps, sde)
    errs = []
    for n in steps:
        grid = make_grid(sde, n, "karras")
        if s.is_ode:
            sol = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, s, grid=grid)
            x = sol.x
        else:  # an SDE scheme on the ODE: step with zero diffusion via the probability-flow process
            proc, memory, x = sde.probability_flow(score), {}, x_T
            zero = [np.zeros_like(x_T)] * s.n_noise
            for k in range(n):
                x = s.step(_NoNoise(proc), x, grid[k], grid[k + 1], zero, StepContext(k, grid, memory))
        errs.append(np.max(np.abs(x - exact)))
    assert abs(_slope(steps, errs) - s.order) < 0.2, (errs, _slope(steps, errs))


class _NoNoise:
    """The probability-flow ODE seen as an SDE with zero diffusion (so SDE schemes reduce to their ODE part)."""

    def __init__(self, proc):
        self.proc = proc

    def drift(self, x, t):
        return self.proc.drift(x, t)

    def diffusion(self, x, t):
        return 0.0


def test_dpmpp_3m_needs_the_full_third_order_weight():
    # The third-order weight of D2 halved (the value in the reference implementations) gives order 2.
    from sdekit.solvers import dpm_solver

    sde = EDMSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((32, 2), seed=1)
    exact = DATA.flow(x_T, sde.T, sde.eps, sde)

    errs = {}
    for solver in (dpm_solver.DPMSolverPP3M(reference_d2=True), dpm_solver.DPMSolverPP3M()):
        for n in (128, 256):
            grid = make_grid(sde, n, "karras")
            sol = solve(sde.probability_flow(score), x_T, sde.T, sde.eps, solver, grid=grid)
            errs[solver.d2_weight, n] = np.max(np.abs(sol.x - exact))
    assert abs(np.log2(errs[1.0, 128] / errs[1.0, 256]) - 2.0) < 0.3, errs  # halved weight: order 2
    assert abs(np.log2(errs[2.0, 128] / errs[2.0, 256]) - 3.0) < 0.3, errs  # full weight: order 3


@functools.cache
def _strong_reference():
    x0 = np.full((400, 1), 0.5)
    return x0, solve(_additive_sde(), x0, 0.0, 1.0, "sra1", steps=2**12, noise="tree", seed=4).x


def _additive_sde():
    # dx = (sin(3x) - x) dt + (1 + t) dW: nonlinear drift, time-dependent additive noise, strong enough that
    # the noise terms (not the O(h^2) drift terms) set SRA1's error on these grids
    return GeneralSDE(
        lambda x, t: np.sin(3.0 * x) - x,
        lambda x, t: (1.0 + t[:, None]) + 0.0 * x,
        T=1.0,
        noise="additive",
    )


@pytest.mark.parametrize("solver,order", [("sra1", 1.5), ("heun", 1.0), ("euler_maruyama", 1.0)])
def test_strong_order_on_nested_grids(solver, order):
    # One Brownian path per sample (noise="tree", dyadic grids so every grid point is a tree node): the
    # coarse solutions are discretisations of the same path as the 2^12-step SRA1 reference.
    sde = _additive_sde()
    x0, ref = _strong_reference()
    steps = [16, 32, 64, 128]
    errs = [np.sqrt(np.mean((solve(sde, x0, 0.0, 1.0, solver, steps=n, noise="tree", seed=4).x - ref) ** 2))
            for n in steps]  # fmt: skip
    assert abs(_slope(steps, errs) - order) < 0.2, (errs, _slope(steps, errs))


def test_weak_order_euler_maruyama_exact_law():
    # On Gaussian data the law of EM's output is exactly Gaussian (sdekit.bench.exact_law); its W2 distance to
    # p_t_end falls at rate 1 (from the exact p_T, so no prior mismatch).
    sde = VPSDE()
    m_ex, c_ex = DATA.mean_cov(sde.eps, sde)
    steps = [100, 200, 400, 800]
    errs = [gaussian_w2(*exact_law("euler_maruyama", sde, DATA, make_grid(sde, n, "uniform")), m_ex, c_ex)
            for n in steps]  # fmt: skip
    assert abs(_slope(steps, errs) - 1.0) < 0.2, errs
