"""Mistakes a new user makes: each gets a clear error naming the argument, or the right answer."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit import VPSDE, Gaussian, GeneralSDE, sample, solve
from sdekit.bench import exact_law
from sdekit.metrics import gaussian_w2

SDE = VPSDE()
DATA = Gaussian([0.5, -0.3], [[1.0, 0.6], [0.6, 0.5]])
SCORE = DATA.score(SDE)


# -- 1. chunked sampling ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["euler_maruyama", "dpmpp_2m_sde", "ancestral", "dpmpp_2m"])
def test_chunked_sample_equals_one_batch(solver):
    whole = sample(SDE, SCORE, n=10, solver=solver, steps=12, seed=7).x
    parts = [sample(SDE, SCORE, n=len(ids), solver=solver, steps=12, seed=7, sample_ids=ids).x
             for ids in (np.arange(0, 4), np.arange(4, 10))]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    # ids in any order and dtype: each sample is a function of its own id
    shuffled = np.array([9, 2, 5], dtype=np.uint32)
    np.testing.assert_array_equal(
        sample(SDE, SCORE, n=3, solver=solver, steps=12, seed=7, sample_ids=shuffled).x, whole[shuffled]
    )


def test_chunks_without_ids_are_the_same_samples_and_with_ids_independent():
    # the mistake of round 1: two halves without ids reuse the noise (sample i of each half coincides)
    a = sample(SDE, SCORE, n=2000, steps=20, seed=1).x
    b = sample(SDE, SCORE, n=2000, steps=20, seed=1, sample_ids=np.arange(2000, 4000)).x
    corr = np.corrcoef(a[:, 0], b[:, 0])[0, 1]
    assert abs(corr) < 0.1  # independent draws (the two halves' correlation was 0.999 without ids)


def test_chunked_sample_on_torch_equals_numpy():
    torch = pytest.importorskip("torch")
    ids = np.arange(3, 8)
    x_np = sample(SDE, SCORE, n=5, steps=6, seed=2, sample_ids=ids).x
    x_t = sample(SDE, SCORE, n=5, steps=6, seed=2, sample_ids=ids, backend="torch", dtype=torch.float64).x
    np.testing.assert_allclose(x_t.numpy(), x_np, rtol=1e-12, atol=1e-12)


def test_bad_sample_ids():
    for bad in ([0, 1], [0.5, 1.0, 2.0], [-1, 0, 1], "abc"):
        with pytest.raises(ValueError, match="sample_ids"):
            sample(SDE, SCORE, n=3, steps=2, sample_ids=bad)


# -- 2. no autograd graph in the torch adaptive loops ----------------------------------------------------------
@pytest.mark.parametrize("solver", ["adaptive", "dopri5", "euler_maruyama"])
def test_torch_loops_build_no_graph_by_default(solver):
    torch = pytest.importorskip("torch")
    seen = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2, dtype=torch.float64)

        def forward(self, x, t):
            seen.append(torch.is_grad_enabled())
            return self.lin(x) - x

    kwargs = {} if solver in ("adaptive", "dopri5") else {"steps": 10}
    sol = sample(SDE, Net(), n=8, shape=(2,), solver=solver, seed=0, **kwargs)
    assert seen and not any(seen), f"{solver}: the score ran with grad enabled at {sum(seen)} of {len(seen)} calls"
    assert not sol.x.requires_grad


# -- 5, 6. keyword arguments ------------------------------------------------------------------------------------
def test_misspelt_keyword_names_itself_and_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"\['stpes'\].*euler_maruyama.*sample\(\) itself takes.*'steps'"):
        sample(SDE, SCORE, n=2, stpes=50)
    with pytest.raises(ValueError, match=r"\['snrr'\].*'snr'"):
        sample(SDE, SCORE, n=2, solver="pc", snrr=0.1)
    with pytest.raises(ValueError, match="fixes"):
        sdekit.get_solver("dpmpp_3m_pc", order=2)


@pytest.mark.parametrize("solver", ["dopri5", "adaptive"])
def test_steps_or_grid_with_an_adaptive_solver_is_an_error(solver):
    for kwargs in (dict(steps=50), dict(grid="karras"), dict(grid=np.linspace(1.0, 1e-3, 5))):
        with pytest.raises(ValueError, match="chooses its own steps"):
            sample(SDE, SCORE, n=2, solver=solver, **kwargs)


# -- 4. default grid per solver family --------------------------------------------------------------------------
def test_default_grid_is_the_solver_familys():
    x_T = SDE.prior_sample((6, 2), seed=3)
    for solver, grid in (("dpmpp_3m_sde", "log_snr"), ("dpmpp_2m", "log_snr"), ("edm", "karras"),
                         ("euler_maruyama", "uniform"), ("dpmpp_pc", "log_snr")):  # fmt: skip
        assert sdekit.get_solver(solver).default_grid == grid
        a = sample(SDE, SCORE, x_T=x_T, solver=solver, steps=9, seed=1).x
        b = sample(SDE, SCORE, x_T=x_T, solver=solver, steps=9, seed=1, grid=grid).x
        np.testing.assert_array_equal(a, b)


def test_third_order_sde_multistep_default_is_not_worse_than_euler_maruyama():
    # a narrow Gaussian: on a uniform grid in t the 3M-SDE sampler was 6x worse than Euler-Maruyama (exact W2)
    narrow = Gaussian([0.3, -0.2], [0.01, 0.02])
    target = narrow.mean_cov(SDE.eps, SDE)
    grid_of = {
        s: sdekit.grids.make_grid(SDE, 50, sdekit.get_solver(s).default_grid)
        for s in ("dpmpp_3m_sde", "euler_maruyama")
    }
    errs = {s: gaussian_w2(*exact_law(s, SDE, narrow, g, process="sde"), *target) for s, g in grid_of.items()}
    uniform = gaussian_w2(*exact_law("dpmpp_3m_sde", SDE, narrow, grid_of["euler_maruyama"], process="sde"), *target)
    assert errs["dpmpp_3m_sde"] < errs["euler_maruyama"] < uniform


# -- 7. one state dtype -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(
    "solver", ["euler_maruyama", "heun", "rk4", "sra1", "dpmpp_3m_pc", "edm", "dopri5", "adaptive"]
)
def test_float32_and_float16_states_keep_their_dtype(solver, dtype):
    seen = set()

    def score(x, t):
        seen.add((x.dtype, t.dtype))
        return SCORE(x.astype(np.float64), t.astype(np.float64))  # a float64 result: cast to the state's dtype

    x_T = SDE.prior_sample((4, 2), seed=0).astype(dtype)
    kwargs = {} if sdekit.get_solver(solver).adaptive else dict(steps=5)
    if dtype == np.float16 and solver in ("dopri5", "adaptive"):
        kwargs.update(rtol=1e-2, atol=1e-2)
    out = sample(SDE, score, x_T=x_T, solver=solver, **kwargs)
    assert out.x.dtype == dtype
    assert seen == {(np.dtype(dtype), np.dtype(dtype))}


def test_a_score_narrower_than_the_state_is_refused():
    with pytest.raises(TypeError, match="dtype"):
        sample(SDE, lambda x, t: SCORE(x, t).astype(np.float32), n=2, shape=(2,), steps=3)


# -- 8. output shapes on every call -----------------------------------------------------------------------------
def test_score_shape_is_checked_on_every_call():
    calls = []

    def flaky(x, t):
        calls.append(1)
        s = SCORE(x, t)
        return s if len(calls) < 3 else s[:, :1]  # broadcasts silently if unchecked

    with pytest.raises(ValueError, match=r"shape \(4, 1\) on call 3"):
        sample(SDE, flaky, n=4, shape=(2,), steps=5)


def test_general_sde_outputs_are_checked_on_every_call():
    calls = []

    def drift(x, t):
        calls.append(1)
        return -x if len(calls) < 3 else -x[:, :1]

    sde = GeneralSDE(drift, lambda x, t: np.ones_like(x), noise="additive")
    with pytest.raises(ValueError, match="drift returned shape"):
        solve(sde, np.ones((3, 2)), 0.0, 1.0, "euler_maruyama", steps=5)
    sde = GeneralSDE(lambda x, t: -x, lambda x, t: np.ones((x.shape[0], 3)), noise="additive")
    with pytest.raises(ValueError, match="diffusion returned shape"):
        solve(sde, np.ones((3, 2)), 0.0, 1.0, "euler_maruyama", steps=5)


# -- 11, 12. numbers as numbers, clear errors for the rest ------------------------------------------------------
def test_numpy_scalars_are_numbers():
    out = sample(SDE, SCORE, n=np.int64(3), t_end=np.float64(1e-3), steps=np.int64(5), solver="pc",
                 snr=np.float32(0.1), n_steps=np.int32(1), denoise=np.bool_(True))  # fmt: skip
    assert out.x.shape == (3, 2) and np.isfinite(out.x).all()
    sdekit.get_solver("dpmpp_2m", lower_order_final=np.bool_(False))
    sdekit.VPSDE(beta_min=np.float32(0.1), beta_max=np.float64(20.0))


@pytest.mark.parametrize("shape", [2.5, "ab", (0,), (2, -1), (True,), [2.0]])
def test_bad_event_shapes_name_shape(shape):
    with pytest.raises(ValueError, match="shape must be a positive integer"):
        sample(SDE, lambda x, t: -x, n=3, shape=shape, steps=3)


def test_bad_sde_parameters_name_the_parameter():
    with pytest.raises(TypeError, match="beta_min"):  # a flag where a number is wanted: TypeError (issue 24)
        VPSDE(beta_min=True)
    with pytest.raises(ValueError, match="eps must be smaller"):
        GeneralSDE(lambda x, t: -x, lambda x, t: 1.0 + 0 * x, T=1, eps=2)
    with pytest.raises(TypeError, match="T"):
        GeneralSDE(lambda x, t: -x, lambda x, t: 1.0 + 0 * x, T="1")


def test_big_endian_states_work():
    x_T = SDE.prior_sample((3, 2), seed=0)
    a = sample(SDE, SCORE, x_T=x_T, steps=4, backend="numpy").x
    b = sample(SDE, SCORE, x_T=x_T.astype(">f8"), steps=4, backend="numpy").x
    np.testing.assert_array_equal(a, b)


# -- 13. save_at --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["euler_maruyama", "dpmpp_2m"])
def test_saved_trajectory_is_allocated_once(solver):
    import tracemalloc

    x_T = SDE.prior_sample((2000, 50), seed=0)
    score = Gaussian(np.zeros(50), 1.0).score(SDE)
    steps = 50
    size = (steps + 1) * x_T.nbytes
    tracemalloc.start()
    sol = solve(SDE.reverse(score) if solver == "euler_maruyama" else SDE.probability_flow(score), x_T, 1.0, 1e-3,
                solver, steps=steps, save_at=True, backend="numpy")  # fmt: skip
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sol.xs.shape == (steps + 1, 2000, 50)
    np.testing.assert_array_equal(sol.xs[0], x_T)
    np.testing.assert_array_equal(sol.xs[-1], sol.x)
    assert peak < 1.4 * size  # a list of states stacked at the end peaked at 2x the trajectory


# -- 11. grids at their own precision -----------------------------------------------------------------------------
def test_float32_grids_are_accepted_and_pinned_to_the_ends():
    grid = sdekit.grids.make_grid(SDE, 8, "log_snr")
    a = sample(SDE, SCORE, n=4, grid=grid, seed=1)
    b = sample(SDE, SCORE, n=4, grid=grid.astype(np.float32), seed=1)
    assert b.t == SDE.eps  # the end is t_end exactly, not its float32 rounding
    np.testing.assert_allclose(b.x, a.x, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="must start at"):
        sample(SDE, SCORE, n=4, grid=(grid * (1 + 1e-5)).astype(np.float32))


@pytest.mark.parametrize("cls", [VPSDE, sdekit.SubVPSDE])
@pytest.mark.parametrize("beta_max", [2000.0, 20000.0])
@pytest.mark.parametrize("grid", ["log_snr", "karras", "uniform", "quadratic"])
def test_schedules_are_finite_at_large_beta(cls, beta_max, grid):
    import warnings

    sde = cls(beta_max=beta_max)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way either
        ts = sdekit.grids.make_grid(sde, 12, grid)
    assert np.isfinite(ts).all() and np.all(np.diff(ts) < 0) and ts[0] == sde.T and ts[-1] == sde.eps
    # and lambda(t(lambda)) round-trips where lambda is representable
    lam = np.linspace(float(sde.log_snr(sde.T)), float(sde.log_snr(sde.eps)), 7)
    np.testing.assert_allclose(sde.log_snr(sde.t_from_log_snr(lam)), lam, rtol=1e-9, atol=1e-9)


def test_gaussian_w2_refuses_a_non_symmetric_covariance():
    c = np.array([[1.0, 0.9], [0.0, 1.0]])
    with pytest.raises(ValueError, match="cov1 must be symmetric"):
        gaussian_w2(np.zeros(2), c, np.zeros(2), c.T)
    sym = 0.5 * (c + c.T)
    assert gaussian_w2(np.zeros(2), sym + 1e-14 * c, np.zeros(2), sym) < 1e-6  # round-off asymmetry is fine


# -- 9. output paths are checked before any work, in the API as in the CLI ---------------------------------------
@pytest.mark.parametrize("argument", ["png_path", "csv_path", "json_path"])
def test_bench_compare_refuses_an_unwritable_output_path_before_any_work(tmp_path, argument):
    import time

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=f"{argument}: the directory .* does not exist"):
        sdekit.bench.compare("gaussian", "vp", ["euler"], [4], **{argument: str(tmp_path / "missing" / "out")})
    assert time.perf_counter() - t0 < 1.0  # refused up front, nothing computed
