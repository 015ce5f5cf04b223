"""The documentation builds in strict mode, and its solver table is generated from the registry."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sdekit import SOLVERS

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("sdekit_docs_hooks", ROOT / "docs" / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_solver_table_is_the_registry():
    hooks = _hooks()
    rows = hooks.solver_rows()
    assert [r[0] for r in rows] == list(SOLVERS)
    for name, kind, order, *_ in rows:
        s = SOLVERS[name]()
        assert ("ODE" in kind) == s.is_ode and ("SDE" in kind) == s.is_sde and order == s.order
    table = hooks.solver_table_markdown()
    assert all(f"| `{name}` |" in table for name in SOLVERS)
    # the pages use the markers the hook replaces
    assert "<!-- sdekit:solver-table -->" in (ROOT / "docs" / "solvers.md").read_text()
    assert "<!-- sdekit:measured-table" in (ROOT / "docs" / "choosing.md").read_text()


def test_mkdocs_strict_build(tmp_path):
    # mkdocstrings and pymdown-extensions come with mkdocs in the dev and docs extras: only a missing mkdocs skips
    pytest.importorskip("mkdocs")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    solvers_page = (tmp_path / "solvers" / "index.html").read_text()
    assert all(name in solvers_page for name in SOLVERS)
    api = (tmp_path / "api" / "index.html").read_text()
    assert "log_likelihood" in api and "exact_law" in api and "gaussian_w2" in api
    assert "<!-- sdekit:" not in (tmp_path / "choosing" / "index.html").read_text()


def _readme_solver_rows():
    """``{name: (order, strong, weak, name cell)}`` from README.md's solver table (as written, ``""`` when blank)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| name | process | order (ODE) |") :].split("\n\n")[0].splitlines()[2:]
    rows = {}
    for line in table:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([a-z0-9_]+)[`(]", cells[0].split(" (")[0])
        orders = [o.strip() for o in cells[2].split(",")] if "," in cells[2] else [cells[2]] * len(names)
        strong, weak = ([c.strip() for c in cells[3].split("/")] + ["", ""])[:2] if cells[3] else ("", "")
        for name, order in zip(names, orders):
            rows[name] = (order, strong, weak, cells[0])
    return rows


def test_readme_solver_table_agrees_with_the_registry():
    # the registry is the one source of the orders; README.md's table is written by hand, so it is checked here
    from sdekit.solvers import registry_rows

    readme = _readme_solver_rows()
    registry = {r["name"]: r for r in registry_rows()}
    assert set(readme) == set(registry), set(readme) ^ set(registry)
    for name, (order, strong, weak, described) in readme.items():
        r = registry[name]
        if not order.startswith("`"):  # "`order + 1`": an option's formula, checked through the default below
            assert order == str(r["order"]), (name, order, r["order"])
        else:
            k = int(re.search(r"order=(\d)", described).group(1))  # the option's default, as the name cell writes it
            assert eval(order.strip("`"), {"order": k}) == r["order"], (name, order, r["order"])
        for cell, declared in ((strong, r["strong"]), (weak, r["weak"])):
            assert (cell.replace("–", "-") or "-") == declared, (name, cell, declared)  # blank: undeclared
