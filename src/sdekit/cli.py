"""The ``sdekit`` command line.

Commands:

* ``sdekit compare``  -- compare integrators on an analytic density: error against NFE, a table on stdout, a
  work-precision plot (PNG) and the rows as CSV (see :func:`sdekit.bench.compare`).
* ``sdekit solvers``  -- list the registered solvers with their kind, orders and NFE per step.

``sdekit --help`` and ``sdekit COMMAND --help`` describe the options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

__all__ = ["main", "build_parser"]


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _seed(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def _split_names(values):
    """Split on commas outside parentheses: ``a,b`` is two solvers, ``dpmpp_pc(order=2,sigma_data=1)`` one."""
    names = []
    for v in values:
        depth, start = 0, 0
        for i, ch in enumerate(v + ","):
            depth += (ch == "(") - (ch == ")")
            if ch == "," and depth == 0:
                if v[start:i].strip():
                    names.append(v[start:i].strip())
                start = i + 1
    return names


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sdekit`` command (choices read from the registries at call time)."""
    from .backends import available_backends
    from .bench import COMPARE_METRICS, DEFAULT_GRID, DEFAULT_METRIC, DEFAULT_N, DEFAULT_NFE, DENSITIES, SDES
    from .grids import GRIDS

    parser = argparse.ArgumentParser(
        prog="sdekit",
        description="Numerical SDE solvers for score-based generative models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser(
        "compare",
        help="compare integrators on an analytic density (error vs NFE table, plot, CSV)",
        description=(
            "Run every chosen solver at each NFE budget on an analytic density and measure its error at t_end: "
            "ODE solvers against the exact (Gaussian) or a DOP853 rtol=1e-10 reference flow of the same start "
            "points, SDE solvers by the exact W2 of their output law (Gaussian data, any affine solver) or by the MMD "
            "between their samples and the exact p(t_end) (closed form for Gaussian mixtures), with its Monte Carlo "
            "noise floor. Prints a table, writes a PNG and a CSV."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--density", default="ring8", choices=sorted(DENSITIES), help="built-in analytic density")
    p.add_argument("--sde", default="vp", choices=sorted(SDES), help="forward SDE")
    p.add_argument(
        "--solvers",
        nargs="+",
        default=None,
        metavar="NAME",
        help="solver names (space or comma separated), each optionally with options, e.g. "
        "'dpmpp_pc(order=2, sigma_data=1.4)'; default: every registered fixed-step solver",
    )
    p.add_argument("--nfe", nargs="+", type=_positive_int, default=list(DEFAULT_NFE), help="NFE budgets")
    p.add_argument(
        "--grid",
        default=DEFAULT_GRID,
        choices=sorted(GRIDS),
        help="time schedule (log_snr: equal steps in log(alpha/sigma), DPM-Solver's; karras: EDM's rho=7)",
    )
    p.add_argument(
        "--backend",
        default="numpy",
        choices=["auto"] + sorted(available_backends()),
        help="array backend of the solves (available in this installation)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="random seed")
    p.add_argument("--n", type=_positive_int, default=DEFAULT_N, help="samples per SDE run")
    p.add_argument("--n-ode", type=_positive_int, default=500, help="start points of the ODE runs")
    p.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        choices=list(COMPARE_METRICS),
        help="SDE metric when the exact law is not available: mmd_exact (MMD to the exact p(t_end), closed form) "
        "or a two-sample metric against exact samples",
    )
    p.add_argument("--t-end", type=float, default=None, help="end time (default: the SDE's eps)")
    p.add_argument("--csv", default="sdekit_compare.csv", help="CSV output path ('' to skip)")
    p.add_argument("--png", default="sdekit_compare.png", help="work-precision plot path ('' to skip)")
    p.add_argument("--json", default="", help="JSON output path ('' to skip)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local:N",
        help="run the cells on a Dask cluster: a scheduler address (tcp://host:8786) or local:N (a local cluster of N "
        "worker processes); the table equals the serial one. Needs pip install 'sdekit[distributed]'",
    )
    p.set_defaults(func=_cmd_compare, subparser=p)

    s = sub.add_parser("solvers", help="list the registered solvers")
    s.set_defaults(func=_cmd_solvers, subparser=s)
    return parser


def output_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written (a missing or unwritable directory, a directory in its place), else None."""
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        return f"{path!r} is a directory; give a file name"
    if not os.path.isdir(folder):
        return f"the directory {folder!r} of {path!r} does not exist"
    if not os.access(folder, os.W_OK):
        return f"the directory {folder!r} of {path!r} is not writable"
    return None


def _cmd_compare(args, parser) -> int:
    from .bench import compare
    from .solvers import SOLVERS, parse_solver_spec

    solvers = None
    if args.solvers is not None:
        solvers = _split_names(args.solvers)
        bad = []
        for spec in solvers:
            try:
                if parse_solver_spec(spec)[0] not in SOLVERS:
                    bad.append(spec)
            except ValueError as exc:
                parser.error(f"argument --solvers: {exc}")
        if bad or not solvers:
            parser.error(f"argument --solvers: unknown solver(s) {bad}; valid solvers: {sorted(SOLVERS)}")
    if args.n < 2:
        parser.error(f"argument --n: must be at least 2, got {args.n}")
    for option, path in (("--csv", args.csv), ("--png", args.png), ("--json", args.json)):
        problem = output_path_problem(path) if path else None
        if problem:  # before any work: a bad path must not cost the whole comparison
            parser.error(f"argument {option}: {problem}")
    cluster = contextlib.nullcontext(None)
    if args.dask is not None:
        from .distributed._client import check_client, connect

        try:
            check_client(args.dask)
        except ImportError:
            print(f"{parser.prog}: error: --dask needs dask.distributed: pip install 'sdekit[distributed]'",
                  file=sys.stderr)  # fmt: skip
            return 2
        except (TypeError, ValueError) as exc:
            parser.error(f"argument --dask: {exc}")
        cluster = connect(args.dask)
    try:
        with cluster as client:
            result = compare(
                args.density,
                args.sde,
                solvers,
                args.nfe,
                grid=args.grid,
                backend=args.backend,
                seed=args.seed,
                n=args.n,
                n_ode=args.n_ode,
                metric=args.metric,
                t_end=args.t_end,
                progress=args.progress,
                csv_path=args.csv or None,
                png_path=args.png or None,
                json_path=args.json or None,
                client=client,
            )
    except ValueError as exc:
        parser.error(str(exc))
    print(result.report())
    for label, path in (("csv", args.csv), ("plot", args.png), ("json", args.json)):
        if path:
            print(f"wrote {label}: {path}")
    return 0


def _cmd_solvers(args, parser) -> int:
    from .solvers import registry_rows

    print(f"{'name':<18}{'kind':<9}{'order':>6}{'strong':>8}{'weak':>6}{'NFE/step':>10}  adaptive")
    for r in registry_rows():
        kind = "+".join(r["kinds"])
        print(
            f"{r['name']:<18}{kind:<9}{r['order']:>6}{r['strong']:>8}{r['weak']:>6}{r['nfe_per_step']:>10}"
            f"  {r['adaptive']}"
        )
    return 0


def main(argv=None) -> int:
    """Entry point of ``sdekit`` (and ``python -m sdekit``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args, args.subparser)  # the subcommand's parser, for its own error messages


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
