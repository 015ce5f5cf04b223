"""Issue 23: the few-step solvers on the fused affine multistep kernel, ``backend="auto"`` weighing the compilation
(``stats["backend_reason"]``), numba's disk-cache check, and ``sdekit warmup``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

import sdekit  # noqa: E402
from sdekit.analytic import Gaussian, GaussianMixture  # noqa: E402
from sdekit.backends import auto as auto_backend  # noqa: E402
from sdekit.backends.job import Job  # noqa: E402
from sdekit.backends.numba import compile_cost, find_kernel  # noqa: E402
from sdekit.backends.numba.kernels import AFFINE_MULTISTEP, NO_FUSED_KERNEL  # noqa: E402
from sdekit.backends.registry import get_backend  # noqa: E402
from sdekit.cli import main  # noqa: E402
from sdekit.solvers import SOLVERS, get_solver  # noqa: E402
from sdekit.solvers.afs import AnalyticFirstStep  # noqa: E402

SDE = sdekit.VPSDE()
MIX = GaussianMixture(
    [0.2, 0.5, 0.3],
    [[2.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, -1.0, 3.0]],
    [[0.1, 0.5, 1.0], [1.0, 0.2, 0.4], [0.3, 0.3, 0.3]],
)
FULL = Gaussian([0.5, -1.0, 2.0], [[1.0, 0.3, 0.0], [0.3, 0.8, 0.1], [0.0, 0.1, 0.5]])

# (solver, process, options): every few-step solver and option that changes the tables
CASES = [
    ("ipndm", "ode", {}),
    ("ipndm", "ode", {"order": 2, "afs": True, "lower_order_final": True}),
    ("ipndm_v", "ode", {}),
    ("ipndm_v", "ode", {"order": 3, "afs": True}),
    ("deis", "ode", {}),
    ("deis", "ode", {"variant": "rhoab", "order": 4}),
    ("deis", "ode", {"variant": "logrho", "afs": True, "lower_order_final": True}),
    ("unipc", "ode", {}),
    ("unipc", "ode", {"variant": "bh1", "prediction": "noise", "disable_corrector": [2]}),
    ("unipc", "ode", {"order": 4, "corrector": False, "lower_order_final": False}),
    ("sa_solver", "sde", {}),
    ("sa_solver", "ode", {}),
    ("sa_solver", "sde", {"tau_interval": (0.5, 5.0), "predictor_order": 2, "corrector_order": 4}),
    ("sa_solver", "sde", {"predictor_order": 4, "corrector_order": 1, "tau": 0.5, "modified": False}),
]
WRAPPED = ["dpmpp_3m", "dpmpp_pc", "unipc", "ipndm", "deis"]  # AnalyticFirstStep around these


def _close(a, b, rtol=1e-12):
    scale = np.max(np.abs(b))
    err = np.max(np.abs(a - b))
    assert err <= rtol * scale, f"max abs difference {err:.3g} > {rtol:g} x {scale:.3g}"


@pytest.mark.parametrize("steps", [6, 20])  # 6 < 15: the lower-order final steps are taken
@pytest.mark.parametrize("density", [MIX, FULL], ids=["mixture", "full-cov"])
@pytest.mark.parametrize("solver,process,options", CASES)
def test_fewstep_fused_matches_numpy(solver, process, options, density, steps):
    kw = dict(n=64, steps=steps, solver=solver, process=process, seed=7, **options)
    a = sdekit.sample(SDE, density.score(SDE), backend="numba", **kw)
    b = sdekit.sample(SDE, density.score(SDE), backend="numpy", **kw)
    assert a.stats["kernel"] == "fused affine_multistep"
    assert a.nfe == b.nfe
    _close(a.x, b.x)


@pytest.mark.parametrize("sde", [sdekit.VESDE(), sdekit.EDMSDE(), sdekit.SubVPSDE()], ids=repr)
def test_fewstep_fused_matches_numpy_on_other_sdes(sde):
    score = MIX.score(sde)
    for solver, process, options in CASES[::3]:
        kw = dict(n=32, steps=10, solver=solver, process=process, seed=3, **options)
        a = sdekit.sample(sde, score, backend="numba", **kw)
        b = sdekit.sample(sde, score, backend="numpy", **kw)
        assert a.stats["kernel"] == "fused affine_multistep", solver
        _close(a.x, b.x, 1e-11)


@pytest.mark.parametrize("inner", WRAPPED)
def test_analytic_first_step_runs_the_kernel_without_a_first_score_call(inner):
    solver = AnalyticFirstStep(inner)
    assert solver.has_affine_coefficients and find_kernel(solver, "ode") is AFFINE_MULTISTEP
    table = solver.affine_coefficients(SDE, sdekit.grids.make_grid(SDE, 8, "log_snr"))
    assert table.ev[0, 1] == 0.0  # no score on the first step
    kw = dict(n=64, steps=8, solver=solver, seed=5)
    a = sdekit.sample(SDE, MIX.score(SDE), backend="numba", **kw)
    b = sdekit.sample(SDE, MIX.score(SDE), backend="numpy", **kw)
    assert a.stats["kernel"] == "fused affine_multistep" and a.nfe == b.nfe == 8  # 8 steps - 1 + denoise
    _close(a.x, b.x)


def test_configurations_the_kernel_does_not_cover_run_per_step():
    # unipc above order 4 (its corrector combines order + 1 evaluations, more than the kernel's ring) and
    # AnalyticFirstStep around a solver without affine coefficients
    for solver in (get_solver("unipc", order=5), AnalyticFirstStep("euler")):
        assert not solver.has_affine_coefficients
        kw = dict(n=16, steps=8, solver=solver, seed=1)
        a = sdekit.sample(SDE, MIX.score(SDE), backend="numba", **kw)
        b = sdekit.sample(SDE, MIX.score(SDE), backend="numpy", **kw)
        assert a.stats["kernel"] == "per-step"
        _close(a.x, b.x)
    with pytest.raises(ValueError, match="order"):
        get_solver("unipc", order=5).affine_coefficients(SDE, np.linspace(1.0, 1e-3, 5))
    with pytest.raises(TypeError, match="euler"):
        AnalyticFirstStep("euler").affine_coefficients(SDE, np.linspace(1.0, 1e-3, 5))


def test_sa_solver_tables_follow_the_process():
    grid = sdekit.grids.make_grid(SDE, 6, "log_snr")
    s = get_solver("sa_solver")
    sde_tab, ode_tab = s.affine_coefficients(SDE, grid), s.affine_coefficients(SDE, grid, stochastic=False)
    assert np.all(sde_tab.counts[:, 2] == 1) and np.all(ode_tab.counts[:, 2] == 0)
    assert np.all(ode_tab.pred[:, 1] == 0.0) and np.all(ode_tab.corr[:, 1] == 0.0)
    assert np.all(sde_tab.pred[:, 1] > 0.0) and np.all(sde_tab.corr[1:, 1] > 0.0)  # the corrector's z_{k-1} again


def _kinds(solver):
    return [k for k, on in (("sde", solver.is_sde), ("ode", solver.is_ode)) if on]


@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_registered_solver_runs_fused_on_auto_or_says_why_not(name):
    # on an analytic score, backend="auto" runs a fused kernel once it is compiled in the process (the numba call
    # compiles it); a solver without one is listed with the reason in NO_FUSED_KERNEL and runs on numpy
    solver = get_solver(name)
    score = MIX.score(SDE)
    for kind in _kinds(solver):
        kw = dict(n=8, solver=name, process=kind, seed=2)
        kw.update(rtol=5e-2) if solver.adaptive else kw.update(steps=4)
        if name in NO_FUSED_KERNEL:
            auto = sdekit.sample(SDE, score, **kw)
            assert auto.stats["backend"] == "numpy" and "no fused kernel" in auto.stats["backend_reason"]
            continue
        forced = sdekit.sample(SDE, score, backend="numba", **kw)
        assert forced.stats["kernel"].startswith("fused"), (name, kind, forced.stats["kernel"])
        auto = sdekit.sample(SDE, score, **kw)
        assert auto.stats["backend"] == "numba" and auto.stats["kernel"] == forced.stats["kernel"]
        assert "compiled in this process" in auto.stats["backend_reason"]
        np.testing.assert_array_equal(auto.x, forced.x)
    assert set(NO_FUSED_KERNEL) <= set(SOLVERS) and all(NO_FUSED_KERNEL.values())


def _job(n, steps=50, solver="euler_maruyama", kind="sde", density=MIX):
    proc = SDE.reverse(density.score(SDE)) if kind == "sde" else SDE.probability_flow(density.score(SDE))
    grid = np.linspace(SDE.T, SDE.eps, steps + 1)
    return Job(proc, get_solver(solver), np.zeros((n, density.dim)), grid, 0, np.arange(n), None, False, True,
               kind == "sde")  # fmt: skip


@pytest.mark.parametrize(
    "state,n,want",
    [
        ("compiled", 10, "numba"),  # compiled in the process: always
        ("cached", 10, "numpy"),  # a load costs more than a tiny job saves
        ("cached", 200_000, "numba"),
        ("cold", 20_000, "numpy"),  # ~2 s of numpy against ~20 s of compilation
        ("cold", 2_000_000, "numba"),  # ~200 s of numpy: the compilation pays
    ],
)
def test_auto_weighs_the_kernels_state_against_the_job(monkeypatch, state, n, want):
    seconds = {"compiled": 0.0, "cached": 0.4, "cold": 20.0}[state]
    monkeypatch.setattr(compile_cost, "readiness", lambda job: compile_cost.Readiness("k", state, seconds))
    job = _job(n)
    name, new_job, reason = auto_backend.settle("numba", job, get_backend("numba"))
    assert name == want and reason.startswith("auto: ")
    assert (new_job is job) == (want == "numba")  # numpy's job gets the numpy backend's score check
    assert ("compiled" in reason) if state == "compiled" else ("numpy estimate" in reason)


def test_auto_without_a_fused_kernel_runs_numpy(monkeypatch):
    monkeypatch.setattr(compile_cost, "readiness", lambda job: None)
    name, _, reason = auto_backend.settle("numba", _job(2_000_000), get_backend("numba"))
    assert name == "numpy" and "no fused kernel" in reason


def test_numpy_estimate_grows_with_the_job():
    small, big = auto_backend.numpy_seconds(_job(2000)), auto_backend.numpy_seconds(_job(200_000))
    assert 0.0 < small < big and big / small > 50
    assert auto_backend.numpy_seconds(_job(2000, steps=200)) > 3.5 * small
    assert auto_backend.estimated_evaluations(_job(10, steps=20, solver="heun")) == 40  # 2 per step, no denoise


def test_explicit_backends_say_so_and_auto_gives_numbers_to_round_off():
    score = MIX.score(SDE)
    kw = dict(n=64, steps=10, solver="dpmpp_2m", seed=4)
    forced = sdekit.sample(SDE, score, backend="numba", **kw)
    assert forced.stats["backend_reason"] == "requested"
    ref = sdekit.sample(SDE, score, backend="numpy", **kw)
    _close(forced.x, ref.x)


def _run(code, env=None):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=os.getcwd(),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_small_auto_job_runs_numpy_without_importing_numba():
    line = _run(
        """
        import sys, sdekit
        from sdekit.analytic import Gaussian
        sde = sdekit.VPSDE()
        sol = sdekit.sample(sde, Gaussian([0.0, 1.0], 0.5).score(sde), n=100, steps=10)
        print(sol.stats["backend"], "numba" in sys.modules, sol.stats["backend_reason"])
        """
    )
    assert line.startswith("numpy False auto: small job")


def test_disk_cache_check_sees_a_cached_specialisation(tmp_path):
    # a fresh process: not cached, compiled after the call; the next process finds it on disk, not compiled
    (tmp_path / "tiny_kernel.py").write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return 2 * x\n"
    )
    code = f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from tiny_kernel import f
        from sdekit.backends.numba.compile_cost import cache_dir, compiled_in_process, disk_cached
        before = (disk_cached(f), compiled_in_process(f))
        f(1.0)
        print(before, (disk_cached(f), compiled_in_process(f)), cache_dir(f) is not None)
        """
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    assert _run(code, env) == "(False, False) (True, True) True"
    assert _run(code, env) == "(True, False) (True, True) True"


def test_warmup_compiles_and_reports(capsys):
    assert main(["warmup", "--solvers", "dpmpp_2m,ipndm", "dpm_adaptive"]) == 0
    out = capsys.readouterr().out
    assert "fused affine_multistep" in out and "1 kernels in" in out  # ipndm shares dpmpp_2m's kernel
    assert "dpm_adaptive" in out and "no fused kernel" in out
    with pytest.raises(SystemExit):
        main(["warmup", "--solvers", "nope"])
