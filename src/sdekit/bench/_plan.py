"""The plan of :func:`sdekit.bench.compare`: the checked arguments (:class:`Problem`) and the runs (:class:`Run`)."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from ..backends.registry import backend_names
from ..grids import GRIDS
from ..solvers import SOLVERS, Solver, get_solver, parse_solver_spec
from ..validation import in_interval, integer_at_least, positive_int
from ._metrics import CompareMetric, get_metric
from ._problems import N_MAX_FACTOR, density_label, fixed_step_solvers, make_density, make_sde

__all__ = ["Problem", "Run", "check_nfe", "check_problem", "plan_runs", "with_sde_costs"]


@dataclass(frozen=True)
class Problem:
    """The checked arguments of one :func:`compare` call."""

    density: object
    density_name: str
    density_description: str
    sde: object
    grid: str
    backend: str
    seed: int
    n: int
    n_ode: int
    budgets: list
    metric: CompareMetric
    t_end: float
    n_max: int = 0
    sde_backend: str = ""
    sde_nfe_max: int = 0
    #: the default backend choice: each SDE cell runs numba where its fused kernel pays, else numpy
    #: (:mod:`sdekit.bench._backend`); ``sde_costs`` (run name -> seconds its kernel costs before it runs, absent
    #: for a run without a fused kernel) and ``sde_states`` (run name -> its kernel's state) are set once per table
    weigh_sde: bool = False
    sde_costs: dict = field(default_factory=dict)
    sde_states: dict = field(default_factory=dict)

    def budgets_for(self, process: str, solver=None) -> list:
        """The NFE budgets of the rows of ``process``: the SDE rows' stop at ``sde_nfe_max`` (0: no cap) unless the
        density's SDE errors are exact laws (a Gaussian: no Monte Carlo). A ``solver`` with no compiled SDE kernel
        on the SDE rows' backend stops at half the cap: it runs the Python step loop (~50x the cost per
        sample-step), and its last cell would need ~10^6 samples to be resolved."""
        if process == "sde" and self.sde_nfe_max and not self.density.exact_flow:
            cap = self.sde_nfe_max
            if solver is not None and not self.compiled_sde(solver):
                cap //= 2
            return [b for b in self.budgets if b <= cap]
        return list(self.budgets)

    def compiled_sde(self, solver) -> bool:
        """Whether the SDE rows of ``solver`` run a fused numba kernel (only the auto and numba backends do)."""
        if self.backend_for("sde") not in ("auto", "numba"):
            return True  # no compiled path is expected: every solver runs the same loop, no separate cap
        from ..backends.numba.registry import find_kernel

        kernel = find_kernel(solver, "sde")
        return kernel is not None and kernel.accepts(solver)

    @property
    def T(self) -> float:
        return float(self.sde.T)

    def backend_for(self, process: str) -> str:
        """The backend of the rows of ``process`` (``"ode"`` or ``"sde"``)."""
        return self.sde_backend if process == "sde" and self.sde_backend else self.backend

    @property
    def backend_label(self) -> str:
        if self.weigh_sde:
            return f"{self.backend} (ODE rows), numba where its kernel pays for itself, else numpy (SDE rows)"
        if self.sde_backend and self.sde_backend != self.backend:
            return f"{self.backend} (ODE rows), {self.sde_backend} (SDE rows)"
        return self.backend


@dataclass(frozen=True)
class Run:
    """One line of the table: solver ``name`` (the spec as given), its instance, and ``process`` (ode/sde)."""

    name: str
    solver: object
    process: str


def check_nfe(nfe) -> list:
    """Sorted distinct positive NFE budgets from an int or a sequence of ints."""
    if isinstance(nfe, numbers.Integral) and not isinstance(nfe, bool):
        nfe = (nfe,)
    try:
        vals = [int(v) for v in nfe]
    except (TypeError, ValueError):
        raise ValueError(f"nfe must be positive integers, got {nfe!r}") from None
    if not vals or any(v < 1 for v in vals) or any(v != w for v, w in zip(vals, nfe)):
        raise ValueError(f"nfe must be positive integers, got {nfe!r}")
    return sorted(set(vals))


def check_problem(density, sde, solvers, nfe, grid, backend, seed, n, n_ode, metric, t_end, n_max=None, sde_nfe_max=0):
    """``(Problem, solver specs)`` from :func:`compare`'s arguments; ``ValueError`` naming a bad one.

    ``backend=None``: ODE rows on numpy, SDE rows on numba where the kernel pays for itself, else numpy
    (:mod:`sdekit.bench._backend`; the kernel costs are filled in by :func:`with_sde_costs`); ``n_max=None``:
    ``n * N_MAX_FACTOR``.
    """
    sde_backend, weigh = "", False
    if backend is None:
        # not "auto" per solve: auto's choice depends on what the process has compiled by then, and a table must not
        # (a serial and a Dask run of it are equal bit for bit; numba and numpy agree only to round-off): the kernel
        # states are read once per table and every cell decides from them and its own size
        backend, sde_backend, weigh = "numpy", "numba", True
    dens = make_density(density)
    sde_obj = make_sde(sde)
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r}; valid grids: {sorted(GRIDS)}")
    else:
        raise ValueError(f"grid must be a schedule name, one of {sorted(GRIDS)}, got {grid!r}")
    if backend not in backend_names():
        raise ValueError(f"unknown backend {backend!r}; valid backends: {list(backend_names())}")
    record = get_metric(metric)
    n = integer_at_least("n", n, 2)
    n_max = n * N_MAX_FACTOR if n_max is None else max(integer_at_least("n_max", n_max, 2), n)
    n_ode = min(positive_int("n_ode", n_ode), n)
    sde_nfe_max = 0 if sde_nfe_max is None else integer_at_least("sde_nfe_max", sde_nfe_max, 0)
    budgets = check_nfe(nfe)
    if solvers is None:
        solvers = fixed_step_solvers()
    elif isinstance(solvers, str):
        solvers = [solvers]
    for s in solvers:
        if isinstance(s, Solver):  # an instance (a learned solver, sdekit.learn): its name labels its row
            continue
        if not isinstance(s, str) or parse_solver_spec(s)[0] not in SOLVERS:
            raise ValueError(f"unknown solver {s!r}; valid solvers: {sorted(SOLVERS)}")
    T = sde_obj.T
    t_end = sde_obj.eps if t_end is None else float(t_end)
    in_interval("t_end", t_end, 0.0, T, what=f"(0, T) = (0, {T})")
    name, description = density_label(density)
    problem = Problem(
        dens,
        name,
        description,
        sde_obj,
        grid,
        backend,
        seed,
        n,
        n_ode,
        budgets,
        record,
        t_end,
        n_max,
        sde_backend,
        sde_nfe_max,
        weigh,
    )
    return problem, solvers


def with_sde_costs(problem: Problem, runs) -> Problem:
    """``problem`` with the kernel costs of its SDE ``runs`` (:func:`sdekit.bench._backend.sde_kernel_costs`) when
    it weighs the SDE rows' backend, else unchanged. Called once per table, in the calling process."""
    if not problem.weigh_sde:
        return problem
    from ._backend import sde_kernel_costs

    costs, states = sde_kernel_costs(problem, runs)
    return dataclasses.replace(problem, sde_costs=costs, sde_states=states)


def plan_runs(specs) -> tuple[list, dict]:
    """``(runs, notes)``: a :class:`Run` per spec and process it integrates, and why the others are not run.

    Heun-like solvers that do both are run on the ODE and on the SDE; one instance serves every budget.
    """
    runs, notes = [], {}
    for name in specs:
        if isinstance(name, Solver):
            name, inst = name.name, name
            runs += [Run(name, inst, proc) for proc in ("ode", "sde") if getattr(inst, f"is_{proc}")]
            continue
        try:
            inst = get_solver(name)
        except (TypeError, ValueError) as exc:
            if "(" in name:  # options the caller wrote: a wrong one is an error, not a note
                raise ValueError(f"solver {name!r} cannot be built: {exc}") from exc
            notes[name] = f"cannot be built with default options: {exc}"
            continue
        if getattr(inst, "adaptive", False):
            notes[name] = "adaptive (tolerance-driven, not a fixed NFE budget): not run"
            continue
        for proc in ("ode", "sde"):
            if getattr(inst, f"is_{proc}"):
                runs.append(Run(name, inst, proc))
    return runs, notes
