"""Issue 23: ``compare``'s default backend for the SDE rows -- numba per cell where its fused kernel pays for what
it costs before it runs (the kernel states read once per table), numpy otherwise (:mod:`sdekit.bench._backend`)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("numba")

import sdekit  # noqa: E402
from sdekit.bench import compare  # noqa: E402
from sdekit.bench._backend import cell_backend, predicted_samples, sde_kernel_costs  # noqa: E402
from sdekit.bench._plan import Run, check_problem, plan_runs, with_sde_costs  # noqa: E402
from sdekit.solvers import get_solver  # noqa: E402

#: A row without a fused kernel: PC with a per-sample Langevin step size is a configuration the PC kernel does not
#: accept (every registered fixed-step SDE solver has a kernel since restart got one).
SLOW = "pc(step_size='per_sample')"


def _problem(backend=None, **kw):
    problem, specs = check_problem("ring8", "vp", ["euler_maruyama", SLOW, "heun"], [8, 16], "log_snr",
                                   backend, 0, 4000, 500, "mmd_cf", None, **kw)  # fmt: skip
    return problem, plan_runs(specs)[0]


@pytest.mark.parametrize(
    "error, resolution, n_max, want",
    [
        (0.1, 0.01, 10**6, 1000),  # resolved at once (1.5 resolutions = 0.015 < 0.1)
        (0.1, 0.1, 10**6, 4000),  # 1.5 * 0.1 * sqrt(1000 / n) < 0.1 first at n = 4000 (n = 2000: 0.106)
        (0.01, 0.1, 10**6, 256_000),  # (15)^2 = 225 times the first batch: the next doubling, 256 000
        (0.01, 0.1, 50_000, 50_000),  # capped at n_max
        (0.0, 0.1, 64_000, 64_000),  # an error at or below zero is never resolved
        (-0.3, 0.1, 64_000, 64_000),
        (math.nan, 0.1, 64_000, 64_000),
    ],
)
def test_predicted_samples_follow_the_doubling_rule(error, resolution, n_max, want):
    assert predicted_samples(1000, error, resolution, n_max, 1.5) == want


def test_cell_backend_weighs_the_kernel_cost_against_the_cell():
    problem, runs = _problem()
    assert problem.weigh_sde and problem.backend_for("ode") == "numpy"
    em, heun_ode = (next(r for r in runs if (r.name, r.process) == k)
                    for k in [("euler_maruyama", "sde"), ("heun", "ode")])  # fmt: skip
    slow = next(r for r in runs if r.process == "sde" and r.name not in ("euler_maruyama", "heun"))
    costs = {"euler_maruyama": 20.0}
    cold = dataclasses.replace(problem, sde_costs=costs)
    # ring8 (8 components, d = 2): 64 evaluations of 4000 samples ~ 0.6 s of numpy; of 4 million ~ 600 s
    assert cell_backend(cold, em, 4000, 64) == "numpy"
    assert cell_backend(cold, em, 4_000_000, 64) == "numba"
    compiled = dataclasses.replace(problem, sde_costs={"euler_maruyama": 0.0})
    assert cell_backend(compiled, em, 10, 8) == "numba"  # compiled in the process: always
    assert cell_backend(cold, slow, 4_000_000, 64) == "numpy"  # no fused kernel: numba's per-step loop is no faster
    assert cell_backend(cold, heun_ode, 4_000_000, 64) == "numpy"  # ODE rows: the problem's backend
    explicit, _ = _problem("numba")
    assert not explicit.weigh_sde and cell_backend(explicit, em, 10, 8) == "numba"


def test_kernel_states_are_read_once_per_table():
    problem, runs = _problem()
    # compile the Euler-Maruyama kernel in this process (a tiny solve), so its state is known
    sde = sdekit.VPSDE()
    score = sdekit.analytic.DENSITIES["ring8"][0]().score(sde)
    sdekit.sample(sde, score, n=8, steps=2, solver="euler_maruyama", backend="numba")
    costs, states = sde_kernel_costs(problem, runs)
    assert costs["euler_maruyama"] == 0.0 and states["euler_maruyama"] == "euler_maruyama compiled"
    (slow,) = [r.name for r in runs if r.process == "sde" and r.name not in ("euler_maruyama", "heun")]
    assert slow not in costs and states[slow].startswith("none")
    assert states["heun"].startswith("stochastic_heun ")  # the SDE row's kernel (the ODE row runs numpy)
    assert with_sde_costs(problem, runs).sde_costs == costs
    explicit, _ = _problem("numpy")
    assert with_sde_costs(explicit, runs) is explicit  # an explicit backend: nothing weighed
    gauss = dataclasses.replace(problem, density=sdekit.Gaussian([0.0, 1.0], [[1.0, 0.0], [0.0, 2.0]]))
    assert sde_kernel_costs(gauss, [Run("sra1", get_solver("sra1"), "sde")])[0].keys() == {"sra1"}


def _same_rows(a, b, skip=("wall_time",)):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for k in ra:
            if k not in skip:
                assert ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]), (k, ra, rb)


def test_default_compare_rows_say_their_backend_and_equal_an_explicit_run():
    sde = sdekit.VPSDE()
    score = sdekit.analytic.DENSITIES["ring8"][0]().score(sde)
    sdekit.sample(sde, score, n=8, steps=2, solver="euler_maruyama", backend="numba")  # compiled: runs numba
    opts = dict(nfe=[8, 16], n=300, n_max=1200)
    res = compare("ring8", "vp", ["euler_maruyama", SLOW], **opts)
    kernels = dict(res.info["sde_kernels"])
    assert kernels.pop("euler_maruyama") == "euler_maruyama compiled"
    assert list(kernels.values()) == ["none (no fused kernel)"]
    assert "numba where its kernel pays" in res.info["backend"]
    em = [r for r in res.rows if r["solver"] == "euler_maruyama"]
    rs = [r for r in res.rows if r["solver"] != "euler_maruyama"]
    assert {r["backend"] for r in em} == {"numba"} and {r["backend"] for r in rs} == {"numpy"}
    # the same cells, bit for bit, as a table run on that backend explicitly
    _same_rows(em, compare("ring8", "vp", ["euler_maruyama"], backend="numba", **opts).rows)
    _same_rows(rs, compare("ring8", "vp", [SLOW], backend="numpy", **opts).rows)


def test_numpy_and_numba_cells_agree_to_round_off():
    opts = dict(nfe=[8], n=400, n_max=400)
    a = compare("ring8", "vp", ["heun"], backend="numba", **opts).rows
    b = compare("ring8", "vp", ["heun"], backend="numpy", **opts).rows
    sde_a, sde_b = ([r for r in rows if r["process"] == "sde"] for rows in (a, b))
    assert sde_a[0]["backend"] == "numba" and sde_b[0]["backend"] == "numpy"
    np.testing.assert_allclose(sde_a[0]["error"], sde_b[0]["error"], rtol=1e-9)


def test_a_growing_cell_moves_to_the_kernel_once_it_pays():
    from sdekit.bench._compare import SampleMetric, run_cell

    problem, _ = _problem()
    problem = dataclasses.replace(problem, n=1000, n_max=16_000)
    run = Run("heun", get_solver("heun"), "sde")
    sde, dens = problem.sde, problem.density
    x_T = dens.sample(problem.n, seed=0, t=problem.T, sde=sde)
    process = sde.reverse(dens.score(sde))

    def cell(p):
        metric = SampleMetric(p.metric, p.metric.target(dens, sde, p.t_end, p.n, p.seed))
        return run_cell(p, run, process, 64, x_T, reference=None, sample_metric=metric, target_law=None)

    # a cost above what the first 1000 samples save (~0.1 s) but below what the predicted rest saves
    mixed = cell(dataclasses.replace(problem, sde_costs={"heun": 0.3}))
    numba = cell(dataclasses.replace(problem, sde_costs={"heun": 0.0}))
    numpy_ = cell(dataclasses.replace(problem, sde_costs={}))
    assert mixed["backend"] == "numpy, then numba" and mixed["n_samples"] > 1000
    assert numba["backend"] == "numba" and numpy_["backend"] == "numpy"
    assert mixed["n_samples"] == numba["n_samples"] == numpy_["n_samples"]
    np.testing.assert_allclose([mixed["error"], numba["error"]], numpy_["error"], rtol=1e-9)
