"""The comparison study behind ``sdekit compare``: :func:`compare`.

One call is a :class:`~sdekit.bench._plan.Problem` (the checked arguments), a plan of
:class:`~sdekit.bench._plan.Run` s (one per solver and process; :mod:`sdekit.bench._plan`), one cell per run and
NFE budget (:func:`run_cell`: one solve and its error) and the fitted orders
(:func:`fit_orders`). The errors:

* ODE rows: the RMS endpoint distance to the reference flow of the same start points
  (:mod:`sdekit.bench._references`);
* SDE rows: the exact W2 of the solver's output law (:func:`sdekit.bench.exact_law`) when the density declares a
  Gaussian law (``exact_flow``) and the solver is affine, otherwise the registered metric
  (:mod:`sdekit.bench._metrics`), built with its noise floor on the first row that needs it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import _xp
from ..backends.registry import get_backend
from ..grids import make_grid
from ..integrate import solve
from ..metrics import gaussian_kl, gaussian_w2
from ..progress import progress_bar
from ..validation import check_output_paths
from ._backend import FAST_BACKEND, cell_backend, predicted_samples
from ._exact_law import exact_law
from ._metrics import DEFAULT_METRIC, CompareMetric, MetricTarget
from ._orders import fit_order
from ._plan import Problem, Run, check_problem, plan_runs, with_sde_costs
from ._problems import DEFAULT_GRID, DEFAULT_N, DEFAULT_NFE, SDE_NFE_MAX
from ._references import reference_flow
from ._result import CompareResult, write_outputs

__all__ = ["compare", "SampleMetric", "new_row", "run_cell", "fit_orders"]


class SampleMetric:
    """The problem's SDE metric, built (with its noise floor) on the first call: ``metric(x) -> float``."""

    def __init__(self, record: CompareMetric, target: MetricTarget):
        self.record = record
        self.target = target
        self.fn = None
        self.floor = None

    def build(self):
        """Build the metric function and its floor (once)."""
        if self.fn is None:
            self.fn = self.record.build(self.target)
            self.floor = self.record.floor(self.fn, self.target)
        return self.fn

    @property
    def sequential(self) -> bool:
        """True when the metric accumulates over batches (``sums``/``value``/``resolution``, as ``mmd_cf``)."""
        fn = self.build()
        return all(hasattr(fn, a) for a in ("sums", "value", "resolution"))

    def __call__(self, x) -> float:
        return float(self.build()(x))


# ----------------------------------------------------------------------------------------------------------
# one cell: a solve at one budget and its error
# ----------------------------------------------------------------------------------------------------------
def new_row(run: Run, budget: int, steps: int, note: str) -> dict:
    return {
        "solver": run.name,
        "process": run.process,
        "nfe_budget": budget,
        "steps": steps,
        "nfe": 0,
        "error": float("nan"),
        "metric": "",
        "floor": 0.0,
        "resolution": 0.0,
        "kl": float("nan"),
        "wall_time": 0.0,
        "note": note,
        "n_samples": 0,
        "fd": float("nan"),
        "peer": "",
        "backend": "",
    }


def steps_for_budget(solver, process, problem: Problem, budget: int) -> int:
    """The most steps on ``problem``'s grid whose ``solver.nfe(grid, process)`` fits ``budget``:
    ``budget // nfe_per_step`` for most solvers; fewer for those that spend extra evaluations on some steps
    (``restart``), more for those that save some (an analytic first step)."""

    def nfe(steps):
        return solver.nfe(make_grid(problem.sde, steps, problem.grid, problem.t_end), process)

    steps = budget // solver.nfe_per_step
    while steps > 0 and nfe(steps) > budget:
        steps -= 1
    while steps <= budget and nfe(steps + 1) <= budget:
        steps += 1
    return steps


def run_cell(problem: Problem, run: Run, process, budget: int, x_T, *, reference, sample_metric, target_law, note=""):
    """The row of ``run`` at NFE ``budget``: one solve of ``process`` from the start points ``x_T`` and its error.

    ``reference``: the :class:`ReferenceFlow` of the ODE rows; ``sample_metric``: the :class:`SampleMetric` of
    the SDE rows without an exact law; ``target_law``: the exact ``(mean, cov)`` of ``p(t_end)`` when the
    density is a Gaussian law (``None`` otherwise).
    """
    inst, sde = run.solver, problem.sde
    if inst.fixed_grid is not None:  # a solver with its own times (sdekit.learn) runs at its budget only
        ts = inst.fixed_grid
        row = new_row(run, budget, len(ts) - 1, note)
        if inst.nfe(ts, process) != budget:
            row["note"], row["steps"] = f"fitted for NFE {inst.nfe(ts, process)}; other budgets skipped", 0
            return row
    else:
        steps = steps_for_budget(inst, process, problem, budget)
        row = new_row(run, budget, steps, note)
        if steps < 1:
            row["note"] = f"needs {inst.nfe_per_step} NFE per step; budgets below that skipped"
            return row
        ts = make_grid(sde, steps, problem.grid, problem.t_end)
    law = None
    if run.process == "sde" and target_law is not None:
        try:
            law = exact_law(inst, sde, problem.density, ts, process="sde")
        except ValueError as exc:
            row["note"] = f"exact law not available ({exc}); sample metric used"
    # pathwise ODE errors and exact laws need few samples; the run still checks the solver works
    x0 = x_T[: problem.n_ode] if (run.process == "ode" or law is not None) else x_T
    if run.process == "sde" and law is None and sample_metric.sequential:
        return _sequential_cell(problem, run, process, ts, x0, sample_metric, row)
    backend = cell_backend(problem, run, x0.shape[0], inst.nfe(ts, process))
    row["backend"] = backend
    if backend != "auto":
        x0 = get_backend(backend).as_state(x0)
    t0 = time.perf_counter()
    try:
        sol = solve(process, x0, problem.T, problem.t_end, inst, grid=ts, seed=problem.seed, backend=backend)
    except (ValueError, TypeError, NotImplementedError) as exc:
        row["note"] = f"not run: {exc}"
        return row
    row["wall_time"] = time.perf_counter() - t0
    row["nfe"] = int(sol.nfe)
    row["n_samples"] = int(x0.shape[0])
    x = _to_numpy(sol.x).reshape(-1, problem.density.dim)
    if run.process == "ode":
        row["error"] = float(np.sqrt(np.mean(np.sum((x - reference.x) ** 2, axis=1))))
        row["metric"] = "ode_rms"
    elif law is not None:
        row["error"] = gaussian_w2(law[0], law[1], target_law[0], target_law[1])
        row["kl"] = gaussian_kl(law[0], law[1], target_law[0], target_law[1])
        row["metric"] = "w2_exact"
    else:
        row["error"] = sample_metric(x)
        row["metric"] = problem.metric.name
        if sample_metric.floor is not None:
            row["floor"] = sample_metric.floor.mean
            row["resolution"] = sample_metric.floor.resolution
    return row


def batch_start_points(problem: Problem, batch: int, size: int):
    """Start points of a cell's ``batch``-th extra sample batch: ``size`` exact samples of ``p_T`` under their own seed
    (batch 0 is the shared ``x_T`` of the study)."""
    seed = (problem.seed + (batch << 32)) % (1 << 63)
    return problem.density.sample(size, seed=seed, t=problem.T, sde=problem.sde)


def _sequential_cell(problem: Problem, run: Run, process, ts, x0, sample_metric, row) -> dict:
    """An SDE cell with a sequential metric: batches of fresh samples (doubling the total) until the estimate
    exceeds ``STOP_FACTOR`` resolutions or ``problem.n_max`` samples are reached.

    Batch ``b`` starts at exact samples of ``p_T`` (:func:`batch_start_points`) and draws its noise for the sample
    ids that follow the earlier batches', so the cell's samples are independent and the result depends on nothing
    but the seed (and, to round-off, the backends: :func:`sdekit.bench._backend.cell_backend` picks one for the
    first batch and, while that is numpy, again for the rest after each batch, from its predicted growth).
    """
    from ._cfmmd import STOP_FACTOR

    fn = sample_metric.build()
    sums, n_done, batch, wall = None, 0, 0, 0.0
    nfe = run.solver.nfe(ts, process)
    backend = used = cell_backend(problem, run, x0.shape[0], nfe)
    while True:
        size = x0.shape[0]
        xb = x0 if backend == "auto" else get_backend(backend).as_state(x0)
        ids = np.arange(n_done, n_done + size, dtype=np.int64)
        t0 = time.perf_counter()
        try:
            sol = solve(process, xb, problem.T, problem.t_end, run.solver, grid=ts, seed=problem.seed,
                        backend=backend, sample_ids=ids)  # fmt: skip
        except (ValueError, TypeError, NotImplementedError) as exc:
            row["note"] = f"not run: {exc}"
            return row
        part = fn.sums(_to_numpy(sol.x).reshape(size, -1))
        wall += time.perf_counter() - t0
        nfe = int(sol.nfe)
        sums = part if sums is None else sums + part
        n_done += size
        err, res = fn.value(sums, n_done), fn.resolution(n_done)
        if err > STOP_FACTOR * res or n_done >= problem.n_max:
            break
        if backend != FAST_BACKEND:  # the rest of the cell on the backend its predicted size pays for
            rest = _rest_backend(problem, run, n_done, err, res, nfe, STOP_FACTOR)
            if rest != backend:
                backend, used = rest, f"{used}, then {rest}"
        batch += 1
        x0 = batch_start_points(problem, batch, min(n_done, problem.n_max - n_done))
    row.update(error=err, metric=problem.metric.name, floor=0.0, resolution=res, nfe=nfe, n_samples=n_done,
               wall_time=wall, backend=used)  # fmt: skip
    return row


def _rest_backend(problem: Problem, run: Run, n_done: int, err: float, res: float, nfe: int, stop: float) -> str:
    """The backend of a sequential cell's remaining batches, from its estimate after ``n_done`` samples: the
    predicted final sample (:func:`~sdekit.bench._backend.predicted_samples`) less ``n_done``. The estimate is
    noisy (about half a resolution), so a cell near its stopping point may compile a kernel that it then uses for a
    batch or two; the cell decides again after each batch on numpy."""
    total = predicted_samples(n_done, err, res, problem.n_max, stop)
    return cell_backend(problem, run, total - n_done, nfe, calls=max(1, round(math.log2(total / n_done))))


def _process(problem: Problem, run: Run):
    """The process a run integrates: the probability-flow ODE or the reverse SDE of the density's score."""
    score = problem.density.score(problem.sde)
    return problem.sde.probability_flow(score) if run.process == "ode" else problem.sde.reverse(score)


def _cell_task(context, item):
    """One cell on a worker: ``(row, the sample metric's noise floor)`` (the floor when the cell built it)."""
    problem, runs, notes, x_T, reference, sample_metric, target_law = context
    r, budget = item
    run = runs[r]
    cell = dict(reference=reference, sample_metric=sample_metric, target_law=target_law, note=notes.get(run.name, ""))
    return run_cell(problem, run, _process(problem, run), budget, x_T, **cell), sample_metric.floor


def _distributed_rows(client, context, bar) -> list:
    """The cells of a comparison run on a Dask cluster (``client``: see :func:`sdekit.distributed.connect`), in
    the serial order. Each worker builds the SDE metric (and its noise floor, deterministic) on its first cell
    that needs it, as the serial loop does on its first; the client keeps the floor for the report."""
    from ..distributed._client import connect, run_tasks

    problem, runs, *_ = context
    sample_metric = context[5]
    items = [(r, b) for r in range(len(runs)) for b in problem.budgets_for(runs[r].process, runs[r].solver)]
    rows = [None] * len(items)

    def on_result(i, result):
        rows[i] = result[0]
        if sample_metric.floor is None and result[1] is not None:
            sample_metric.floor = result[1]
        bar.update(1)

    with connect(client) as c:
        run_tasks(c, _cell_task, context, items, on_result, name="sdekit-cell")
    return rows


def _peer_rows(problem: Problem, x_T, reference, sample_metric, notes, progress) -> list:
    """The peers' rows (:mod:`sdekit.bench._peers`) on the problem's start points, grid and end ``t_end``."""
    import torch

    from ._peers import PeerTask, peer_runs, run_peer

    score = problem.density.score(problem.sde)
    prs, peer_notes = peer_runs(problem.grid if isinstance(problem.grid, str) else "")
    notes.update(peer_notes)
    rows = []
    with progress_bar(sum(len(problem.budgets_for(p.process)) for p in prs), progress, desc="peers") as bar:
        for pr in prs:
            m = problem.n_ode if pr.process == "ode" else problem.n
            x0 = torch.as_tensor(np.asarray(x_T[:m], dtype=np.float64))
            task = PeerTask(problem.sde, score, x0, problem.t_end, problem.grid, False, problem.seed, False)
            for b in problem.budgets_for(pr.process):
                row = new_row(Run(pr.label, None, pr.process), b, 0, "")
                row["peer"] = pr.package
                t0 = time.perf_counter()
                x, used, note = run_peer(pr, task, b)
                row.update(wall_time=time.perf_counter() - t0, nfe=used, steps=used, note=note, n_samples=m)
                if x is not None:
                    x = x.detach().cpu().numpy().reshape(m, -1)
                    if pr.process == "ode":
                        row["error"] = float(np.sqrt(np.mean(np.sum((x - reference.x) ** 2, axis=1))))
                        row["metric"] = "ode_rms"
                    else:
                        row["error"] = sample_metric(x)
                        row["metric"] = problem.metric.name
                        fl = sample_metric.floor
                        if fl is not None:
                            row.update(floor=fl.mean, resolution=fl.resolution)
                rows.append(row)
                bar.update(1)
    return rows


def _peer_orders(rows, ode_floor: float) -> dict:
    out = {}
    for key in dict.fromkeys((r["solver"], r["process"]) for r in rows if r.get("peer")):
        pts = [r for r in rows if (r["solver"], r["process"]) == key and math.isfinite(r["error"])]
        fl = ode_floor if key[1] == "ode" else max([r["resolution"] for r in pts] + [1e-12])
        out[key] = fit_order([r["nfe"] for r in pts], [r["error"] for r in pts], fl)
    return out


def _to_numpy(x):
    return x.detach().cpu().numpy() if _xp.is_torch(x) else np.asarray(x)


def fit_orders(runs, rows, ode_floor: float) -> dict:
    """``(solver, process) -> order`` fitted on each run's finite errors above its floor (:func:`fit_order`).

    The floor is the reference's for ODE rows and the largest Monte Carlo resolution of the run's SDE rows.
    """
    orders = {}
    for run in runs:
        name, proc = run.name, run.process
        pts = [r for r in rows if r["solver"] == name and r["process"] == proc and math.isfinite(r["error"])]
        if not pts:
            continue
        fl = ode_floor if proc == "ode" else max(max(r["resolution"] for r in pts), 1e-12)
        orders[(name, proc)] = fit_order([r["nfe"] for r in pts], [r["error"] for r in pts], fl)
    return orders


# ----------------------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------------------
def compare(
    density="ring8",
    sde="vp",
    solvers=None,
    nfe=DEFAULT_NFE,
    *,
    grid=DEFAULT_GRID,
    backend=None,
    seed=0,
    n=DEFAULT_N,
    n_max=None,
    n_ode=500,
    metric=DEFAULT_METRIC,
    t_end=None,
    progress=False,
    csv_path=None,
    png_path=None,
    json_path=None,
    client=None,
    peers=False,
    sde_nfe_max=SDE_NFE_MAX,
) -> CompareResult:
    """Error against NFE of several solvers on an analytic density (see the module docstring for the errors).

    Parameters
    ----------
    density : str or AnalyticDensity
        A name in :data:`DENSITIES` or a density object (a Gaussian, a Gaussian mixture, any
        :class:`~sdekit.analytic.AnalyticDensity`).
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
    backend : str, optional
        ``"numpy"``, ``"numba"``, ``"torch"`` or ``"auto"`` for every run; default (None): the ODE rows and the
        references on numpy, each SDE cell on ``"numba"`` where its fused kernel pays for its compilation or cache
        load against the cell's estimated numpy time, else on numpy (:mod:`sdekit.bench._backend`; same numbers to
        round-off). The kernels' states are read once per table (``info["sde_kernels"]``), so a table is the same bit
        for bit serially and on Dask; each row's ``backend`` says which ran.
    seed : int
        Seed of the start points (exact samples of ``p_T``), the solver noise and the reference samples.
    n : int
        Number of samples per SDE run (the first batch of a sequential metric's cell); the noise floor of
        ``mmd_cf`` and ``mmd_exact`` falls like ``1/n`` in ``MMD^2`` (so like ``n^{-1/2}`` in the root shown), that
        of the two-sample metrics like ``n^{-1/2}``.
    n_max : int
        Largest sample of one SDE cell under a sequential metric (``mmd_cf``): a cell doubles its samples until its
        error exceeds 1.5 resolutions or ``n_max`` is reached; default ``1024 n`` (``n_max = n``: one batch of ``n``).
    n_ode : int
        Number of start points of the ODE runs (the first ``min(n, n_ode)`` of the SDE start points); the ODE
        error is pathwise, so it needs few points.
    metric : str
        SDE metric when the exact law is not available, a name in :data:`COMPARE_METRICS`: ``"mmd_cf"`` (default;
        the MMD to the exact ``p_{t_end}`` in the frequency domain, :mod:`sdekit.bench._cfmmd`), ``"mmd_exact"``
        (the signed root of the unbiased kernel MMD^2 to the exact ``p_{t_end}``,
        :func:`sdekit.metrics.mmd_to_mixture`, bandwidth :func:`sdekit.metrics.component_bandwidth`), a
        two-sample metric of ``metrics.SAMPLE_METRICS`` (``sliced_w2``, ``mmd``, ``energy``) against exact
        samples, or one added with :func:`register_metric`.
    t_end : float, optional
        End time (default ``sde.eps``).
    csv_path, png_path, json_path : str, optional
        Where to write the rows, the work-precision plot and the JSON result.
    client : distributed.Client or str, optional
        Run the cells (one solve and its error per solver and budget) on a Dask cluster: a ``distributed.Client``,
        a scheduler address or ``"local:N"`` (a local cluster of ``N`` processes, closed afterwards; see
        :func:`sdekit.distributed.connect`). The rows equal the serial ones (but for ``wall_time``). Default
        ``None``: serial, in this process. Needs ``pip install 'sdekit[distributed]'``.
    sde_nfe_max : int
        The SDE rows run the budgets up to this one (default :data:`SDE_NFE_MAX` = 64; 0 or None: all of ``nfe``):
        resolving the second-order SDE solvers beyond it takes millions of samples per cell. Not applied to the
        Gaussian densities, whose SDE errors are exact laws.
    peers : bool
        Add k-diffusion's samplers and diffusers' schedulers as rows, on the same start points, grid and end
        (:mod:`sdekit.bench._peers`: how each is driven and counted); their SDE rows use one batch of ``n`` samples.
        Needs ``pip install 'sdekit[bench]'``.
    """
    start_time = time.perf_counter()
    check_output_paths(csv_path=csv_path, png_path=png_path, json_path=json_path)  # before any work
    versions = _versions(peers)
    problem, specs = check_problem(density, sde, solvers, nfe, grid, backend, seed, n, n_ode, metric, t_end, n_max,
                                   sde_nfe_max)  # fmt: skip
    study = _prepare(problem, specs)
    rows = _cell_rows(study, client, progress)
    if peers:
        rows += _peer_rows(problem, study.x_T, study.reference, study.sample_metric, study.notes, progress)
    orders = fit_orders(study.runs, rows, study.ode_floor)
    orders.update(_peer_orders(rows, study.ode_floor))
    _label_rows(rows, problem)
    result = CompareResult(rows=rows, orders=orders, info=_info(study, rows, versions))
    result.info["wall_time"] = time.perf_counter() - start_time
    write_outputs(result, csv_path, json_path, png_path)
    return result


# ----------------------------------------------------------------------------------------------------------
# the steps of the study (in the order compare takes them)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Study:
    """What the cells of one comparison share, and the descriptions of its references for the report."""

    problem: Problem
    score: object  # the density's score under the problem's SDE
    x_T: object  # the start points: exact samples of p_T, shared by every run
    runs: list
    notes: dict
    reference: object  # the ODE rows' reference flow (None without ODE rows)
    info_ref: str
    ref_short: str
    ode_floor: float
    sample_metric: SampleMetric
    target_law: object  # the exact p(t_end) (mean, cov) when the density's flow is one Gaussian, else None
    sde_desc: str


def _versions(peers: bool) -> dict:
    """The peers' package versions when ``peers`` (empty otherwise)."""
    versions = {}
    if peers:
        from ._peers import peer_versions

        versions = peer_versions()
    return versions


def _prepare(problem: Problem, specs) -> _Study:
    """The start points, the plan of runs, the ODE reference and the SDE metric of a checked problem."""
    dens, sde_obj, T, seed = problem.density, problem.sde, problem.T, problem.seed
    score = dens.score(sde_obj)

    # start points: exact samples of p_T, shared by every run
    x_T = dens.sample(problem.n, seed=seed, t=T, sde=sde_obj)
    runs, notes = plan_runs(specs)
    problem = with_sde_costs(problem, runs)  # the SDE kernels' states, read once for the whole table

    reference = None
    info_ref, ref_short, ode_floor = "none (no ODE solver run)", "reference", 0.0
    if any(run.process == "ode" for run in runs):
        reference = reference_flow(dens, sde_obj, x_T[: problem.n_ode], T, problem.t_end)
        info_ref, ref_short, ode_floor = reference.description, reference.short, reference.fit_floor

    record = problem.metric
    sample_metric = SampleMetric(record, record.target(dens, sde_obj, problem.t_end, problem.n, seed))
    sde_desc = record.report_line(sample_metric.target)
    target_law = None
    if dens.exact_flow:  # p_t is one Gaussian: the exact output laws of affine solvers
        target_law = dens.mean_cov(problem.t_end, sde_obj)
        sde_desc = (
            "exact W2 between the solver's exact output law (bench.exact_law) and p(t_end) (no Monte Carlo noise); "
            f"for solvers exact_law does not cover: {sde_desc}"
        )
    return _Study(problem, score, x_T, runs, notes, reference, info_ref, ref_short, ode_floor, sample_metric,
                  target_law, sde_desc)  # fmt: skip


def _cell_rows(study: _Study, client, progress) -> list:
    """The rows of sdekit's cells (one per run and budget), serially or on a Dask cluster (``client``)."""
    problem, runs, notes = study.problem, study.runs, study.notes
    reference, sample_metric, target_law = study.reference, study.sample_metric, study.target_law
    rows = []
    n_cells = sum(len(problem.budgets_for(r.process, r.solver)) for r in runs)
    with progress_bar(n_cells, progress, desc="compare") as bar:
        if client is not None:  # the same cells on a Dask cluster, rows in the same order
            context = (problem, runs, notes, study.x_T, reference, sample_metric, target_law)
            rows = _distributed_rows(client, context, bar)
        else:
            sde_obj, score = problem.sde, study.score
            for run in runs:
                process = sde_obj.probability_flow(score) if run.process == "ode" else sde_obj.reverse(score)
                note = notes.get(run.name, "")
                for b in problem.budgets_for(run.process, run.solver):
                    cell = dict(reference=reference, sample_metric=sample_metric, target_law=target_law, note=note)
                    rows.append(run_cell(problem, run, process, b, study.x_T, **cell))
                    bar.update(1)
    return rows


def _label_rows(rows, problem: Problem) -> None:
    """Stamp every row with the density, the SDE class and the grid."""
    for r in rows:
        r.update(density=problem.density_name, sde=type(problem.sde).__name__, grid=problem.grid)


def _info(study: _Study, rows, versions: dict) -> dict:
    """The ``info`` of the result (the problem, the references, the metric, what was skipped), but the wall time."""
    problem, runs, notes = study.problem, study.runs, study.notes
    dens, sde_obj = problem.density, problem.sde
    return {
        "density": problem.density_name,
        "density_description": problem.density_description,
        "sde": repr(sde_obj),
        "grid": problem.grid,
        "t_end": problem.t_end,
        "n": problem.n,
        "n_ode": problem.n_ode,
        "seed": problem.seed,
        "backend": problem.backend_label,
        "sde_kernels": dict(problem.sde_states),
        "n_max": problem.n_max,
        "sde_nfe_max": 0 if dens.exact_flow else problem.sde_nfe_max,
        "sde_uncompiled": sorted(
            r.name for r in runs if r.process == "sde" and not dens.exact_flow and not problem.compiled_sde(r.solver)
        ),
        "nfe": problem.budgets,
        "ode_reference": study.info_ref,
        "ode_reference_short": study.ref_short,
        "sde_metric": problem.metric.name,
        "sde_metric_description": study.sde_desc,
        "noise_floor": study.sample_metric.floor,
        "versions": versions,
        "skipped": {name: note for name, note in notes.items() if not any(r["solver"] == name for r in rows)},
    }
