"""The solver contract and the name registry.

A solver knows one step and nothing of grids, noise generation or backends. Two kinds exist, and a loop reads
nothing of a solver but what its base class declares here:

* :class:`FixedStepSolver` -- ``step(process, x, t, t_next, z, ctx) -> x_next`` advances ``x`` of shape
  ``(n, *event)`` over one interval of a fixed grid. ``process`` has ``drift(x, t)`` and ``diffusion(x, t)``
  (and ``sde``, ``score`` when it is a score-driven process); ``z`` is a list of ``n_noise`` standard-normal
  arrays shaped like ``x`` (SDE solvers; ``None`` for ODEs), drawn by the loop from the counter-based generator;
  ``ctx`` is the :class:`StepContext`: the step's index, the whole grid, and a ``memory`` dict that lives for one
  solve (multistep methods keep their history there).
* :class:`AdaptiveSolver` (``sdekit.solvers.adaptive``) -- per-sample step sizes: ``init_carry``, ``attempt``
  and ``accept``, driven by the loop of ``sdekit.loop.adaptive``.

Each solver declares its deterministic ``order``, its ``strong_order`` and ``weak_order`` for SDEs with
additive noise, whether it integrates SDEs and/or ODEs, its drift evaluations per step, its normal fields per
step and how many of them are Brownian increments, and the length of its multistep history.

Adding a solver
---------------
1. Subclass :class:`FixedStepSolver` (or ``AdaptiveSolver``) and set the class attributes: ``name`` (the
   registry key), ``order``, ``strong_order`` / ``weak_order`` (SDE solvers), ``is_sde`` / ``is_ode``,
   ``nfe_per_step``, ``n_noise`` and ``n_brownian`` (SDE solvers), ``needs_additive_noise``; override
   ``nfe(grid, process)`` when some steps cost a different number of evaluations than ``nfe_per_step``.
2. Validate constructor options with :mod:`sdekit.validation` (errors name the option and the value).
3. Write ``step(process, x, t, t_next, z, ctx)`` with the operators numpy arrays and torch tensors share (use
   ``sdekit._xp`` helpers for anything else), so that one step serves the numpy, torch and numba-fallback loops.
   Keep a multistep history in ``ctx.memory`` and set ``multistep_order``.
4. Override ``check_process(process)`` when the solver needs more than ``drift``/``diffusion`` (a linear SDE, a
   score); raise ``ValueError`` naming the solver. ``solve`` calls it once, before the loop.
5. Decorate the class with :func:`register`; for the same engine under another name with fixed options use
   :func:`register_preset` rather than a copy of the class.
6. Test: its declared orders by a fitted slope on nested grids (``tests/test_solvers.py``,
   ``tests/test_sampler_orders.py``), its law on Gaussian data by ``sdekit.bench.exact_law`` when it is affine.
7. Optional speed: a fused numba kernel (``sdekit.backends.numba``, "Adding a kernel"); without one the numba
   backend runs the solver's own ``step`` with numba noise, so nothing else is needed for correctness.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Solver",
    "FixedStepSolver",
    "StepContext",
    "Preset",
    "SOLVERS",
    "register",
    "register_preset",
    "get_solver",
    "solver_options",
    "registry_rows",
]


@dataclass
class StepContext:
    """What a fixed-grid loop tells a solver about the step it asks for (one per step), and what the solver tells
    back.

    Attributes
    ----------
    index : int
        The step's number ``k`` (0-based): it goes from ``grid[k]`` to ``grid[k + 1]``.
    grid : ndarray (n_steps + 1,)
        The whole float64 grid of the solve.
    memory : dict
        Per-solve scratch shared by every step of one solve (a multistep history); empty at step 0.
    denoised : array or None
        Set by solvers that compute the data prediction ``E[x_0 | x_t]`` during the step (the DPM-Solver family,
        EDM, ancestral): the loop hands it to the user's step callback as ``info["denoised"]``.
    offset : int
        0 for a solve of its own. A solve that continues a longer schedule after its first ``offset`` steps (a
        diffusers scheduler's image-to-image start with the source scheduler's conventions): solvers that decide the
        orders of their steps from the schedule's length (``lower_order_final`` below 15 steps, DPM-Solver's
        singlestep order groups) take them from :attr:`schedule_steps` and step ``offset + index`` of it; the
        memory is still empty at ``index`` 0 (the warm-up is a fresh run's).
    """

    index: int
    grid: np.ndarray
    memory: dict = field(default_factory=dict)
    denoised: object = None
    offset: int = 0

    @property
    def n_steps(self) -> int:
        """Number of steps of the solve."""
        return len(self.grid) - 1

    @property
    def is_last(self) -> bool:
        """True on the solve's last step."""
        return self.index == len(self.grid) - 2

    @property
    def schedule_steps(self) -> int:
        """Steps of the whole schedule: :attr:`n_steps` plus the ``offset`` steps before this solve."""
        return self.n_steps + self.offset

    @property
    def schedule_index(self) -> int:
        """The step's number in the whole schedule: ``offset + index``."""
        return self.offset + self.index


class Solver:
    """Base class of all solvers: the attributes every loop, the registry and the docs read."""

    name: str = ""
    order: int = 1  # deterministic (ODE) order
    strong_order: float | None = None  # SDE strong order under additive noise
    weak_order: float | None = None
    is_sde: bool = False
    is_ode: bool = False
    nfe_per_step: int = 1
    n_noise: int = 0  # standard-normal fields per step (SDE solvers)
    n_brownian: int = 1  # of those, how many are Brownian increments (the rest: extra normals, e.g. Langevin)
    multistep_order: int = 1  # data predictions kept between steps (1: a one-step method)
    needs_additive_noise: bool = False
    adaptive: bool = False
    # the solver family's schedule (a name in sdekit.grids.GRIDS); "uniform" means "the SDE's own" (see grid_for)
    default_grid: str = "uniform"
    fixed_grid = None  # the times a solver was built for (a learned solver): ``sample``'s grid when none is given

    @property
    def default_process(self) -> str:
        """The process ``sample(process="auto")`` integrates: ``"ode"`` when the solver does ODEs."""
        return "ode" if self.is_ode else "sde"

    def grid_for(self, sde) -> str:
        """The schedule ``sample`` uses with this solver on ``sde`` when no grid is given (a name in
        ``sdekit.grids.GRIDS``).

        * A family defined in noise levels (``"log_snr"``, ``"karras"``, ``"time_uniform"``) keeps its schedule on
          every linear SDE: such a grid places the same noise levels whatever the SDE's time variable.
        * The ``"uniform"`` family (score_sde's samplers and the generic Runge-Kutta / stochastic Runge-Kutta
          methods) takes the SDE's own ``default_grid``: equal steps in ``t`` on score_sde's SDEs (VP, sub-VP, VE,
          ``DiscreteVPSDE``), where ``t`` is the time those samplers were built for, and EDM's ``"karras"`` on
          ``EDMSDE``, whose time is the noise level itself (equal steps in ``sigma`` put one step below
          ``sigma = 4`` in 18 and give variances 100x off).
        * An SDE without a log-SNR (``GeneralSDE``) has only time grids: ``"uniform"``.
        """
        if not (hasattr(sde, "log_snr") and hasattr(sde, "t_from_log_snr")):
            return "uniform"
        if self.default_grid == "uniform":
            return getattr(sde, "default_grid", "uniform")
        return self.default_grid

    def check_process(self, process) -> None:
        """``ValueError`` when the solver cannot integrate ``process`` (called once by ``solve``); default: any."""

    def nfe(self, grid, process=None) -> int:
        """Score (drift) evaluations of one fixed-grid solve of ``process`` on ``grid`` (the ``n_steps + 1`` times);
        the loops report it as ``Solution.nfe``. Default ``nfe_per_step * n_steps``; a solver that spends a different
        number on some steps (a first step without a score call, extra restart steps) overrides it."""
        return self.nfe_per_step * (len(grid) - 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FixedStepSolver(Solver):
    """A solver that advances along a given grid, one ``step`` per interval (see the module docstring)."""

    def step(self, process, x, t, t_next, z, ctx: StepContext):
        """``x`` at ``t`` -> ``x`` at ``t_next``; ``z``: ``n_noise`` normal fields like ``x`` (``None`` for ODEs)."""
        raise NotImplementedError


SOLVERS: dict = {}


def register(cls):
    """Class decorator: register a solver class under its ``name``."""
    if not cls.name or cls.name in SOLVERS:
        raise ValueError(f"solver name {cls.name!r} is empty or registered twice")
    SOLVERS[cls.name] = cls
    return cls


class Preset:
    """A registered name for a solver class with some options fixed: one engine, several names.

    Calling it builds the solver with the fixed options plus the caller's (which may not repeat a fixed one);
    the instance reports the preset's ``name``. ``engine`` is the class or its registered name (a name lets a
    module register a preset at its place in the registry's order before the engine's module is imported).
    """

    def __init__(self, name: str, engine, options: dict):
        self.name, self.engine, self.options = name, engine, dict(options)

    @property
    def cls(self) -> type:
        """The engine class."""
        return SOLVERS[self.engine] if isinstance(self.engine, str) else self.engine

    @property
    def __doc__(self):
        return f"``{self.cls.name}`` with {', '.join(f'{k}={v!r}' for k, v in self.options.items())}."

    def __call__(self, **options):
        fixed = sorted(set(options) & set(self.options))
        if fixed:
            raise ValueError(f"solver {self.name!r} fixes {fixed}; use {self.cls.name!r} to choose them")
        solver = self.cls(**self.options, **options)
        solver.name = self.name
        return solver

    def __getattr__(self, attribute):
        # a registry entry reads like a class: declared attributes (is_ode, adaptive, order, ...) of the preset's
        # solver with its fixed options
        if attribute.startswith("__") or attribute in ("name", "engine", "options"):
            raise AttributeError(attribute)
        return getattr(self(), attribute)

    def __repr__(self):
        return f"Preset({self.name!r}, {self.cls.__name__}, {self.options!r})"


def register_preset(name: str, engine, **options) -> Preset:
    """Register ``name`` as ``engine(**options)``: the numbers of the engine class with those options, under a name
    of its own in the registry, the CLI and the docs. ``engine``: a solver class or its registered name. Returns the
    :class:`Preset`."""
    if not name or name in SOLVERS:
        raise ValueError(f"solver name {name!r} is empty or registered twice")
    if isinstance(engine, type):
        engine(**options)  # the options must build a solver now, not at the first use
    preset = SOLVERS[name] = Preset(name, engine, options)
    return preset


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


def solver_options(name: str) -> list:
    """The constructor options of the registered solver ``name`` (a preset's fixed options excluded)."""
    entry = SOLVERS[name]
    cls = entry.cls if isinstance(entry, Preset) else entry
    params = inspect.signature(cls.__init__).parameters.values()
    fixed = entry.options if isinstance(entry, Preset) else {}
    return [
        p.name
        for p in params
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in fixed
    ]


def _build(name: str, options: dict) -> Solver:
    """``SOLVERS[name](**options)`` after checking the option names against the constructor's signature."""
    entry = SOLVERS[name]
    if isinstance(entry, Preset) and set(options) & set(entry.options):
        return entry(**options)  # raises, naming the options the preset fixes
    valid = solver_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for solver {name!r}; its options: {valid}")
    return SOLVERS[name](**options)


def get_solver(solver, **options) -> Solver:
    """A solver instance from a name (with ``options`` for its constructor), a spec ``"name(key=value, ...)"``
    (see :func:`parse_solver_spec`) or an instance. Option names are checked against the solver's constructor."""
    if isinstance(solver, Solver):
        if options:
            raise ValueError(
                f"solver options {sorted(options)} were given with a solver instance {solver!r}; "
                "pass them to its constructor instead"
            )
        return solver
    if isinstance(solver, str) and solver in SOLVERS:
        return _build(solver, options)
    if isinstance(solver, str) and "(" in solver:
        name, spec_options = parse_solver_spec(solver)
        both = sorted(set(spec_options) & set(options))
        if both:
            raise ValueError(f"solver options {both} were given both in {solver!r} and as keyword arguments")
        if name in SOLVERS:
            return _build(name, {**spec_options, **options})
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
