"""Extending sdekit from outside the package: a density family, a workbench metric (and a solver, below).

Each toy is registered the way a user would (no edit of sdekit's sources) and then run through the public entry
points: ``sdekit.sample`` on the numpy and numba backends, ``sdekit.metrics``, ``bench.exact_law``,
``bench.compare`` and the command line's choices. The recipes these follow are in the docstrings of
:mod:`sdekit.analytic.base` (density) and :mod:`sdekit.bench._metrics` (metric).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sdekit
from sdekit import bench, metrics
from sdekit.analytic import DENSITIES, AnalyticDensity, GaussianMixture, MixtureParams, register_density
from sdekit.cli import build_parser


# ----------------------------------------------------------------------------------------------------------
# a toy density family: a Gaussian mixture rotated by an angle and shifted, given through mixture_params only
# ----------------------------------------------------------------------------------------------------------
def _rotation(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


class RotatedMixture(AnalyticDensity):
    """``Q y + b`` for ``y`` of a 2-D Gaussian mixture: components ``N(Q mu_k + b, Q Sigma_k Q^T)``.

    Only ``dim`` and ``mixture_params`` are written here; the score, logpdf, samples, moments (and the numba
    backend's fused score) come from the base class.
    """

    dim = 2

    def __init__(self, weights, means, covs, angle, shift):
        q = _rotation(angle)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64) @ q.T + np.asarray(shift, dtype=np.float64)
        c = q @ np.asarray(covs, dtype=np.float64) @ q.T
        self.covs = 0.5 * (c + np.swapaxes(c, -1, -2))

    def mixture_params(self, t=0.0, sde=None):
        return MixtureParams.at(t, sde, weights=self.weights, means=self.means, covs=self.covs)

    def equivalent(self):
        """The same law as an sdekit.GaussianMixture."""
        return GaussianMixture(self.weights, self.means, self.covs)


class RotatedGaussian(RotatedMixture):
    """One component: ``p_t`` is Gaussian, so the class declares an exact flow (and bench uses exact laws)."""

    exact_flow = True

    def __init__(self, mean, cov, angle, shift):
        super().__init__([1.0], [mean], [cov], angle, shift)

    def equivalent(self):
        return sdekit.Gaussian(self.means[0], self.covs[0])


def toy_mixture():
    return RotatedMixture(
        [0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [np.diag([0.3, 0.05]), np.diag([0.1, 0.4])], 0.6, [0.2, -0.1]
    )


def toy_gaussian():
    return RotatedGaussian([0.5, -0.3], np.diag([0.8, 0.2]), -0.4, [0.1, 0.3])


# ----------------------------------------------------------------------------------------------------------
# a toy workbench metric: the distance between the sample mean and the exact mean of p(t_end)
# ----------------------------------------------------------------------------------------------------------
def build_mean_error(target):
    mean, _ = target.density.mean_cov(target.t_end, target.sde)
    return lambda x: float(np.linalg.norm(np.asarray(x).mean(axis=0) - mean))


@pytest.fixture(scope="module")
def registered():
    """Register the toy density and metric by name for the module's tests; remove them afterwards."""
    register_density("toy_rotated", toy_mixture, "a rotated, shifted 2-component mixture (test_extending)")
    record = bench.register_metric(
        "toy_mean_error", build_mean_error, description="|sample mean - exact mean|", floor_repeats=3
    )
    yield record
    DENSITIES.pop("toy_rotated")
    bench.COMPARE_METRICS.pop("toy_mean_error")


# ----------------------------------------------------------------------------------------------------------
# the density
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [toy_mixture, toy_gaussian])
def test_toy_density_is_its_equivalent_mixture(make):
    toy = make()
    ref = toy.equivalent()
    sde = sdekit.VPSDE()
    x = ref.sample(64, seed=2, t=0.3, sde=sde)
    ts = np.linspace(0.05, 1.0, 64)
    for t in (0.3, ts):
        np.testing.assert_allclose(toy.score(sde)(x, t), ref.score(sde)(x, t), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(toy.logpdf(x, t, sde), ref.logpdf(x, t, sde), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(toy.score(sde).divergence(x, t), ref.score(sde).divergence(x, t), rtol=1e-10)
    for a, b in zip(toy.mean_cov(0.3, sde), ref.mean_cov(0.3, sde)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    samples = toy.sample(500, seed=4, t=0.3, sde=sde)
    np.testing.assert_allclose(samples, ref.sample(500, seed=4, t=0.3, sde=sde), rtol=1e-12, atol=1e-12)
    # the closed-form MMD of sdekit.metrics reads mixture_params: the same number for both
    h = metrics.component_bandwidth(toy, 0.3, sde)
    assert h == pytest.approx(metrics.component_bandwidth(ref, 0.3, sde), rel=1e-12)
    assert metrics.mmd_to_mixture(x, toy, h, t=0.3, sde=sde) == pytest.approx(
        metrics.mmd_to_mixture(x, ref, h, t=0.3, sde=sde), rel=1e-10, abs=1e-14
    )


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_toy_density_samples_on_both_backends(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    toy, sde = toy_mixture(), sdekit.SubVPSDE()
    ref = toy.equivalent()
    kw = dict(n=256, solver="euler_maruyama", steps=40, seed=5, backend=backend)
    sol = sdekit.sample(sde, toy.score(sde), **kw)
    expected = sdekit.sample(sde, ref.score(sde), **kw)
    np.testing.assert_allclose(sol.x, expected.x, rtol=1e-10, atol=1e-10)
    if backend == "numba":
        # the fused kernels ran the toy's score from its mixture_params (no Python score call per step) ...
        assert sol.stats.get("kernel", "").startswith("fused")
        # ... and gave the numpy backend's samples
        on_numpy = sdekit.sample(sde, toy.score(sde), **{**kw, "backend": "numpy"})
        np.testing.assert_allclose(sol.x, on_numpy.x, rtol=1e-9, atol=1e-9)


def test_toy_gaussian_exact_flow_and_exact_law():
    toy, sde = toy_gaussian(), sdekit.VPSDE()
    ref = toy.equivalent()
    x = ref.sample(16, seed=1, t=0.9, sde=sde)
    np.testing.assert_allclose(toy.flow(x, 0.9, 0.1, sde), ref.flow(x, 0.9, 0.1, sde), rtol=1e-12, atol=1e-12)
    a = bench.exact_law("heun", sde, toy, 12, process="sde")
    b = bench.exact_law("heun", sde, ref, 12, process="sde")
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-12)
    # a mixture does not declare a Gaussian law: no flow, no exact law
    with pytest.raises(TypeError, match="exact flow"):
        toy_mixture().flow(x, 0.9, 0.1, sde)
    with pytest.raises(TypeError, match="Gaussian"):
        bench.exact_law("heun", sde, toy_mixture(), 12)


# ----------------------------------------------------------------------------------------------------------
# the metric and the density in compare and on the command line
# ----------------------------------------------------------------------------------------------------------
def test_toy_metric_and_density_in_compare(registered):
    sde, seed, n, nfe = sdekit.VPSDE(), 3, 200, (8, 16)
    kw = dict(grid="uniform", seed=seed, n=n, n_ode=20, metric="toy_mean_error")
    res = bench.compare("toy_rotated", sde, ["euler_maruyama", "heun"], nfe, **kw)
    assert res.info["sde_metric"] == "toy_mean_error" and res.info["density"] == "toy_rotated"
    assert res.info["noise_floor"].repeats == 3
    # each SDE row is the toy metric applied to a direct solve from the same exact start points
    toy = toy_mixture()
    x_T = toy.sample(n, seed=seed, t=sde.T, sde=sde)
    fn = build_mean_error(registered.target(toy, sde, sde.eps, n, seed))
    sde_rows = [r for r in res.rows if r["process"] == "sde"]
    assert {(r["solver"], r["nfe_budget"]) for r in sde_rows} == {
        (s, b) for s in ("euler_maruyama", "heun") for b in nfe
    }
    for r in sde_rows:
        assert r["metric"] == "toy_mean_error" and r["floor"] == res.info["noise_floor"].mean
        ts = sdekit.grids.make_grid(sde, r["steps"], "uniform", sde.eps)
        sol = sdekit.solve(sde.reverse(toy.score(sde)), x_T, sde.T, sde.eps, r["solver"], grid=ts, seed=seed)
        assert r["error"] == pytest.approx(fn(sol.x), rel=1e-12, abs=1e-15)
    # the ODE rows are measured against the DOP853 reference (the toy mixture declares no exact flow)
    assert res.info["ode_reference_short"] == "DOP853 reference"
    assert all(r["metric"] == "ode_rms" and r["error"] > 0 for r in res.rows if r["process"] == "ode")


def test_toy_gaussian_in_compare_uses_exact_laws():
    toy = toy_gaussian()
    kw = dict(solvers=["euler_maruyama", "euler"], nfe=(8, 16, 32), n=16, n_ode=8)
    res = bench.compare(toy, "vp", **kw)
    assert res.info["ode_reference_short"] == "exact flow"
    assert {r["metric"] for r in res.rows} == {"w2_exact", "ode_rms"}
    # the same numbers as the equivalent sdekit.Gaussian (exact flow, exact output laws: no Monte Carlo noise)
    ref = bench.compare(toy.equivalent(), "vp", **kw)
    for a, b in zip(res.rows, ref.rows):
        assert (a["solver"], a["process"], a["nfe_budget"], a["metric"]) == (
            b["solver"],
            b["process"],
            b["nfe_budget"],
            b["metric"],
        )
        assert a["error"] == pytest.approx(b["error"], rel=1e-8)
    assert res.orders[("euler", "ode")] == pytest.approx(ref.orders[("euler", "ode")], rel=1e-6)


def test_registered_names_are_cli_choices(registered):
    args = build_parser().parse_args(["compare", "--density", "toy_rotated", "--metric", "toy_mean_error"])
    assert (args.density, args.metric) == ("toy_rotated", "toy_mean_error")
    with pytest.raises(ValueError, match="registered twice"):
        bench.register_metric("toy_mean_error", build_mean_error)
    with pytest.raises(ValueError, match="registered twice"):
        register_density("toy_rotated", toy_mixture)


# a toy solver registered from outside: the explicit midpoint rule, and a preset of the exp-PC engine
# ----------------------------------------------------------------------------------------------------------
class ToyMidpoint(sdekit.solvers.FixedStepSolver):
    """The explicit midpoint rule for ODEs: ``x + h f(x + h/2 f(x, t), t + h/2)``, order 2, 2 NFE per step."""

    name = "toy_midpoint"
    order = 2
    is_ode = True
    nfe_per_step = 2

    def step(self, process, x, t, t_next, z, ctx):
        h = t_next - t
        return x + h * process.drift(x + (0.5 * h) * process.drift(x, t), t + 0.5 * h)


@pytest.fixture
def toy_solvers():
    """Register the toys the way a user would, and take them out again (the registry is global)."""
    sdekit.solvers.register(ToyMidpoint)
    sdekit.solvers.register_preset("toy_pc2", "dpmpp_pc", order=2, corrector=True)
    yield
    for name in ("toy_midpoint", "toy_pc2"):
        sdekit.SOLVERS.pop(name)


def test_toy_solver_runs_everywhere_with_its_declared_order(toy_solvers):
    sde = sdekit.VPSDE()
    gauss = toy_gaussian().equivalent()
    score = gauss.score(sde)
    x_T = gauss.sample(64, seed=1, t=sde.T, sde=sde)
    exact = gauss.flow(x_T, sde.T, sde.eps, sde)
    errs = []
    for steps in (16, 32, 64):
        sol = sdekit.sample(sde, score, x_T=x_T, solver="toy_midpoint", steps=steps, denoise=False)
        assert sol.nfe == 2 * steps
        errs.append(float(np.max(np.abs(sol.x - exact))))
    assert bench.fit_order([16, 32, 64], errs, last=None) == pytest.approx(2.0, abs=0.2)
    # numba (a solver without a kernel runs its own step with numba noise) and torch give the same numbers
    a = sdekit.sample(sde, score, x_T=x_T, solver="toy_midpoint", steps=8, backend="numpy").x
    b = sdekit.sample(sde, score, x_T=x_T, solver="toy_midpoint", steps=8, backend="numba").x
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    # the preset is the engine with its options, bit for bit, under its own name
    p = sdekit.sample(sde, score, x_T=x_T, solver="toy_pc2", steps=8)
    q = sdekit.sample(sde, score, x_T=x_T, solver="dpmpp_pc(order=2, corrector=True)", steps=8)
    np.testing.assert_array_equal(p.x, q.x)
    assert p.stats["solver"] == "toy_pc2" and sdekit.get_solver("toy_pc2").order == 3
    # compare runs both; each row is a direct solve's error against the exact flow
    res = bench.compare(gauss, sde, ["toy_midpoint", "toy_pc2"], (8, 16), grid="log_snr", n=16, n_ode=16)
    x_T = gauss.sample(16, seed=0, t=sde.T, sde=sde)  # compare's start points (its seed 0)
    for r in res.rows:
        grid = sdekit.grids.make_grid(sde, r["steps"], "log_snr", sde.eps)
        x = sdekit.solve(sde.probability_flow(score), x_T, sde.T, sde.eps, r["solver"], grid=grid).x
        x_ref = gauss.flow(x_T, sde.T, sde.eps, sde)
        assert r["error"] == pytest.approx(float(np.sqrt(np.mean(np.sum((x - x_ref) ** 2, axis=1)))), rel=1e-10)
    # and the CLI lists them
    assert "toy_midpoint" in {r["name"] for r in sdekit.solvers.registry_rows()}
