"""``sdekit compare --model``: the workbench on a learned score (:func:`compare_model`).

A model is ``"digits"`` (:func:`sdekit.zoo.digits`) or ``"module:factory"``: ``factory()`` returns
``(sde, score, shape)`` -- a :class:`~sdekit.LinearSDE`, a score ``score(x, t)`` (a torch module behind
:func:`sdekit.score_from_denoiser`, or a numpy callable) and the event shape -- optionally followed by a sample
metric ``frechet(x) -> float`` (lower is better) and its floor, or an object with those attributes (as
:class:`sdekit.zoo.Digits`).

Every run starts from the same ``n`` prior samples ``x_T`` (seed ``seed``), integrates to ``sde.eps`` on the chosen
grid and applies the final denoising step, which counts as one NFE (the steps of a budget ``B`` are the largest
``s`` with ``s * nfe_per_step + 1 <= B``). Two measurements per run:

* **ODE error** (probability-flow ODE rows): the RMS over the first ``n_ode`` start points of the pixel distance
  ``|x - x_ref|`` to a reference solve of the same start points, sdekit's adaptive ``dopri5`` at
  ``rtol = atol = REF_TOL`` followed by the same denoising step; its own error is estimated by the RMS distance to
  the same solve at ``10 * REF_TOL`` (an overestimate: the error of the looser solve), and errors below it are not
  resolved.
* **Sample quality** (every row): the metric of the model, for ``digits`` the Fréchet distance in the zoo's fixed
  classifier feature space to the held-out test digits (:mod:`sdekit.zoo.frechet`: a nonlinear feature map, since
  in any linear one the FD sees only means and covariances), with its floor: the FD of ``n`` training digits
  (random subsets, 5 draws) to the same test digits, what a perfect model of the training data scores.

A grid of 16 samples per row at one NFE is written as a PNG (:func:`write_sample_grid`).
"""

from __future__ import annotations

import importlib
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..grids import GRIDS
from ..metrics import NoiseFloor
from ..progress import progress_bar
from ..sdes import LinearSDE
from ..validation import check_output_paths, integer_at_least, positive_int
from ._orders import fit_order
from ._plan import check_nfe, plan_runs
from ._problems import fixed_step_solvers
from ._result import CompareResult, write_outputs

__all__ = [
    "compare_model", "load_model", "LoadedModel", "MODEL_NFE", "MODEL_N", "MODEL_SOLVERS", "REF_TOL",
    "write_sample_grid",
]  # fmt: skip

#: Default solvers of :func:`compare_model` (``solvers="all"``: every registered fixed-step solver): one or two of
#: each family, so that the default run on the digits model answers in a few minutes on a laptop CPU (measured in
#: docs/workbench.md); every solver takes 4-5 times as long.
MODEL_SOLVERS = ("euler", "heun", "dpmpp_2m", "dpmpp_3m_pc", "ipndm", "euler_maruyama", "dpmpp_2m_sde")
#: Default NFE budgets, samples and ODE start points of :func:`compare_model`.
MODEL_NFE = (8, 16, 32)
MODEL_N = 1000
MODEL_N_ODE = 200
#: Tolerance of the reference solve of the ODE rows.
REF_TOL = 1e-6
#: Samples per row in the sample grid.
GRID_SAMPLES = 16


@dataclass
class LoadedModel:
    """A model for :func:`compare_model`: the SDE, score and event shape, and its sample metric (optional)."""

    name: str
    sde: object
    score: object
    shape: tuple
    metric: object = None  # x -> float, lower is better
    metric_name: str = "fd"
    floor: object = None  # n -> NoiseFloor, or None
    sigma_data: float = 0.5
    description: str = ""


def _digits() -> LoadedModel:
    from .. import zoo

    try:
        m = zoo.digits()
    except ImportError as exc:
        raise ImportError(f"--model digits: {exc}") from None
    train, n_train = m.train, m.train.shape[0]

    def floor(n: int) -> NoiseFloor:
        size = min(n, n_train)
        rng = np.random.default_rng(0)
        vals = [m.frechet(train[rng.choice(n_train, size, replace=False)]) for _ in range(5)]
        return NoiseFloor(float(np.mean(vals)), float(np.std(vals, ddof=1)), 5)

    desc = (f"sdekit.zoo.digits (EDM denoiser of the 8x8 digits, sigma_data {m.sigma_data}, weights "
            f"{m.sha256[:12]}); FD: Fréchet distance in the zoo's classifier features to the {m.test.shape[0]} "
            "held-out test digits")  # fmt: skip
    return LoadedModel("digits", m.sde, m.score, tuple(m.shape), m.frechet, "fd", floor, m.sigma_data, desc)


def load_model(spec) -> LoadedModel:
    """``"digits"`` or ``"module:factory"`` as a :class:`LoadedModel`; ``ValueError`` / ``ImportError`` (one line,
    what to fix) otherwise."""
    if isinstance(spec, LoadedModel):
        return spec
    if spec == "digits":
        return _digits()
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"--model {spec!r}: give 'digits' or 'module:factory' (factory() returns (sde, score, shape))")
    mod_name, fn_name = spec.split(":")
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:  # noqa: BLE001 -- any import failure of the user's module is reported, in one line
        raise ValueError(f"--model {spec!r}: cannot import module {mod_name!r} ({type(exc).__name__}: {exc}); "
                         "put it on PYTHONPATH") from None  # fmt: skip
    factory = getattr(module, fn_name, None)
    if not callable(factory):
        raise ValueError(f"--model {spec!r}: module {mod_name!r} has no callable {fn_name!r}")
    try:
        out = factory()
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"--model {spec!r}: {fn_name}() raised {type(exc).__name__}: {exc}") from None
    return _check_factory_output(spec, out)


def _check_factory_output(spec: str, out) -> LoadedModel:
    want = "(sde, score, shape) or (sde, score, shape, metric, floor)"
    if all(hasattr(out, a) for a in ("sde", "score", "shape")):
        parts = [out.sde, out.score, out.shape, getattr(out, "frechet", None), getattr(out, "floor", None)]
    elif isinstance(out, tuple) and len(out) in (3, 5):
        parts = list(out) + [None, None][: 5 - len(out)]
    else:
        raise ValueError(f"--model {spec!r}: the factory must return {want}, got {type(out).__name__}")
    sde, score, shape, metric, floor = parts
    if not isinstance(sde, LinearSDE):
        raise ValueError(f"--model {spec!r}: the factory's sde must be an sdekit LinearSDE, got {type(sde).__name__}")
    if not callable(score):
        raise ValueError(f"--model {spec!r}: the factory's score must be callable score(x, t), got {score!r}")
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"--model {spec!r}: the factory's shape must be a tuple of ints, got {shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"--model {spec!r}: the factory's shape must be positive ints, got {shape!r}")
    if metric is not None and not callable(metric):
        raise ValueError(f"--model {spec!r}: the factory's metric must be callable metric(x) -> float")
    floor_fn = None
    if floor is not None:
        floor_fn = floor if callable(floor) else (lambda n, f=float(floor): NoiseFloor(f, 0.0, 1))
    desc = f"{spec} (user model, event shape {shape})" + ("" if metric is not None else "; no sample metric given")
    return LoadedModel(spec, sde, score, shape, metric, "metric", floor_fn, 0.5, desc)


def _torch_dtype(score):
    """The torch dtype of a torch-module score (its parameters'), else None (a numpy score)."""
    try:
        import torch
    except ImportError:
        return None
    mod = getattr(score, "fn", score)
    if isinstance(mod, torch.nn.Module):
        p = next(iter(mod.parameters()), None)
        return torch.float32 if p is None else p.dtype
    return None


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64) if hasattr(x, "detach") else np.asarray(x, dtype=np.float64)


def _reference(model: LoadedModel, x0, t_end):
    """``(x_ref, estimate, nfe)``: dopri5 at REF_TOL and its error estimate (the distance to 10 * REF_TOL)."""
    from ..integrate import sample

    outs = []
    for tol in (REF_TOL, 10 * REF_TOL):
        sol = sample(model.sde, model.score, x_T=x0, solver="dopri5", process="ode", rtol=tol, atol=tol,
                     t_end=t_end, denoise=True)  # fmt: skip
        outs.append((_numpy(sol.x).reshape(x0.shape[0], -1), int(np.ceil(sol.nfe))))
    est = float(np.sqrt(np.mean(np.sum((outs[0][0] - outs[1][0]) ** 2, axis=1))))
    return outs[0][0], est, outs[0][1]


def _new_row(label, process, budget, peer=""):
    return {"solver": label, "process": process, "nfe_budget": budget, "steps": 0, "nfe": 0, "error": math.nan,
            "metric": "", "floor": math.nan, "resolution": 0.0, "kl": math.nan, "wall_time": 0.0, "note": "",
            "n_samples": 0, "fd": math.nan, "peer": peer}  # fmt: skip


def compare_model(
    model="digits",
    solvers=None,
    nfe=MODEL_NFE,
    *,
    grid="karras",
    seed=0,
    n=MODEL_N,
    n_ode=MODEL_N_ODE,
    peers=False,
    grid_nfe=None,
    progress=False,
    csv_path=None,
    png_path=None,
    json_path=None,
    samples_path=None,
) -> CompareResult:
    """Error and sample quality against NFE of sdekit's solvers (and the peers') on a learned score.

    Parameters
    ----------
    model : str
        ``"digits"`` or ``"module:factory"`` (see the module docstring).
    solvers : list of str or "all", optional
        Solver specs as in :func:`compare`; default :data:`MODEL_SOLVERS` (seven, one or two per family: a few
        minutes on the digits model); ``"all"``: every registered fixed-step solver (4-5 times the cost).
    nfe : sequence of int
        NFE budgets, the final denoising evaluation included.
    grid : str
        Schedule name (default ``"karras"``, EDM's).
    seed : int
        Seed of the start points and of the solvers' noise.
    n, n_ode : int
        Samples per run (for the sample metric) and start points of the ODE error (the first ``n_ode`` of them).
    peers : bool
        Add k-diffusion's samplers and diffusers' schedulers as rows (:mod:`sdekit.bench._peers`).
    grid_nfe : int, optional
        The NFE budget of the sample grid (default: the middle of ``nfe``).
    csv_path, png_path, json_path, samples_path : str, optional
        Where to write the rows, the plot, the JSON result and the sample grid.
    """
    start = time.perf_counter()
    budgets, n, n_ode, grid_nfe = _check_model_args(nfe, n, n_ode, grid, grid_nfe)
    check_output_paths(csv_path=csv_path, png_path=png_path, json_path=json_path, samples_path=samples_path)
    versions = {}
    if peers:
        from ._peers import peer_versions

        versions = peer_versions()
    if solvers is None or solvers == "all":
        solvers = list(MODEL_SOLVERS) if solvers is None else fixed_step_solvers()
    runs, notes = plan_runs(list(solvers))
    model = load_model(model)
    sde, score = model.sde, model.score
    t_end = float(sde.eps)
    dtype = _torch_dtype(score)
    x_T = sde.prior_sample((n,) + model.shape, seed=seed)
    if dtype is not None:
        import torch

        x_T = torch.as_tensor(x_T, dtype=dtype)
    floor = model.floor(n) if model.floor is not None else None
    study = _ModelStudy(model, runs, notes, budgets, grid, grid_nfe, seed, n, n_ode, t_end, x_T, dtype, floor)
    if peers:
        _plan_peers(study)
    rows, grids, ref_est, ref_desc = _model_rows(study, progress)
    orders = _ode_orders(rows, ref_est)
    info = {
        "kind": "model",
        "model": model.name,
        "model_description": model.description,
        "sde": repr(sde),
        "grid": grid,
        "t_end": t_end,
        "n": n,
        "n_ode": n_ode,
        "seed": seed,
        "nfe": budgets,
        "ode_reference": ref_desc,
        "ode_reference_short": f"dopri5 rtol={REF_TOL:g}",
        "reference_error": ref_est,
        "sample_metric": model.metric_name if model.metric is not None else "",
        "noise_floor": floor,
        "versions": versions,
        "grid_nfe": grid_nfe,
        "backend": "torch" if dtype is not None else "numpy",
    }
    _label_rows(rows, notes, model.name, sde, grid)
    result = CompareResult(rows=rows, orders=orders, info=info)
    result.info["skipped"] = {k: v for k, v in notes.items() if not any(r["solver"] == k for r in rows)}
    result.info["wall_time"] = time.perf_counter() - start
    write_outputs(result, csv_path, json_path, png_path)
    if samples_path is not None:
        write_sample_grid(grids, samples_path, title=f"{model.name}: {GRID_SAMPLES} samples per solver at NFE "
                          f"{grid_nfe} ({grid} grid, seed {seed})")  # fmt: skip
    return result


# ----------------------------------------------------------------------------------------------------------
# the steps of compare_model (in the order it takes them)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _ModelStudy:
    """What the rows of one :func:`compare_model` call share: the model, the plan, the start points and the
    peers' plan (filled by :func:`_plan_peers`)."""

    model: LoadedModel
    runs: list
    notes: dict
    budgets: tuple
    grid: str
    grid_nfe: int
    seed: int
    n: int
    n_ode: int
    t_end: float
    x_T: object  # the n prior samples (a torch tensor when the score is a torch module)
    dtype: object  # the score's torch dtype, or None for a numpy score
    floor: object  # the sample metric's NoiseFloor at n samples, or None
    peer_list: list = field(default_factory=list)
    task: object = None  # the peers' PeerTask


def _check_model_args(nfe, n, n_ode, grid, grid_nfe):
    """``(budgets, n, n_ode, grid_nfe)`` checked (ValueError/TypeError naming the argument)."""
    budgets = check_nfe(nfe)
    n = integer_at_least("n", n, 2)
    n_ode = min(positive_int("n_ode", n_ode), n)
    if not isinstance(grid, str) or grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; valid grids: {sorted(GRIDS)}")
    grid_nfe = budgets[len(budgets) // 2] if grid_nfe is None else int(grid_nfe)
    if grid_nfe not in budgets:
        raise ValueError(f"grid_nfe must be one of the NFE budgets {budgets}, got {grid_nfe}")
    return budgets, n, n_ode, grid_nfe


def _plan_peers(study: _ModelStudy) -> None:
    """The peers' rows to run on the study's grid and their shared task; their notes join the study's."""
    from ._peers import PeerTask, peer_runs

    model, dtype, x_T = study.model, study.dtype, study.x_T
    study.peer_list, peer_notes = peer_runs(study.grid)
    study.notes.update(peer_notes)
    study.task = PeerTask(model.sde, model.score, x_T if dtype is not None else _torch_x(x_T), study.t_end, study.grid,
                          True, study.seed, dtype is not None, model.sigma_data)  # fmt: skip


def _model_rows(study: _ModelStudy, progress):
    """``(rows, grids, ref_est, ref_desc)``: the reference solve, then one row per run (sdekit's, then the peers')
    and budget, and the first ``GRID_SAMPLES`` samples of each row at ``grid_nfe``."""
    model, runs, peer_list, budgets, n = study.model, study.runs, study.peer_list, study.budgets, study.n
    x_T, n_ode, floor, grid_nfe = study.x_T, study.n_ode, study.floor, study.grid_nfe
    n_cells = (len(runs) + len(peer_list)) * len(budgets) + 1
    if progress:  # the cost, stated before the work (measured rates: docs/workbench.md)
        evals = (len(runs) + len(peer_list)) * sum(budgets) * n
        print(
            f"compare --model {model.name}: {len(runs) + len(peer_list)} rows x NFE {list(budgets)} x {n} samples = "
            f"{evals / 1e6:.2g}M score evaluations, plus a reference solve of {n_ode} start points",
            file=sys.stderr,
        )
    rows, grids = [], {}
    with progress_bar(n_cells, progress, desc=f"compare --model {model.name}") as bar:
        t0 = time.perf_counter()
        x_ref, ref_est, ref_nfe = _reference(model, x_T[:n_ode], study.t_end)
        ref_desc = (f"sdekit dopri5 at rtol=atol={REF_TOL:g} (+ final denoising; NFE {ref_nfe}, "
                    f"{time.perf_counter() - t0:.1f} s); its error, estimated as the RMS distance to the same solve "
                    f"at rtol=atol={10 * REF_TOL:g}: {ref_est:.1e}")  # fmt: skip
        bar.update(1)
        for run in runs:
            for b in budgets:
                row = _new_row(run.name, run.process, b)
                x = _solve_row(model, run, b, x_T, study.grid, study.seed, study.t_end, row, study.notes)
                _measure(row, x, model, x_ref, n_ode, floor, ref_est)
                if x is not None and b == grid_nfe:
                    grids[(run.name, run.process)] = _numpy(x[:GRID_SAMPLES])
                rows.append(row)
                bar.update(1)
        for prun in peer_list:
            from ._peers import run_peer

            for b in budgets:
                row = _new_row(prun.label, prun.process, b, prun.package)
                t1 = time.perf_counter()
                x, used, note = run_peer(prun, study.task, b)
                row.update(wall_time=time.perf_counter() - t1, nfe=used, steps=used, note=note)
                _measure(row, x, model, x_ref, n_ode, floor, ref_est)
                if x is not None and b == grid_nfe:
                    grids[(prun.label, prun.process)] = _numpy(x[:GRID_SAMPLES])
                rows.append(row)
                bar.update(1)
    return rows, grids, ref_est, ref_desc


def _ode_orders(rows, ref_est: float) -> dict:
    """``(solver, process) -> order`` of the ODE rows, fitted above the reference's error estimate."""
    orders = {}
    for key in dict.fromkeys((r["solver"], r["process"]) for r in rows):
        if key[1] == "ode":
            pts = [r for r in rows if (r["solver"], r["process"]) == key]
            orders[key] = fit_order([r["nfe"] for r in pts], [r["error"] for r in pts], ref_est)
    return orders


def _label_rows(rows, notes: dict, name: str, sde, grid: str) -> None:
    """Give a row without a note its run's planning note, and stamp every row with the model, SDE class and grid."""
    notes_rows = {k: v for k, v in notes.items()}
    for r in rows:
        if not r["note"] and r["solver"] in notes_rows:
            r["note"] = notes_rows[r["solver"]]
        r.update(density=name, sde=type(sde).__name__, grid=grid)


def _torch_x(x):
    import torch

    return torch.as_tensor(x, dtype=torch.float64)


def _solve_row(model, run, budget, x_T, grid, seed, t_end, row, notes):
    from ..integrate import sample

    k = int(run.solver.nfe_per_step)
    steps = (budget - 1) // k
    if steps < 1:
        row["note"] = f"needs {k} NFE per step and 1 for the final denoising; smaller budgets skipped"
        return None
    t0 = time.perf_counter()
    try:
        sol = sample(model.sde, model.score, x_T=x_T, solver=run.solver, steps=steps, grid=grid, process=run.process,
                     seed=seed, t_end=t_end, denoise=True)  # fmt: skip
    except (ValueError, TypeError, NotImplementedError) as exc:
        row["note"] = f"not run: {exc}"
        return None
    row.update(wall_time=time.perf_counter() - t0, nfe=int(sol.nfe), steps=steps)
    return sol.x


def _measure(row, x, model, x_ref, n_ode, floor, ref_est):
    """Fill ``row`` from the samples ``x``: the ODE error (ODE rows) and the sample metric."""
    if x is None:
        return
    xn = _numpy(x)
    row["n_samples"] = int(xn.shape[0])
    if not np.all(np.isfinite(xn)):
        row["note"] = (row["note"] + "; " if row["note"] else "") + "non-finite samples"
        return
    if model.metric is not None:
        row["fd"] = float(model.metric(xn))
    if row["process"] == "ode":
        d = xn[:n_ode].reshape(n_ode, -1) - x_ref
        row.update(error=float(np.sqrt(np.mean(np.sum(d * d, axis=1)))), metric="ode_rms", resolution=ref_est)
    else:
        row.update(error=row["fd"], metric=model.metric_name if model.metric is not None else "")
        if floor is not None:
            row.update(floor=floor.mean, resolution=floor.resolution)


def write_sample_grid(grids: dict, path, *, title: str = "", per_row: int = 6):
    """A PNG of one tile per row (solver, process): its samples ``(k, *shape)`` as a mosaic, labelled.

    Images ``(c, h, w)`` with ``c`` 1 (grey, values in ``[-1, 1]``, ink dark) or 3 (RGB); 2-D events ``(h, w)``.
    Any other event (a vector ``(d,)``, a sequence ``(c, L)``, ...) is not an image: its tile is a scatter plot of the
    first two coordinates of the flattened samples (a strip of points for ``d = 1``), on the axes of all tiles.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = list(grids)
    if not keys:
        return None
    cols = min(per_row, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(1.9 * cols, 2.15 * nrows + 0.4), dpi=80)
    FigureCanvasAgg(fig)
    points = {k: _points(v) for k, v in grids.items() if not _is_image(v)}
    lims = _limits(np.concatenate(list(points.values()))) if points else None
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, cols, i + 1)
        if key in points:
            ax.scatter(points[key][:, 0], points[key][:, 1], s=6, c="k")
            ax.set_xlim(lims[0])
            ax.set_ylim(lims[1])
            ax.tick_params(labelsize=5)
        else:
            img, cmap = _mosaic(grids[key])
            ax.imshow(img, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
            ax.set_axis_off()
        label = key[0] if len(key[0]) <= 22 else key[0][:21] + "."
        ax.set_title(f"{label} ({key[1]})", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _is_image(x) -> bool:
    """Samples ``(k, h, w)`` or ``(k, c, h, w)`` with ``c`` 1 or 3: drawn as a mosaic of images."""
    return x.ndim == 3 or (x.ndim == 4 and x.shape[1] in (1, 3))


def _points(x) -> np.ndarray:
    """``(k, 2)`` plot coordinates of non-image samples: the first two flattened coordinates (``(x, 0)`` for one)."""
    flat = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    return flat[:, :2] if flat.shape[1] >= 2 else np.column_stack([flat[:, 0], np.zeros(len(flat))])


def _limits(pts) -> tuple:
    """Shared axis limits of the scatter tiles, padded by 5 % (finite points only)."""
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-3)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def _mosaic(x, gap: int = 1):
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    if x.ndim == 3:
        x = x[:, None]
    k, c, h, w = x.shape
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    out = np.zeros((rows * (h + gap) + gap, cols * (w + gap) + gap, c))
    for i in range(k):
        r, cc = divmod(i, cols)
        y0, x0 = gap + r * (h + gap), gap + cc * (w + gap)
        out[y0 : y0 + h, x0 : x0 + w] = np.moveaxis(x[i], 0, -1)
    if c == 1:
        return out[..., 0], "gray_r"
    return (out + 1.0) / 2.0, None
