"""What the first fused solve of a process costs before it runs, and whether that is paid already.

``backend="auto"`` (:mod:`sdekit.backends.auto`) asks :func:`readiness` about a job: which fused kernel would run
it and in which state that kernel is --

* ``"compiled"``: compiled in this process already (the dispatcher holds a specialisation): costs nothing;
* ``"cached"``: in numba's disk cache for this machine, source and numba version: costs a load
  (:data:`CACHE_LOAD_SECONDS`);
* ``"cold"``: neither: costs a compilation (:data:`COMPILE_SECONDS`, measured per kernel by
  ``benchmarks/bench_compile.py``). A kernel for a :class:`~sdekit.backends.numba.RowScore` is always compiled
  in the process (it is not cached on disk: the cache could not tell two user functions apart).

On top of that, the first kernel of a family in a process pays for the shared helpers its family calls through a
symbol (:mod:`sdekit.backends.numba.linked`: the analytic score and the normals, compiled once, not into every
kernel) unless they are linked already or in the disk cache: :func:`shared_seconds`
(:data:`SHARED_COMPILE_SECONDS`).

Where numba keeps the cache: ``NUMBA_CACHE_DIR`` when set; else the ``__pycache__`` folder next to the kernel's
source when it is writable (a source checkout, an editable or a user-writable install); else numba's user-wide
folder (``~/.cache/numba/`` on Linux, from ``appdirs``), e.g. for a package installed read-only by root. numba
picks the first of these that it can write to, per kernel, and :func:`cache_dir` reports it. A cache entry is
keyed by the source file's content hash, the numba version, the CPU (name and features) and the argument types;
any change makes it stale and the kernel compiles again.

numba has no public call that says whether a dispatcher's specialisation is on disk; :func:`disk_cached` reads
the dispatcher's cache index (numba 0.60-0.68 internals, read through ``getattr`` and guarded: when they change,
it answers False and ``"auto"`` falls back to its compile-cost rule, which is never slower than numpy, only
sometimes later to use a cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...sdes import LinearSDE, ProbabilityFlowODE, ReverseSDE
from .fused import fused_plan
from .kernels.adaptive import ADAPTIVE_KERNELS, adaptive_plan
from .linked import ADAPTIVE, FIXED_GRID

__all__ = [
    "COMPILE_SECONDS",
    "DEFAULT_COMPILE_SECONDS",
    "CACHE_LOAD_SECONDS",
    "SHARED_COMPILE_SECONDS",
    "shared_seconds",
    "Readiness",
    "readiness",
    "dispatcher_readiness",
    "compiled_in_process",
    "disk_cached",
    "cache_dir",
    "kernel_dispatcher",
]

#: Cold compile time (seconds) of each fused kernel's own code, as the first solve of a process pays it on a loaded
#: machine, the shared helpers (:data:`SHARED_COMPILE_SECONDS`) not included. Derived from
#: ``benchmarks/bench_compile.py`` (the ``own`` CPU column, issue 23 round 4) times the ratio of the earlier figures
#: (wall seconds, the project's shared 2-core machine under load 5-7, kernel and helpers together) to the CPU
#: seconds that code took in the same interleaved run: 4.8 for the fixed-grid kernels, 3.8 for the
#: adaptive ones (benchmarks/README.md, "Cold start"; a quiet machine compiles 2-3x faster, which only makes
#: ``"auto"`` more careful).
COMPILE_SECONDS = {
    "euler_maruyama": 13.0,
    "stochastic_heun": 17.0,
    "runge_kutta": 20.0,
    "affine_multistep": 31.0,
    "edm": 23.0,
    "restart": 28.0,
    "sra": 27.0,
    "pc": 19.0,
    "annealed_langevin": 47.0,
    "adaptive_sde": 268.0,
    "dopri5": 172.0,
}
#: For a kernel missing from :data:`COMPILE_SECONDS` (a user's own kernel).
DEFAULT_COMPILE_SECONDS = 60.0
#: Cold compile time (seconds) of the shared helpers of each kernel family (:mod:`sdekit.backends.numba.linked`):
#: ``"fixed_grid"`` the analytic block score and the block normals, ``"adaptive"`` the analytic lane score; paid
#: once per process when they are not in the disk cache (:func:`shared_seconds`), measured like
#: :data:`COMPILE_SECONDS` (the ``shared`` column of ``benchmarks/bench_compile.py``).
SHARED_COMPILE_SECONDS = {"fixed_grid": 20.0, "adaptive": 8.0}
#: Loading one kernel from numba's disk cache (measured 0.5-1.9 s per kernel under load 5-7, first solve included).
CACHE_LOAD_SECONDS = 1.0


@dataclass(frozen=True)
class Readiness:
    """The fused kernel that would run a job and what its first call costs before it runs.

    ``kernel``: the kernel's name; ``state``: ``"compiled"``, ``"cached"`` or ``"cold"`` (module docstring);
    ``seconds``: the estimated cost of that state (0, a cache load or a compilation); ``row_score``: the job's score
    is a :class:`~sdekit.backends.numba.RowScore` (its kernels are compiled per process)."""

    kernel: str
    state: str
    seconds: float
    row_score: bool = False


def kernel_dispatcher(job):
    """``(kernel name, numba dispatcher, row_score)`` of the fused kernel that would run ``job``, or None when the
    job runs the per-step loop (no kernel, a python score, a callback, tree noise, a non-float64 state)."""
    proc = job.process
    if type(proc) not in (ReverseSDE, ProbabilityFlowODE) or not isinstance(proc.sde, LinearSDE):
        return None
    row = getattr(proc.score, "numba_row_score", None) is not None
    if job.solver.adaptive:
        plan = adaptive_plan(job)
        return None if plan is None else (plan[0].name, plan[1], row)
    if job.callback is not None or (job.noise == "tree" and job.stochastic):
        return None
    plan = fused_plan(job)
    return None if plan is None else (plan[0].name, plan[1], row)


def readiness(job) -> Readiness | None:
    """The :class:`Readiness` of the fused kernel that would run ``job`` on the numba backend, or None (the job
    would run the per-step loop)."""
    found = kernel_dispatcher(job)
    if found is None:
        return None
    return dispatcher_readiness(*found)


def dispatcher_readiness(name: str, dispatcher, row_score: bool = False) -> Readiness:
    """The :class:`Readiness` of kernel ``name`` compiled by the numba ``dispatcher`` (``row_score``: a kernel for
    a :class:`~sdekit.backends.numba.RowScore`, never cached on disk). Nothing is compiled or loaded."""
    if compiled_in_process(dispatcher):
        return Readiness(name, "compiled", 0.0, row_score)
    shared = shared_seconds(name, row_score)
    if not row_score and disk_cached(dispatcher):
        return Readiness(name, "cached", CACHE_LOAD_SECONDS + shared, row_score)
    return Readiness(name, "cold", COMPILE_SECONDS.get(name, DEFAULT_COMPILE_SECONDS) + shared, row_score)


def shared_seconds(name: str, row_score: bool = False) -> float:
    """What kernel ``name``'s first run costs for the shared helpers its family calls through a symbol
    (:data:`~sdekit.backends.numba.linked.FIXED_GRID` or :data:`~sdekit.backends.numba.linked.ADAPTIVE`): 0 when
    they are linked in this process or all in numba's disk cache (a load of a fraction of a second), else
    :data:`SHARED_COMPILE_SECONDS` of the family. A RowScore kernel replaces the score and is charged nothing here
    (its normals are a small part of its per-process compilation). Nothing is compiled or loaded."""
    if row_score:
        return 0.0
    family = "adaptive" if name in {k.name for k in ADAPTIVE_KERNELS.values()} else "fixed_grid"
    helpers = ADAPTIVE if family == "adaptive" else FIXED_GRID
    if all(fn.linked() or disk_cached(fn.dispatcher) for fn in helpers):
        return 0.0
    return SHARED_COMPILE_SECONDS[family]


def compiled_in_process(dispatcher) -> bool:
    """True when the numba ``dispatcher`` holds a compiled specialisation (the fused kernels have one per
    process: their argument types do not vary)."""
    return bool(getattr(dispatcher, "signatures", ()))


#: numba's internal names this module reads (numba 0.60-0.68): the dispatcher's cache, its index file, the index
#: loader and the key builder.
NUMBA_INTERNALS = ("_cache", "_cache_file", "_load_index", "_index_key")


def _internal(obj, i):
    """numba internal attribute ``NUMBA_INTERNALS[i]`` of ``obj`` (``AttributeError`` when numba changed it)."""
    return getattr(obj, NUMBA_INTERNALS[i])


def _cache_of(dispatcher):
    """The dispatcher's numba cache object, or None."""
    try:
        return _internal(dispatcher, 0)
    except AttributeError:
        return None


def disk_cached(dispatcher) -> bool:
    """True when numba's disk cache holds a specialisation of ``dispatcher`` for this machine, numba version and
    source (the cache's index file is read; nothing is compiled or loaded). False when it does not, when the
    dispatcher is not cached on disk, or when numba's internals differ from those this reads."""
    cache = _cache_of(dispatcher)
    try:
        index = _internal(_internal(cache, 1), 2)()
        if not index:
            return False
        codegen = dispatcher.targetctx.codegen()
        probe_key = _internal(cache, 3)((), codegen)  # (signature, machine, (bytecode, closure) hashes)
    except Exception:  # noqa: BLE001 - a NullCache, or other numba internals: say "not cached"
        return False
    return any(isinstance(key, tuple) and key[1:] == probe_key[1:] for key in index)


def cache_dir(dispatcher) -> str | None:
    """The folder where numba keeps ``dispatcher``'s disk cache (None when it is not cached on disk)."""
    cache = _cache_of(dispatcher)
    return getattr(cache, "cache_path", None)
