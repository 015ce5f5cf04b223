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


def get_solver(solver, **options) -> Solver:
    """A solver instance from a name (with ``options`` for its constructor) or an instance."""
    if isinstance(solver, Solver):
        if options:
            raise ValueError(
                f"solver options {sorted(options)} were given with a solver instance {solver!r}; "
                "pass them to its constructor instead"
            )
        return solver
    if isinstance(solver, str) and solver in SOLVERS:
        return SOLVERS[solver](**options)
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
