"""solve() and sample(): reproducibility, saving, denoising, NFE accounting and every bad input."""

import numpy as np
import pytest

import sdekit
from sdekit import VESDE, VPSDE, Gaussian, GaussianMixture, NonFiniteError, sample, solve
from sdekit.backends import BACKENDS

SDE = VPSDE()
DATA = Gaussian(mean=[0.5, -0.5], cov=0.2)
SCORE = DATA.score(SDE)
MIX = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [0.1, 0.2])


def test_same_seed_same_samples_and_other_seed_other_samples():
    a = sample(SDE, SCORE, n=50, steps=20, seed=7)
    b = sample(SDE, SCORE, n=50, steps=20, seed=7)
    c = sample(SDE, SCORE, n=50, steps=20, seed=8)
    np.testing.assert_array_equal(a.x, b.x)
    assert np.abs(a.x - c.x).min() > 0


@pytest.mark.parametrize("solver", ["euler_maruyama", "heun"])
def test_sample_i_is_the_same_in_a_batch_of_10_and_of_1000(solver):
    small = sample(SDE, MIX.score(SDE), n=10, solver=solver, process="sde", steps=30, seed=3)
    large = sample(SDE, MIX.score(SDE), n=1000, solver=solver, process="sde", steps=30, seed=3)
    np.testing.assert_array_equal(small.x, large.x[:10])


def test_chunked_solve_with_sample_ids_equals_one_solve():
    rev = SDE.reverse(SCORE)
    x = SDE.prior_sample((30, 2), seed=1)
    whole = solve(rev, x, 1.0, 0.01, steps=15, seed=2).x
    parts = [
        solve(rev, x[i : i + 10], 1.0, 0.01, steps=15, seed=2, sample_ids=np.arange(i, i + 10)).x for i in (0, 10, 20)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_nfe_counts_score_evaluations_including_denoising():
    calls = []

    def score(x, t):
        calls.append(1)
        return SCORE(x, t)

    sol = sample(SDE, score, n=4, shape=(2,), solver="heun", steps=10)
    assert sol.nfe == 21 == len(calls)
    sol = sample(SDE, SCORE, n=4, solver="rk4", steps=5, denoise=False)
    assert sol.nfe == 20
    # backend="auto" runs an analytic score on the fused numba kernels when numba is installed and the kernel is
    # compiled (or the job pays for its compilation), else on numpy (issue 23); stats say which and why
    assert sol.stats["backend"] in (("numba", "numpy") if "numba" in BACKENDS else ("numpy",))
    assert sol.stats["backend_reason"].startswith("auto") and sol.stats["steps"] == 5


def test_denoise_is_tweedie_and_exact_for_gaussian_data():
    # for Gaussian data E[x0 | x_t] is affine; apply the step to x = mean of p_t: result is the data mean
    sde = VESDE()
    data = Gaussian(mean=[3.0, -1.0], cov=[0.5, 2.0])
    m_t, _ = data.mean_cov(0.3, sde)
    out = sdekit.tweedie_denoise(sde, data.score(sde), m_t[None], 0.3)
    np.testing.assert_allclose(out[0], [3.0, -1.0], rtol=1e-12)


def test_sampling_reaches_the_data_law():
    sol = sample(SDE, SCORE, n=20000, solver="heun", steps=100, seed=1)
    # exact p_eps has mean (0.5, -0.5) and variance ~0.2; standard errors ~0.003 and ~0.002
    np.testing.assert_allclose(sol.x.mean(0), [0.5, -0.5], atol=0.02)
    np.testing.assert_allclose(sol.x.var(0), [0.2, 0.2], atol=0.02)


def test_solve_accepts_a_named_schedule_between_any_two_times():
    rev = SDE.reverse(SCORE)
    x = SDE.prior_sample((3, 2), seed=0)
    sol = solve(rev, x, 0.8, 0.1, steps=6, grid="log_snr", save_at=True)
    lam = SDE.log_snr(sol.ts)
    assert sol.ts[0] == 0.8 and sol.ts[-1] == 0.1
    np.testing.assert_allclose(np.diff(lam), np.full(6, np.diff(lam).mean()), rtol=1e-8)


def test_save_at_returns_the_trajectory_at_grid_points():
    rev = SDE.reverse(SCORE)
    x = SDE.prior_sample((5, 2), seed=0)
    full = solve(rev, x, 1.0, 0.5, steps=10, save_at=True)
    assert full.xs.shape == (11, 5, 2) and full.ts.shape == (11,)
    np.testing.assert_array_equal(full.xs[0], x)
    np.testing.assert_array_equal(full.xs[-1], full.x)
    part = solve(rev, x, 1.0, 0.5, steps=10, save_at=[0.75, 0.5])
    np.testing.assert_allclose(part.ts, [0.75, 0.5])
    np.testing.assert_array_equal(part.xs[1], full.x)
    np.testing.assert_array_equal(part.xs[0], full.xs[5])


def test_forward_sde_runs_forwards_and_matches_the_marginal():
    sde = VPSDE()
    x0 = np.zeros((20000, 1)) + 2.0
    sol = solve(sde, x0, 0.0, 0.5, steps=200, seed=5)
    alpha, sigma = sde.marginal(0.5)
    assert sol.x.mean() == pytest.approx(2.0 * alpha, abs=0.02)
    assert sol.x.std() == pytest.approx(sigma, abs=0.02)


def test_general_sde_with_diagonal_noise():
    # geometric Brownian motion: E[x_t] = x0 exp(mu t)
    sde = sdekit.GeneralSDE(lambda x, t: 0.5 * x, lambda x, t: 0.2 * x, T=1.0)
    sol = solve(sde, np.ones((20000, 1)), 0.0, 1.0, steps=100, seed=1)
    assert sol.x.mean() == pytest.approx(np.exp(0.5), rel=0.01)
    with pytest.raises(ValueError, match="additive"):
        solve(sde, np.ones((3, 1)), 0.0, 1.0, "heun", steps=3)


def test_non_finite_values_raise_with_step_and_time():
    def exploding(x, t):
        with np.errstate(over="ignore", invalid="ignore"):
            return x * 1e200

    with pytest.raises(NonFiniteError, match="step") as info:
        sample(SDE, exploding, n=3, shape=(2,), steps=10)
    assert info.value.step >= 0 and 0 < info.value.t <= 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        sol = sample(SDE, exploding, n=3, shape=(2,), steps=10, check_finite=False)
    assert not np.isfinite(sol.x).all()


def test_progress_bar_runs(capsys):
    sol = sample(SDE, SCORE, n=3, steps=5, progress=True)
    assert sol.x.shape == (3, 2)


BAD_SOLVE = [
    (dict(x0=np.ones(0)), "x0"),
    (dict(x0=np.ones((2, 2), dtype=int)), "x0"),
    (dict(x0=[[1.0, 2.0]]), "x0"),
    (dict(x0=np.array([[np.nan, 1.0]])), "x0"),
    (dict(t0=2.0), "t0"),
    (dict(t1=0.0), "t1"),
    (dict(t1=1.0), "t1"),
    (dict(t0=0.2, t1=0.5), "backwards"),
    (dict(steps=0), "steps"),
    (dict(steps=-3), "steps"),
    (dict(steps=None, grid=np.linspace(0.01, 1.0, 5)), "decreasing"),
    (dict(steps=None, grid=np.linspace(1.0, 0.2, 5)), "end at t1"),
    (dict(steps=None, grid=[1.0]), "grid"),
    (dict(steps=None, grid="uniform"), "steps too"),
    (dict(steps=4, grid="cosine"), "cosine"),
    (dict(steps=None), "steps or grid"),
    (dict(grid=np.linspace(1.0, 0.01, 4)), "not both"),
    (dict(solver="milstein"), "euler_maruyama"),
    (dict(solver="euler"), "ODEs only"),
    (dict(backend="jax"), "numpy"),
    (dict(backend="torch"), "torch"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(rtol=1e-3), "rtol"),
    (dict(save_at=[0.333]), "save_at"),
    (dict(sample_ids=[0]), "sample_ids"),
]


@pytest.mark.parametrize("override, match", BAD_SOLVE)
def test_bad_solve_input_names_the_argument(override, match):
    kwargs = dict(x0=np.ones((2, 2)), t0=1.0, t1=0.01, steps=4)
    kwargs.update(override)
    process = kwargs.pop("process", SDE.reverse(SCORE))
    with pytest.raises((ValueError, TypeError), match=match):
        solve(process, **kwargs)


def test_bad_processes_and_scores():
    with pytest.raises(TypeError, match="process"):
        solve(lambda x, t: x, np.ones((2, 2)), 1.0, 0.1, steps=3)
    with pytest.raises(ValueError, match="SDEs only"):
        solve(SDE.probability_flow(SCORE), np.ones((2, 2)), 1.0, 0.1, "euler_maruyama", steps=3)
    with pytest.raises(ValueError, match="shape"):
        sample(SDE, lambda x, t: x[:, :1], n=2, shape=(2,), steps=3)
    with pytest.raises(TypeError, match="dtype"):
        sample(SDE, lambda x, t: x.astype(np.float32), n=2, shape=(2,), steps=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0), "n must"),
        (dict(n=2, x_T=np.ones((2, 2))), "exactly one"),
        (dict(), "exactly one"),
        (dict(n=2, t_end=0.0), "t_end"),
        (dict(n=2, t_end=1.5), "t_end"),
        (dict(n=2, grid="cosine"), "karras"),
        (dict(n=2, process="flow"), "process"),
        (dict(n=2, solver="euler", process="sde"), "ODEs only"),
        (dict(n=2, solver="euler_maruyama", process="ode"), "SDEs only"),
        (dict(n=2, steps=0), "steps"),
        (dict(n=2, solver="heun", foo=1), "foo"),
    ],
)
def test_bad_sample_input_names_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        sample(SDE, SCORE, **kwargs)


def test_sample_needs_an_event_shape_for_plain_scores():
    with pytest.raises(ValueError, match="shape"):
        sample(SDE, lambda x, t: -x, n=2, steps=3)
    sol = sample(SDE, lambda x, t: -x, n=2, shape=(3,), steps=3)
    assert sol.x.shape == (2, 3)
