"""The ``sdekit`` command line.

Commands:

* ``sdekit compare``  -- compare integrators on an analytic density: error against NFE, a table on stdout, a
  work-precision plot (PNG) and the rows as CSV (see :func:`sdekit.bench.compare`).
* ``sdekit solvers``  -- list the registered solvers with their kind, orders and NFE per step.
* ``sdekit warmup``   -- compile the fused numba kernels ahead of time (:func:`sdekit.backends.numba.warmup.warmup`).

``sdekit --help`` and ``sdekit COMMAND --help`` describe the options; ``sdekit --version`` prints the version.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from ._version import __version__
from .validation import output_path_problem

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
    parser = argparse.ArgumentParser(
        prog="sdekit",
        description="Numerical SDE solvers for score-based generative models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    _add_compare_command(sub)
    s = sub.add_parser("solvers", help="list the registered solvers")
    s.set_defaults(func=_cmd_solvers, subparser=s)
    _add_warmup_command(sub)
    return parser


def _add_compare_command(sub):
    """Add the ``compare`` subcommand to the subparsers ``sub``."""

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
    )
    _add_compare_problem_options(p)
    _add_compare_run_options(p)
    _add_compare_output_options(p)
    p.set_defaults(func=_cmd_compare, subparser=p)


def _add_compare_problem_options(p):
    """``compare``'s options that choose the problem and the rows: density, SDE, solvers, model, peers."""
    from .bench import DENSITIES, MODEL_SOLVERS, SDES

    p.add_argument(
        "--density", default=None, choices=sorted(DENSITIES), help="built-in analytic density (default ring8)"
    )
    p.add_argument("--sde", default=None, choices=sorted(SDES), help="forward SDE (default vp)")
    p.add_argument(
        "--solvers",
        nargs="+",
        default=None,
        metavar="NAME",
        help="solver names (space or comma separated), each optionally with options, e.g. "
        "'dpmpp_pc(order=2, sigma_data=1.4)', or 'all', or a learned solver's saved file (sdekit.learn, .json: its "
        "row is run at its own budget and grid); default: every registered fixed-step solver (with --model: "
        f"{' '.join(MODEL_SOLVERS)}, a few minutes on the digits model; 'all' takes 4-5 times as long)",
    )
    p.add_argument(
        "--learned",
        action="store_true",
        help="add a learned solver per ODE budget up to 20 NFE (sdekit.learn.fit, default base, no denoising, on "
        "prior draws disjoint from the compared start points; about a minute per budget)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="digits|MODULE:FACTORY",
        help="compare on a learned score instead of an analytic density: 'digits' (sdekit.zoo.digits) or "
        "MODULE:FACTORY, factory() returning (sde, score, shape); ODE errors against a tight reference solve, sample "
        "quality (Fréchet distance for digits) with its floor, a PNG grid of samples per solver (--samples-png)",
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="add k-diffusion's samplers and diffusers' schedulers as rows (same start points, grid, NFE "
        "accounting); needs torch, diffusers and k-diffusion: pip install 'sdekit[torch,bench]', then pip install "
        "--no-deps k-diffusion==0.1.1.post1",
    )


def _add_compare_run_options(p):
    """``compare``'s options of the runs: NFE budgets, grid, backend, seed, sample sizes, metric, end time."""
    from .backends import available_backends
    from .bench import (
        COMPARE_METRICS,
        DEFAULT_GRID,
        DEFAULT_METRIC,
        DEFAULT_N,
        DEFAULT_NFE,
        MODEL_N,
        MODEL_NFE,
        SDE_NFE_MAX,
    )
    from .grids import GRIDS

    p.add_argument(
        "--nfe",
        nargs="+",
        type=_positive_int,
        default=None,
        help=f"NFE budgets (default {' '.join(map(str, DEFAULT_NFE))}; with --model {' '.join(map(str, MODEL_NFE))}, "
        "the final denoising evaluation included)",
    )
    p.add_argument(
        "--grid",
        default=None,
        choices=sorted(GRIDS),
        help=f"time schedule (log_snr: equal steps in log(alpha/sigma), DPM-Solver's; karras: EDM's rho=7); default "
        f"{DEFAULT_GRID}, with --model karras",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=["auto"] + sorted(available_backends()),
        help="array backend of every solve (available in this installation); default: the ODE rows on numpy, each "
        "SDE cell on numba where its fused kernel pays for compiling or loading it (the large samples), else on numpy "
        "(the CSV's backend column says which ran)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument(
        "--n", type=_positive_int, default=None, help=f"samples per SDE run (default {DEFAULT_N}; --model: {MODEL_N})"
    )
    p.add_argument(
        "--n-ode", type=_positive_int, default=None, help="start points of the ODE errors (default 500; --model: 200)"
    )
    p.add_argument(
        "--metric",
        default=None,
        choices=list(COMPARE_METRICS),
        help=f"SDE metric when the exact law is not available (default {DEFAULT_METRIC}: the MMD to the exact p(t_end) "
        "through its closed-form characteristic function, linear in n, each cell growing its sample until resolved; "
        "mmd_exact: the kernel MMD to the exact p(t_end), quadratic in n), or a two-sample metric against exact "
        "samples",
    )
    p.add_argument("--t-end", type=float, default=None, help="end time (default: the SDE's eps)")
    p.add_argument(
        "--sde-nfe-max",
        type=int,
        default=None,
        help=f"the SDE rows run the NFE budgets up to this one (default {SDE_NFE_MAX}; 0: every budget); resolving "
        "the second-order SDE solvers beyond 64 NFE takes millions of samples per cell",
    )


def _add_compare_output_options(p):
    """``compare``'s options of the outputs: CSV, PNG, JSON, sample grid, progress bar, Dask cluster."""
    p.add_argument(
        "--csv", default="sdekit_compare.csv", help="CSV output path ('' to skip; default sdekit_compare.csv)"
    )
    p.add_argument(
        "--png", default="sdekit_compare.png", help="work-precision plot path ('' to skip; default sdekit_compare.png)"
    )
    p.add_argument("--json", default="", help="JSON output path (default '': not written)")
    p.add_argument(
        "--samples-png",
        default="sdekit_samples.png",
        help="with --model: the sample grid's path ('' to skip; default sdekit_samples.png)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: on when stderr is a terminal)",
    )
    p.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS|local:N",
        help="run the cells on a Dask cluster: a scheduler address (tcp://host:8786) or local:N (a local cluster of N "
        "worker processes); the table equals the serial one. Needs pip install 'sdekit[distributed]'",
    )


def _add_warmup_command(sub):
    """Add the ``warmup`` subcommand to the subparsers ``sub``."""
    w = sub.add_parser(
        "warmup",
        help="compile the fused numba kernels ahead of time (kept in numba's disk cache)",
        description="Compile (or load from numba's disk cache) the fused numba kernels that the given solvers run, "
        "one tiny solve per kernel, and print what was compiled and how long it took. Later processes load the "
        "kernels from the cache, and backend='auto' then uses them for every job large enough to pay the load.",
    )
    w.add_argument(
        "--solvers",
        nargs="+",
        default=None,
        metavar="NAME",
        help="solver names or specs (comma or space separated; default: every registered solver)",
    )
    w.set_defaults(func=_cmd_warmup, subparser=w)


def _parse_compare_solvers(args, parser):
    """``compare --solvers``: ``(solvers, learned)``, the named solvers (None: the default set; "all") and the
    learned solvers loaded from ``*.json`` files; an unknown name or unreadable file is a usage error."""
    from .solvers import SOLVERS, parse_solver_spec

    solvers = None
    learned = []
    if args.solvers is not None and _split_names(args.solvers) == ["all"]:
        solvers = "all" if args.model is not None else None
    elif args.solvers is not None:
        solvers = _split_names(args.solvers)
        bad = []
        for spec in list(solvers):
            if spec.endswith(".json"):  # a learned solver's file
                from .learn import load

                try:
                    learned.append(load(spec))
                except (OSError, ValueError, KeyError) as exc:
                    parser.error(f"argument --solvers: {spec}: {exc}")
                solvers.remove(spec)
                continue
            try:
                if parse_solver_spec(spec)[0] not in SOLVERS:
                    bad.append(spec)
            except ValueError as exc:
                parser.error(f"argument --solvers: {exc}")
        if bad or not (solvers or learned):
            parser.error(f"argument --solvers: unknown solver(s) {bad}; valid solvers: {sorted(SOLVERS)}")
    return solvers, learned


def _cmd_compare(args, parser) -> int:
    from .bench import DEFAULT_GRID, DEFAULT_METRIC, DEFAULT_N, DEFAULT_NFE, SDE_NFE_MAX, compare

    if args.progress is None:  # on by default where someone watches: a terminal
        args.progress = sys.stderr.isatty()
    solvers, learned = _parse_compare_solvers(args, parser)
    if args.learned or learned:
        if args.model is not None or args.dask is not None:
            parser.error("argument --learned / a learned solver file: not with --model or --dask")
        try:
            from .bench import fixed_step_solvers

            base = fixed_step_solvers() if solvers is None else solvers  # --solvers FILE.json alone: [] here
            solvers = list(base) + learned + (_fit_learned(args) if args.learned else [])
        except ValueError as exc:
            parser.error(f"argument --learned: {exc}")
    if args.n is not None and args.n < 2:
        parser.error(f"argument --n: must be at least 2, got {args.n}")
    paths = [("--csv", args.csv), ("--png", args.png), ("--json", args.json)]
    if args.model is not None:
        paths.append(("--samples-png", args.samples_png))
    for option, path in paths:
        problem = output_path_problem(path) if path else None
        if problem:  # before any work: a bad path must not cost the whole comparison
            parser.error(f"argument {option}: {problem}")
    if args.peers:
        from .bench._peers import peer_versions

        try:
            peer_versions()
        except ImportError as exc:
            print(f"{parser.prog}: error: argument --peers: {exc}", file=sys.stderr)
            return 2
    if args.model is not None:
        return _compare_model(args, parser, solvers)
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
                "ring8" if args.density is None else args.density,
                "vp" if args.sde is None else args.sde,
                solvers,
                list(DEFAULT_NFE) if args.nfe is None else args.nfe,
                grid=DEFAULT_GRID if args.grid is None else args.grid,
                backend=args.backend,
                seed=args.seed,
                n=DEFAULT_N if args.n is None else args.n,
                n_ode=500 if args.n_ode is None else args.n_ode,
                metric=DEFAULT_METRIC if args.metric is None else args.metric,
                t_end=args.t_end,
                progress=args.progress,
                csv_path=args.csv or None,
                png_path=args.png or None,
                json_path=args.json or None,
                client=client,
                peers=args.peers,
                sde_nfe_max=SDE_NFE_MAX if args.sde_nfe_max is None else args.sde_nfe_max,
            )
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    print(result.report())
    for label, path in (("csv", args.csv), ("plot", args.png), ("json", args.json)):
        if path:
            print(f"wrote {label}: {path}")
    return _exit_status(parser, result)


def _exit_status(parser, result) -> int:
    """0 when some row was computed; else 1, with the reasons on stderr (a run that computes nothing must not pass)."""
    if result.computed():
        return 0
    print(f"{parser.prog}: error: nothing was computed:\n{result.why_empty()}", file=sys.stderr)
    return 1


def _fit_learned(args) -> list:
    """``sdekit compare --learned``: one :func:`sdekit.learn.fit` per ODE budget up to 20 NFE on the chosen density
    and SDE, fitted on prior draws (seed ``--seed`` + 7919) that are not the compared start points."""
    from .bench import DEFAULT_NFE, make_density, make_sde
    from .learn import fit

    sde = make_sde("vp" if args.sde is None else args.sde)
    density = make_density("ring8" if args.density is None else args.density)
    budgets = [b for b in (DEFAULT_NFE if args.nfe is None else args.nfe) if 2 <= b <= 20]
    fits = []
    for b in budgets:
        fits.append(fit(sde, density.score(sde), b, n=256, guard=512, denoise=False, seed=args.seed + 7919,
                        t_end=args.t_end, time_limit=30.0, progress=args.progress))  # fmt: skip
    return fits


def _compare_model(args, parser, solvers) -> int:
    """``sdekit compare --model``: :func:`sdekit.bench.compare_model`."""
    from .bench import MODEL_N, MODEL_NFE, compare_model, load_model

    for option, given in (("--dask", args.dask), ("--density", args.density), ("--sde", args.sde),
                          ("--metric", args.metric), ("--backend", args.backend), ("--t-end", args.t_end),
                          ("--sde-nfe-max", args.sde_nfe_max)):  # fmt: skip
        if given is not None:
            parser.error(f"argument {option}: applies to the analytic densities, not with --model")
    try:
        model = load_model(args.model)
    except ImportError as exc:
        print(f"{parser.prog}: error: argument --model: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        parser.error(f"argument {exc}" if str(exc).startswith("--model") else f"argument --model: {exc}")
    try:
        result = compare_model(
            model,
            solvers,
            list(MODEL_NFE) if args.nfe is None else args.nfe,
            grid="karras" if args.grid is None else args.grid,
            seed=args.seed,
            n=MODEL_N if args.n is None else args.n,
            n_ode=200 if args.n_ode is None else args.n_ode,
            peers=args.peers,
            progress=args.progress,
            csv_path=args.csv or None,
            png_path=args.png or None,
            json_path=args.json or None,
            samples_path=args.samples_png or None,
        )
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    print(result.report())
    for label, path in (("csv", args.csv), ("plot", args.png), ("json", args.json), ("samples", args.samples_png)):
        if path:
            print(f"wrote {label}: {path}")
    return _exit_status(parser, result)


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


def _cmd_warmup(args, parser) -> int:
    from .backends import available_backends

    if "numba" not in available_backends():
        parser.error("sdekit warmup needs numba (pip install numba)")
    from .backends.numba.warmup import warmup
    from .solvers import get_solver

    names = None if args.solvers is None else _split_names(args.solvers)
    for name in names or []:
        try:
            get_solver(name)
        except (ValueError, TypeError) as exc:
            parser.error(f"--solvers: {exc}")
    print(f"{'kernel':<28}{'solver':<22}{'process':<9}{'before':<10}{'seconds':>9}  cache")

    def show(row):
        print(f"{row['kernel']:<28}{row['solver']:<22}{row['process']:<9}{row['before']:<10}{row['seconds']:>9.2f}  "
              f"{row['cache_dir']}", flush=True)  # fmt: skip

    rows = warmup(names, report=show)
    total = sum(r["seconds"] for r in rows)
    print(f"{len(rows)} kernels in {total:.1f} s")
    from .backends.numba.kernels import NO_FUSED_KERNEL
    from .backends.numba.warmup import warmup_jobs

    for spec in warmup_jobs(names)[1]:
        why = NO_FUSED_KERNEL.get(get_solver(spec).name, "this configuration runs the per-step loop")
        print(f"{spec}: no fused kernel ({why})")
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
