"""sdekit.learn: the learned few-step solver is its base when untrained, fitting lowers the held-out error against
an exact flow, NFE accounting, save/load, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit import EDMSDE, VPSDE, Gaussian, GaussianMixture, sample
from sdekit.grids import make_grid
from sdekit.learn import LearnedSolver, fit, load

SDE = EDMSDE()
MIX = GaussianMixture(weights=[0.6, 0.4], means=[[-1.5, 0.0], [1.5, 0.5]], covs=[[0.1, 0.2], [0.3, 0.05]])
GAUSS = Gaussian([0.5, -1.0], [0.2, 0.02])


def _rms(x, y):
    return float(np.sqrt(np.mean(np.sum((np.asarray(x) - np.asarray(y)) ** 2, axis=1))))


@pytest.mark.parametrize("base", ["ipndm(afs=True)", "ipndm", "ipndm_v(afs=True)", "deis(order=4, afs=True)",
                                  "deis(variant='logrho', lower_order_final=True)", "ipndm_v(order=3)"])  # fmt: skip
@pytest.mark.parametrize("sde", [EDMSDE(), VPSDE()], ids=["edm", "vp"])
def test_untrained_is_its_base(base, sde):
    score = MIX.score(sde)
    grid = make_grid(sde, 7, "time_uniform")
    x = sde.prior_sample((40, 2), seed=3)
    untrained = LearnedSolver.from_base(sde, base, grid)
    a = sample(sde, score, x_T=x, solver=untrained)
    b = sample(sde, score, x_T=x, solver=base, grid=grid)
    assert a.nfe == b.nfe
    np.testing.assert_allclose(a.x, b.x, rtol=0, atol=1e-13 * np.max(np.abs(b.x)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_untrained_is_its_base_in_torch(dtype):
    torch = pytest.importorskip("torch")
    score = MIX.score(SDE)
    grid = make_grid(SDE, 6, "time_uniform")
    x = torch.as_tensor(SDE.prior_sample((16, 2), seed=4), dtype=getattr(torch, dtype))
    a = sample(SDE, score, x_T=x, solver=LearnedSolver.from_base(SDE, "ipndm(afs=True)", grid), backend="torch")
    b = sample(SDE, score, x_T=x, solver="ipndm(afs=True)", grid=grid, backend="torch")
    assert a.x.dtype == x.dtype
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(a.x.numpy(), b.x.numpy(), rtol=0, atol=tol * float(b.x.abs().max()))


@pytest.fixture(scope="module")
def fitted_gauss():
    return fit(SDE, GAUSS.score(SDE), 4, n=256, seed=5, guard=512, time_limit=30.0, max_evals=300)


def test_fit_on_a_gaussian_lowers_the_heldout_error_against_the_exact_flow(fitted_gauss):
    x = SDE.prior_sample((500, 2), seed=11)
    exact = GAUSS.flow(x, SDE.T, SDE.eps, SDE)
    exact = sdekit.tweedie_denoise(SDE, GAUSS.score(SDE), exact, SDE.eps)
    rep = fitted_gauss.report
    assert rep["choice"] != "base"
    assert rep["heldout"][rep["choice"]] < rep["heldout"]["base"]
    mine = _rms(sample(SDE, GAUSS.score(SDE), x_T=x, solver=fitted_gauss).x, exact)
    grid = make_grid(SDE, 4, "time_uniform")  # the base's own grid at this budget (3 evaluations + denoise)
    base = _rms(sample(SDE, GAUSS.score(SDE), x_T=x, solver="ipndm(afs=True)", grid=grid).x, exact)
    assert mine < 0.5 * base


def test_fit_on_a_mixture_is_never_worse_than_its_base_on_heldout_points():
    fitted = fit(SDE, MIX.score(SDE), 5, n=96, denoise=False, seed=2, guard=256, max_evals=150)
    rep = fitted.report
    assert rep["heldout"][rep["choice"]] <= rep["heldout"]["base"]
    assert rep["guard"][rep["choice"]] <= rep["guard"]["base"]  # the guard's promise, on its weighted estimate
    assert rep["guard_pool"] == 4 * 256 and rep["guard_points"] == 256 and rep["guard_sure"] >= 4
    # 96 distinct points of the pool, plus those the mining stage added (at most 96 // 8, none already fitted)
    assert rep["pool"] == 8 * 96 and rep["n_train"] + rep["n_heldout"] == 96 + rep["n_mined"]
    assert 0 <= rep["n_mined"] <= 12 and "mined" in rep["heldout"]
    assert rep["base"] in rep["bases"] and rep["score_calls"] > 0 and rep["seconds"] > 0


class _Counter:
    def __init__(self, score):
        self.score, self.calls = score, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


@pytest.mark.parametrize("denoise", [True, False])
@pytest.mark.parametrize("base", ["ipndm(afs=True)", "ipndm"])
def test_nfe_accounting(denoise, base):
    fitted = fit(SDE, MIX.score(SDE), 5, n=32, base=base, denoise=denoise, polish=False, guard=0)
    assert fitted.nfe_budget == 5 and fitted.n_steps == 5 - int(denoise) + ("afs" in base)
    counter = _Counter(MIX.score(SDE))
    sol = sample(SDE, counter, x_T=SDE.prior_sample((8, 2)), solver=fitted, denoise=denoise)
    assert sol.nfe == counter.calls == 5


def test_own_grid_only(fitted_gauss):
    x = SDE.prior_sample((4, 2))
    with pytest.raises(ValueError, match="own grid"):
        sample(SDE, GAUSS.score(SDE), x_T=x, solver=fitted_gauss, steps=10)


def test_save_load_round_trip(tmp_path, fitted_gauss):
    path = tmp_path / "solver.json"
    fitted_gauss.save(path)
    again = load(path)
    for key in ("grid", "weights", "orders", "scales", "offsets"):
        np.testing.assert_array_equal(getattr(again, key), getattr(fitted_gauss, key))
    assert again.report == fitted_gauss.report and again.nfe_budget == fitted_gauss.nfe_budget
    x = SDE.prior_sample((20, 2), seed=8)
    a = sample(SDE, GAUSS.score(SDE), x_T=x, solver=fitted_gauss).x
    np.testing.assert_array_equal(sample(SDE, GAUSS.score(SDE), x_T=x, solver=again).x, a)
    with pytest.raises(ValueError, match="does not match the SDE"):
        load(path, sde=EDMSDE(sigma_max=40.0))
    with pytest.raises(ValueError, match="fitted for EDMSDE"):
        sample(VPSDE(), Gaussian([0.0, 0.0], [1.0, 1.0]).score(VPSDE()), x_T=x, solver=again)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a saved learned solver"):
        load(bad)


def test_sdekit_learn_is_lazy():
    import subprocess
    import sys

    code = "import sys, sdekit; assert 'sdekit.learn' not in sys.modules; sdekit.learn.fit; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_bad_input_names_the_argument():
    score = MIX.score(SDE)
    with pytest.raises(ValueError, match="nfe=1"):
        fit(SDE, score, 1, n=16)
    with pytest.raises(ValueError, match="x_T"):
        fit(SDE, score, 4, x_T=np.zeros((16, 3)))
    with pytest.raises(ValueError, match="x_T"):
        fit(SDE, score, 4, x_T=np.zeros(16))
    with pytest.raises(ValueError, match="teacher"):
        fit(SDE, score, 4, n=16, teacher=lambda x: x[:, :1], polish=False)
    with pytest.raises(TypeError, match="teacher"):
        fit(SDE, score, 4, n=16, teacher=3)
    with pytest.raises(ValueError, match="base"):
        fit(SDE, score, 4, n=16, base="dpmpp_2m")
    with pytest.raises(TypeError, match="sde"):
        fit("edm", score, 4, n=16)
    with pytest.raises(ValueError, match="mine"):
        fit(SDE, score, 4, n=16, mine=-1)
    with pytest.raises(ValueError, match="guard_oversample"):
        fit(SDE, score, 4, n=16, guard=32, guard_oversample=0, polish=False)
    with pytest.raises(ValueError, match="guard"):
        fit(SDE, score, 4, n=16, guard=-1, polish=False)

    def nan_score(x, t):
        out = score(x, t)
        out[0, 0] = np.nan
        return out

    with pytest.raises(ValueError, match="score returned non-finite"):
        fit(SDE, nan_score, 4, n=16, shape=(2,))


def test_compare_cli_runs_a_saved_learned_solver_at_its_budget(tmp_path, capsys):
    from sdekit.bench import make_density
    from sdekit.cli import main

    sde = EDMSDE()
    fitted = fit(sde, make_density("ring8").score(sde), 5, n=64, denoise=False, polish=False, guard=0)
    path = tmp_path / "ring8_nfe5.json"
    fitted.save(path)
    argv = ["compare", "--density", "ring8", "--sde", "edm", "--solvers", "ipndm", str(path), "--nfe", "5", "8",
            "--n-ode", "50", "--n", "200", "--csv", "", "--png", ""]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert fitted.name in out and "fitted for NFE 5; other budgets skipped" in out


def test_k_diffusion_sampler_runs_a_learned_solver_on_its_grid(fitted_gauss):
    torch = pytest.importorskip("torch")
    from sdekit.interop import k_diffusion_sampler

    score = GAUSS.score(SDE)

    def model(x, sigma):  # the denoiser D(x, sigma) = x + sigma^2 score
        s = sigma.numpy()
        return x + torch.from_numpy(s[:, None] ** 2 * score(x.numpy(), s))

    x = SDE.prior_sample((16, 2), seed=3)
    out = k_diffusion_sampler(fitted_gauss)(model, torch.from_numpy(x), torch.from_numpy(fitted_gauss.grid))
    ref = sample(SDE, score, x_T=x, solver=fitted_gauss, denoise=False).x
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fitted_solver_runs_in_torch(fitted_gauss, dtype):
    torch = pytest.importorskip("torch")
    x = SDE.prior_sample((32, 2), seed=6)
    ref = sample(SDE, GAUSS.score(SDE), x_T=x, solver=fitted_gauss).x
    xt = torch.as_tensor(x, dtype=getattr(torch, dtype))
    sol = sample(SDE, GAUSS.score(SDE), x_T=xt, solver=fitted_gauss, backend="torch")
    assert sol.x.dtype == xt.dtype and sol.nfe == fitted_gauss.nfe_budget
    tol = 1e-4 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(sol.x.numpy(), ref, rtol=0, atol=tol * np.max(np.abs(ref)))


def test_inclusion_probabilities_sum_to_n_and_are_proportional_below_one():
    from sdekit.learn.points import inclusion

    q = np.array([50.0, 1.0, 2.0, 3.0, 4.0, 30.0, 1.0, 1.0])
    p = inclusion(q, 4)
    assert p.sum() == pytest.approx(4.0, abs=1e-12) and np.all(p <= 1.0)
    assert p[0] == p[5] == 1.0  # taken surely: c q would exceed 1
    rest = np.array([1, 2, 3, 4, 6, 7])
    np.testing.assert_allclose(p[rest] / q[rest], p[1] / q[1], rtol=1e-12)  # proportional where below 1
    assert p[1] == pytest.approx(2.0 / 12.0, rel=1e-12)  # the 2 left over shared by q = 12
    with pytest.raises(ValueError, match="inclusion"):
        inclusion(q, 9)


def test_select_draws_n_distinct_rows_with_their_inclusion_probabilities():
    from sdekit.learn.points import select

    e = np.random.default_rng(0).pareto(1.5, 40)
    e[3] = 100.0  # one point the cheap teacher flags strongly: always taken
    counts = np.zeros(40)
    reps = 3000
    for seed in range(reps):
        rows, p = select(e, 8, seed)
        assert len(rows) == len(set(rows.tolist())) == 8
        counts[rows] += 1
    assert p[3] == 1.0 and counts[3] == reps and p.sum() == pytest.approx(8.0)
    sd = np.sqrt(p * (1 - p) / reps)
    assert np.all(np.abs(counts / reps - p) <= 5 * sd + 1e-12)  # each row with its probability (Madow)
    rows, p = select(np.zeros(40), 8, 1)  # no signal: uniform
    np.testing.assert_allclose(p, 0.2)


def test_dense_teacher_extend_equals_one_teacher_of_all_points():
    from sdekit.learn.teacher import DenseTeacher

    process = SDE.probability_flow(GAUSS.score(SDE))
    xa, xb = SDE.prior_sample((5, 2), seed=1), SDE.prior_sample((3, 2), seed=2)
    one = DenseTeacher(process, np.concatenate([xa, xb]), SDE.eps, density=GAUSS, levels=16)
    two = DenseTeacher(process, xa, SDE.eps, density=GAUSS, levels=16)
    two.extend(DenseTeacher(process, xb, SDE.eps, density=GAUSS, levels=16))
    np.testing.assert_allclose(two.values, one.values, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(two.x_hat(3.0, slice(4, 7)), one.x_hat(3.0, slice(4, 7)), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="same levels"):
        two.extend(DenseTeacher(process, xb, SDE.eps, density=GAUSS, levels=8))


def test_mining_adds_pool_points_and_a_candidate_only_with_a_pool():
    score = MIX.score(SDE)
    with_pool = fit(SDE, score, 5, n=64, denoise=False, seed=4, guard=0, max_evals=40, mine=16)
    rep = with_pool.report
    assert "mined" in rep["train"] and 0 <= rep["n_mined"] <= 16
    assert rep["n_train"] + rep["n_heldout"] == 64 + rep["n_mined"]
    none = fit(SDE, score, 5, n=64, denoise=False, seed=4, guard=0, max_evals=40, mine=0)
    assert "mined" not in none.report["train"] and none.report["n_mined"] == 0
    small = fit(SDE, score, 5, x_T=SDE.prior_sample((64, 2), seed=3), n=64, denoise=False, guard=0, max_evals=40)
    assert "mined" not in small.report["train"]  # the pool is the warm-up set: nothing to mine


def test_horvitz_thompson_estimate_is_exactly_unbiased_over_the_systematic_design():
    """For a fixed order of the units the sample depends only on the start ``u``; integrate over ``u`` exactly
    (the sample is constant between the fractional parts of the interval edges): the expected estimate is the pool
    mean, and each unit is taken with probability ``p_i``."""
    from sdekit.learn.points import ht_mean, inclusion, systematic

    rng = np.random.default_rng(7)
    m, n = 30, 7
    values = rng.pareto(1.2, m) ** 2  # heavy tailed, like squared endpoint errors with a few switches
    e = np.stack([rng.pareto(1.5, m), rng.pareto(1.5, m)])
    sure = np.zeros(m, dtype=bool)
    sure[[int(np.argmax(e[0])), int(np.argmax(e[1]))]] = True
    p = inclusion(1.0 / m + (e / e.sum(axis=1, keepdims=True)).mean(axis=0), n, sure)
    assert p.sum() == pytest.approx(n, abs=1e-12) and np.all(p[sure] == 1.0)
    for _ in range(5):
        order = rng.permutation(m)
        cuts = np.unique(np.concatenate([[0.0, 1.0], np.cumsum(p[order]) % 1.0]))
        expect, taken = 0.0, np.zeros(m)
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            rows = systematic(p, order, 0.5 * (lo + hi))
            assert len(set(rows.tolist())) == n
            expect += (hi - lo) * ht_mean(values[rows], p[rows], m)
            taken[rows] += hi - lo
        assert expect == pytest.approx(values.mean(), rel=1e-12)
        np.testing.assert_allclose(taken, p, rtol=0, atol=1e-12)


def test_guard_sample_holds_every_candidates_worst_points_and_estimates_the_pool_mean():
    from sdekit.learn.points import ht_mean, select

    rng = np.random.default_rng(3)
    m, n, sure = 400, 50, 4
    e = rng.pareto(1.5, (3, m))  # three candidates' disagreements
    worst = set(np.argsort(-e, axis=1)[:, :sure].ravel().tolist())
    values = e[1] ** 2  # the squared error of candidate 1
    est = []
    for seed in range(2000):
        rows, p = select(e, n, seed, sure=sure)
        assert len(set(rows.tolist())) == n and worst <= set(rows.tolist())
        est.append(ht_mean(values[rows], p[rows], m))
    est = np.array(est)
    assert abs(est.mean() - values.mean()) <= 5 * est.std() / np.sqrt(len(est))  # unbiased: within 5 standard errors
    with pytest.raises(ValueError, match="more than n"):
        select(e, 5, 0, sure=4)


def test_guard_without_oversampling_is_the_plain_rms():
    from sdekit.learn.guard import guard_errors

    process = SDE.probability_flow(MIX.score(SDE))
    cands = {k: LearnedSolver.from_base(SDE, "ipndm(afs=True)", make_grid(SDE, s, "time_uniform")) for k, s in
             (("base", 5), ("finer", 7))}  # fmt: skip
    x = SDE.prior_sample((64, 2), seed=9)

    def reference(y):
        return sdekit.solve(process, y, SDE.T, SDE.eps, "dopri5", rtol=1e-9, atol=1e-9).x

    errors, info = guard_errors(process, cands, sdekit.get_solver("ipndm(afs=True)"), 5, x, 64, seed=1, t_end=SDE.eps,
                                denoise=False, reference=reference)  # fmt: skip
    ref = reference(x)
    for k, s in cands.items():
        assert errors[k] == pytest.approx(_rms(sample(SDE, MIX.score(SDE), x_T=x, solver=s, denoise=False).x, ref))
    assert info == {"guard_pool": 64, "guard_points": 64, "guard_sure": 0}
    errors, info = guard_errors(process, cands, sdekit.get_solver("ipndm(afs=True)"), 5, x, 16, seed=1, t_end=SDE.eps,
                                denoise=False, reference=reference)  # fmt: skip
    assert info["guard_pool"] == 64 and info["guard_points"] == 16 and info["guard_sure"] >= 2
    assert errors["finer"] < errors["base"]
