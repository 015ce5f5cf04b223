"""mkdocs hook: tables generated from the package at build time, so the docs stay true as solvers are added.

Markers replaced in the pages:

* ``<!-- sdekit:solver-table -->`` -- one row per solver registered in ``sdekit.SOLVERS``: kind (ODE/SDE), orders,
  NFE per step, noise fields, backends.
* ``<!-- sdekit:measured-table DENSITY SDE GRID -->`` -- ``sdekit.bench.compare`` run at build time on an analytic
  density with exact references (a Gaussian: exact flow and exact solver laws, so the table has no Monte Carlo
  noise and is reproducible to round-off).
"""

from __future__ import annotations

import math
import re

_MEASURED = re.compile(r"<!-- sdekit:measured-table (\S+) (\S+) (\S+) -->")


def solver_rows():
    """``[(name, kind, order, strong, weak, nfe_per_step, n_noise, adaptive, backends)]`` from the registry."""
    from sdekit.backends import BACKENDS
    from sdekit.solvers import registry_rows

    rows = []
    for r in registry_rows():
        backends = ", ".join(sorted(getattr(r["solver"], "backends", None) or BACKENDS))
        rows.append(
            (r["name"], " and ".join(r["kinds"]), r["order"], r["strong"], r["weak"], r["nfe_per_step"],
             r["n_noise"], r["adaptive"], backends)
        )  # fmt: skip
    return rows


def solver_table_markdown() -> str:
    head = (
        "| name | integrates | order (ODE) | strong order | weak order | NFE per step | noise fields | adaptive "
        "| backends |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    body = "".join(
        f"| `{n}` | {k} | {o} | {so} | {wo} | {nfe} | {nn} | {'yes' if ad else 'no'} | {b} |\n"
        for n, k, o, so, wo, nfe, nn, ad, b in solver_rows()
    )
    return head + body


def measured_table_markdown(density: str, sde: str, grid: str) -> str:
    from sdekit.bench import compare

    res = compare(density, sde, None, (8, 16, 32, 64, 128), grid=grid, n=16, n_ode=16)
    budgets = sorted({r["nfe_budget"] for r in res.rows})
    head = "| solver | process | error | " + " | ".join(f"NFE {b}" for b in budgets) + " | fitted order |\n"
    head += "| --- | --- | --- | " + " | ".join("---" for _ in budgets) + " | --- |\n"
    cells = {(r["solver"], r["process"], r["nfe_budget"]): r for r in res.rows}
    body = ""
    for key in dict.fromkeys((r["solver"], r["process"]) for r in res.rows):
        metric = next((r["metric"] for r in res.rows if (r["solver"], r["process"]) == key and r["metric"]), "")
        vals = []
        for b in budgets:
            r = cells.get(key + (b,))
            vals.append("-" if r is None or not math.isfinite(r["error"]) else f"{r['error']:.2e}")
        order = res.orders.get(key, float("nan"))
        body += f"| `{key[0]}` | {key[1]} | {metric} | " + " | ".join(vals)
        body += f" | {order:.2f} |\n" if math.isfinite(order) else " | - |\n"
    note = (
        f"\n*Measured when these pages were built: `sdekit compare --density {density} --sde {sde} --grid {grid} "
        f"--nfe 8 16 32 64 128`. ODE error: {res.info['ode_reference']}; SDE error: exact W2 of the solver's "
        "output law (`bench.exact_law`).*\n"
    )
    return head + body + note


def on_page_markdown(markdown, page, config, files):  # mkdocs hook signature
    if "<!-- sdekit:solver-table -->" in markdown:
        markdown = markdown.replace("<!-- sdekit:solver-table -->", solver_table_markdown())
    return _MEASURED.sub(lambda m: measured_table_markdown(*m.groups()), markdown)
