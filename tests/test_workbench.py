"""The workbench on learned scores and with peers: ``mmd_cf``, ``compare --model``, ``--peers``, the plot styles."""

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from sdekit import VPSDE, GaussianMixture
from sdekit.bench import compare, compare_model
from sdekit.bench._cfmmd import CFMMD, mixture_cf, symmetry_group
from sdekit.bench._plot import assign_styles
from sdekit.bench._problems import make_density
from sdekit.cli import main

sys.path.insert(0, str(Path(__file__).parent))  # the user model factories of _user_model.py


# ----------------------------------------------------------------------------------------------------------
# the estimator mmd_cf
# ----------------------------------------------------------------------------------------------------------
def _ring_target():
    sde = VPSDE()
    dens = make_density("ring8")
    return dens, sde, dens.mixture_params(sde.eps, sde)


def test_symmetry_group_of_the_ring_and_of_an_asymmetric_mixture():
    _, _, params = _ring_target()
    g = symmetry_group(params.means, params.covs, params.weights)
    assert g.shape == (16, 2, 2)  # the dihedral group of the regular octagon
    mix = GaussianMixture(weights=[0.3, 0.7], means=[[0.0, 0.0], [1.0, 2.0]], covs=[np.eye(2), np.eye(2)])
    p = mix.mixture_params(0.01, VPSDE())
    assert symmetry_group(p.means, p.covs, p.weights).shape[0] == 1


def test_mixture_cf_matches_monte_carlo():
    dens, sde, params = _ring_target()
    w = np.random.default_rng(1).standard_normal((5, 2))
    x = dens.sample(200_000, seed=3, t=sde.eps, sde=sde)
    mc = np.exp(1j * x @ w.T).mean(axis=0)
    np.testing.assert_allclose(mixture_cf(params, w), mc, atol=6e-3)


def test_mmd_cf_is_unbiased_with_the_stated_null_sd():
    """On exact samples the estimate has mean 0 and the closed-form standard deviation (200 repeats)."""
    dens, sde, params = _ring_target()
    est = CFMMD(params, 0.2236, n_frequencies=16)
    n = 300
    vals = np.array([est.mmd2(est.sums(dens.sample(n, seed=s, t=sde.eps, sde=sde)), n) for s in range(200)])
    sd = est.null_sd(n)
    assert abs(vals.mean()) < 4 * sd / math.sqrt(vals.size)
    assert 0.8 < vals.std(ddof=1) / sd < 1.2


def test_mmd_cf_is_consistent_for_another_law():
    """On samples of a different (but symmetric) law the estimate converges to the closed-form MMD^2."""
    dens, sde, params = _ring_target()
    est = CFMMD(params, 0.2236, n_frequencies=16)
    other = make_density("ring8")
    q = other.mixture_params(0.3, sde)  # a wider law with the same symmetries
    orbit = np.einsum("gad,ja->jgd", est.group, est.w)
    exact = float(np.mean(np.abs(mixture_cf(q, orbit).mean(axis=1) - est.phi) ** 2))
    n = 100_000
    x = other.sample(n, seed=5, t=0.3, sde=sde)
    got = est.mmd2(est.sums(x), n)
    assert exact > 50 * est.null_sd(n)
    assert abs(got - exact) < 0.05 * exact
    # sums add over batches: two halves give the estimate of the whole
    both = est.sums(x[: n // 2]) + est.sums(x[n // 2 :])
    assert est.mmd2(both, n) == pytest.approx(got, rel=1e-12)


def test_default_compare_cells_grow_until_resolved():
    res = compare("ring8", "vp", ["euler_maruyama"], [8, 16], n=500, n_max=64_000)
    rows = [r for r in res.rows if r["process"] == "sde"]
    assert all(r["metric"] == "mmd_cf" for r in rows)
    assert all(r["error"] > r["resolution"] for r in rows)
    assert all(r["n_samples"] >= 500 for r in rows)
    assert "frequency domain" in res.report() and "~" not in res.table()


def test_sde_rows_without_a_compiled_kernel_stop_at_half_the_cap():
    # every registered fixed-step SDE solver has a fused kernel; PC with a per-sample Langevin step size is a
    # configuration the PC kernel does not accept (it runs the Python step loop)
    slow = "pc(step_size='per_sample')"
    res = compare("ring8", "vp", ["euler_maruyama", slow], [4, 8], n=300, n_max=300, sde_nfe_max=8)
    budgets = {(r["solver"], r["process"]): [] for r in res.rows}
    for r in res.rows:
        budgets[(r["solver"], r["process"])].append(r["nfe_budget"])
    assert budgets[("euler_maruyama", "sde")] == [4, 8]  # a fused numba kernel: the whole cap
    (key,) = [k for k in budgets if k[0] != "euler_maruyama"]
    assert budgets[key] == [4]  # the Python step loop: half of it
    assert "without a compiled SDE kernel" in res.report() and key[0] in res.report()


# ----------------------------------------------------------------------------------------------------------
# --model
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_result(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("digits")
    paths = dict(png_path=out / "wp.png", samples_path=out / "samples.png", csv_path=out / "rows.csv")
    res = compare_model("digits", ["heun", "euler_maruyama"], [5, 9], n=40, n_ode=6, grid_nfe=9, **paths)
    return res, out


def test_compare_model_digits(digits_result):
    res, out = digits_result
    keys = {(r["solver"], r["process"]) for r in res.rows}
    assert keys == {("heun", "ode"), ("heun", "sde"), ("euler_maruyama", "sde")}
    for r in res.rows:
        assert r["nfe"] <= r["nfe_budget"] and math.isfinite(r["fd"]) and r["fd"] > 0
    ode = [r for r in res.rows if r["process"] == "ode"]
    assert all(r["metric"] == "ode_rms" and r["error"] > res.info["reference_error"] for r in ode)
    assert ode[1]["error"] < ode[0]["error"]  # more NFE, closer to the reference
    floor = res.info["noise_floor"]
    assert 0.5 < floor.mean < 60 and floor.std > 0  # FD is biased upwards at small n (40 here)
    text = res.report()
    assert "dopri5 at rtol=atol=1e-06" in text and "floor" in text and "fd" in text
    assert (out / "wp.png").stat().st_size > 1000 and (out / "samples.png").stat().st_size > 1000
    assert len(list(csv.DictReader(open(out / "rows.csv")))) == 6


def test_compare_model_module_factory(tmp_path, capsys):
    rc = main(["compare", "--model", "_user_model:with_metric", "--solvers", "heun", "dpmpp_2m", "--nfe", "5", "9",
               "--n", "50", "--n-ode", "10", "--csv", str(tmp_path / "r.csv"), "--png", str(tmp_path / "p.png"),
               "--samples-png", ""])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "_user_model:with_metric" in out and "ODE error against the reference" in out
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert {r["solver"] for r in rows} == {"heun", "dpmpp_2m"} and all(float(r["fd"]) >= 0 for r in rows)


@pytest.mark.parametrize(
    "model, fragment",
    [
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("_user_model:missing", "has no callable 'missing'"),
        ("_user_model:not_a_tuple", "must return (sde, score, shape)"),
        ("_user_model:bad_sde", "must be an sdekit LinearSDE"),
        ("justaname", "give 'digits' or 'module:factory'"),
    ],
)
def test_compare_model_bad_input(model, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--model", model, "--csv", "", "--png", "", "--samples-png", ""])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()[-1]) > 20


def test_output_paths_checked_before_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--model", "digits", "--samples-png", str(tmp_path / "nowhere" / "s.png")])
    assert "--samples-png" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--model", "digits", "--density", "ring8"])
    assert "not with --model" in capsys.readouterr().err


def test_peers_without_the_packages(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if diffusers were not installed
    assert main(["compare", "--peers", "--csv", "", "--png", ""]) == 2
    err = capsys.readouterr().err
    # the hint names what installs each peer (issue 24: the bench extra installs neither torch nor k-diffusion)
    assert "--peers needs diffusers" in err and "pip install 'sdekit[torch,bench]'" in err and "k-diffusion" in err


# ----------------------------------------------------------------------------------------------------------
# --peers
# ----------------------------------------------------------------------------------------------------------
def test_peer_rows_on_an_analytic_density_equal_the_same_methods():
    """Same grid, start points, end: k-diffusion's Heun is sdekit's on the EDM SDE; DPM-Solver++(2M) of k-diffusion
    and of diffusers (VP and EDM schedulers) agree to float32; every peer row is counted and accounted."""
    pytest.importorskip("diffusers")
    res = compare("gaussian", "edm", ["heun", "dpmpp_2m"], [8, 16], grid="karras", n=200, n_ode=50, peers=True,
                  n_max=200)  # fmt: skip
    err = {(r["solver"], r["process"], r["nfe_budget"]): r for r in res.rows}
    for b in (8, 16):
        assert err[("kd heun", "ode", b)]["error"] == pytest.approx(err[("heun", "ode", b)]["error"], rel=1e-8)
        assert err[("kd heun", "ode", b)]["nfe"] == err[("heun", "ode", b)]["nfe"] == b
        # the same methods on the same levels (diffusers' VP levels carry its float32 alphas_cumprod)
        kd = err[("kd dpmpp_2m", "ode", b)]["error"]
        if b >= 16:  # below, sdekit's dpmpp_2m (like diffusers') takes its last step at first order
            assert err[("dpmpp_2m", "ode", b)]["error"] == pytest.approx(kd, rel=1e-8)
        assert err[("diffusers DPMSolver++ 2M", "ode", b)]["error"] == pytest.approx(kd, rel=2e-3)
        kd = err[("kd euler", "ode", b)]["error"]
        assert err[("diffusers EDMEuler", "ode", b)]["error"] == pytest.approx(kd, rel=2e-3)
    peers = [r for r in res.rows if r["peer"]]
    assert {r["peer"] for r in peers} == {"k-diffusion", "diffusers"}
    assert all(0 < r["nfe"] <= r["nfe_budget"] and math.isfinite(r["error"]) for r in peers)
    assert "k-diffusion 0." in res.report() and "diffusers" in res.report()


def test_peers_on_the_digits_model(digits_result):
    pytest.importorskip("diffusers")
    res = compare_model("digits", ["heun"], [9], n=20, n_ode=4, peers=True)
    rows = {(r["solver"], r["process"]): r for r in res.rows}
    # one counted evaluation at sigma_min ends every run: kd heun (4 Heun steps + Euler to 0) is sdekit's heun
    # (4 steps + the final denoising step)
    kd, mine = rows[("kd heun", "ode")], rows[("heun", "ode")]
    assert kd["nfe"] == mine["nfe"] == 9
    assert kd["error"] == pytest.approx(mine["error"], rel=1e-3, abs=1e-5)
    deis = rows[("diffusers DEIS 2", "ode")]  # no final_sigmas_type: its end at sigma_min plus one denoising step
    assert deis["nfe"] == 9 and math.isfinite(deis["fd"])
    assert all(math.isfinite(r["fd"]) for r in res.rows)


# ----------------------------------------------------------------------------------------------------------
# plot styles
# ----------------------------------------------------------------------------------------------------------
def test_plot_styles_are_distinct_and_grouped():
    from sdekit.solvers import SOLVERS

    keys = [(name, "") for name in SOLVERS] + [(f"kd {i}", "k-diffusion") for i in range(8)]
    keys += [(f"diffusers {i}", "diffusers") for i in range(8)]
    styles = assign_styles(keys)
    pairs = {(tuple(np.round(s["color"], 6)), s["marker"]) for s in styles.values()}
    assert len(pairs) == len(keys)
    assert all(s["linestyle"] == "--" for k, s in styles.items() if k[1])
    assert all(s["linestyle"] == "-" for k, s in styles.items() if not k[1])
    fams = [s["family"] for s in styles.values()]
    assert fams == sorted(fams, key=fams.index)  # each family's lines are contiguous
