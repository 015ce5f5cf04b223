"""The documentation builds in strict mode, and its solver table is generated from the registry."""

from __future__ import annotations

import importlib.util
import os
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
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("pymdownx")
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
