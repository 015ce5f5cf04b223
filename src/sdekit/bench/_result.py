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
            f"sde: {i['sde']}, grid: {i['grid']} ({GRID_DESCRIPTIONS.get(i['grid'], 'custom')}), "
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
