"""``sdekit.learn.fit``: a few-step probability-flow solver fitted to teacher trajectories (see ``docs/learn.md``).

The method, in stages, on a plain numpy score (no autograd):

1. **Teacher.** The flow's states of the warm-up points at every noise level (:class:`DenseTeacher`: dopri5 at
   ``teacher_tol``, or a single Gaussian's exact flow), and their endpoints (``teacher(x_T)`` when given).
2. **Stage-wise least squares.** For a grid and time offsets, run the learned solver on the training points; step
   ``k``'s output ``scale_k x_hat_k + sum_j w_kj eps_{k-j}`` is linear in ``(scale_k, w_k)`` given the steps
   before, so the corrections that bring it closest (mean squared distance) to the teacher's state at the step's
   end level (the last step: its endpoint) are a small ridge least squares. One score call per step and point.
3. **Polish.** Nelder--Mead on the steps' shares of the log noise level (softmax: a decreasing grid) and the log
   offsets of the noise level told to the score, minimising the training endpoint RMS after stage 2.
4. **Mining.** The pool points where the polished solver disagrees most with a cheap teacher (the base on three
   times the steps; the trajectories sent to another mixture component) join the training points (:mod:`.points`);
   a second polish starts from it. 5. **Joint** (``joint = 8``): Gauss--Newton on all coefficients (:mod:`.joint`).

The warm-up points are drawn from a larger pool favouring the base's disagreement with the cheap teacher, with
importance weights (:func:`.points.select`). The solver returned is, among the base on its grid and stages 2--5, the
one with the least RMS on ``guard`` fresh start points (``guard=0``: the held-out warm-up points, ``holdout``), so
it is never worse than its base there. ``fitted.report`` gives the train, held-out and guard errors of each.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import NonFiniteError
from ..grids import make_grid
from ..integrate import solve, tweedie_denoise
from ..noise import check_seed
from ..sdes import LinearSDE
from ..solvers import get_solver
from ..solvers._common import coeffs
from ..validation import boolean, integer_at_least, positive_int, positive_number
from .guard import guard_errors
from .joint import joint_stage
from .points import cheap_reference, disagreement, select, warmup_pool
from .solver import LearnedSolver, base_tables
from .teacher import DenseTeacher

__all__ = ["fit", "DEFAULT_BASE"]

#: The solvers a fit may start from (diff-sampler's iPNDM, iPNDM_v and DEIS-tAB with the analytical first step, on
#: the time-uniform grid: the best peers of the few-step benchmark); the one with the least training error is taken.
DEFAULT_BASE = ("ipndm(afs=True)", "ipndm_v(afs=True)", "deis(order=4, afs=True)")


class _Counted:
    """The score, counting calls and evaluated rows, refusing non-finite output (naming the argument)."""

    def __init__(self, score):
        self.fn, self.calls, self.rows = score, 0, 0

    def __call__(self, x, t):
        out = np.asarray(self.fn(x, t))
        self.calls += 1
        self.rows += x.shape[0]
        if out.shape != x.shape:
            raise ValueError(f"score returned shape {out.shape} for x of shape {x.shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"score returned non-finite values at t = {float(np.max(t)):g}")
        return out


class _Budget(Exception):
    """Raised inside the polish when its time or evaluation budget is spent."""


def _levels(sde, grid):
    return np.array([coeffs(sde, t)[1] / coeffs(sde, t)[0] for t in grid])


def _grid_of(sde, shares, u0, u1, t_end):
    w = np.exp(shares - np.max(shares))
    u = u0 + (u1 - u0) * np.concatenate([[0.0], np.cumsum(w / w.sum())])
    ts = np.asarray(sde.t_from_log_snr(-u), dtype=np.float64)
    ts[0], ts[-1] = sde.T, t_end
    return ts


class _Fitter:
    """Stage 2 for one grid and offsets on a set of points: the fitted solver and its endpoint error."""

    def __init__(self, sde, score, base, teacher, ref_out, denoise, ridge, fit_scales, history, weights):
        self.sde, self.score, self.base, self.teacher = sde, score, base, teacher
        self.weights = weights  # (n,) importance weights of the warm-up points (mean 1 over the pool's law)
        self.ref, self.ref_out = teacher.endpoint, ref_out
        self.denoise, self.ridge = denoise, ridge
        self.fit_scales, self.history = fit_scales, history

    def extend(self, teacher, ref_out, weights):
        """Append the trajectories of ``teacher`` (their reference outputs ``ref_out``) to the fitted points; the
        importance weights of all points become ``weights``."""
        self.teacher.extend(teacher)
        self.ref, self.ref_out = self.teacher.endpoint, np.concatenate([self.ref_out, ref_out])
        self.weights = weights

    def fitted(self, grid, offsets, rows, fit=True):
        """``(solver, error)``: the learned solver on ``grid`` with ``offsets``, its corrections fitted on ``rows``
        (``fit=False``: the base's values), and its :meth:`error` on ``rows`` -- from the one run that fits it (the
        fitting run's output is the fitted solver's: step ``k`` is applied with its fitted values)."""
        solver = self._build(grid, offsets, fit)
        return solver, self._error_of(self._run(solver, rows, fit=fit), rows)

    def _build(self, grid, offsets, fit):
        weights0, orders0 = base_tables(self.base, self.sde, grid)
        n_steps = len(grid) - 1
        h = max(self.history, weights0.shape[1])
        weights = np.zeros((n_steps, h))
        weights[:, : weights0.shape[1]] = weights0
        orders = orders0.copy() if not fit else np.minimum(np.arange(n_steps) + 1, h)
        return LearnedSolver(self.sde, "", grid, weights, orders, None, offsets, afs=self.base.afs,
                             denoise=self.denoise)  # fmt: skip

    def _run(self, solver, rows, fit=False):
        """Run ``solver`` on the warm-up points ``rows`` (fitting its steps in place when ``fit``); the output."""
        sde, teacher = self.sde, self.teacher
        grid = solver.grid
        levels = _levels(sde, grid)
        x_hat = teacher.values[0][rows]
        hist = []
        n_steps = len(grid) - 1
        for k in range(n_steps):
            if solver.afs and k == 0:
                eps = x_hat / math.sqrt(1.0 + levels[0] ** 2)
            else:
                te = solver.eval_time(k)
                a_e, s_e = coeffs(sde, te)
                eps = -s_e * self.score(x_hat * a_e, np.full(x_hat.shape[0], te))
            hist.insert(0, eps)
            del hist[solver.multistep_order :]
            m = solver.orders[k]
            if fit:
                self._fit_step(solver, k, x_hat, hist[:m], self._target(grid, levels, k, rows), self.weights[rows])
            out = solver.scales[k] * x_hat
            for wj, ej in zip(solver.weights[k, :m], hist):
                out = out + wj * ej
            x_hat = out
        x = x_hat * coeffs(sde, grid[-1])[0]
        if self.denoise:
            x = tweedie_denoise(sde, self.score, x, float(grid[-1]))
        return x

    def _target(self, grid, levels, k, rows):
        if k < len(grid) - 2:
            return self.teacher.x_hat(levels[k + 1], rows)
        return self.ref[rows] / coeffs(self.sde, grid[-1])[0]

    def _fit_step(self, solver, k, x_hat, hist, target, w):
        """Weighted ridge least squares of the step's corrections: ``scale`` and ``weights`` that bring its output
        closest to ``target`` (point ``i`` weighted by ``w[i]``)."""
        m = len(hist)
        out = solver.scales[k] * x_hat
        for wj, ej in zip(solver.weights[k, :m], hist):
            out = out + wj * ej
        root = np.sqrt(w).reshape((-1,) + (1,) * (x_hat.ndim - 1))
        feats = ([x_hat] if self.fit_scales else []) + list(hist)
        f = np.stack([(v * root).reshape(-1) for v in feats], axis=1)
        gram = f.T @ f
        lam = self.ridge * np.trace(gram) / gram.shape[0]
        c = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), f.T @ ((target - out) * root).reshape(-1))
        if self.fit_scales:
            solver.scales[k] += c[0]
            c = c[1:]
        solver.weights[k, :m] += c

    def residual(self, solver, rows) -> np.ndarray:
        """``(n, D)``: output minus reference output on ``rows``, times ``sqrt(weight / mean weight)``."""
        d = (self._run(solver, rows) - self.ref_out[rows]).reshape(len(self.ref_out[rows]), -1)
        return d * np.sqrt(self.weights[rows] / np.mean(self.weights[rows]))[:, None]

    def error(self, solver, rows) -> float:
        """Weighted RMS over ``rows`` of ``|output - reference output|`` (an estimate of the RMS over the law the
        warm-up pool was drawn from)."""
        return self._error_of(self._run(solver, rows), rows)

    def _error_of(self, x, rows) -> float:
        d = (x - self.ref_out[rows]).reshape(len(x), -1)
        w = self.weights[rows]
        err = float(np.sqrt(np.sum(w * np.sum(d * d, axis=1)) / np.sum(w)))
        return err if math.isfinite(err) else math.inf


def fit(
    sde,
    score,
    nfe: int,
    *,
    x_T=None,
    n: int = 1024,
    oversample: int = 8,
    base=DEFAULT_BASE,
    denoise: bool = True,
    teacher=None,
    seed: int = 0,
    progress: bool = False,
    shape=None,
    t_end: float | None = None,
    holdout: float = 0.25,
    guard: int = 2048,
    guard_oversample: int = 4,
    polish: bool = True,
    offsets: bool = True,
    scales: bool = True,
    history: int = 4,
    ridge: float = 1e-6,
    max_evals: int | None = None,
    time_limit: float = 240.0,
    teacher_tol: float = 1e-7,
    teacher_levels: int = 96,
    density=None,
    mine: int | None = None,
    joint: int = 8,
) -> LearnedSolver:
    """A :class:`LearnedSolver` with at most ``nfe`` score evaluations per sample, fitted to teacher trajectories
    of ``score`` (see the module docstring and ``docs/learn.md``).

    Parameters
    ----------
    sde : LinearSDE
    score : callable ``score(x, t)`` on numpy arrays
    nfe : int
        The budget per sample, the final denoising included when ``denoise``. The fitted solver takes
        ``nfe - denoise`` score-evaluating steps (plus the analytic first step when the base has ``afs``).
    x_T : array (M, *event), optional
        The pool of warm-up start points; default ``oversample * n`` prior draws with ``seed`` (event shape from
        ``shape`` or ``score.event_shape``).
    n, oversample : int
        Warm-up points fitted (and held out), drawn without repeats from the pool, favouring where the base errs most
        (against itself on three times the steps), importance-weighted so every error estimates the pool's.
    base : str or sequence of str
        The solver the fit starts from, of the ``ipndm`` / ``ipndm_v`` / ``deis`` family, or several: the one with
        the least (weighted) error on the training points is taken (default :data:`DEFAULT_BASE`). Its default
        grid is the starting grid; the untrained solver is this base, and the guard compares with it.
    denoise : bool
        Fit for ``sample(..., denoise=True)``: one evaluation of the budget goes to the final Tweedie step.
    teacher : callable ``x_T -> x``, optional
        The reference output of each start point (shape of ``x_T``); default: the probability-flow solution at
        ``t_end`` by dopri5 at ``teacher_tol`` (the exact flow for a single Gaussian's analytic score or a given
        ``density``), denoised when ``denoise``. Intermediate targets come from the dopri5 (or exact) trajectory.
    seed, progress : int, bool
        Seed of the prior draws; print what each stage reached.
    holdout : float
        Fraction of the warm-up points kept out of the fit to choose the returned solver (see the module).
    guard, guard_oversample : int, int
        Fresh points (with teacher endpoints) on which the returned solver is chosen (0: the held-out warm-up points),
        drawn from ``guard_oversample * guard`` prior draws (seed ``seed + 1``) by each candidate's disagreement with
        the cheap teacher, importance-weighted so each RMS estimates the prior's (:mod:`.guard`; 1: plain draws).
    mine, joint : int, optional; int
        Pool points added after the polish where the polished solver errs most (default ``n // 8``; 0: none), then a
        second polish (the ``mined`` candidate); Gauss--Newton iterations on all coefficients and offsets against the
        endpoint error (:mod:`.joint`; 0: none).
    polish, offsets, scales : bool
        Stage 3 at all; time offsets among its parameters; a fitted factor on ``x_hat`` per step.
    history, ridge : int, float
        Eps values per step the corrections act on (at least the base's order); relative ridge of the least
        squares (times the mean diagonal of the normal matrix).
    max_evals, time_limit, teacher_tol, teacher_levels : int, float, float, int
        Stage 3 budget (default ``50 * parameters`` evaluations: independent of the load) and a safety bound in
        seconds; the dense teacher's dopri5 tolerance (endpoint error ~1e-6 at 1e-7) and number of stored levels.

    Returns
    -------
    LearnedSolver
        With ``report``: ``train`` / ``heldout`` / ``guard`` RMS of each candidate (``base``, ``least_squares``,
        ``polished``, ``mined``), the ``choice``, ``n_train`` / ``n_heldout`` / ``n_mined``, ``guard_pool`` /
        ``guard_points`` / ``guard_sure`` (pool, sample, points taken surely), ``polish_evals``, ``seconds``,
        ``score_calls`` and ``score_rows`` spent fitting.
    """
    started = time.perf_counter()
    nfe, denoise, progress, bases, base_solver, evals = _check_arguments(sde, score, nfe, base, denoise, progress)
    t_end = sde.eps if t_end is None else positive_number("t_end", t_end)
    x_T = warmup_pool(sde, score, x_T, shape, n, oversample, seed)
    mine = positive_int("n", n) // 8 if mine is None else integer_at_least("mine", mine, 0)
    st = _State(sde, nfe, denoise, progress, started, bases, base_solver, evals, t_end, seed)
    _warmup_points(st, score, x_T, n, teacher, holdout, history)
    _prepare_teacher(st, density, teacher_tol, teacher_levels, ridge, scales)
    _choose_base(st)
    _least_squares(st)
    _polish(st, polish, offsets, max_evals, time_limit, share=0.5 if mine and st.pool is not None else 1.0)
    _mine(st, mine, polish, offsets, max_evals, time_limit)
    joint_stage(st, integer_at_least("joint", joint, 0), offsets)
    return _guard_and_report(st, guard, guard_oversample, teacher_tol)


@dataclass
class _State:
    """What the stages of one :func:`fit` share; the fields after ``seed`` are filled in as the stages run."""

    sde: LinearSDE
    nfe: int
    denoise: bool
    progress: bool
    started: float  # time.perf_counter() at the call
    bases: dict  # spec -> solver
    base_solver: object  # the first base until _choose_base, then the chosen one
    evals: int  # score-evaluating steps: nfe - denoise
    t_end: float
    seed: object  # as given (checked where it is used)
    x_T: np.ndarray | None = None  # the warm-up points (n_all, *event)
    teacher: object = None
    history: int = 0
    counted: _Counted | None = None
    process: object = None
    pool_size: int = 0
    n_all: int = 0
    n_hold: int = 0
    train: slice | None = None
    held: slice | None = None
    point_weights: np.ndarray | None = None
    pool: np.ndarray | None = None  # the pool the warm-up points were drawn from (when it held more than n)
    pool_fine: np.ndarray | None = None  # the base's output on the pool on 3x its steps (the cheap teacher)
    pool_p: np.ndarray | None = None  # inclusion probabilities of the pool points
    pool_rows: np.ndarray | None = None  # pool row of each warm-up point
    teacher_options: dict = field(default_factory=dict)
    n_mined: int = 0  # training points added by the mining stage
    best_p: dict = field(default_factory=dict)  # candidate -> its polish parameters
    polish_evals: dict = field(default_factory=dict)  # candidate -> objective evaluations of its polish
    n_steps: int = 0
    fitter: _Fitter | None = None
    base: str = ""  # the chosen base's spec
    base_err: dict = field(default_factory=dict)
    grid0: np.ndarray | None = None
    candidates: dict = field(default_factory=dict)
    train_err: dict = field(default_factory=dict)

    def say(self, msg):
        if self.progress:
            print(f"[learn nfe={self.nfe}] {msg} ({time.perf_counter() - self.started:.1f} s)", flush=True)


def _check_arguments(sde, score, nfe, base, denoise, progress):
    """``(nfe, denoise, progress, bases, first base solver, evals)`` from :func:`fit`'s arguments, checked."""
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"sde must be a LinearSDE (VPSDE, EDMSDE, ...), got {sde!r}")
    if not callable(score):
        raise TypeError(f"score must be callable score(x, t), got {score!r}")
    nfe = positive_int("nfe", nfe)
    denoise, progress = boolean("denoise", denoise), boolean("progress", progress)
    specs = [base] if isinstance(base, str) else list(base)
    bases = {}
    for spec in specs:
        try:
            bases[spec] = get_solver(spec)
        except ValueError as exc:
            raise ValueError(f"base {spec!r}: {exc}") from None
        if not hasattr(bases[spec], "weights") or not hasattr(bases[spec], "step_order"):
            raise ValueError(f"base must be a solver of the ipndm / ipndm_v / deis family, got {spec!r}")
    if not bases:
        raise ValueError("base names no solver")
    base_solver = bases[specs[0]]
    evals = nfe - int(denoise)
    if evals < 1:
        raise ValueError(f"nfe={nfe} is smaller than base {base!r} needs with denoise={denoise}: at least "
                         f"{1 + int(denoise)}")  # fmt: skip
    return nfe, denoise, progress, bases, base_solver, evals


def _warmup_points(st, score, x_T, n, teacher, holdout, history):
    """Check the remaining options; count the score; draw ``n`` warm-up points of the pool (:func:`.points.select`,
    weighted by the base's disagreement with the cheap teacher) and split them into the held-out and training
    parts."""
    n = positive_int("n", n)
    if teacher is not None and not callable(teacher):
        raise TypeError(f"teacher must be callable x_T -> x_0, got {teacher!r}")
    holdout = float(holdout)
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must lie in [0, 1), got {holdout!r}")
    st.teacher, st.history = teacher, positive_int("history", history)
    st.n_steps = st.evals + int(st.base_solver.afs)
    st.counted = _Counted(score)
    st.process = st.sde.probability_flow(st.counted)
    st.pool_size = x_T.shape[0]
    if st.pool_size > n:
        coarse, st.pool_fine = cheap_reference(st.process, st.base_solver, x_T, st.n_steps, st.t_end)
        st.pool_rows, st.pool_p = select(disagreement(coarse, st.pool_fine), n, check_seed(st.seed))
        st.pool = x_T
        x_T = x_T[st.pool_rows]
        st.point_weights = 1.0 / st.pool_p[st.pool_rows]
        st.point_weights /= st.point_weights.mean()
    else:
        st.point_weights = np.ones(st.pool_size)
    st.x_T = x_T
    st.n_all = x_T.shape[0]
    st.n_hold = int(round(holdout * st.n_all))
    st.held, st.train = slice(0, st.n_hold), slice(st.n_hold, st.n_all)  # mined points join the training part


def _prepare_teacher(st, density, teacher_tol, teacher_levels, ridge, scales):
    """Stage 1: the dense teacher of the warm-up points and their reference outputs; then the stage-2 fitter."""
    sde, x_T = st.sde, st.x_T
    if density is None and getattr(getattr(st.counted.fn, "density", None), "exact_flow", False):
        density = st.counted.fn.density
    st.teacher_options = {"density": density, "tol": teacher_tol, "levels": teacher_levels}
    dense, ref_out = _teach(st, x_T)
    st.say(f"teacher: {st.n_all} trajectories, {st.counted.calls} score calls")
    ridge = float(ridge)
    if not (math.isfinite(ridge) and ridge >= 0.0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    st.fitter = _Fitter(sde, st.counted, st.base_solver, dense, ref_out, st.denoise, ridge, boolean("scales", scales),
                        st.history, st.point_weights)  # fmt: skip


def _teach(st, x_T):
    """``(dense teacher, reference outputs)`` of the start points ``x_T`` (``st.teacher``'s outputs when given)."""
    dense = DenseTeacher(st.process, x_T, st.t_end, **st.teacher_options)
    if st.teacher is not None:
        ref_out = np.asarray(st.teacher(x_T))
        if ref_out.shape != x_T.shape:
            raise ValueError(f"teacher returned shape {ref_out.shape}; it must return the shape of x_T, {x_T.shape}")
        if not np.all(np.isfinite(ref_out)):
            raise ValueError("teacher returned non-finite values")
    else:
        ref_out = dense.endpoint
        if st.denoise:
            ref_out = tweedie_denoise(st.sde, st.counted, ref_out, st.t_end)
    return dense, ref_out


def _choose_base(st):
    """The base with the least training error among ``st.bases`` (untrained, each on its default grid)."""
    fitter = st.fitter
    for spec, solver in st.bases.items():
        fitter.base = solver
        steps_b = st.evals + int(solver.afs)
        grid_b = make_grid(st.sde, steps_b, solver.default_grid, st.t_end)
        st.base_err[spec] = fitter.fitted(grid_b, np.zeros(steps_b), st.train, fit=False)[1]
    st.base = min(st.base_err, key=st.base_err.get)
    st.base_solver = fitter.base = st.bases[st.base]
    st.n_steps = st.evals + int(st.base_solver.afs)


def _least_squares(st):
    """Stage 2 on the base grid: the candidates ``base`` (untrained) and ``least_squares``, their training errors."""
    fitter, n_steps = st.fitter, st.n_steps
    st.grid0 = make_grid(st.sde, n_steps, st.base_solver.default_grid, st.t_end)
    untrained, st.train_err["base"] = fitter.fitted(st.grid0, np.zeros(n_steps), st.train, fit=False)
    first, st.train_err["least_squares"] = fitter.fitted(st.grid0, np.zeros(n_steps), st.train)
    st.candidates.update({"base": untrained, "least_squares": first})
    st.say(f"least squares on the base grid: train RMS {st.train_err['least_squares']:.3e} "
           f"(base {st.train_err['base']:.3e})")  # fmt: skip


def _polish(st, polish, offsets, max_evals, time_limit, key="polished", start=None, share=1.0):
    """Stage 3: Nelder--Mead on the grid's shares of the log noise level and the score-time offsets, each candidate
    refitted by stage 2; the best on the training points becomes candidate ``key``. The search starts from the base
    grid with zero offsets, or from the parameters of candidate ``start``, and spends ``share`` of the budget."""
    sde, t_end, n_steps, grid0, fitter, train = st.sde, st.t_end, st.n_steps, st.grid0, st.fitter, st.train
    u0, u1 = math.log(_levels(sde, [sde.T])[0]), math.log(_levels(sde, [t_end])[0])
    evaluated = np.arange(int(st.base_solver.afs), n_steps)  # steps whose score call can be offset
    n_par = (n_steps if n_steps > 1 else 0) + (len(evaluated) if offsets else 0)
    if not (boolean("polish", polish) and n_par > 0):
        return
    from scipy.optimize import minimize

    limit = 50 * n_par if max_evals is None else positive_int("max_evals", max_evals)
    limit = max(1, int(share * limit))
    deadline = time.perf_counter() + share * positive_number("time_limit", time_limit)
    count = [0]
    if start is None:
        levels0 = np.log(_levels(sde, grid0))
        shares0 = np.log(np.maximum(np.diff(levels0) / (u1 - u0), 1e-12))
        p0 = np.concatenate([shares0 if n_steps > 1 else [], np.zeros(len(evaluated) if offsets else 0)])
        best = {"err": st.train_err["least_squares"], "solver": st.candidates["least_squares"], "p": p0}
    else:
        p0 = st.best_p[start]
        best = {"err": math.inf, "solver": st.candidates[start], "p": p0}

    def unpack(p):
        shares = p[:n_steps] if n_steps > 1 else np.zeros(1)
        grid = _grid_of(sde, shares, u0, u1, t_end) if n_steps > 1 else grid0
        offs = np.zeros(n_steps)
        if offsets:
            offs[evaluated] = p[n_steps if n_steps > 1 else 0 :]
        return grid, offs

    def objective(p):
        if count[0] >= limit or time.perf_counter() > deadline:
            raise _Budget
        count[0] += 1
        grid, offs = unpack(p)
        if not np.all(np.diff(grid) < 0) or np.any(np.abs(offs) > 2.0):
            return math.inf
        try:
            cand, err = fitter.fitted(grid, offs, train)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError, NonFiniteError):
            return math.inf
        if err < best["err"]:
            best.update(err=err, solver=cand, p=np.array(p))
        return err

    n_shares = n_steps if n_steps > 1 else 0
    steps = np.concatenate([np.full(n_shares, 0.25), np.full(n_par - n_shares, 0.05)]) * (1.0 if start is None else 0.5)
    simplex = np.vstack([p0] + [p0 + steps[i] * np.eye(n_par)[i] for i in range(n_par)])
    with np.errstate(all="ignore"):
        try:
            opts = {"initial_simplex": simplex, "maxfev": limit, "xatol": 1e-4, "fatol": 0.0}
            minimize(objective, p0, method="Nelder-Mead", options=opts)
        except _Budget:
            pass
    if not math.isfinite(best["err"]):
        best["err"] = fitter.error(best["solver"], train)
    st.candidates[key], st.train_err[key], st.best_p[key] = best["solver"], best["err"], best["p"]
    st.polish_evals[key] = count[0]
    st.say(f"polish ({key}): {count[0]} evaluations, train RMS {best['err']:.3e}")


def _mine(st, mine, polish, offsets, max_evals, time_limit):
    """Stage 4: add to the training points the ``mine`` pool points where the polished candidate disagrees most
    with the cheap teacher (weight 1: each is then taken surely; :mod:`.points`), with their teacher
    trajectories, and polish again from the polished candidate (the ``mined`` candidate)."""
    if not mine or st.pool is None or "polished" not in st.candidates:
        return
    cand = st.candidates["polished"]
    out = solve(st.process, st.pool, float(cand.grid[0]), float(cand.grid[-1]), cand, grid=cand.grid).x
    top = np.argsort(-disagreement(out, st.pool_fine), kind="stable")[: min(mine, len(st.pool))]
    where = {int(r): i for i, r in enumerate(st.pool_rows)}
    raw = 1.0 / st.pool_p[st.pool_rows]
    raw[[where[int(r)] for r in top if int(r) in where]] = 1.0
    new = np.array([int(r) for r in top if int(r) not in where], dtype=int)
    if len(new):
        dense, ref_out = _teach(st, st.pool[new])
        weights = np.concatenate([raw, np.ones(len(new))])
        st.fitter.extend(dense, ref_out, weights / weights.mean())
        st.x_T, st.pool_rows = np.concatenate([st.x_T, st.pool[new]]), np.concatenate([st.pool_rows, new])
        st.n_all += len(new)
        st.n_mined = len(new)
        st.train = slice(st.n_hold, st.n_all)
    else:
        st.fitter.weights = raw / raw.mean()
    st.train_err.update({k: st.fitter.error(v, st.train) for k, v in st.candidates.items()})
    st.say(f"mined {len(top)} pool points ({len(new)} new): train RMS " +
           ", ".join(f"{k} {v:.3e}" for k, v in st.train_err.items()))  # fmt: skip
    _polish(st, polish, offsets, max_evals, time_limit, key="mined", start="polished", share=0.5)


def _guard_and_report(st, guard, guard_oversample, teacher_tol):
    """Choose among the candidates on the guard's points (:func:`.guard.guard_errors`; or on the held-out ones) and
    return the chosen solver, with its ``report``."""
    sde, t_end, candidates, counted = st.sde, st.t_end, st.candidates, st.counted
    held_err = {k: st.fitter.error(v, st.held) for k, v in candidates.items()} if st.n_hold else dict(st.train_err)
    guard_err, info = None, {"guard_pool": 0, "guard_points": 0, "guard_sure": 0}
    guard = integer_at_least("guard", guard, 0)
    oversample = positive_int("guard_oversample", guard_oversample)
    if guard:
        x_g = sde.prior_sample((oversample * guard,) + tuple(st.x_T.shape[1:]), seed=check_seed(st.seed) + 1)

        def reference(x):
            if st.teacher is not None:
                return np.asarray(st.teacher(x))
            ref = solve(st.process, x, sde.T, t_end, "dopri5", rtol=teacher_tol, atol=teacher_tol).x
            return tweedie_denoise(sde, counted, ref, t_end) if st.denoise else ref

        guard_err, info = guard_errors(st.process, candidates, st.base_solver, st.n_steps, x_g, guard,
                                       seed=check_seed(st.seed) + 1, t_end=t_end, denoise=st.denoise,
                                       reference=reference)  # fmt: skip
        st.say(f"guard on {guard} of {len(x_g)} fresh points ({info['guard_sure']} sure): " +
               ", ".join(f"{k} {v:.3e}" for k, v in guard_err.items()))  # fmt: skip
    decide = guard_err if guard_err is not None else held_err
    choice = min(decide, key=lambda k: (decide[k], k != "base"))
    chosen = candidates[choice]
    report = {
        "choice": choice,
        "train": {k: st.train_err[k] for k in candidates},
        "heldout": {k: held_err[k] for k in candidates},
        "guard": guard_err,
        "n_train": st.n_all - st.n_hold,
        "n_mined": st.n_mined,
        "n_heldout": st.n_hold,
        **info,
        "polish_evals": dict(st.polish_evals),
        "pool": st.pool_size,
        "seconds": time.perf_counter() - st.started,
        "score_calls": counted.calls,
        "score_rows": counted.rows,
        "nfe": st.nfe,
        "base": st.base,
        "bases": st.base_err,
    }
    st.say(f"chose {choice}: RMS {decide[choice]:.3e} (base {decide['base']:.3e})")
    if choice == "base":
        return LearnedSolver.from_base(sde, st.base, st.grid0, denoise=st.denoise, report=report)
    return LearnedSolver(sde, st.base, chosen.grid, chosen.weights, chosen.orders, chosen.scales, chosen.offsets,
                         afs=chosen.afs, denoise=st.denoise, report=report)  # fmt: skip
