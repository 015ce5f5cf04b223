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

__all__ = ["family_of", "assign_styles", "draw_series", "FAMILY_ORDER"]

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
        return
    order = np.argsort(nfe[drawable])
    xs, ys = nfe[drawable][order], y[drawable][order]
    ax.plot(xs, ys, linestyle=style["linestyle"], color=style["color"], lw=1.3, label=label,
            marker=style["marker"], markersize=5.5, markerfacecolor=style["color"])  # fmt: skip
    hollow = (unresolved & drawable)[drawable][order]
    if hollow.any():
        ax.plot(xs[hollow], ys[hollow], linestyle="none", marker=style["marker"], markersize=7.5,
                markerfacecolor="white", markeredgecolor=style["color"], markeredgewidth=1.3)  # fmt: skip


def legend_label(solver: str, order: float, peer_version: str = "") -> str:
    """The legend text of a line: the solver and its fitted order when there is one."""
    text = solver
    if math.isfinite(order):
        text += f" ({order:.2f})"
    return text
