"""The numba backend gives the numpy backend's samples (to round-off) for every solver and score form."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

import sdekit  # noqa: E402
from _user_scores import LAM, MU, user_row  # noqa: E402
from sdekit.analytic import Gaussian, GaussianMixture  # noqa: E402
from sdekit.backends.numba import (  # noqa: E402
    BLOCK,
    KERNELS,
    Kernel,
    RowScore,
    find_kernel,
    register_kernel,
)
from sdekit.backends.numba.host_scores import analytic_coef, analytic_params, analytic_work_rows  # noqa: E402
from sdekit.backends.numba.scores import analytic_block_score, analytic_row_score  # noqa: E402
from sdekit.solvers import EulerMaruyama, FixedStepSolver  # noqa: E402

RTOL = 1e-12


def _cov(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.2 * np.eye(d)


DENSITIES = {
    "gaussian-scalar": Gaussian([0.5, -1.0, 2.0], 0.7),
    "gaussian-diag": Gaussian([0.5, -1.0, 2.0], [0.3, 1.5, 0.05]),
    "gaussian-full": Gaussian([0.5, -1.0, 2.0], _cov(3, 0)),
    "mixture-diag": GaussianMixture(
        [0.2, 0.5, 0.3],
        [[2.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, -1.0, 3.0]],
        [[0.1, 0.5, 1.0], [1.0, 0.2, 0.4], [0.3, 0.3, 0.3]],
    ),
    "mixture-full": GaussianMixture(
        [0.6, 0.4], [[2.0, 0.0, 0.0], [-2.0, 1.0, 0.5]], np.stack([_cov(3, 1), _cov(3, 2)])
    ),
}

# (solver, process): every fixed-step solver on every process it integrates
CASES = [("euler_maruyama", "sde"), ("heun", "sde"), ("heun", "ode"), ("euler", "ode"), ("rk4", "ode")]


def _close(a, b, rtol=RTOL):
    scale = np.max(np.abs(b))
    err = np.max(np.abs(a - b))
    assert err <= rtol * scale, f"max abs difference {err:.3g} > {rtol:g} x {scale:.3g}"


@pytest.mark.parametrize("solver,process", CASES)
@pytest.mark.parametrize("name", list(DENSITIES))
def test_fused_matches_numpy_on_analytic_scores(name, solver, process):
    sde = sdekit.VPSDE()
    score = DENSITIES[name].score(sde)
    kw = dict(n=128, steps=15, solver=solver, process=process, seed=11)
    a = sdekit.sample(sde, score, backend="numba", **kw)
    b = sdekit.sample(sde, score, backend="numpy", **kw)
    assert a.stats["kernel"].startswith("fused")
    assert a.nfe == b.nfe
    _close(a.x, b.x)


@pytest.mark.parametrize("sde", [sdekit.VESDE(), sdekit.SubVPSDE(), sdekit.EDMSDE()], ids=repr)
def test_fused_matches_numpy_on_other_sdes(sde):
    dens = DENSITIES["mixture-diag"]
    for solver, process in (("euler_maruyama", "sde"), ("heun", "ode")):
        kw = dict(n=64, steps=12, solver=solver, process=process, seed=2, grid="quadratic")
        a = sdekit.sample(sde, dens.score(sde), backend="numba", **kw)
        b = sdekit.sample(sde, dens.score(sde), backend="numpy", **kw)
        _close(a.x, b.x)


def test_score_of_another_sde_uses_that_sdes_marginals():
    # an exact VP score plugged into a VE process: the kernel must take alpha, sigma from the score's SDE
    dens = DENSITIES["gaussian-full"]
    score = dens.score(sdekit.VPSDE())
    proc = sdekit.VESDE(sigma_max=5.0).reverse(score)
    x0 = np.random.default_rng(0).normal(size=(40, 3))
    a = sdekit.solve(proc, x0, 1.0, 0.01, steps=10, backend="numba")
    b = sdekit.solve(proc, x0, 1.0, 0.01, steps=10, backend="numpy")
    _close(a.x, b.x)


def test_saved_trajectory_and_progress_chunks_match():
    sde = sdekit.VPSDE()
    proc = sde.reverse(DENSITIES["mixture-full"].score(sde))
    x0 = sde.prior_sample((50, 3), seed=4)
    grid = np.linspace(1.0, 1e-3, 21)
    a = sdekit.solve(proc, x0, 1.0, 1e-3, grid=grid, backend="numba", save_at=grid[::5], progress=True)
    b = sdekit.solve(proc, x0, 1.0, 1e-3, grid=grid, backend="numpy", save_at=grid[::5])
    np.testing.assert_array_equal(a.ts, b.ts)
    assert a.xs.shape == b.xs.shape == (5, 50, 3)
    _close(a.xs, b.xs)
    np.testing.assert_array_equal(a.xs[-1], a.x)
    np.testing.assert_array_equal(a.xs[0], x0)


def test_batch_size_and_chunking_do_not_change_samples():
    sde = sdekit.VPSDE()
    proc = sde.reverse(DENSITIES["mixture-diag"].score(sde))
    n = 2 * BLOCK + 77  # three blocks, the last one partial
    x0 = sde.prior_sample((n, 3), seed=8)
    full = sdekit.solve(proc, x0, 1.0, 1e-3, steps=4, seed=8, backend="numba").x
    head = sdekit.solve(proc, x0[:7], 1.0, 1e-3, steps=4, seed=8, backend="numba").x
    ids = np.arange(BLOCK - 20, BLOCK + 30)  # across a block boundary
    mid = sdekit.solve(proc, x0[ids], 1.0, 1e-3, steps=4, seed=8, backend="numba", sample_ids=ids).x
    np.testing.assert_array_equal(full[:7], head)
    np.testing.assert_array_equal(full[ids], mid)


# -- analytic row and block scores against the numpy score ------------------------------------------------------
@pytest.mark.parametrize("name", list(DENSITIES))
def test_row_and_block_scores_match_the_numpy_score(name):
    dens, sde = DENSITIES[name], sdekit.SubVPSDE()
    x = np.random.default_rng(3).normal(size=(9, 3)) * 2
    t = 0.37
    want = dens.score(sde)(x, np.full(9, t))
    params = analytic_params(dens)
    coef = analytic_coef(dens, sde, np.array(t))
    work = np.empty(analytic_work_rows(params) * 16)
    out = np.empty(3)
    for i in range(9):
        analytic_row_score(x[i], t, coef, *params, work, out)
        np.testing.assert_allclose(out, want[i], rtol=1e-13, atol=1e-13)
    xb = np.zeros((3, 16))
    xb[:, :9] = x.T
    ob = np.zeros((3, 16))
    analytic_block_score(xb, 9, t, coef, *params, np.empty((analytic_work_rows(params), 16)), ob)
    np.testing.assert_allclose(ob[:, :9].T, want, rtol=1e-13, atol=1e-13)


# -- user jitted scores ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def row_score():
    return RowScore(user_row, event_shape=2)


def test_row_score_is_an_ordinary_score(row_score):
    x = np.random.default_rng(0).normal(size=(20, 2))
    t = np.linspace(0.1, 0.9, 20)
    want = Gaussian(MU, LAM).score(sdekit.VPSDE())(x, t)
    np.testing.assert_allclose(row_score(x, t), want, rtol=1e-12)
    assert row_score.event_shape == (2,)


@pytest.mark.parametrize("solver,process", CASES)
def test_fused_matches_numpy_on_a_user_jitted_score(row_score, solver, process):
    sde = sdekit.VPSDE()
    kw = dict(n=100, steps=12, solver=solver, process=process, seed=5)
    a = sdekit.sample(sde, row_score, backend="numba", **kw)
    b = sdekit.sample(sde, row_score, backend="numpy", **kw)
    assert a.stats["backend"] == "numba" and a.stats["kernel"].startswith("fused")
    # auto picks numba for a RowScore once its kernel is compiled in the process (issue 23)
    assert sdekit.sample(sde, row_score, **kw).stats["backend"] == "numba"
    _close(a.x, b.x)
    # and the same as the analytic density's fused kernel
    c = sdekit.sample(sde, Gaussian(MU, LAM).score(sde), backend="numba", **kw)
    _close(a.x, c.x)


def test_row_score_validation():
    with pytest.raises(TypeError, match="fn must be a numba.njit function"):
        RowScore(lambda x, t, out: None, (2,))
    with pytest.raises(ValueError, match="event_shape"):
        RowScore(user_row, (0,))
    with pytest.raises(TypeError, match="event_shape"):
        RowScore(user_row, "2")
    with pytest.raises(ValueError, match="shape"):
        RowScore(user_row, (2,))(np.zeros((3, 4)), 0.5)


# -- the per-step path ----------------------------------------------------------------------------------------
class Midpoint(FixedStepSolver):
    """Explicit midpoint rule, a solver with no fused kernel."""

    name = "test_midpoint"
    is_ode = True
    order = 2
    nfe_per_step = 2

    def step(self, process, x, t, t_next, z, ctx):
        h = t_next - t
        return x + h * process.drift(x + 0.5 * h * process.drift(x, t), t + 0.5 * h)


class NoisyEuler(EulerMaruyama):
    """Overrides Euler--Maruyama's step: must not run the Euler--Maruyama kernel."""

    name = "test_noisy_euler"
    n_noise = 2

    def step(self, process, x, t, t_next, z, ctx):
        h = t_next - t
        g = process.diffusion(x, t)
        return x + h * process.drift(x, t) + g * abs(h) ** 0.5 * (0.6 * z[0] + 0.8 * z[1])


def test_solvers_without_kernel_run_per_step_with_identical_results():
    sde = sdekit.VPSDE()
    score = DENSITIES["mixture-full"].score(sde)
    x0 = sde.prior_sample((60, 3), seed=1)
    assert find_kernel(Midpoint(), "ode") is None and find_kernel(NoisyEuler(), "sde") is None
    for proc, solver in ((sde.probability_flow(score), Midpoint()), (sde.reverse(score), NoisyEuler())):
        a = sdekit.solve(proc, x0, 1.0, 1e-3, solver, steps=10, backend="numba", seed=3)
        b = sdekit.solve(proc, x0, 1.0, 1e-3, solver, steps=10, backend="numpy", seed=3)
        assert a.stats["kernel"] == "per-step"
        _close(a.x, b.x)


def test_plain_python_score_and_float32_run_per_step():
    # Euler--Maruyama keeps the score in python and does noise and update in one numba pass per step
    sde = sdekit.VPSDE()

    def score(x, t):
        return -x / (1.0 + 0.0 * t[:, None])

    for solver, kernel in (("euler_maruyama", "per-step euler_maruyama"), ("heun", "per-step")):
        kw = dict(n=40, shape=(3,), steps=10, seed=2, solver=solver, process="sde", save_at=True)
        a = sdekit.sample(sde, score, backend="numba", **kw)
        b = sdekit.sample(sde, score, backend="numpy", **kw)
        assert a.stats["kernel"] == kernel
        _close(a.x, b.x)
        _close(a.xs, b.xs)
    assert sdekit.sample(sde, score, n=4, shape=(3,), steps=3).stats["backend"] == "numpy"  # auto
    x32 = sde.prior_sample((30, 3), seed=0).astype(np.float32)
    proc = sde.reverse(DENSITIES["gaussian-diag"].score(sde))
    c = sdekit.solve(proc, x32, 1.0, 1e-3, steps=5, backend="numba")
    d = sdekit.solve(proc, x32, 1.0, 1e-3, steps=5, backend="numpy")
    assert c.stats["kernel"] == "per-step"
    _close(c.x, d.x)


def test_auto_picks_numba_for_analytic_scores():
    # once the kernel is compiled in the process (a small job would not pay for the compilation: issue 23)
    sde = sdekit.VPSDE()
    sdekit.sample(sde, DENSITIES["gaussian-diag"].score(sde), n=8, steps=3, backend="numba")
    sol = sdekit.sample(sde, DENSITIES["gaussian-diag"].score(sde), n=8, steps=3)
    assert sol.stats["backend"] == "numba" and "compiled in this process" in sol.stats["backend_reason"]


def test_non_finite_state_raises_at_the_same_step_as_numpy():
    sde = sdekit.VPSDE()

    @njit
    def exploding(x, t, out):
        for j in range(x.shape[0]):
            out[j] = np.inf if t < 0.55 else -x[j]

    score = RowScore(exploding, 2)
    errors = []
    for backend in ("numba", "numpy"):
        with pytest.raises(sdekit.NonFiniteError) as info:
            sdekit.sample(sde, score, n=70, steps=10, backend=backend)
        errors.append((info.value.step, info.value.t))
    assert errors[0] == errors[1]
    assert errors[0][0] == 5  # the first step starting at t < 0.55
    sol = sdekit.sample(sde, score, n=70, steps=10, backend="numba", check_finite=False, denoise=False)
    assert not np.isfinite(sol.x).any()
    # the per-step path (a plain python score) raises at the same step
    with pytest.raises(sdekit.NonFiniteError) as info:
        sdekit.sample(sde, lambda x, t: score(x, t), n=70, shape=(2,), steps=10, backend="numba")
    assert (info.value.step, info.value.t) == errors[1]


def test_kernel_registry_rules_and_validation():
    from sdekit.solvers import Heun

    assert find_kernel(Heun(), "ode") is KERNELS[(Heun, "ode")]
    assert find_kernel(EulerMaruyama(), "ode") is None
    with pytest.raises(ValueError, match="kind must be one of"):
        register_kernel(Midpoint, "pde", KERNELS[(Heun, "ode")])
    with pytest.raises(TypeError, match="kernel must be a Kernel"):
        register_kernel(Midpoint, "ode", lambda: None)
    assert isinstance(KERNELS[(EulerMaruyama, "sde")], Kernel)


def test_former_module_path_re_exports_the_package():
    # README and user code import ``from sdekit.backends.numba_ import RowScore``; the backend registry runs the package
    from sdekit.backends import get_backend, numba_
    from sdekit.backends import numba as nb

    assert numba_.RowScore is RowScore and numba_.KERNELS is KERNELS and numba_.register_kernel is register_kernel
    assert numba_.score_block is nb.score_block and numba_.run is nb.run
    assert get_backend("numba").load().run is nb.run


def test_numba_backend_rejects_torch_input():
    torch = pytest.importorskip("torch")
    sde = sdekit.VPSDE()
    with pytest.raises(TypeError, match="backend='numba' needs x0 as a numpy array"):
        proc = sde.reverse(DENSITIES["gaussian-diag"].score(sde))
        sdekit.solve(proc, torch.zeros(3, 3), 1.0, 0.5, steps=2, backend="numba")
