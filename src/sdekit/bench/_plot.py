"""Styles and series for the workbench's plots: one colour and one marker per solver, families grouped, peers dashed.

Every line of a plot gets its own colour (a shade of its family's colour map) and its own marker. Families are the
solver modules of :mod:`sdekit.solvers` (Runge--Kutta, Euler--Maruyama and stochastic Heun, DPM-Solver, the
exponential predictor-correctors, the score-based samplers, EDM, SRA) and one family per peer package
(k-diffusion, diffusers); they are drawn and listed in the legend one after the other. Peers' lines are dashed.
A point whose error is not resolved (at or below its resolution, or negative) is drawn hollow at its resolution:
an upper bound, not a value.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["family_of", "assign_styles", "draw_series", "legend_label", "plot_result", "FAMILY_ORDER"]

#: Families in drawing order, with their colour map.
FAMILY_ORDER = {
    "runge_kutta": ("Runge-Kutta", "Blues"),
    "stochastic": ("Euler-Maruyama", "Greys"),
    "dpm_solver": ("DPM-Solver++", "Greens"),
    "exp_pc": ("exp. predictor-corrector", "Oranges"),
    "score_based": ("score-based (reverse diffusion, ancestral, PC, Langevin)", "Purples"),
    "edm": ("EDM", "Reds"),
    "sra": ("SRA", "YlOrBr"),
    "other": ("other", "copper"),
    "k-diffusion": ("k-diffusion", "cool"),
    "diffusers": ("diffusers", "autumn"),
}
#: Solver modules drawn with another module's family.
_MODULE_FAMILY = {"dpm_single": "dpm_solver"}
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p", "d", "8", "H", "1", "2", "3", "4", "+", "x")


def family_of(solver: str, peer: str = "") -> str:
    """The family key of a row: the peer package, or the module of the registered solver class (``"other"``)."""
    if peer:
        return peer
    from ..solvers import SOLVERS, parse_solver_spec

    try:
        cls = SOLVERS.get(parse_solver_spec(solver)[0])
    except ValueError:
        cls = None
    if cls is None:
        return "other"
    mod = cls.__module__.rsplit(".", 1)[-1]
    mod = _MODULE_FAMILY.get(mod, mod)
    return mod if mod in FAMILY_ORDER else "other"


def assign_styles(keys) -> dict:
    """``key -> dict(color, marker, linestyle, family)`` for ``keys``: ``(solver, peer)`` pairs (``peer`` is ``""``
    for sdekit's solvers). Colours are distinct shades within a family; markers are distinct across all keys (up to
    21, then they repeat with other colours)."""
    import matplotlib

    keys = list(dict.fromkeys(keys))
    fams = {k: family_of(*k) for k in keys}
    order = list(FAMILY_ORDER)
    keys.sort(key=lambda k: order.index(fams[k]))  # stable within a family
    styles = {}
    counts = {f: sum(1 for k in keys if fams[k] == f) for f in set(fams.values())}
    seen = dict.fromkeys(counts, 0)
    for i, k in enumerate(keys):
        f = fams[k]
        cmap = matplotlib.colormaps[FAMILY_ORDER[f][1]]
        m = counts[f]
        j = seen[f]
        seen[f] += 1
        # shades spread over the darker three quarters of the map (the pale end is invisible on white)
        frac = 0.55 + 0.4 * (j / (m - 1)) if m > 1 else 0.8
        if f in ("k-diffusion", "diffusers"):  # diverging maps: use their whole range
            frac = 0.1 + 0.8 * (j / (m - 1)) if m > 1 else 0.5
        styles[k] = {
            "color": cmap(frac),
            "marker": _MARKERS[i % len(_MARKERS)],
            "linestyle": "--" if k[1] else "-",
            "family": f,
        }
    return styles


def draw_series(ax, nfe, err, resolution, style, label):
    """One line: resolved points filled, unresolved ones (``err <= resolution`` or not positive) hollow at their
    resolution. ``nfe``, ``err``, ``resolution`` are arrays (``resolution`` 0 where there is none)."""
    nfe = np.asarray(nfe, float)
    err = np.asarray(err, float)
    res = np.asarray(resolution, float)
    ok = np.isfinite(err) & np.isfinite(nfe)
    unresolved = ok & (res > 0) & (err <= res)
    y = np.where(unresolved, res, err)
    drawable = ok & (y > 0)
    if not drawable.any():
        return None
    order = np.argsort(nfe[drawable])
    xs, ys = nfe[drawable][order], y[drawable][order]
    (line,) = ax.plot(xs, ys, linestyle=style["linestyle"], color=style["color"], lw=1.3, label=label,
                      marker=style["marker"], markersize=5.5, markerfacecolor=style["color"])  # fmt: skip
    hollow = (unresolved & drawable)[drawable][order]
    if hollow.any():
        ax.plot(xs[hollow], ys[hollow], linestyle="none", marker=style["marker"], markersize=7.5,
                markerfacecolor="white", markeredgecolor=style["color"], markeredgewidth=1.3)  # fmt: skip
    return line


def legend_label(solver: str, order: float, peer_version: str = "") -> str:
    """The legend text of a line: the solver and its fitted order when there is one."""
    text = solver
    if math.isfinite(order):
        text += f" ({order:.2f})"
    return text


def _panels(result) -> list:
    """``(title, ylabel, process, value, floor)`` per panel of a result."""
    info = result.info
    procs = {r["process"] for r in result.rows}
    out = []
    if "ode" in procs:
        out.append((f"probability-flow ODE\nerror vs {info['ode_reference_short']}", "RMS endpoint error", "ode",
                    "error", None))  # fmt: skip
    if info.get("kind") == "model":
        if info.get("sample_metric"):
            floor = info.get("noise_floor")
            for proc, what in (("ode", "probability-flow ODE"), ("sde", "reverse SDE")):
                if proc in procs:
                    out.append((f"{what}\nsample quality ({info['sample_metric']})", info["sample_metric"], proc, "fd",
                                floor))  # fmt: skip
        return out
    if "sde" in procs:
        out.append((f"reverse SDE\n{info['sde_metric']} to exact p(t_end)", info["sde_metric"], "sde", "error",
                    info.get("noise_floor")))  # fmt: skip
    return out


def plot_result(result, path) -> None:
    """The work-precision plot of a :class:`~sdekit.bench.CompareResult` (PNG, matplotlib's Agg canvas).

    One panel per measurement (ODE error; SDE error or, for a model, sample quality of the ODE and SDE rows), one
    line per row with the style of :func:`assign_styles`; unresolved points hollow at their resolution; the floor's
    resolution shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(result)
    keys = list(dict.fromkeys((r["solver"], r.get("peer", "")) for r in result.rows))
    styles = assign_styles(keys)
    order = {k: i for i, k in enumerate(styles)}
    n_lines = max(len(keys), 1)
    legend_w = 1.9 if n_lines <= 30 else 3.6
    fig = Figure(figsize=(5.2 * max(len(panels), 1) + legend_w, 4.2 + 0.06 * n_lines), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
    handles = {}
    for ax, (title, ylabel, proc, value, floor) in zip(axes, panels):
        series = {}
        for r in result.rows:
            if r["process"] != proc:
                continue
            res = floor.resolution if (value == "fd" and floor is not None) else r["resolution"]
            series.setdefault((r["solver"], r.get("peer", "")), []).append((r["nfe"], r.get(value, math.nan), res))
        for key in sorted(series, key=lambda k: order[k]):
            pts = np.array(series[key], dtype=float)
            orders = result.orders.get((key[0], proc), math.nan) if value == "error" else math.nan
            line = draw_series(ax, pts[:, 0], pts[:, 1], pts[:, 2], styles[key], legend_label(key[0], orders))
            if line is not None and key not in handles:
                handles[key] = line
        same_n = len({r.get("n_samples", 0) for r in result.rows if r["process"] == proc and r["nfe"]}) <= 1
        if floor is not None and getattr(floor, "resolution", 0) > 0 and (value == "fd" or same_n):
            # (cells that grew their samples have resolutions of their own: no common band then)
            ax.axhspan(max(floor.mean, 0.0) * 0.98 if value == "fd" else ax.get_ylim()[0], floor.resolution,
                       color="0.85", alpha=0.5, zorder=0)  # fmt: skip
            if value == "fd":
                ax.axhline(floor.mean, color="0.4", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("NFE (score evaluations per sample)")
        ax.grid(True, which="both", alpha=0.3)
    labels = {k: legend_label(k[0], math.nan) + (f" [{k[1]}]" if k[1] else "") for k in handles}
    ks = sorted(handles, key=lambda k: order[k])
    fig.legend([handles[k] for k in ks], [labels[k] for k in ks], loc="center left", fontsize=6.5,
               bbox_to_anchor=(1 - legend_w / fig.get_figwidth(), 0.5), ncol=1 if len(ks) <= 30 else 2,
               frameon=False)  # fmt: skip
    head = result.info.get("model") or result.info.get("density")
    fig.suptitle(f"{head} under {result.info['sde']}, grid={result.info['grid']}; hollow: not resolved (drawn at "
                 "the resolution), dashed: peers", fontsize=9)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1 - legend_w / fig.get_figwidth(), 1))
    fig.savefig(path, format="png")
