"""The fused sampler kernels (affine multistep: DPM-Solver++, exponential predictor-corrector, ancestral, reverse
diffusion; EDM; SRA; PC; annealed Langevin) give the numpy backend's samples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

import sdekit  # noqa: E402
from _user_scores import user_row  # noqa: E402
from sdekit.analytic import Gaussian, GaussianMixture  # noqa: E402
from sdekit.backends.numba import BLOCK, RowScore, find_kernel  # noqa: E402
from sdekit.backends.numba.kernels.multistep import AFFINE_MULTISTEP, affine_multistep_coefficients  # noqa: E402
from sdekit.solvers import get_solver  # noqa: E402
from sdekit.solvers.dpm_solver import DPMSolverPP2M  # noqa: E402
from sdekit.solvers.exp_pc import ExpPredictorCorrector, ExpPredictorCorrectorSDE  # noqa: E402
from sdekit.solvers.score_based import Ancestral, AnnealedLangevin  # noqa: E402

RTOL = 1e-12

# (solver, process) pairs the kernel serves
CASES = [
    ("dpmpp_2m", "ode"),
    ("dpmpp_3m", "ode"),
    ("dpmpp_3m_pc", "ode"),
    ("dpmpp_pc", "ode"),
    ("dpmpp_2m_sde", "sde"),
    ("dpmpp_3m_sde", "sde"),
    ("dpmpp_sde_pc", "sde"),
    ("ancestral", "sde"),
    ("reverse_diffusion", "sde"),
]


def _cov(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.2 * np.eye(d)


DENSITIES = {
    "gaussian-full": Gaussian([0.5, -1.0, 2.0], _cov(3, 0)),
    "mixture-diag": GaussianMixture(
        [0.2, 0.5, 0.3],
        [[2.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, -1.0, 3.0]],
        [[0.1, 0.5, 1.0], [1.0, 0.2, 0.4], [0.3, 0.3, 0.3]],
    ),
}


def _close(a, b, rtol=RTOL):
    scale = np.max(np.abs(b))
    err = np.max(np.abs(a - b))
    assert err <= rtol * scale, f"max abs difference {err:.3g} > {rtol:g} x {scale:.3g}"


def test_every_case_has_the_fused_kernel():
    for solver, process in CASES:
        assert find_kernel(get_solver(solver), process) is AFFINE_MULTISTEP, solver


@pytest.mark.parametrize("steps", [8, 24])  # 8 < 15: diffusers' lower-order final steps are taken
@pytest.mark.parametrize("name", list(DENSITIES))
@pytest.mark.parametrize("solver,process", CASES)
def test_fused_matches_numpy(solver, process, name, steps):
    sde = sdekit.VPSDE()
    score = DENSITIES[name].score(sde)
    kw = dict(n=96, steps=steps, solver=solver, process=process, seed=11)
    a = sdekit.sample(sde, score, backend="numba", **kw)
    b = sdekit.sample(sde, score, backend="numpy", **kw)
    assert a.stats["kernel"] == "fused affine_multistep"
    assert a.nfe == b.nfe
    _close(a.x, b.x)


@pytest.mark.parametrize("sde", [sdekit.VESDE(), sdekit.SubVPSDE(), sdekit.EDMSDE()], ids=repr)
def test_fused_matches_numpy_on_other_sdes_and_grids(sde):
    score = DENSITIES["mixture-diag"].score(sde)
    for solver, process in CASES:
        kw = dict(n=40, steps=12, solver=solver, process=process, seed=2, grid="log_snr")
        a = sdekit.sample(sde, score, backend="numba", **kw)
        b = sdekit.sample(sde, score, backend="numpy", **kw)
        _close(a.x, b.x)


def test_solver_options_and_a_score_of_another_sde():
    # the data prediction uses the process's alpha, sigma; the score its own SDE's (a VP score in a VE process)
    dens = DENSITIES["gaussian-full"]
    score = dens.score(sdekit.VPSDE())
    ve = sdekit.VESDE(sigma_max=5.0)
    x0 = np.random.default_rng(0).normal(size=(40, 3)) * 5.0
    for proc, solver in (
        (ve.reverse(score), Ancestral(variance="forward")),
        (ve.reverse(score), Ancestral(variance="posterior")),
        (ve.probability_flow(score), DPMSolverPP2M(lower_order_final=False)),
        (ve.probability_flow(score), get_solver("dpmpp_3m_pc")),
    ):
        a = sdekit.solve(proc, x0, 1.0, 0.01, solver, steps=10, backend="numba", seed=4)
        b = sdekit.solve(proc, x0, 1.0, 0.01, solver, steps=10, backend="numpy", seed=4)
        assert a.stats["kernel"] == "fused affine_multistep"
        _close(a.x, b.x)


def test_coefficients_reproduce_one_numpy_step():
    # the tables read off basis vectors: the first step of 3M-PC is a predictor with one node (DDIM-like)
    sde = sdekit.VPSDE()
    proc = sde.probability_flow(DENSITIES["gaussian-full"].score(sde))
    grid = np.linspace(1.0, 1e-3, 6)
    ev, pred, corr, counts = affine_multistep_coefficients(get_solver("dpmpp_3m_pc"), proc, grid)
    np.testing.assert_array_equal(counts[:, 0], [1, 2, 3, 3, 3])  # predictor nodes grow to 3
    np.testing.assert_array_equal(counts[:, 1], [0, 2, 3, 4, 4])  # corrector: one node more, none at step 0
    a0, s0 = sde.marginal(grid[0])
    a1, s1 = sde.marginal(grid[1])
    np.testing.assert_allclose(pred[0, 0], s1 / s0, rtol=1e-15)
    h = sde.log_snr(grid[1]) - sde.log_snr(grid[0])
    np.testing.assert_allclose(pred[0, 2], -a1 * np.expm1(-h), rtol=1e-14)
    np.testing.assert_allclose(ev[:, 0], 1.0)
    # the corrector integrates constants exactly: sum_j w_j = alpha_s (1 - e^{-h}) over the step just taken
    for k in range(1, 5):
        a_s, _ = sde.marginal(grid[k])
        hk = sde.log_snr(grid[k]) - sde.log_snr(grid[k - 1])
        np.testing.assert_allclose(corr[k, 2 : 2 + counts[k, 1]].sum(), -a_s * np.expm1(-hk), rtol=1e-12)


def test_tables_are_the_solvers_public_affine_coefficients():
    from sdekit.solvers.affine import AffineCoefficients

    sde = sdekit.VESDE()
    score = DENSITIES["mixture-diag"].score(sde)
    grid = sdekit.grids.make_grid(sde, 9, "log_snr")
    for solver, process in CASES:
        s = get_solver(solver)
        proc = sde.reverse(score) if process == "sde" else sde.probability_flow(score)
        table = s.affine_coefficients(sde, grid)
        assert isinstance(table, AffineCoefficients) and table.steps == 9
        for u, v in zip(affine_multistep_coefficients(s, proc, grid), table):
            np.testing.assert_array_equal(u, v)


def test_batch_size_chunking_saves_and_progress():
    sde = sdekit.VPSDE()
    score = DENSITIES["mixture-diag"].score(sde)
    n = 2 * BLOCK + 77  # three blocks, the last one partial
    x0 = sde.prior_sample((n, 3), seed=8)
    ids = np.arange(BLOCK - 20, BLOCK + 30)  # across a block boundary
    for proc, solver in (
        (sde.reverse(score), "dpmpp_3m_sde"),
        (sde.probability_flow(score), "dpmpp_3m_pc"),
        (sde.probability_flow(score), ExpPredictorCorrector(order=4, corrector_order=5)),
        (sde.reverse(score), ExpPredictorCorrectorSDE(order=4, corrector_order=5)),  # corrector reuses z_{k-1}
    ):
        full = sdekit.solve(proc, x0, 1.0, 1e-3, solver, steps=6, seed=8, backend="numba").x
        head = sdekit.solve(proc, x0[:7], 1.0, 1e-3, solver, steps=6, seed=8, backend="numba").x
        mid = sdekit.solve(proc, x0[ids], 1.0, 1e-3, solver, steps=6, seed=8, backend="numba", sample_ids=ids).x
        np.testing.assert_array_equal(full[:7], head)
        np.testing.assert_array_equal(full[ids], mid)
    # saved states and a progress bar (the kernel keeps its history: one call for the whole grid)
    proc = sde.reverse(score)
    grid = np.linspace(1.0, 1e-3, 21)
    a = sdekit.solve(
        proc, x0[:50], 1.0, 1e-3, "dpmpp_2m_sde", grid=grid, backend="numba", save_at=grid[::5], progress=True
    )
    b = sdekit.solve(proc, x0[:50], 1.0, 1e-3, "dpmpp_2m_sde", grid=grid, backend="numpy", save_at=grid[::5])
    assert a.xs.shape == b.xs.shape == (5, 50, 3)
    _close(a.xs, b.xs)
    np.testing.assert_array_equal(a.xs[-1], a.x)


# one instance: the kernels specialised to it compile once for the tests below
USER_SCORE = RowScore(user_row, event_shape=2)


def test_user_jitted_score_runs_the_same_kernel():
    sde = sdekit.VPSDE()
    score = USER_SCORE
    for solver, process in (("dpmpp_3m_pc", "ode"), ("ancestral", "sde")):
        kw = dict(n=100, steps=12, solver=solver, process=process, seed=5)
        a = sdekit.sample(sde, score, backend="numba", **kw)
        b = sdekit.sample(sde, score, backend="numpy", **kw)
        assert a.stats["kernel"] == "fused affine_multistep"
        _close(a.x, b.x)


def test_non_finite_state_raises_at_the_same_step_as_numpy():
    @njit
    def exploding(x, t, out):
        for j in range(x.shape[0]):
            out[j] = np.inf if t < 0.55 else -x[j]

    sde = sdekit.VPSDE()
    score = RowScore(exploding, 2)
    errors = []
    for backend in ("numba", "numpy"):
        with pytest.raises(sdekit.NonFiniteError) as info:
            sdekit.sample(sde, score, n=70, steps=10, solver="dpmpp_2m", process="ode", backend=backend)
        errors.append((info.value.step, info.value.t))
    assert errors[0] == errors[1]


# -- exponential predictor-corrector (dpmpp_pc, dpmpp_sde_pc) on the affine multistep kernel -------------------
# every option: predictor order 1..4, corrector off / on with 2..5 nodes, lower_order_final (7 steps < 15)
EXP_PC_OPTIONS = (
    [
        dict(order=p, corrector=c, lower_order_final=lof, corrector_order=co)
        for p, c, lof, co in itertools.product([1, 2, 3, 4], [True, False], [True, False], [None, 2, 5])
        if c or co is None  # corrector_order does nothing without the corrector
    ]
    + [  # the Gaussian linear part: other evaluation coefficients (EDM's F) and quadrature weights
        dict(order=p, sigma_data=0.7) for p in (1, 2, 3, 4)
    ]
    + [
        dict(order=3, corrector=False, sigma_data=0.7),
        dict(order=2, corrector_order=5, lower_order_final=True, sigma_data=1.3),
    ]
)


@pytest.mark.parametrize("cls,process", [(ExpPredictorCorrector, "ode"), (ExpPredictorCorrectorSDE, "sde")])
def test_exp_pc_options_match_numpy(cls, process):
    for sde, name, grid in (
        (sdekit.VPSDE(), "mixture-diag", "uniform"),
        (sdekit.EDMSDE(), "gaussian-full", "log_snr"),
    ):
        score = DENSITIES[name].score(sde)
        for options in EXP_PC_OPTIONS:
            solver = cls(**options)
            assert find_kernel(solver, process) is AFFINE_MULTISTEP
            kw = dict(n=40, steps=7, solver=solver, process=process, seed=6, grid=grid)
            a = sdekit.sample(sde, score, backend="numba", **kw)
            b = sdekit.sample(sde, score, backend="numpy", **kw)
            assert a.stats["kernel"] == "fused affine_multistep"
            assert a.nfe == b.nfe == 8  # 7 steps and the final denoising evaluation
            _close(a.x, b.x)


class _PerStepODE(ExpPredictorCorrector):
    """The same solver with its own ``step``: no kernel, the numba backend's per-step loop."""

    def step(self, process, x, t, t_next, z, ctx):
        return super().step(process, x, t, t_next, z, ctx)


class _PerStepSDE(ExpPredictorCorrectorSDE):
    def step(self, process, x, t, t_next, z, ctx):
        return super().step(process, x, t, t_next, z, ctx)


def test_exp_pc_fused_is_bitwise_the_per_step_loop():
    # with a compiled row score both paths evaluate the same score and draw the same normals, so the kernel must
    # repeat the solver's arithmetic exactly, including the corrector's reuse of the previous step's noise
    sde = sdekit.VPSDE()
    x0 = sde.prior_sample((30, 2), seed=2)
    for fused, slow, proc in (
        (ExpPredictorCorrector, _PerStepODE, sde.probability_flow(USER_SCORE)),
        (ExpPredictorCorrectorSDE, _PerStepSDE, sde.reverse(USER_SCORE)),
    ):
        for options in EXP_PC_OPTIONS:
            a = sdekit.solve(proc, x0, 1.0, 1e-3, fused(**options), steps=7, backend="numba", seed=9)
            b = sdekit.solve(proc, x0, 1.0, 1e-3, slow(**options), steps=7, backend="numba", seed=9)
            assert (a.stats["kernel"], b.stats["kernel"]) == ("fused affine_multistep", "per-step")
            np.testing.assert_array_equal(a.x, b.x, err_msg=f"{fused.__name__}({options})")


def test_exp_pc_tables():
    sde = sdekit.EDMSDE()
    proc = sde.reverse(DENSITIES["gaussian-full"].score(sde))
    grid = sdekit.grids.make_grid(sde, 8, "log_snr")
    # order 4 with a 5-node corrector: the ring holds E_k .. E_{k-4}
    ev, pred, corr, counts = affine_multistep_coefficients(
        ExpPredictorCorrectorSDE(order=4, corrector_order=5), proc, grid
    )
    np.testing.assert_array_equal(counts[:, 0], [1, 2, 3, 4, 4, 4, 4, 4])  # predictor nodes
    np.testing.assert_array_equal(counts[:, 1], [0, 2, 3, 4, 5, 5, 5, 5])  # corrector nodes, none at step 0
    np.testing.assert_array_equal(counts[:, 2:], [[1, 1, 0]] + [[1, 1, 1]] * 7)  # noise, keep x_prev, z_{k-1}
    # the corrector adds the previous step's noise term C_{k-1} z_{k-1} unchanged
    np.testing.assert_array_equal(corr[1:, 1], pred[:-1, 1])
    h = np.diff([sde.log_snr(t) for t in grid])
    sig = np.array([sde.marginal(t)[1] for t in grid])
    np.testing.assert_allclose(pred[:, 1], sig[1:] * np.sqrt(-np.expm1(-2 * h)), rtol=1e-14)
    np.testing.assert_allclose(pred[:, 0], sig[1:] / sig[:-1] * np.exp(-h), rtol=1e-14)
    # lower_order_final (8 < 15 steps): the predictor order is capped at n_steps - k; no corrector, nothing kept
    _, _, corr, counts = affine_multistep_coefficients(
        ExpPredictorCorrector(order=4, corrector=False, lower_order_final=True), proc, grid
    )
    np.testing.assert_array_equal(counts[:, 0], [1, 2, 3, 4, 4, 3, 2, 1])
    np.testing.assert_array_equal(counts[:, 1:], 0)
    np.testing.assert_array_equal(corr, 0.0)
    # dpmpp_pc(order=3) is dpmpp_3m_pc: the same tables, bit for bit
    ode = sde.probability_flow(DENSITIES["gaussian-full"].score(sde))
    for u, v in zip(
        affine_multistep_coefficients(ExpPredictorCorrector(order=3), ode, grid),
        affine_multistep_coefficients(get_solver("dpmpp_3m_pc"), ode, grid),
    ):
        np.testing.assert_array_equal(u, v)


# -- EDM's sampler ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sde", [sdekit.VPSDE(), sdekit.VESDE(), sdekit.EDMSDE()], ids=repr)
def test_edm_fused_matches_numpy(sde):
    from sdekit.backends.numba.kernels import EDM
    from sdekit.solvers.edm import EDMSampler

    proc = sde.reverse(DENSITIES["mixture-diag"].score(sde))
    x0 = sde.prior_sample((64, 3), seed=3)
    for solver in (
        EDMSampler(),  # churn between S_tmin and S_tmax only
        EDMSampler(S_churn=0.0),  # Alg. 1: deterministic Heun in EDM's variables
        EDMSampler(S_churn=80.0, S_tmin=0.0, S_tmax=float("inf"), S_noise=1.003),  # churn on every step
    ):
        assert find_kernel(solver, "sde") is EDM
        a = sdekit.solve(proc, x0, sde.T, sde.eps, solver, steps=12, backend="numba", seed=3)
        b = sdekit.solve(proc, x0, sde.T, sde.eps, solver, steps=12, backend="numpy", seed=3)
        assert a.stats["kernel"] == "fused edm"
        assert a.nfe == b.nfe == 24
        _close(a.x, b.x)
    # batch independence across a block boundary
    x0 = sde.prior_sample((BLOCK + 40, 3), seed=5)
    ids = np.arange(BLOCK - 10, BLOCK + 20)
    full = sdekit.solve(proc, x0, sde.T, sde.eps, "edm", steps=5, seed=5, backend="numba").x
    mid = sdekit.solve(proc, x0[ids], sde.T, sde.eps, "edm", steps=5, seed=5, backend="numba", sample_ids=ids).x
    np.testing.assert_array_equal(full[ids], mid)


# -- Restart sampling -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sde", [sdekit.VPSDE(), sdekit.VESDE(), sdekit.EDMSDE()], ids=repr)
def test_restart_fused_matches_numpy(sde):
    from sdekit.backends.numba.kernels import RESTART
    from sdekit.solvers.restart import Restart
    from sdekit.timegrid import resolve_grid

    proc = sde.reverse(DENSITIES["mixture-diag"].score(sde))
    x0 = sde.prior_sample((64, 3), seed=3)
    restarted = 0
    for solver in (
        Restart(),  # backward passes on the main grid's levels
        Restart(K=3, restart_steps=3),  # on a Karras sub-grid, three restarts
        Restart(restart_interval=(0.05, 40.0), K=2),  # a wide interval: restarts on every SDE's grid
        Restart(K=0),  # no restart: EDM's deterministic Heun steps
    ):
        assert find_kernel(solver, "sde") is RESTART
        for steps in (6, 18):
            grid = resolve_grid(sde, sde.T, sde.eps, steps, "time_uniform")
            kw = dict(grid=grid, seed=3, save_at=grid[[1, 3]])
            a = sdekit.solve(proc, x0, sde.T, sde.eps, solver, backend="numba", **kw)
            b = sdekit.solve(proc, x0, sde.T, sde.eps, solver, backend="numpy", **kw)
            assert a.stats["kernel"] == "fused restart"
            assert a.nfe == b.nfe
            restarted += a.nfe > 2 * steps
            _close(a.x, b.x)
            _close(a.xs, b.xs)
    assert restarted >= 2  # the restart branch of the kernel ran
    # batch independence across a block boundary, with restarts
    solver = Restart(restart_interval=(0.05, 40.0), K=2)
    x0 = sde.prior_sample((BLOCK + 40, 3), seed=5)
    ids = np.arange(BLOCK - 10, BLOCK + 20)
    full = sdekit.solve(proc, x0, sde.T, sde.eps, solver, steps=6, seed=5, backend="numba").x
    mid = sdekit.solve(proc, x0[ids], sde.T, sde.eps, solver, steps=6, seed=5, backend="numba", sample_ids=ids).x
    np.testing.assert_array_equal(full[ids], mid)


# -- SRA (stochastic Runge--Kutta for additive noise) ----------------------------------------------------------
def test_sra1_fused_matches_numpy_and_is_batch_independent():
    from sdekit.backends.numba.kernels import SRA_KERNEL

    assert find_kernel(get_solver("sra1"), "sde") is SRA_KERNEL
    for sde in (sdekit.VPSDE(), sdekit.VESDE(), sdekit.EDMSDE()):
        score = DENSITIES["gaussian-full"].score(sde)
        for steps in (10, 40):
            kw = dict(n=64, steps=steps, solver="sra1", process="sde", seed=11)
            a = sdekit.sample(sde, score, backend="numba", **kw)
            b = sdekit.sample(sde, score, backend="numpy", **kw)
            assert a.stats["kernel"] == "fused sra"
            _close(a.x, b.x)
    sde = sdekit.VPSDE()
    proc = sde.reverse(DENSITIES["mixture-diag"].score(sde))
    x0 = sde.prior_sample((BLOCK + 40, 3), seed=5)
    ids = np.arange(BLOCK - 10, BLOCK + 20)
    full = sdekit.solve(proc, x0, 1.0, 1e-3, "sra1", steps=5, seed=5, backend="numba").x
    mid = sdekit.solve(proc, x0[ids], 1.0, 1e-3, "sra1", steps=5, seed=5, backend="numba", sample_ids=ids).x
    np.testing.assert_array_equal(full[ids], mid)


# -- predictor--corrector ------------------------------------------------------------------------------------
def test_pc_fused_for_sigma_rule_and_affine_predictors_else_per_step():
    from sdekit.solvers.score_based import PredictorCorrector

    for sde in (sdekit.VPSDE(), sdekit.VESDE()):
        proc = sde.reverse(DENSITIES["mixture-diag"].score(sde))
        x0 = sde.prior_sample((64, 3), seed=3)
        for solver, kernel in (
            (PredictorCorrector(), "fused pc"),
            (PredictorCorrector("ancestral", snr=0.05, n_steps=3), "fused pc"),
            (PredictorCorrector("euler_maruyama"), "per-step"),  # no affine predictor table
            (PredictorCorrector(step_size="per_sample"), "per-step"),  # norms per sample: not in the kernel
        ):
            a = sdekit.solve(proc, x0, sde.T, sde.eps, solver, steps=15, backend="numba", seed=3)
            b = sdekit.solve(proc, x0, sde.T, sde.eps, solver, steps=15, backend="numpy", seed=3)
            assert a.stats["kernel"] == kernel, solver
            assert a.nfe == b.nfe
            _close(a.x, b.x)
    sde = sdekit.VPSDE()
    proc = sde.reverse(DENSITIES["mixture-diag"].score(sde))
    x0 = sde.prior_sample((BLOCK + 40, 3), seed=5)
    ids = np.arange(BLOCK - 10, BLOCK + 20)
    solver = PredictorCorrector("ancestral", n_steps=2)
    full = sdekit.solve(proc, x0, 1.0, 1e-3, solver, steps=5, seed=5, backend="numba").x
    mid = sdekit.solve(proc, x0[ids], 1.0, 1e-3, solver, steps=5, seed=5, backend="numba", sample_ids=ids).x
    np.testing.assert_array_equal(full[ids], mid)


# -- annealed Langevin -----------------------------------------------------------------------------------------
class _PerStepAnnealed(AnnealedLangevin):
    def step(self, process, x, t, t_next, z, ctx):
        return super().step(process, x, t, t_next, z, ctx)


def test_annealed_langevin_fused_matches_numpy_and_the_per_step_loop():
    # d = 3 with 3 Langevin steps per level: the fields of steps 0..2 start and end inside Box--Muller pairs, so
    # the kernel's partial draws must hand out the numpy split exactly
    for sde in (sdekit.VESDE(), sdekit.VPSDE()):
        proc = sde.reverse(DENSITIES["mixture-diag"].score(sde))
        x0 = sde.prior_sample((50, 3), seed=3)
        solver = AnnealedLangevin(eps=1e-3, n_steps=3)
        a = sdekit.solve(proc, x0, sde.T, sde.eps, solver, steps=6, backend="numba", seed=4)
        b = sdekit.solve(proc, x0, sde.T, sde.eps, solver, steps=6, backend="numpy", seed=4)
        assert a.stats["kernel"] == "fused annealed_langevin"
        assert a.nfe == b.nfe == 18
        _close(a.x, b.x)
    # with the compiled user score both numba paths evaluate the same score and normals: bit for bit
    sde = sdekit.VPSDE()
    proc = sde.reverse(USER_SCORE)
    x0 = sde.prior_sample((BLOCK + 40, 2), seed=2)
    for n_steps in (1, 2, 3):
        a = sdekit.solve(proc, x0, 1.0, 1e-3, AnnealedLangevin(1e-3, n_steps), steps=5, backend="numba", seed=9)
        b = sdekit.solve(proc, x0, 1.0, 1e-3, _PerStepAnnealed(1e-3, n_steps), steps=5, backend="numba", seed=9)
        assert (a.stats["kernel"], b.stats["kernel"]) == ("fused annealed_langevin", "per-step")
        np.testing.assert_array_equal(a.x, b.x)
    # a chunk of the batch (other sample ids, other block boundaries) gets its own rows of the full run
    ids = np.arange(BLOCK - 10, BLOCK + 20)
    full = sdekit.solve(proc, x0, 1.0, 1e-3, AnnealedLangevin(1e-3, 2), steps=5, seed=5, backend="numba").x
    mid = sdekit.solve(proc, x0[ids], 1.0, 1e-3, AnnealedLangevin(1e-3, 2), steps=5, seed=5, backend="numba",
                       sample_ids=ids).x  # fmt: skip
    np.testing.assert_array_equal(full[ids], mid)
