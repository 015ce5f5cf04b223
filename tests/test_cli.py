"""The ``sdekit`` command: ``compare`` end to end on tiny configurations, help, and bad options."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdekit import SOLVERS
from sdekit.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run_compare(tmp_path, capsys, *extra):
    png, out_csv = tmp_path / "wp.png", tmp_path / "rows.csv"
    argv = ["compare", "--png", str(png), "--csv", str(out_csv), *extra]
    assert main(argv) == 0
    out = capsys.readouterr().out
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return out, png, rows


def _errors(rows, solver, process):
    pts = sorted((int(r["nfe"]), float(r["error"])) for r in rows if r["solver"] == solver and r["process"] == process)
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def test_compare_gaussian_table_png_csv(tmp_path, capsys):
    out, png, rows = _run_compare(
        tmp_path,
        capsys,
        "--density",
        "gaussian",
        "--solvers",
        "euler_maruyama",
        "heun,rk4",
        "--nfe",
        "16",
        "32",
        "64",
        "128",
        "256",
        "--n",
        "64",
        "--n-ode",
        "32",
        "--grid",
        "uniform",
    )
    # table: one line per (solver, process), with the NFE columns and a fitted order
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("solver"))
    assert all(f"NFE={b}" in header for b in (16, 32, 64, 128, 256)) and "order" in header
    table_rows = {
        tuple(line.split()[:2]) for line in lines if line.split()[:1] in (["heun"], ["rk4"], ["euler_maruyama"])
    }
    assert table_rows == {("heun", "ode"), ("heun", "sde"), ("rk4", "ode"), ("euler_maruyama", "sde")}
    assert "exact flow (Gaussian.flow)" in out

    # PNG: a real image file
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

    # CSV: 4 series x 5 budgets, NFE used matches the budget (steps = nfe // nfe_per_step), finite errors
    assert len(rows) == 20
    for r in rows:
        assert int(r["nfe"]) == int(r["nfe_budget"]) == int(r["steps"]) * SOLVERS[r["solver"]]().nfe_per_step
        assert np.isfinite(float(r["error"])) and float(r["error"]) > 0
        assert r["metric"] == ("ode_rms" if r["process"] == "ode" else "w2_exact")
        assert (float(r["kl"]) > 0) if r["process"] == "sde" else r["kl"] == "nan"

    # error falls with NFE, at the rate of the method (exact references: no noise to hide behind)
    for solver, process, order in (("heun", "ode", 2.0), ("rk4", "ode", 4.0), ("heun", "sde", 2.0)):
        nfe, err = _errors(rows, solver, process)
        assert np.all(np.diff(err) < 0), (solver, process, err)
        slope = -np.polyfit(np.log(nfe[-3:]), np.log(err[-3:]), 1)[0]
        assert slope > order - 0.6, (solver, process, slope)
    nfe, err = _errors(rows, "euler_maruyama", "sde")
    assert err[-1] < err[0] / 4


def test_compare_mixture_reports_reference_and_noise_floor(tmp_path, capsys):
    out, png, rows = _run_compare(
        tmp_path,
        capsys,
        "--density",
        "ring8",
        "--sde",
        "ve",
        "--solvers",
        "heun",
        "--nfe",
        "4",
        "8",
        "16",
        "--n",
        "100",
        "--n-ode",
        "20",
        "--grid",
        "karras",
    )
    assert "scipy DOP853, rtol=atol=1e-10" in out
    # the default SDE metric on a mixture: MMD to the exact p(t_end), with its noise floor
    assert "noise floor of mmd_cf" in out and "grid: karras (EDM's schedule" in out
    sde_rows = [r for r in rows if r["process"] == "sde"]
    assert sde_rows and all(r["metric"] == "mmd_cf" for r in sde_rows)
    assert all(float(r["resolution"]) > max(float(r["floor"]), 0.0) for r in sde_rows)
    nfe, err = _errors(rows, "heun", "ode")
    assert np.all(np.diff(err) < 0)
    assert png.exists()
    # the two-sample metrics stay selectable
    out, _, rows = _run_compare(
        tmp_path, capsys, "--solvers", "euler_maruyama", "--nfe", "8", "--n", "100", "--metric", "sliced_w2"
    )
    assert "noise floor of sliced_w2" in out and "grid: log_snr" in out
    assert [r["metric"] for r in rows] == ["sliced_w2"] and float(rows[0]["floor"]) > 0


def test_compare_mmd_resolves_few_step_errors_on_the_mixture(tmp_path, capsys):
    # Euler-Maruyama with 4 steps on ring8 is far from p(t_end); 16 and 64 steps come closer. The MMD to the
    # exact mixture resolves the coarse errors at a modest n and ranks them
    out, _, rows = _run_compare(tmp_path, capsys, "--solvers", "euler_maruyama", "--nfe", "4", "16", "64", "--n", "800")
    nfe, err = _errors(rows, "euler_maruyama", "sde")
    res = float(rows[0]["resolution"])
    assert err[0] > 3 * res and err[1] > res and err[0] > err[1] > err[2] - res, (err, res)


def test_budget_below_nfe_per_step_is_reported(tmp_path, capsys):
    out, _, rows = _run_compare(
        tmp_path, capsys, "--density", "gaussian", "--solvers", "rk4", "--nfe", "2", "8", "--n", "16", "--n-ode", "8"
    )
    skipped = [r for r in rows if r["nfe_budget"] == "2"]
    assert skipped and skipped[0]["error"] == "nan" and "needs 4 NFE per step" in skipped[0]["note"]
    assert "needs 4 NFE per step" in out


def test_compare_solver_specs_with_options(tmp_path, capsys):
    # one solver with several settings (commas inside the parentheses do not split): each spec runs with its own
    # options and labels its rows; sigma_data and the predictor order each change the errors
    specs = ["dpmpp_pc(order=2, sigma_data=1.0)", "dpmpp_pc(order=2)", "dpmpp_pc"]
    out, _, rows = _run_compare(
        tmp_path, capsys, "--density", "gaussian", "--solvers", f"{specs[0]},{specs[1]}", specs[2],
        "--nfe", "8", "16", "--n", "16", "--n-ode", "16",
    )  # fmt: skip
    assert {r["solver"] for r in rows} == set(specs)
    assert any(line.startswith(specs[0] + " ") for line in out.splitlines())  # the column fits the spec
    errs = {spec: _errors(rows, spec, "ode")[1] for spec in specs}
    assert np.all(errs[specs[0]] != errs[specs[1]]) and np.all(errs[specs[1]] != errs[specs[2]])


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "compare" in out and "solvers" in out


def test_solvers_command_lists_registry(capsys):
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    for name in SOLVERS:
        assert name in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["compare", "--sde", "nope"], "invalid choice: 'nope'"),
        (["compare", "--density", "moons"], "ring8"),
        (["compare", "--solvers", "magic"], "valid solvers"),
        (["compare", "--solvers", "magic(order=2)"], "valid solvers"),
        (["compare", "--solvers", "dpmpp_pc(2)"], "not of the form"),
        (["compare", "--solvers", "dpmpp_pc(sigma_data=-1)", "--n", "8", "--n-ode", "4"], "sigma_data"),
        (["compare", "--nfe", "0"], "positive integer"),
        (["compare", "--grid", "cubic"], "karras"),
        (["compare", "--n", "1"], "at least 2"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_options_are_clear_errors(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def test_python_dash_m_help():
    res = subprocess.run(
        [sys.executable, "-m", "sdekit", "--help"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": ""},
        timeout=120,
    )
    assert res.returncode == 0 and "compare" in res.stdout


def test_bad_output_paths_fail_before_any_work(tmp_path, capsys):
    import time

    from sdekit.cli import main

    for option, path in (("--png", "/missing/dir/x.png"), ("--csv", str(tmp_path)), ("--json", "/missing/y.json")):
        start = time.perf_counter()
        with pytest.raises(SystemExit) as info:
            main(["compare", option, path])
        assert info.value.code == 2
        assert time.perf_counter() - start < 2.0  # refused at once, nothing computed
        err = capsys.readouterr().err
        assert option in err and ("does not exist" in err or "is a directory" in err)
