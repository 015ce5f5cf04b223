"""The solver protocol and the name registry.

A solver advances a state ``x`` of shape ``(n, *event)`` from ``t`` to ``t_next`` (scalars, or ``(n,)``
arrays for per-sample steps). It knows one step and nothing of grids, noise generation or backends:

* ``step(process, x, t, t_next, z, state) -> x_next`` where ``process`` has ``drift(x, t)`` and
  ``diffusion(x, t)``; ``z`` is a list of ``n_noise`` standard-normal arrays shaped like ``x`` (SDE
  solvers; ``None`` for ODEs), drawn by the caller from the counter-based generator; ``state`` is a dict
  that lives for one solve (multistep methods keep their history there).

Each solver declares its deterministic ``order``, its ``strong_order`` and ``weak_order`` for SDEs with
additive noise, whether it integrates SDEs and/or ODEs, and its drift evaluations per step.
"""

from __future__ import annotations

import ast

__all__ = ["Solver", "SOLVERS", "register", "get_solver", "registry_rows"]


class Solver:
    """Base class of all solvers (see module docstring for the step protocol)."""

    name: str = ""
    order: int = 1  # deterministic (ODE) order
    strong_order: float | None = None  # SDE strong order under additive noise
    weak_order: float | None = None
    is_sde: bool = False
    is_ode: bool = False
    nfe_per_step: int = 1
    n_noise: int = 0  # standard-normal fields per step (SDE solvers)
    needs_additive_noise: bool = False
    adaptive: bool = False

    @property
    def default_process(self) -> str:
        """The process ``sample(process="auto")`` integrates: ``"ode"`` when the solver does ODEs."""
        return "ode" if self.is_ode else "sde"

    def step(self, process, x, t, t_next, z, state):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


SOLVERS: dict[str, type] = {}


def register(cls):
    """Class decorator: register a solver class under its ``name``."""
    if not cls.name or cls.name in SOLVERS:
        raise ValueError(f"solver name {cls.name!r} is empty or registered twice")
    SOLVERS[cls.name] = cls
    return cls


def parse_solver_spec(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name(key=value, ...)"`` -> ``(name, options)``.

    Values are python literals (numbers, strings, ``True``/``False``/``None``, tuples); a bare word is taken as a
    string (``pc(predictor=ancestral)``). Used by :func:`get_solver` and the ``sdekit compare --solvers`` option,
    so that one solver can be compared with several settings. ``ValueError`` on anything else.
    """
    if not isinstance(spec, str):
        raise ValueError(f"a solver spec must be a string, got {spec!r}")
    text = spec.strip()
    try:
        tree = ast.parse(text if "(" in text else f"{text}()", mode="eval").body
    except SyntaxError:
        tree = None
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name) or tree.args:
        raise ValueError(f"solver spec {spec!r} is not of the form name or name(key=value, ...)")
    options = {}
    for kw in tree.keywords:
        if kw.arg is None:
            raise ValueError(f"solver spec {spec!r}: ** is not allowed")
        if isinstance(kw.value, ast.Name) and kw.value.id not in ("True", "False", "None"):
            options[kw.arg] = kw.value.id
            continue
        try:
            options[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise ValueError(f"solver spec {spec!r}: the value of {kw.arg!r} is not a literal") from None
    return tree.func.id, options


def get_solver(solver, **options) -> Solver:
    """A solver instance from a name (with ``options`` for its constructor), a spec ``"name(key=value, ...)"``
    (see :func:`parse_solver_spec`) or an instance."""
    if isinstance(solver, Solver):
        if options:
            raise ValueError(
                f"solver options {sorted(options)} were given with a solver instance {solver!r}; "
                "pass them to its constructor instead"
            )
        return solver
    if isinstance(solver, str) and solver in SOLVERS:
        return SOLVERS[solver](**options)
    if isinstance(solver, str) and "(" in solver:
        name, spec_options = parse_solver_spec(solver)
        both = sorted(set(spec_options) & set(options))
        if both:
            raise ValueError(f"solver options {both} were given both in {solver!r} and as keyword arguments")
        if name in SOLVERS:
            return SOLVERS[name](**spec_options, **options)
    raise ValueError(f"unknown solver {solver!r}; valid solvers: {sorted(SOLVERS)}")


def registry_rows() -> list[dict]:
    """One dict per registered solver (registry order), for tables: ``name``, ``kinds`` (``["ODE", "SDE"]``
    subset), ``order``, ``strong`` and ``weak`` (formatted, ``"-"`` when undeclared), ``nfe_per_step``,
    ``n_noise``, ``adaptive`` and ``solver`` (a default instance, or the class when it needs arguments)."""
    rows = []
    for name, cls in SOLVERS.items():
        try:
            s = cls()
        except TypeError:
            s = cls
        rows.append(
            {
                "name": name,
                "kinds": [k for k, flag in (("ODE", s.is_ode), ("SDE", s.is_sde)) if flag],
                "order": s.order,
                "strong": "-" if s.strong_order is None else f"{s.strong_order:g}",
                "weak": "-" if s.weak_order is None else f"{s.weak_order:g}",
                "nfe_per_step": s.nfe_per_step,
                "n_noise": s.n_noise,
                "adaptive": bool(s.adaptive),
                "solver": s,
            }
        )
    return rows
