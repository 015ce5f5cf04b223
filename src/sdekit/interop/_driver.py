"""A fixed-step solver run on a grid that comes from outside (k-diffusion's sigmas, a diffusers schedule).

Two things differ from :func:`sdekit.solve`:

* **The final step to zero noise.** k-diffusion's and diffusers' schedules end at noise level 0 (``sigmas[-1] = 0``,
  ``final_sigmas_type="zero"``); that last step is the denoising evaluation ``x <- E[x_0 | x]`` (it is what their
  first-order step to ``sigma = 0`` computes). It counts as a step of the grid, as it does there: a solver's step
  context reports ``n_steps`` including it, so ``lower_order_final`` (DPM-Solver++) and EDM's churn per step
  (``S_churn / n_steps``) mean what they mean in those libraries.
* **Step by step.** A diffusers scheduler gets one network output per call. :class:`Stepper` runs the solver's own
  ``step`` against a score that answers from the outputs received so far and stops at the first evaluation it has no
  output for (the *request*: a state and a time). Each new output replays the step from its start with one more
  answer, until the step completes. Every fixed-step solver therefore runs unchanged, one network call at a time,
  at the cost of repeating a step's arithmetic once per evaluation; the network is called once per evaluation.

Nothing here reads a tensor on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _xp
from ..backends.job import Job
from ..errors import NonFiniteError
from ..loop import GridLoop, guard_for
from ..progress import progress_bar
from ..solvers.base import StepContext

__all__ = ["GridPlan", "OuterStepContext", "Stepper", "Request", "run", "counter_noise", "plan_requests"]


@dataclass
class OuterStepContext(StepContext):
    """A :class:`StepContext` whose step count includes a final step to zero noise taken as the denoising
    evaluation (``extra = 1``): solvers that shape their last steps see the schedule's true length."""

    extra: int = 0

    @property
    def n_steps(self) -> int:
        return len(self.grid) - 1 + self.extra

    @property
    def is_last(self) -> bool:
        return self.index == self.n_steps - 1


@dataclass
class GridPlan:
    """A solver on an explicit decreasing grid of times of ``sde``, optionally ending with the denoising step."""

    sde: object  # LinearSDE
    solver: object  # FixedStepSolver
    kind: str  # "sde" or "ode"
    grid: np.ndarray  # float64, decreasing (strictly, but for a zero-length last step); may be a single time
    final_denoise: bool
    offset: int = 0  # steps of the whole schedule before this grid (StepContext.offset: a source's later start)

    @property
    def n_solver_steps(self) -> int:
        return len(self.grid) - 1

    @property
    def n_steps(self) -> int:
        """Steps of the schedule, the final denoising step included."""
        return self.n_solver_steps + int(self.final_denoise)

    @property
    def stochastic(self) -> bool:
        return self.kind == "sde"

    def process(self, score):
        return self.sde.reverse(score) if self.kind == "sde" else self.sde.probability_flow(score)

    def tail(self, k: int, continues: bool = False) -> GridPlan:
        """The plan of the steps from step ``k`` on: a fresh run of ``grid[k:]``, or with ``continues`` one that
        continues this schedule (its steps counted from the whole schedule: ``offset``, :class:`StepContext`)."""
        return GridPlan(self.sde, self.solver, self.kind, self.grid[k:], self.final_denoise,
                        self.offset + k if continues else 0)  # fmt: skip

    def context(self, k: int, memory: dict) -> OuterStepContext:
        return OuterStepContext(k, self.grid, memory, offset=self.offset, extra=int(self.final_denoise))

    def denoise(self, x, score_value):
        """Tweedie's ``(x + sigma^2 score) / alpha`` at the grid's last time."""
        return self.sde.tweedie(x, float(self.grid[-1]), score_value)


def counter_noise(plan: GridPlan, x, seed: int, sample_ids=None):
    """``noise(step) -> list of fields`` from sdekit's counter-based generator, the numbers ``sdekit.solve`` draws for
    step ``step`` of sample ``sample_ids[i]`` (default ``i``); ``None`` for an ODE."""
    if not plan.stochastic or plan.solver.n_noise == 0:
        return None
    ids = np.arange(x.shape[0], dtype=np.int64) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
    job = Job(process=None, solver=plan.solver, x0=x, grid=plan.grid, seed=seed, sample_ids=ids, save_index=None,
              progress=False, check_finite=False, stochastic=True)  # fmt: skip
    if _xp.is_torch(x):
        from ..backends.torch_ import torch_noise

        return torch_noise(job)
    from ..backends.numpy_ import numpy_noise

    return numpy_noise(job)


class _FirstEvaluation:
    """A score that remembers its first evaluation of a step (for ``denoised`` in callbacks)."""

    def __init__(self, score):
        self.score, self.first = score, None
        self.fn = score

    def __call__(self, x, t):
        out = self.score(x, t)
        if self.first is None:
            self.first = (x, t, out)
        return out


def run(plan: GridPlan, x, score, noise=None, *, callback=None, check_finite=True, progress=False):
    """Every step of ``plan`` from ``x`` with a live ``score(x, t)``; returns the final state.

    ``callback(k, x_k, denoised, ctx)`` after step ``k`` (``x_k``: the state the step started from; ``denoised``: the
    solver's data prediction, or the one of the step's first evaluation when that was at ``x_k``; the final denoising
    step is ``k = n_steps - 1`` with ``ctx = None``).
    """
    solver, grid = plan.solver, plan.grid
    # the driver of sdekit.solve's fixed grids, with the plan's context (its step count includes the final
    # denoising step); tensors are checked on the device and read once, after the loop
    loop = GridLoop(solver, grid, draw=noise, guard=guard_for(x, grid, check_finite), context=plan.context)
    with progress_bar(plan.n_steps, progress, desc=solver.name) as bar:
        for k in range(plan.n_solver_steps):
            watch = _FirstEvaluation(score) if callback is not None else score
            x_next, ctx = loop.step(plan.process(watch), x, k)
            if callback is not None:
                denoised = ctx.denoised
                if denoised is None and watch.first is not None and watch.first[0] is x:
                    denoised = plan.sde.tweedie(*watch.first)  # the step's first evaluation was at its state
                callback(k, x, denoised, ctx)
            x = x_next
            bar.update(1)
        if plan.final_denoise:
            t = float(grid[-1])
            x0 = plan.denoise(x, score(x, _xp.full_time(t, x)))
            if callback is not None:
                callback(plan.n_steps - 1, x, x0, None)
            x = x0
            bar.update(1)
    loop.check()
    if check_finite and plan.final_denoise and not _xp.isfinite_all(x):
        raise NonFiniteError(plan.n_steps - 1, float(grid[-1]), "non-finite values after the final denoising step")
    return x


# -- step by step ------------------------------------------------------------------------------------------


@dataclass
class Request:
    """An evaluation the solver waits for: the score at state ``x`` and time ``t`` (step ``step``, its ``stage``-th
    evaluation). ``t``: the time as the score received it (``(n,)``); ``at_state``: ``x`` is the step's own starting
    state (not a stage or churned state)."""

    x: object
    t: object
    step: int
    stage: int
    at_state: bool


class _Pending(Exception):
    """Raised inside a replayed step at its first unanswered evaluation."""


class _ReplayScore:
    def __init__(self, answers: list):
        self.answers, self.used, self.asked = answers, 0, None

    def __call__(self, x, t):
        if self.used < len(self.answers):
            self.used += 1
            return self.answers[self.used - 1]
        self.asked = (x, t)
        raise _Pending

    def restrict(self, rows):
        return self


def _snapshot(obj):
    """A copy of a solver's per-solve memory deep enough that an abandoned step attempt leaves it as it was:
    containers are copied, arrays and numbers shared (solvers never write into them)."""
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_snapshot(v) for v in obj)
    return obj


class Stepper:
    """``plan`` run one score evaluation at a time (see the module docstring).

    ``pending`` is the :class:`Request` waiting for an answer (``None`` once ``done``); :meth:`supply` answers it with
    the score at ``pending.x``; ``x`` is the current state (the result once ``done``). :meth:`adopt` replaces the
    state by an equal-shaped array when the pending request is at the step's own state (a pipeline that edits its
    latents between steps). ``noise(step)`` gives the step's normal fields (drawn once per step).
    """

    def __init__(self, plan: GridPlan, x, noise=None, start_step: int = 0):
        self.plan, self.x, self.noise = plan, x, noise
        self.loop = GridLoop(plan.solver, plan.grid, context=plan.context)  # the driver, one step at a time
        self.k = start_step
        self.memory = {}
        self.answers = []
        self.z = None
        self.pending = None
        self.done = False
        self.denoised = None
        self._advance()

    def _advance(self):
        plan = self.plan
        while True:
            if self.k >= plan.n_solver_steps:
                if not plan.final_denoise:
                    self.done, self.pending = True, None
                elif self.answers:
                    self.x = self.denoised = plan.denoise(self.x, self.answers[0])
                    self.done, self.pending, self.answers = True, None, []
                else:
                    self.pending = Request(self.x, float(plan.grid[-1]), self.k, 0, True)
                return
            k = self.k
            if self.z is None and self.noise is not None:
                self.z = self.noise(k)
            replay = _ReplayScore(self.answers)
            memory = _snapshot(self.memory)
            try:
                x_next, ctx = self.loop.step(plan.process(replay), self.x, k, z=self.z, memory=memory)
            except _Pending:
                x_req, t_req = replay.asked
                self.pending = Request(x_req, t_req, k, len(self.answers), x_req is self.x)
                return
            if replay.used != len(self.answers):
                raise RuntimeError(f"solver {plan.solver.name!r} evaluated fewer scores on replay than before")
            self.x, self.memory, self.denoised = x_next, memory, ctx.denoised
            self.k, self.answers, self.z = k + 1, [], None

    def adopt(self, x):
        """Take ``x`` as the step's state (call it when the pending request is at the step's own state, which a
        plan's dry run tells: a pipeline may edit its latents between steps, and evaluates the network there)."""
        if self.pending is not None and x is not self.x:
            self.x = x
            self.pending.x = x

    def supply(self, score_value):
        """Answer the pending request with the score at its state."""
        if self.done:
            raise RuntimeError("the schedule is complete")
        self.answers.append(score_value)
        self.pending = None
        self._advance()


def plan_requests(plan: GridPlan) -> list:
    """``[(step, stage, t, at_state), ...]``: every evaluation of ``plan`` in order, from a dry run on a 1-sample
    numpy state (the times of a fixed-step solver's evaluations depend on the grid only). ``at_state``: the
    evaluation is the step's first, at the step's time and state (both up to round-off) -- not at a stage or
    churned state. (The dry run draws non-zero noise, so that a churned state differs from the step's.)"""
    noise = None
    if plan.stochastic and plan.solver.n_noise:
        noise = lambda k: [np.ones((1, 1)) for _ in range(plan.solver.n_noise)]  # noqa: E731
    out = []
    with np.errstate(all="ignore"):
        st = Stepper(plan, np.full((1, 1), 0.7), noise)
        while not st.done:
            req = st.pending
            t = float(np.asarray(req.t).reshape(-1)[0])
            at = req.stage == 0 and (
                req.at_state
                or (req.step < plan.n_solver_steps and abs(t - float(plan.grid[req.step])) <= 1e-12 * abs(t)
                    and np.allclose(req.x, st.x, rtol=1e-12, atol=0.0))
            )  # fmt: skip
            out.append((req.step, req.stage, t, bool(at)))
            st.supply(-req.x)  # any finite answer: a standard normal's score
    return out
