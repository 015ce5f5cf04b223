"""Comparing integrators on analytic densities: error against NFE, exact laws, convergence orders.

:func:`compare` is the study behind ``sdekit compare``. For each solver and NFE budget it samples from an
analytic density (whose noised marginals ``p_t`` and score are exact) and measures the error at ``t_end``:

* **ODE solvers** (probability-flow ODE): the RMS endpoint distance ``sqrt(mean_i |x_i - x_i^ref|^2)`` to the
  exact flow of the *same* starting points. For a Gaussian the flow is closed-form (``Gaussian.flow``); for a
  mixture it is a reference solve by scipy's DOP853 at ``rtol = atol = 1e-10`` (its own error is far below the
  errors reported, which are only fitted above ``1e-8``).
* **SDE solvers** (reverse SDE): a distance between the law of the solver's output and the exact ``p_{t_end}``.
  For a Gaussian density and a solver that is affine in the state, the law of the output is itself Gaussian and
  computed exactly by :func:`exact_law`; the error is then the exact W2 (no Monte Carlo noise). Otherwise it is
  the MMD between the ``n`` solver samples and the exact ``p_{t_end}`` (:func:`sdekit.metrics.mmd_to_mixture`:
  the reference side is a closed-form Gaussian integral, so only the solver's sample is random; reported as
  the signed root ``sign(MMD^2) sqrt(|MMD^2|)`` of the unbiased estimate, which scales like the law error),
  or a chosen two-sample metric against exact samples. The metric's noise floor (its value on exact samples)
  is reported next to it.

All runs start from exact samples of ``p_T`` (not the prior), so the errors are the integrators' alone and
do not include the prior mismatch ``p_T != N(0, prior_std^2 I)``; no final denoising step is applied.

Steps per run are ``nfe // solver.nfe_per_step``, so every solver spends (at most) the same number of score
evaluations; the NFE actually used is recorded.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from . import _xp
from .analytic import Gaussian, GaussianMixture
from .backends.registry import get_backend
from .grids import GRIDS, make_grid
from .integrate import BACKEND_NAMES, solve, tweedie_denoise
from .metrics import (
    SAMPLE_METRICS,
    component_bandwidth,
    gaussian_kl,
    gaussian_w2,
    mmd_to_mixture,
    noise_floor,
    sliced_w2_to,
)
from .progress import progress_bar
from .sdes import EDMSDE, VESDE, VPSDE, LinearSDE, SubVPSDE
from .solvers import SOLVERS, get_solver, parse_solver_spec
from .solvers.base import StepContext

__all__ = [
    "DENSITIES",
    "SDES",
    "DEFAULT_NFE",
    "COMPARE_METRICS",
    "DEFAULT_GRID",
    "DEFAULT_METRIC",
    "DEFAULT_N",
    "compare",
    "study",
    "CompareResult",
    "exact_law",
    "fit_order",
    "fixed_step_solvers",
    "make_density",
    "make_sde",
]

# ----------------------------------------------------------------------------------------------------------
# built-in problems
# ----------------------------------------------------------------------------------------------------------


def _ring8():
    angles = 2.0 * np.pi * np.arange(8) / 8
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(np.full(8, 1.0 / 8), means, np.full(8, 0.05))


def _gaussian():
    return Gaussian([0.5, -0.3], [[1.0, 0.6], [0.6, 0.5]])


def _blobs3():
    return GaussianMixture(
        [0.5, 0.3, 0.2],
        [[-1.5, 0.0], [1.0, 1.0], [1.0, -1.2]],
        [[0.3, 0.1], [0.05, 0.2], [0.1, 0.1]],
    )


def _gaussian10():
    rng = np.random.default_rng(1234)
    a = rng.standard_normal((10, 10)) / np.sqrt(10)
    return Gaussian(rng.standard_normal(10) * 0.5, a @ a.T + 0.1 * np.eye(10))


#: Built-in densities: name -> (factory, description).
DENSITIES = {
    "ring8": (_ring8, "2-D mixture of 8 isotropic Gaussians (variance 0.05) on a circle of radius 2"),
    "blobs3": (_blobs3, "2-D mixture of 3 unequal Gaussians with diagonal covariances"),
    "gaussian": (_gaussian, "2-D correlated Gaussian (exact flow and exact solver laws)"),
    "gaussian10": (_gaussian10, "10-D Gaussian with a full covariance (exact flow and exact solver laws)"),
}

#: Built-in forward SDEs with their default parameters: name -> class.
SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE, "edm": EDMSDE}

#: Default NFE budgets of :func:`compare` (multiples of 4 so that 1-, 2- and 4-stage solvers use them fully).
#: On the default problem the SDE errors reach the MMD noise floor at n = 4000 around 64 NFE, so 256 adds
#: cost (half the SDE solve time) and no resolved SDE point.
DEFAULT_NFE = (8, 16, 32, 64, 128)

#: Default time grid of :func:`compare`: equal steps in log-SNR, the schedule the DPM-Solver family is built
#: for and a good one for every solver on VP (a uniform grid in ``t`` wastes steps at large ``t``).
DEFAULT_GRID = "log_snr"

#: Default number of SDE samples of :func:`compare` (the MMD noise floor falls like ``1/n`` in ``MMD^2``).
DEFAULT_N = 4000

#: Default SDE metric of :func:`compare` when the exact law is not available.
DEFAULT_METRIC = "mmd_exact"

#: One-line descriptions of the grids, for the report header.
_GRID_DESCRIPTIONS = {
    "uniform": "equal steps in t",
    "quadratic": "steps shrinking quadratically towards t_end",
    "log_snr": "equal steps in log-SNR log(alpha/sigma), DPM-Solver's schedule",
    "karras": "EDM's schedule in sigma/alpha, rho=7",
}

#: SDE metrics of :func:`compare`: the exact-reference MMD (default) and the two-sample metrics.
COMPARE_METRICS = ("mmd_exact",) + tuple(SAMPLE_METRICS)


def make_density(density):
    """A density object from a built-in name (see :data:`DENSITIES`) or a Gaussian/GaussianMixture instance."""
    if isinstance(density, (Gaussian, GaussianMixture)):
        return density
    if isinstance(density, str) and density in DENSITIES:
        return DENSITIES[density][0]()
    raise ValueError(f"unknown density {density!r}; valid densities: {sorted(DENSITIES)}")


def make_sde(sde):
    """A :class:`LinearSDE` from a built-in name (see :data:`SDES`) or an instance."""
    if isinstance(sde, LinearSDE):
        return sde
    if isinstance(sde, str) and sde in SDES:
        return SDES[sde]()
    raise ValueError(f"unknown sde {sde!r}; valid SDEs: {sorted(SDES)}")


def fixed_step_solvers() -> list[str]:
    """Names of the registered solvers that run on a fixed grid (read from ``SOLVERS`` at call time)."""
    return [name for name, cls in SOLVERS.items() if not getattr(cls, "adaptive", False)]


# ----------------------------------------------------------------------------------------------------------
# exact law of an affine solver
# ----------------------------------------------------------------------------------------------------------


def _history_in_memory(memory, rows):
    """True when the solver left per-sample arrays in its per-solve ``memory`` (a multistep history)."""
    stack = list(memory.values())
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif getattr(v, "ndim", 0) >= 1 and v.shape[0] == rows:
            return True
    return False


def _affine_parts(fn, m, n_noise, name):
    """Linear parts of an affine map ``y = fn(x, z) = c + A x + sum_r B_r z_r`` around ``m``.

    Evaluates ``fn`` once on a batch of ``1 + d + n_noise d + 1`` rows: the mean, the mean plus each unit vector,
    the mean with each unit noise vector, and one random test row that checks the map really is affine.
    Returns ``(fn(m, 0), A, [B_r])``.
    """
    d = m.shape[0]
    rows = 1 + d + n_noise * d + 1
    rng = np.random.default_rng(20240611)
    v = rng.standard_normal(d)
    x = np.tile(m, (rows, 1))
    x[1 : 1 + d] += np.eye(d)
    x[-1] += v
    z = None
    w = []
    if n_noise:
        z = [np.zeros((rows, d)) for _ in range(n_noise)]
        for r in range(n_noise):
            z[r][1 + d + r * d : 1 + d + (r + 1) * d] = np.eye(d)
            w.append(rng.standard_normal(d))
            z[r][-1] = w[-1]
    y = fn(x, z)
    y0 = y[0]
    a = (y[1 : 1 + d] - y0).T
    bs = [(y[1 + d + r * d : 1 + d + (r + 1) * d] - y0).T for r in range(n_noise)]
    _check_affine(y0 + a @ v + sum((b @ wr for b, wr in zip(bs, w)), np.zeros(d)), y, name, "the state")
    return y, y0, a, bs


def _check_affine(predicted, y, name, what):
    """The test row (last row of ``y``) must equal its affine prediction to round-off."""
    scale = 1.0 + np.abs(y).max()
    if not np.all(np.abs(predicted - y[-1]) <= 1e-8 * scale):
        raise ValueError(
            f"{name} is not affine in {what} and the noise under a Gaussian data law "
            f"(test-row mismatch {np.abs(predicted - y[-1]).max():.3g}); exact_law does not apply"
        )


def _whole_solve_parts(solver, proc, ts, m, n_noise, name):
    """Affine parts of a whole fixed-grid solve ``x_out = c + A x_T + sum_{k,r} B_{k,r} z_{k,r}`` around ``m``.

    One solve through the reference numpy loop on ``2 + d + N n_noise d`` rows: the mean with all noise zero,
    the mean plus each unit vector, the mean with one unit noise component at one step and field each, and a
    random test row (random ``x_T`` offset and noise at every step) that checks the whole solve is affine.
    Covers multistep solvers, whose history lives in the per-solve ``StepContext.memory``. Returns ``(c, A, B)`` with
    ``B`` of shape ``(d, N n_noise d)``.
    """
    from .backends import numpy_ as numpy_loop
    from .backends.job import Job

    d = m.shape[0]
    n_steps = len(ts) - 1
    n_unit = n_steps * n_noise * d
    rows = 2 + d + n_unit
    rng = np.random.default_rng(20240611)
    v = rng.standard_normal(d)
    w = rng.standard_normal((n_steps, n_noise, d))
    x0 = np.tile(m, (rows, 1))
    x0[1 : 1 + d] += np.eye(d)
    x0[-1] += v

    def noise(job):
        def draw(k):
            z = np.zeros((n_noise, rows, d))
            base = 1 + d + k * n_noise * d
            for r in range(n_noise):
                z[r, base + r * d + np.arange(d), np.arange(d)] = 1.0
            z[:, -1] = w[k]
            return list(z)

        return draw

    job = Job(process=proc, solver=solver, x0=x0, grid=ts, seed=0, sample_ids=np.arange(rows), save_index=None,
              progress=False, check_finite=True, stochastic=n_noise > 0)  # fmt: skip
    y, _, _, _ = numpy_loop.fixed_grid_loop(job, noise=noise)
    c = y[0]
    a = (y[1 : 1 + d] - c).T  # column j: response to e_j in x_T
    bmat = (y[1 + d : 1 + d + n_unit] - c).T  # one column per (step, field, component)
    _check_affine(c + a @ v + bmat @ w.reshape(-1), y, name, "the start point")
    return c, a, bmat


def exact_law(
    solver, sde, gaussian, grid, *, process="auto", start="marginal", denoise=False, method="auto", **solver_options
):
    """Exact mean and covariance of a solver's output when the data law is Gaussian.

    With ``p_0 = N(mu, Sigma)`` the exact score is affine in ``x``, so any solver built from drift evaluations,
    linear combinations (with coefficients that depend on the grid only) and Gaussian noise is affine in the
    start point and all the noise: ``x_out = c + A x_T + sum_{k,r} B_{k,r} z_{k,r}``, hence Gaussian with mean
    ``c + A m_T`` and covariance ``A C_T A^T + sum B B^T``. The parts are read off the solver itself, by
    running it on probe rows; no per-solver algebra, no Monte Carlo.

    * One-step solvers: per step, one batched ``step`` call on the mean, the mean plus unit vectors and unit
      noise vectors gives ``x' = c + A x + sum_r B_r z_r`` and the law is propagated,
      ``m' = c + A m``, ``C' = A C A^T + sum_r B_r B_r^T`` (``O(d)`` rows whatever the number of steps).
    * Multistep solvers (a per-sample history left in the per-solve ``memory`` is detected after the first
      step) and any other affine solver: one whole solve on ``2 + d + N n_noise d`` probe rows (the mean, unit
      offsets of ``x_T`` and one unit noise component per step, field and component) gives ``c``, ``A`` and
      every ``B_{k,r}`` at once (``O(N^2 n_noise d^2)`` work for ``N`` steps).

    Both check affinity on a random test row (each step, or the whole solve) and raise ``ValueError`` for a
    solver that is not affine under Gaussian data.

    Parameters
    ----------
    solver : str or Solver
        A fixed-grid solver (adaptive solvers are refused: their steps depend on the state).
    sde : LinearSDE
    gaussian : Gaussian
        The data law ``p_0``; the solver uses its exact score.
    grid : 1-D array or int
        Decreasing times from ``sde.T`` to ``t_end``, or a number of uniform steps down to ``sde.eps``.
    process : {"auto", "sde", "ode"}
        Reverse SDE or probability-flow ODE, as in :func:`sdekit.sample`.
    start : {"marginal", "prior"}
        Law at ``T``: the exact ``p_T`` or the prior ``N(0, prior_std^2 I)`` (what :func:`sdekit.sample` draws).
    denoise : bool
        Apply the final Tweedie step ``(x + sigma^2 score) / alpha`` (affine too).
    method : {"auto", "step", "solve"}
        ``"auto"``: per-step propagation, switching to the whole-solve probes when the solver turns out to be
        multistep; ``"step"``: per-step only (a multistep solver raises ``ValueError``); ``"solve"``: whole
        solve always.

    Returns
    -------
    mean : (d,), cov : (d, d)
        float64 numpy arrays: the exact law ``N(mean, cov)`` of the output at ``grid[-1]``.
    """
    solver = get_solver(solver, **solver_options)
    if not isinstance(gaussian, Gaussian):
        raise TypeError(f"gaussian must be an sdekit.Gaussian, got {gaussian!r}")
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"sde must be a LinearSDE, got {sde!r}")
    if getattr(solver, "adaptive", False):
        raise ValueError(f"solver {solver.name!r} is adaptive; exact_law covers fixed-grid solvers only")
    if process not in ("auto", "sde", "ode"):
        raise ValueError(f"process must be one of ['auto', 'sde', 'ode'], got {process!r}")
    if method not in ("auto", "step", "solve"):
        raise ValueError(f"method must be one of ['auto', 'step', 'solve'], got {method!r}")
    kind = solver.default_process if process == "auto" else process
    if (kind == "sde" and not solver.is_sde) or (kind == "ode" and not solver.is_ode):
        raise ValueError(f"solver {solver.name!r} cannot integrate process={kind!r}")
    if isinstance(grid, numbers.Integral) and not isinstance(grid, bool):
        ts = make_grid(sde, int(grid), "uniform")
    else:
        ts = np.asarray(grid, dtype=np.float64)
        if ts.ndim != 1 or ts.shape[0] < 2 or not np.all(np.diff(ts) < 0):
            raise ValueError(f"grid must be a strictly decreasing 1-D array of times, got {grid!r}")
        if abs(ts[0] - sde.T) > 1e-12 * max(1.0, sde.T) or ts[-1] <= 0:
            raise ValueError(f"grid must run from T={sde.T} down to a positive t_end, got {ts[0]} ... {ts[-1]}")
    if start == "marginal":
        m0, c0 = gaussian.mean_cov(float(ts[0]), sde)
    elif start == "prior":
        m0, c0 = np.zeros(gaussian.dim), sde.prior_std**2 * np.eye(gaussian.dim)
    else:
        raise ValueError(f"start must be one of ['marginal', 'prior'], got {start!r}")
    score = gaussian.score(sde)
    proc = sde.reverse(score) if kind == "sde" else sde.probability_flow(score)
    solver.check_process(proc)
    n_noise = solver.n_noise if kind == "sde" else 0
    name = f"solver {solver.name!r}"
    m, c = m0, c0
    memory = {}
    multistep = method == "solve"
    for k in range(len(ts) - 1 if method != "solve" else 0):
        t, t_next = float(ts[k]), float(ts[k + 1])

        ctx = StepContext(k, ts, memory)

        def one_step(x, z, t=t, t_next=t_next, ctx=ctx):
            return solver.step(proc, x, t, t_next, z, ctx)

        y, m_new, a, bs = _affine_parts(one_step, m, n_noise, name)
        if _history_in_memory(memory, y.shape[0]):
            if method == "step":
                raise ValueError(
                    f"{name} keeps a per-sample history between steps (multistep); method='step' covers one-step "
                    "solvers only (use method='auto' or 'solve')"
                )
            multistep = True  # the next step depends on this one's probe rows: propagate the whole solve
            break
        c = a @ c @ a.T + sum((b @ b.T for b in bs), np.zeros_like(c))
        m = m_new
    if multistep:
        c_out, a, bmat = _whole_solve_parts(solver, proc, ts, m0, n_noise, name)
        m, c = c_out, a @ c0 @ a.T + bmat @ bmat.T
    if denoise:
        t_end = float(ts[-1])
        _, m, a, _ = _affine_parts(lambda x, z: tweedie_denoise(sde, score, x, t_end), m, 0, "denoising")
        c = a @ c @ a.T
    return m, 0.5 * (c + c.T)


# ----------------------------------------------------------------------------------------------------------
# convergence orders
# ----------------------------------------------------------------------------------------------------------


def fit_order(nfe, err, floor: float = 0.0, last: int | None = 3) -> float:
    """Observed order ``p`` in ``err ~ C NFE^{-p}``: least-squares slope of ``log err`` on ``log NFE``.

    Only points with a finite error above ``floor`` are used (an error at the Monte Carlo or reference floor
    carries no order information), and of those the ``last`` ones with the largest NFE (the asymptotic regime;
    ``None`` uses all); ``nan`` with fewer than two such points.
    """
    nfe = np.asarray(nfe, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    ok = np.isfinite(err) & (err > floor) & (nfe > 0)
    if ok.sum() < 2:
        return float("nan")
    x, y = np.log(nfe[ok]), np.log(err[ok])
    if last is not None:
        keep = np.argsort(x)[-max(int(last), 2) :]
        x, y = x[keep], y[keep]
    slope = np.polyfit(x, y, 1)[0]
    return float(-slope)


# ----------------------------------------------------------------------------------------------------------
# the comparison study
# ----------------------------------------------------------------------------------------------------------

_ODE_REF_TOL = 1e-10
# exact reference samples per solver sample: 4 for sliced W2 (O(n log n)); 1 for the O(n m) kernel metrics
_REF_FACTOR = {"sliced_w2": 4, "mmd": 1, "energy": 1}
_FLOOR_REPEATS = 8  # exact samples at which the SDE metric's noise floor is measured (mean and std)
_ODE_FIT_FLOOR = {"exact": 1e-12, "dop853": 1e-8}


def _reference_flow(density, sde, x, t0, t1):
    """The probability-flow map of ``x`` from ``t0`` to ``t1``: exact for a Gaussian, else DOP853 at 1e-10."""
    if isinstance(density, Gaussian):
        return density.flow(x, t0, t1, sde), "exact", "exact flow (Gaussian.flow)", 0
    from scipy.integrate import solve_ivp

    proc = sde.probability_flow(density.score(sde))
    shape = x.shape

    def rhs(t, y):
        return proc.drift(y.reshape(shape), t).ravel()

    sol = solve_ivp(rhs, (t0, t1), x.ravel(), method="DOP853", rtol=_ODE_REF_TOL, atol=_ODE_REF_TOL)
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    desc = f"scipy DOP853, rtol=atol={_ODE_REF_TOL:g} ({sol.nfev} evaluations)"
    return sol.y[:, -1].reshape(shape), "dop853", desc, sol.nfev


@dataclass
class CompareResult:
    """Result of :func:`compare`.

    Attributes
    ----------
    rows : list of dict
        One per (solver, process, NFE budget): ``solver, process, nfe_budget, steps, nfe, error, metric,
        floor, resolution, kl, wall_time, note`` (``kl``: exact ``KL(solver law || p(t_end))`` for the exact-law
        rows, ``nan`` otherwise). ``error`` is ``nan`` for skipped runs (``note`` says why).
    orders : dict
        ``(solver, process) -> fitted order in NFE`` (see :func:`fit_order`).
    info : dict
        The configuration and the reference/metric descriptions.
    """

    rows: list = field(default_factory=list)
    orders: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def series(self):
        """``(solver, process) -> (nfe array, error array)`` over the runs that produced an error."""
        out = {}
        for r in self.rows:
            out.setdefault((r["solver"], r["process"]), []).append((r["nfe"], r["error"]))
        return {k: (np.array([a for a, _ in v], float), np.array([b for _, b in v], float)) for k, v in out.items()}

    def table(self) -> str:
        """A fixed-width table: one line per (solver, process), one column per NFE budget, and the fitted order."""
        budgets = sorted({r["nfe_budget"] for r in self.rows})
        w = max([18] + [len(r["solver"]) + 2 for r in self.rows])  # solver specs with options can be long
        head = f"{'solver':<{w}}{'process':<8}{'metric':<11}" + "".join(f"{'NFE=' + str(b):>11}" for b in budgets)
        head += f"{'order':>8}"
        lines = [head, "-" * len(head)]
        cells = {(r["solver"], r["process"], r["nfe_budget"]): r for r in self.rows}
        for key in dict.fromkeys((r["solver"], r["process"]) for r in self.rows):
            metric = next((r["metric"] for r in self.rows if (r["solver"], r["process"]) == key and r["metric"]), "")
            line = f"{key[0]:<{w}}{key[1]:<8}{metric:<11}"
            for b in budgets:
                r = cells.get(key + (b,))
                if r is None or not math.isfinite(r["error"]):
                    line += f"{'-':>11}"
                else:
                    mark = "~" if r["resolution"] > 0 and r["error"] <= r["resolution"] else " "
                    line += f"{r['error']:>10.3e}{mark}"
            order = self.orders.get(key, float("nan"))
            line += f"{order:>8.2f}" if math.isfinite(order) else f"{'-':>8}"
            lines.append(line)
        return "\n".join(lines)

    def report(self) -> str:
        """Header (configuration, reference, metric and noise floor), the table, and notes on skipped runs."""
        i = self.info
        out = [
            f"density: {i['density']} ({i['density_description']})",
            f"sde: {i['sde']}, grid: {i['grid']} ({_GRID_DESCRIPTIONS.get(i['grid'], 'custom')}), "
            f"t_end: {i['t_end']:g}, n: {i['n']}, seed: {i['seed']}, backend: {i['backend']}",
            f"ODE error (ode_rms): RMS endpoint distance to the reference flow of the same start points; "
            f"reference: {i['ode_reference']}",
            f"SDE error: {i['sde_metric_description']}",
        ]
        if i.get("noise_floor") is not None:
            out.append(f"  Monte Carlo noise floor of {i['sde_metric']} at n={i['n']}: {i['noise_floor']}")
            out.append(
                "  '~' marks errors below the resolution mean + 2 std of the floor (not resolved); "
                "orders are fitted on the 3 largest-NFE resolved points"
            )
        out += ["", self.table()]
        unresolved = [r for r in self.rows if r["resolution"] > 0 and r["error"] <= r["resolution"]]
        if unresolved:
            out.append(
                f"\n{len(unresolved)} SDE errors are within the Monte Carlo resolution: raise --n (the floor falls "
                "like n^-1/2 in the error units shown), or use --density gaussian / gaussian10, whose SDE errors "
                "come from exact laws."
            )
        notes = sorted({f"{r['solver']} ({r['process']}): {r['note']}" for r in self.rows if r["note"]})
        if notes:
            out += ["", "notes:"] + [f"  {s}" for s in notes]
        out.append(f"\ntotal wall time {i['wall_time']:.1f} s")
        return "\n".join(out)

    def to_csv(self, path):
        """Write the rows as CSV (one line per run)."""
        keys = [
            "density",
            "sde",
            "grid",
            "solver",
            "process",
            "nfe_budget",
            "steps",
            "nfe",
            "error",
            "metric",
            "floor",
            "resolution",
            "kl",
            "wall_time",
            "note",
        ]
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for r in self.rows:
                w.writerow({k: r.get(k, self.info.get(k)) for k in keys})

    def to_json(self, path):
        """Write the configuration, rows and fitted orders as JSON."""
        data = {
            "info": {
                k: (str(v) if not isinstance(v, (int, float, str, type(None))) else v) for k, v in self.info.items()
            },
            "rows": self.rows,
            "orders": [{"solver": s, "process": p, "order": o} for (s, p), o in self.orders.items()],
        }
        with open(path, "w") as fh:
            json.dump(data, fh, indent=1, default=float)

    def plot(self, path):
        """Work-precision plot (error against NFE, log-log), ODE and SDE panels, as a PNG (Agg backend)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        series = self.series()
        kinds = [p for p in ("ode", "sde") if any(k[1] == p for k in series)]
        fig, axes = plt.subplots(1, max(len(kinds), 1), figsize=(6.0 * max(len(kinds), 1), 4.6), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            for (solver, proc), (nfe, err) in series.items():
                if proc != kind:
                    continue
                ok = np.isfinite(err) & (err > 0)
                if not ok.any():
                    continue
                order = self.orders.get((solver, proc), float("nan"))
                label = f"{solver} (order {order:.2f})" if math.isfinite(order) else solver
                ax.loglog(nfe[ok], err[ok], "o-", label=label)
            if kind == "ode":
                ax.set_title(f"probability-flow ODE\nerror vs {self.info['ode_reference_short']}", fontsize=10)
                ax.set_ylabel("RMS endpoint error")
            else:
                ax.set_title(f"reverse SDE\n{self.info['sde_metric']} to exact p(t_end)", fontsize=10)
                ax.set_ylabel(self.info["sde_metric"])
                floor = self.info.get("noise_floor")
                if floor is not None and any(r["resolution"] > 0 for r in self.rows) and floor.resolution > 0:
                    lo, hi = ax.get_ylim()
                    lo = min(lo, floor.resolution / 4)
                    if floor.mean > 0:
                        ax.axhline(floor.mean, color="0.4", ls="--", lw=1, label="Monte Carlo noise floor")
                    ax.axhspan(lo, floor.resolution, color="0.85", alpha=0.5, label="unresolved (< floor + 2 std)")
                    ax.set_ylim(lo, max(hi, 2.0 * floor.resolution))
            ax.set_xlabel("NFE (score evaluations per sample)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{self.info['density']} under {self.info['sde']}, grid={self.info['grid']}", fontsize=11)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _check_nfe(nfe):
    if isinstance(nfe, numbers.Integral) and not isinstance(nfe, bool):
        nfe = (nfe,)
    try:
        vals = [int(v) for v in nfe]
    except (TypeError, ValueError):
        raise ValueError(f"nfe must be positive integers, got {nfe!r}") from None
    if not vals or any(v < 1 for v in vals) or any(v != w for v, w in zip(vals, nfe)):
        raise ValueError(f"nfe must be positive integers, got {nfe!r}")
    return sorted(set(vals))


def _to_numpy(x):
    return x.detach().cpu().numpy() if _xp.is_torch(x) else np.asarray(x)


def compare(
    density="ring8",
    sde="vp",
    solvers=None,
    nfe=DEFAULT_NFE,
    *,
    grid=DEFAULT_GRID,
    backend="numpy",
    seed=0,
    n=DEFAULT_N,
    n_ode=500,
    metric=DEFAULT_METRIC,
    t_end=None,
    progress=False,
    csv_path=None,
    png_path=None,
    json_path=None,
) -> CompareResult:
    """Error against NFE of several solvers on an analytic density (see the module docstring for the errors).

    Parameters
    ----------
    density : str or Gaussian or GaussianMixture
        A name in :data:`DENSITIES` or a density object.
    sde : str or LinearSDE
        A name in :data:`SDES` (``vp``, ``subvp``, ``ve``, ``edm``) or an instance.
    solvers : list of str, optional
        Registered solver names, each optionally with constructor options as ``"name(key=value, ...)"`` (e.g.
        ``"dpmpp_pc(order=2, sigma_data=1.4)"``; :func:`sdekit.solvers.parse_solver_spec`), used as the row label;
        default: every fixed-step solver registered in ``sdekit.SOLVERS`` at call time.
        Solvers that do both (``heun``) are run on the ODE and on the SDE.
    nfe : sequence of int
        NFE budgets; a solver with ``k`` evaluations per step runs ``nfe // k`` steps (budgets below ``k`` skip).
    grid : str
        A schedule name in ``sdekit.grids.GRIDS``; default ``"log_snr"`` (:data:`DEFAULT_GRID`).
    backend : str
        ``"numpy"``, ``"numba"``, ``"torch"`` or ``"auto"``; the reference computations stay in numpy.
    seed : int
        Seed of the start points (exact samples of ``p_T``), the solver noise and the reference samples.
    n : int
        Number of samples per SDE run; the noise floor of ``mmd_exact`` falls like ``1/n`` in ``MMD^2`` (so
        like ``n^{-1/2}`` in the root shown), that of the two-sample metrics like ``n^{-1/2}``.
    n_ode : int
        Number of start points of the ODE runs (the first ``min(n, n_ode)`` of the SDE start points); the ODE
        error is pathwise, so it needs few points.
    metric : str
        SDE metric when the exact law is not available: ``"mmd_exact"`` (default; the signed root of the
        unbiased MMD^2 to the exact ``p_{t_end}``, :func:`sdekit.metrics.mmd_to_mixture`, bandwidth
        :func:`sdekit.metrics.component_bandwidth`) or a two-sample metric of ``metrics.SAMPLE_METRICS``
        (``sliced_w2``, ``mmd``, ``energy``) against exact samples.
    t_end : float, optional
        End time (default ``sde.eps``).
    csv_path, png_path, json_path : str, optional
        Where to write the rows, the work-precision plot and the JSON result.
    """
    start_time = time.perf_counter()
    dens = make_density(density)
    sde_obj = make_sde(sde)
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r}; valid grids: {sorted(GRIDS)}")
    else:
        raise ValueError(f"grid must be a schedule name, one of {sorted(GRIDS)}, got {grid!r}")
    if backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {list(BACKEND_NAMES)}")
    if metric not in COMPARE_METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {sorted(COMPARE_METRICS)}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if isinstance(n_ode, bool) or not isinstance(n_ode, numbers.Integral) or n_ode < 1:
        raise ValueError(f"n_ode must be a positive integer, got {n_ode!r}")
    n_ode = min(int(n_ode), int(n))
    budgets = _check_nfe(nfe)
    if solvers is None:
        solvers = fixed_step_solvers()
    elif isinstance(solvers, str):
        solvers = [solvers]
    for s in solvers:
        if not isinstance(s, str) or parse_solver_spec(s)[0] not in SOLVERS:
            raise ValueError(f"unknown solver {s!r}; valid solvers: {sorted(SOLVERS)}")
    t_end = sde_obj.eps if t_end is None else float(t_end)
    if not 0.0 < t_end < sde_obj.T:
        raise ValueError(f"t_end must lie in (0, T) = (0, {sde_obj.T}), got {t_end!r}")
    T = float(sde_obj.T)
    score = dens.score(sde_obj)
    d = dens.dim

    # start points: exact samples of p_T, shared by every run
    x_T = dens.sample(n, seed=seed, t=T, sde=sde_obj)
    dens_name = density if isinstance(density, str) else repr(density)
    desc = DENSITIES[density][1] if isinstance(density, str) else repr(density)

    # the run list: (solver name, instance, process)
    runs = []
    notes = {}
    for name in solvers:
        try:
            inst = get_solver(name)
        except (TypeError, ValueError) as exc:
            if "(" in name:  # options the caller wrote: a wrong one is an error, not a note
                raise ValueError(f"solver {name!r} cannot be built: {exc}") from exc
            notes[name] = f"cannot be built with default options: {exc}"
            continue
        if getattr(inst, "adaptive", False):
            notes[name] = "adaptive (tolerance-driven, not a fixed NFE budget): not run"
            continue
        for proc in ("ode", "sde"):
            if getattr(inst, f"is_{proc}"):
                runs.append((name, inst, proc))

    ode_ref = None
    info_ref, ref_short, ode_floor = "none (no ODE solver run)", "reference", 0.0
    if any(p == "ode" for _, _, p in runs):
        ode_ref, kind, info_ref, _ = _reference_flow(dens, sde_obj, x_T[:n_ode], T, t_end)
        ref_short = "exact flow" if kind == "exact" else "DOP853 reference"
        ode_floor = _ODE_FIT_FLOOR[kind]

    exact_sde = isinstance(dens, Gaussian)
    if metric == "mmd_exact":
        h = component_bandwidth(dens, t_end, sde_obj)

        def metric_fn(y):
            v = mmd_to_mixture(y, dens, h, t=t_end, sde=sde_obj)
            return math.copysign(math.sqrt(abs(v)), v)

        sde_desc = (
            f"MMD (Gaussian kernel, bandwidth h={h:.3g} = narrowest component std) between the n solver samples "
            "and the exact p(t_end) in closed form; shown as sign(MMD^2) sqrt(|MMD^2|) of the unbiased estimate"
        )
    else:
        m_ref = _REF_FACTOR[metric] * n
        sde_desc = f"{metric} between the n solver samples and {m_ref} exact samples of p(t_end)"
    if exact_sde:
        target_m, target_c = dens.mean_cov(t_end, sde_obj)
        sde_desc = (
            "exact W2 between the solver's exact output law (bench.exact_law) and p(t_end) (no Monte Carlo noise); "
            f"for solvers exact_law does not cover: {sde_desc}"
        )
    sample_ref = {}

    def to_target(x):
        """The sample metric against the exact p(t_end); reference and floor built on first use."""
        if not sample_ref:
            if metric == "mmd_exact":
                fn = metric_fn
            else:
                # seeds disjoint from the start points'; exact samples are cheap, so a reference larger than the
                # solver's sample lowers the floor, which is the metric between fresh exact n-samples and it
                target = dens.sample(m_ref, seed=seed + 1, t=t_end, sde=sde_obj)
                two_sample = SAMPLE_METRICS[metric]
                fn = sliced_w2_to(target) if metric == "sliced_w2" else (lambda y: two_sample(y, target))
            sample_ref["fn"] = fn
            sample_ref["floor"] = noise_floor(
                fn,
                lambda size, s: dens.sample(size, seed=s, t=t_end, sde=sde_obj),
                n,
                repeats=_FLOOR_REPEATS,
                seed=seed + 2,
                reference=(),
            )
        return float(sample_ref["fn"](x))

    rows = []
    total = len(runs) * len(budgets)
    with progress_bar(total, progress, desc="compare") as bar:
        for name, inst, proc in runs:
            process = sde_obj.probability_flow(score) if proc == "ode" else sde_obj.reverse(score)
            for b in budgets:
                steps = b // inst.nfe_per_step
                row = {
                    "solver": name,
                    "process": proc,
                    "nfe_budget": b,
                    "steps": steps,
                    "nfe": 0,
                    "error": float("nan"),
                    "metric": "",
                    "floor": 0.0,
                    "resolution": 0.0,
                    "kl": float("nan"),
                    "wall_time": 0.0,
                    "note": notes.get(name, ""),
                }
                if steps < 1:
                    row["note"] = f"needs {inst.nfe_per_step} NFE per step; budgets below that skipped"
                    rows.append(row)
                    bar.update(1)
                    continue
                ts = make_grid(sde_obj, steps, grid, t_end)
                law = None
                if proc == "sde" and exact_sde:
                    try:
                        law = exact_law(inst, sde_obj, dens, ts, process="sde")
                    except ValueError as exc:
                        row["note"] = f"exact law not available ({exc}); sample metric used"
                # pathwise ODE errors and exact laws need few samples; the run still checks the solver works
                x0 = x_T[:n_ode] if (proc == "ode" or law is not None) else x_T
                if backend != "auto":
                    x0 = get_backend(backend).as_state(x0)
                t0 = time.perf_counter()
                try:
                    sol = solve(process, x0, T, t_end, inst, grid=ts, seed=seed, backend=backend)
                except (ValueError, TypeError, NotImplementedError) as exc:
                    row["note"] = f"not run: {exc}"
                    rows.append(row)
                    bar.update(1)
                    continue
                row["wall_time"] = time.perf_counter() - t0
                row["nfe"] = int(sol.nfe)
                x = _to_numpy(sol.x).reshape(-1, d)
                if proc == "ode":
                    row["error"] = float(np.sqrt(np.mean(np.sum((x - ode_ref) ** 2, axis=1))))
                    row["metric"] = "ode_rms"
                elif law is not None:
                    row["error"] = gaussian_w2(law[0], law[1], target_m, target_c)
                    row["kl"] = gaussian_kl(law[0], law[1], target_m, target_c)
                    row["metric"] = "w2_exact"
                else:
                    row["error"] = to_target(x)
                    row["metric"] = metric
                    row["floor"] = sample_ref["floor"].mean
                    row["resolution"] = sample_ref["floor"].resolution
                rows.append(row)
                bar.update(1)

    orders = {}
    for name, _, proc in runs:
        pts = [r for r in rows if r["solver"] == name and r["process"] == proc and math.isfinite(r["error"])]
        if not pts:
            continue
        fl = ode_floor if proc == "ode" else max(max(r["resolution"] for r in pts), 1e-12)
        orders[(name, proc)] = fit_order([r["nfe"] for r in pts], [r["error"] for r in pts], fl)

    for r in rows:
        r.update(density=dens_name, sde=type(sde_obj).__name__, grid=grid)
    info = {
        "density": dens_name,
        "density_description": desc,
        "sde": repr(sde_obj),
        "grid": grid,
        "t_end": t_end,
        "n": n,
        "n_ode": n_ode,
        "seed": seed,
        "backend": backend,
        "nfe": budgets,
        "ode_reference": info_ref,
        "ode_reference_short": ref_short,
        "sde_metric": metric,
        "sde_metric_description": sde_desc,
        "noise_floor": sample_ref.get("floor"),
    }
    result = CompareResult(rows=rows, orders=orders, info=info)
    result.info["wall_time"] = time.perf_counter() - start_time
    if csv_path is not None:
        result.to_csv(csv_path)
    if json_path is not None:
        result.to_json(json_path)
    if png_path is not None:
        result.plot(png_path)
    return result


def study(
    densities=("gaussian", "ring8"),
    sdes=("vp",),
    grids=("uniform",),
    *,
    csv_path=None,
    progress=False,
    **compare_options,
) -> list:
    """:func:`compare` over every combination of ``densities x sdes x grids``; one :class:`CompareResult` each.

    ``compare_options`` (solvers, nfe, n, seed, backend, metric, ...) are passed through. With ``csv_path`` all
    rows go to one CSV (its ``density``, ``sde`` and ``grid`` columns tell the studies apart).
    """
    results = []
    combos = [(d, s, g) for d in densities for s in sdes for g in grids]
    with progress_bar(len(combos), progress, desc="study") as bar:
        for d, s, g in combos:
            results.append(compare(d, s, grid=g, **compare_options))
            bar.update(1)
    if csv_path is not None:
        rows = [r for res in results for r in res.rows]
        CompareResult(rows=rows, info=results[0].info if results else {}).to_csv(csv_path)
    return results
