"""The result of :func:`sdekit.bench.compare`: rows, fitted orders, and their table, report, CSV, JSON and plot."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field

import numpy as np

from ._problems import GRID_DESCRIPTIONS

__all__ = ["CompareResult", "CSV_COLUMNS"]

#: The columns of :meth:`CompareResult.to_csv`, in order.
CSV_COLUMNS = (
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
    "n_samples",
    "fd",
    "peer",
    "backend",
)


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

    def table(self, value: str = "error", process: str | None = None) -> str:
        """A fixed-width table: one line per (solver, process), one column per NFE budget, and the fitted order.

        ``value``: the row field shown (``"error"``, or ``"fd"`` for a model's sample metric, which shows no order and
        marks values within its floor's resolution); ``process``: only the rows of ``"ode"`` or ``"sde"``. Peers'
        rows (``peer`` set) follow sdekit's, after a separator.
        """
        rows = [r for r in self.rows if process is None or r["process"] == process]
        budgets = sorted({r["nfe_budget"] for r in rows})
        w = max([18] + [len(r["solver"]) + 2 for r in rows])  # solver specs with options can be long
        head = f"{'solver':<{w}}{'process':<8}{'metric':<11}" + "".join(f"{'NFE=' + str(b):>11}" for b in budgets)
        head += f"{'order':>8}" if value == "error" else ""
        lines = [head, "-" * len(head)]
        cells = {(r["solver"], r["process"], r["nfe_budget"]): r for r in rows}
        fd_res = getattr(self.info.get("noise_floor"), "resolution", 0.0) if value == "fd" else 0.0
        keys = list(dict.fromkeys((r["solver"], r["process"], r.get("peer", "")) for r in rows))
        keys.sort(key=lambda k: bool(k[2]))  # stable: sdekit's rows first, then the peers'
        for i, (solver, proc, peer) in enumerate(keys):
            if peer and (i == 0 or not keys[i - 1][2]):
                lines.append("-" * len(head))
            key = (solver, proc)
            metric = (
                self.info.get("sample_metric", "")
                if value == "fd"
                else next((r["metric"] for r in rows if (r["solver"], r["process"]) == key and r["metric"]), "")
            )
            line = f"{solver:<{w}}{proc:<8}{metric:<11}"
            for b in budgets:
                r = cells.get(key + (b,))
                v = float("nan") if r is None else r.get(value, float("nan"))
                if not math.isfinite(v):
                    line += f"{'-':>11}"
                    continue
                res = fd_res if value == "fd" else r["resolution"]
                mark = "~" if res > 0 and v <= res else " "
                line += f"{v:>10.3e}{mark}" if value == "error" else f"{v:>10.4g}{mark}"
            if value == "error":
                order = self.orders.get(key, float("nan"))
                line += f"{order:>8.2f}" if math.isfinite(order) else f"{'-':>8}"
            lines.append(line)
        return "\n".join(lines)

    def report(self) -> str:
        """Header (configuration, reference, metric and noise floor), the table, and notes on skipped runs."""
        if self.info.get("kind") == "model":
            return model_report(self)
        i = self.info
        out = [
            f"density: {i['density']} ({i['density_description']})",
            f"sde: {i['sde']}, grid: {i['grid']} ({GRID_DESCRIPTIONS.get(i['grid'], 'custom')}), "
            f"t_end: {i['t_end']:g}, n: {i['n']}, seed: {i['seed']}, backend: {i['backend']}",
            f"ODE error (ode_rms): RMS endpoint distance to the reference flow of the same start points; "
            f"reference: {i['ode_reference']}",
            f"SDE error: {i['sde_metric_description']}",
        ]
        cap = i.get("sde_nfe_max") or 0
        if cap and any(b > cap for b in i.get("nfe", [])):
            out.append(
                f"  SDE rows run the NFE budgets up to {cap} (--sde-nfe-max; 0 runs all): beyond it the second-order "
                "SDE solvers' errors need millions of samples per cell to be resolved"
            )
        if cap and i.get("sde_uncompiled") and any(b > cap // 2 for b in i.get("nfe", [])):
            out.append(
                f"  SDE rows of the solvers without a compiled SDE kernel stop at NFE {cap // 2} (their Python step "
                f"loop costs ~50x per sample-step): {', '.join(i['sde_uncompiled'])}"
            )
        if i.get("noise_floor") is not None:
            fl = i["noise_floor"]
            text = str(fl) if fl.repeats else f"mean 0, sd {fl.std:.2g} (closed form); resolution {fl.resolution:.3g}"
            out.append(f"  Monte Carlo noise floor of {i['sde_metric']} at n={i['n']}: {text}")
            out.append(
                "  '~' marks errors below the resolution mean + 2 std of the floor (not resolved); "
                "orders are fitted on the 3 largest-NFE resolved points"
            )
        if i.get("versions"):
            out.append("peers: " + ", ".join(f"{k} {v}" for k, v in i["versions"].items()) + " (see docs/workbench.md)")
        out += ["", self.table()]
        unresolved = [r for r in self.rows if r["resolution"] > 0 and r["error"] <= r["resolution"]]
        if unresolved:
            out.append(
                f"\n{len(unresolved)} SDE errors are within the Monte Carlo resolution: raise --n (the floor falls "
                "like n^-1/2 in the error units shown), or use --density gaussian / gaussian10, whose SDE errors "
                "come from exact laws."
            )
        notes = sorted({f"{r['solver']} ({r['process']}): {r['note']}" for r in self.rows if r["note"]})
        notes += [f"{k}: {v}" for k, v in sorted(i.get("skipped", {}).items())]
        if notes:
            out += ["", "notes:"] + [f"  {s}" for s in notes]
        out.append(f"\ntotal wall time {i['wall_time']:.1f} s")
        return "\n".join(out)

    def computed(self) -> bool:
        """Whether any row has a finite error (a run whose every row was skipped or failed computed nothing)."""
        return any(math.isfinite(r["error"]) for r in self.rows)

    def why_empty(self) -> str:
        """The reasons rows are missing or empty (row notes and skipped solvers), one per line."""
        notes = sorted({f"{r['solver']} ({r['process']}): {r['note']}" for r in self.rows if r["note"]})
        notes += [f"{k}: {v}" for k, v in sorted(self.info.get("skipped", {}).items())]
        return "\n".join(notes) if notes else "no solver produced a row"

    def to_csv(self, path):
        """Write the rows as CSV (one line per run)."""
        keys = list(CSV_COLUMNS)
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
        """Work-precision plot (error against NFE, log-log), one panel per measurement, as a PNG (Agg backend)."""
        from ._plot import plot_result

        plot_result(self, path)


def write_outputs(result: CompareResult, csv_path, json_path, png_path) -> None:
    """Write a result's rows (CSV), JSON and work-precision plot (PNG) to the paths given (None: not written)."""
    if csv_path is not None:
        result.to_csv(csv_path)
    if json_path is not None:
        result.to_json(json_path)
    if png_path is not None:
        result.plot(png_path)


def model_report(result: CompareResult) -> str:
    """The report of :func:`sdekit.bench.compare_model`: header, the ODE-error table, the sample-quality table."""
    i = result.info
    floor = i.get("noise_floor")
    out = [
        f"model: {i['model_description']}",
        f"sde: {i['sde']}, grid: {i['grid']} ({GRID_DESCRIPTIONS.get(i['grid'], 'custom')}), t_end: {i['t_end']:g}, "
        f"n: {i['n']} samples per run, n_ode: {i['n_ode']}, seed: {i['seed']}, backend: {i['backend']}",
        "every run starts from the same prior samples x_T and ends with the final denoising step; NFE counts every "
        "score evaluation per sample, that one included",
        f"ODE error (ode_rms): RMS over the first {i['n_ode']} start points of |x - x_ref|, the reference solve of the "
        f"same start points; reference: {i['ode_reference']}; '~': below that estimate",
    ]
    if i.get("sample_metric"):
        line = f"sample quality ({i['sample_metric']}, lower is better) of every row's {i['n']} samples"
        if floor is not None:
            line += (f"; floor (the metric of {i['n']} real training samples, 5 random subsets): {floor}; "
                     "'~': within the floor's resolution")  # fmt: skip
        out.append(line)
    if i.get("versions"):
        out.append("peers: " + ", ".join(f"{k} {v}" for k, v in i["versions"].items()) + " (see docs/workbench.md)")
    out += ["", "ODE error against the reference (probability-flow ODE rows)", result.table("error", "ode")]
    if i.get("sample_metric"):
        out += ["", f"sample quality: {i['sample_metric']} (all rows)", result.table("fd")]
    notes = sorted({f"{r['solver']} ({r['process']}): {r['note']}" for r in result.rows if r["note"]})
    notes += [f"{k}: {v}" for k, v in sorted(i.get("skipped", {}).items())]
    if notes:
        out += ["", "notes:"] + [f"  {s}" for s in notes]
    out.append(f"\ntotal wall time {i['wall_time']:.1f} s")
    return "\n".join(out)
