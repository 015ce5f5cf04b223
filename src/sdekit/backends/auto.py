"""``backend="auto"`` between a fused numba kernel and numpy: a job never waits on the compiler to save less time.

When ``"auto"`` has picked a backend that runs compiled scores (numba, for an analytic density's score or a
:class:`~sdekit.backends.numba.RowScore`), :func:`settle` weighs what the fused kernel costs before it runs against
what it saves, and keeps numba only when it pays:

1. the job's numpy time is estimated from its size (:func:`numpy_seconds`: evaluations x samples x dimension x
   mixture components); a fused kernel takes about :data:`FUSED_FRACTION` of it, so it saves ``(1 -
   FUSED_FRACTION)`` of it;
2. when numba is not imported yet and that saving is below :data:`NUMBA_STARTUP_SECONDS` (importing numba and the
   kernels, then loading one kernel from the disk cache), the job runs on numpy without importing numba (small
   jobs: the usual case of a first ``sample(n=2000)``);
3. otherwise :func:`sdekit.backends.numba.compile_cost.readiness` says which kernel would run and what it costs
   first: nothing when it is compiled in this process, a load when it is in numba's disk cache, a compilation
   (:data:`~sdekit.backends.numba.compile_cost.COMPILE_SECONDS`, measured per kernel) when neither; numba runs when
   the saving exceeds that cost, numpy otherwise. A job with no fused kernel (the per-step loop, which is no
   faster than numpy) runs on numpy.

Both backends give the same samples to round-off (the counter-based normals), so the choice changes the time, not
the numbers beyond round-off. ``stats["backend"]`` says which ran and ``stats["backend_reason"]`` why.
``backend="numba"`` always runs the kernel (compiling it if needed), and ``sdekit warmup`` compiles kernels ahead of
time (:func:`sdekit.backends.numba.warmup.warmup`), after which ``"auto"`` finds them cached.

Nothing compiles in the background: numba's compiler holds the GIL for most of its work, so a background
compilation would slow the numpy run it is meant to hide behind, on a machine with few cores most of all.

The constants are rough (measured on the project's shared 2-core machine, benchmarks/README.md); a wrong estimate
costs at most the smaller of the two times again, as the rule compares like with like on the same machine.
"""

from __future__ import annotations

import dataclasses
import math
import sys

from ..sdes import ProbabilityFlowODE, ReverseSDE
from .job import CheckedScore

__all__ = [
    "settle",
    "numpy_seconds",
    "numpy_seconds_for",
    "score_width",
    "estimated_evaluations",
    "NUMPY_SECONDS_PER_ELEMENT",
    "NUMPY_SECONDS_PER_CALL",
    "FUSED_FRACTION",
    "NUMBA_STARTUP_SECONDS",
]

#: numpy's time per score evaluation per sample x dimension x mixture component (the analytic mixture score's
#: work; a RowScore counts one component), measured at n = 2000 and 20000 on the ring8 mixture (1.6e-7 s under load
#: 4 on the project's 2-core machine).
NUMPY_SECONDS_PER_ELEMENT = 1.5e-7
#: numpy's time per score evaluation of the whole batch that does not grow with it (python, small arrays).
NUMPY_SECONDS_PER_CALL = 3e-4
#: A fused kernel's run time as a fraction of numpy's (measured 0.05-0.15 warm, benchmarks/README.md).
FUSED_FRACTION = 0.15
#: Importing numba and the kernel modules, then loading one kernel from the disk cache (measured 1.4 s + 0.5 s on
#: the loaded machine, 0.7 s in all on a quiet one).
NUMBA_STARTUP_SECONDS = 1.0
#: Per-sample evaluation cost of the adaptive loops relative to a fixed grid's (masks, per-sample step sizes).
ADAPTIVE_OVERHEAD = 1.7


def estimated_evaluations(job) -> float:
    """Score evaluations per sample: the fixed grid's (``solver.nfe``), or for an adaptive solver a rough count from
    its tolerance (measured on the ring8 mixture over the VP SDE's whole range: ``dopri5`` 45 at ``rtol = 0.02``,
    ``adaptive`` 260; scaled as ``rtol^(-1/5)`` for ODE solvers and ``rtol^(-1/2)`` for SDE solvers)."""
    solver = job.solver
    if not solver.adaptive:
        return float(solver.nfe(job.grid, job.process))
    rtol = float(job.rtol if job.rtol is not None else getattr(solver, "rtol", 0.02))
    if job.stochastic:
        return 260.0 * (0.02 / rtol) ** 0.5
    return 45.0 * (0.02 / rtol) ** 0.2


def score_width(score) -> int:
    """Mixture components of an analytic density's score (its work per sample and dimension), else 1."""
    density = getattr(score, "density", None)
    params = getattr(density, "mixture_params", None)
    if params is None:
        return 1
    try:
        p = params()
        k = int(p.means.shape[0])
        return k * (int(p.means.shape[1]) if p.eigvecs is not None else 1)  # a full covariance: d x d per component
    except Exception:  # noqa: BLE001 - only an estimate
        return 1


def numpy_seconds_for(evaluations: float, n: int, d: int, width: int = 1, calls: int = 1) -> float:
    """Estimated numpy time of ``evaluations`` score evaluations per sample of ``n`` samples of dimension ``d``
    (``width``: :func:`score_width`), run as ``calls`` batches of a fixed grid (the constants of the module)."""
    return evaluations * (calls * NUMPY_SECONDS_PER_CALL + NUMPY_SECONDS_PER_ELEMENT * n * d * width)


def numpy_seconds(job) -> float:
    """Estimated wall time of ``job`` on the numpy backend (see the module docstring)."""
    n = job.x0.shape[0]
    d = math.prod(job.x0.shape[1:])
    evals = estimated_evaluations(job)
    width = score_width(getattr(job.process, "score", None))
    return numpy_seconds_for(evals, n, d, width) * (ADAPTIVE_OVERHEAD if job.solver.adaptive else 1.0)


def _fmt(seconds: float) -> str:
    return f"{seconds:.2g} s"


def settle(name: str, job, entry):
    """``(backend name, job, reason)`` for a job on which ``"auto"`` picked backend ``name`` (registry ``entry``).

    A backend without compiled scores keeps the job. For the numba backend the rule of the module docstring decides;
    when numpy runs, the job's score is wrapped in the numpy backend's output check."""
    if not entry.fused_scores:
        return name, job, f"auto: {name} runs {entry.array_library} arrays and this score"
    saving = (1.0 - FUSED_FRACTION) * numpy_seconds(job)
    est = f"numpy estimate {_fmt(saving / (1.0 - FUSED_FRACTION))}"
    if "sdekit.backends.numba" not in sys.modules and saving < NUMBA_STARTUP_SECONDS:
        return _numpy(job, f"auto: small job ({est}; numba start-up ~{_fmt(NUMBA_STARTUP_SECONDS)})")
    from .numba.compile_cost import readiness

    ready = readiness(job)
    if ready is None:
        return _numpy(job, f"auto: no fused kernel for this job (solver {job.solver.name!r}); numba's per-step loop "
                           f"is no faster than numpy")  # fmt: skip
    what = f"fused {ready.kernel}"
    if ready.state == "compiled":
        return name, job, f"auto: {what} is compiled in this process"
    if ready.state == "cached" and saving > ready.seconds:
        return name, job, f"auto: {what} is in numba's disk cache (load ~{_fmt(ready.seconds)}; {est})"
    if ready.state == "cold" and saving > ready.seconds:
        return name, job, f"auto: compiling {what} (~{_fmt(ready.seconds)}) pays for itself ({est})"
    where = "in numba's disk cache" if ready.state == "cached" else "compiled yet"
    why = f"not {where}" if ready.state == "cold" else where
    return _numpy(
        job,
        f"auto: {what} is {why} (~{_fmt(ready.seconds)} before it runs) and the job is small ({est}); "
        f"backend='numba' or `sdekit warmup` compiles it",
    )


def _numpy(job, reason):
    proc = job.process
    score = getattr(proc, "score", None)
    if type(proc) in (ReverseSDE, ProbabilityFlowODE) and score is not None and not isinstance(score, CheckedScore):
        job = dataclasses.replace(job, process=type(job.process)(job.process.sde, CheckedScore(score)))
    return "numpy", job, reason
