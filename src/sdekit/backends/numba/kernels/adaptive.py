"""Fused numba kernels for the adaptive solvers: ``adaptive`` (Jolicoeur-Martineau et al. 2021) on the reverse SDE
and ``dopri5`` on the probability-flow ODE, every sample with its own time, step size and controller state.

Layout. Samples are cut into tasks (``prange``); a task runs ``block`` lanes, one sample per lane, the state lanes
last ``(d, block)`` as in the fixed-grid kernels, so the noise, the score and the update are loops over lanes that
compile to SIMD code. Lanes are refilled: when a sample reaches ``t1`` its lane takes the task's next sample, and
once the task has none left the last lane moves into the free one, so the live lanes stay packed in ``[0, L)`` and
no lane idles while others work. Nothing in a sample's arithmetic depends on its lane, its task or the other
samples, so the results do not depend on the batch, the chunking or the threads.

Per attempt (the order of operations of :class:`sdekit.solvers.AdaptiveSDE` and :class:`~sdekit.solvers.Dopri5`
in the numpy loop of :mod:`sdekit.loop.adaptive`, which these kernels reproduce to round-off):

1. the drift at ``(x, t)`` for the lanes that need it (new samples; after an accepted ``adaptive`` step the
   evaluation at the accepted point, counted in that step's NFE as the numpy solver counts it), gathered into
   one batch;
2. each lane's step end: its next stop if within reach, else ``t + h``, landed on a shallow tree node with tree
   noise (:func:`sdekit.brownian.snap_step`, the same arithmetic);
3. the noise: the lane's counter-based normals at its own attempt index, the increment of its Brownian path
   from its chain of tree nodes (:mod:`sdekit.backends.numba.tree`), the splits of all lanes drawn in one
   vectorised batch, or from its bridge-noise stack (:mod:`sdekit.bridge_noise`: per-lane arrays of pieces that
   move with the sample when lanes are packed; the fresh draws of all lanes in one batch);
4. the SDE coefficients and the score's constants at each lane's stage times, in-kernel (VP, sub-VP, VE, EDM:
   the formulas of :mod:`sdekit.sdes` with vectorisable ``exp``/``expm1``/``log``), then the solver's stages,
   its error norm and the controller (:class:`sdekit.controllers.PIController`'s rule; ``err^-beta`` through
   ``exp``/``log``, within a few ulp of ``pow``);
5. accept or reject per lane; saves at stops; a sample that reaches ``t1`` frees its lane.

The host (:func:`run_adaptive`) calls the kernel on chunks of samples sized to take about
:data:`~sdekit.backends.numba.fused.CALL_SECONDS` each, so Ctrl-C interrupts a solve between chunks and the
progress bar counts finished samples.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from types import FunctionType

import numpy as np
from numba import get_num_threads, njit, prange

from ....bridge_noise import BRIDGE_DEPTH
from ....loop.adaptive import MIN_STEP_FRACTION, attempt_stats, max_steps_error, underflow_error
from ....progress import progress_bar
from ....sdes import ProbabilityFlowODE, ReverseSDE
from ....solvers.adaptive import AdaptiveSDE, Dopri5
from ....tree_law import DEFAULT_DEPTH, TOL
from ... import has_fused_score
from ..fused import CALL_SECONDS
from ..host_scores import analytic_params, analytic_work_rows, is_analytic_score
from ..linked import ADAPTIVE, link_all
from ..noise import seed_key
from ..registry import score_lanes
from ..row_score import RowScore, rebind
from .adaptive_lanes import (
    gather,
    heun_accept,
    heun_correct,
    heun_predict,
    refill,
    rk_accept,
    rk_error,
    rk_stage_coef,
    rk_stage_drift,
    rk_stage_point,
    scatter_drift,
    step_ends,
    step_noise,
)
from .adaptive_state import (
    ACUR,
    F_ATOL,
    F_BETA1,
    F_BETA2,
    F_DIR,
    F_H0,
    F_L,
    F_LO,
    F_MAXF,
    F_MINF,
    F_MINSTEP,
    F_RTOL,
    F_SAFETY,
    F_TOL,
    F_W,
    G2CCUR,
    I_CHECK,
    I_DEPTH,
    I_KIND,
    I_KLOG,
    I_MAXSTEPS,
    I_NOISE,
    I_NTASKS,
    NEED,
    NFP,
    NIP,
    NOISE_BRIDGE,
    NOISE_COUNTER,
    NOISE_NONE,
    NOISE_TREE,
    TN,
    Samples,
    Solve,
    T,
    new_lanes,
    new_noise,
)
from .lane_coef import SDE_KINDS, sde_params

__all__ = ["AdaptiveKernel", "ADAPTIVE_KERNELS", "adaptive_plan", "run_adaptive", "block_size_adaptive"]


def _driver(samples, solve, sparams, wshape, extra, skey, c0, c1, splits, block):
    """The parallel part of a fused adaptive kernel: one task per thread-sized share of the samples ``c0 .. c1``
    (``samples``: :class:`~.adaptive_state.Samples`, ``solve``: :class:`~.adaptive_state.Solve`, ``sparams``
    the score's parameters and ``wshape`` its work array's shape, ``extra`` the solver's tables, ``skey`` the seed
    key, ``splits[task]`` the tree splits a task drew, ``block`` its lanes).

    ``task_fn`` is a global bound per kernel (and per RowScore): the tasks hold all the work, compiled without
    ``parallel``, which keeps the compilation short (and the records out of the parallel body, see
    :mod:`~.adaptive_state`)."""
    ntasks = solve.ip[I_NTASKS]
    for task in prange(ntasks):
        splits[task] = task_fn(task, samples, solve, sparams, wshape, extra, skey, c0, c1, block)  # noqa: F821


@dataclass
class AdaptiveKernel:
    """A fused adaptive kernel: its per-task function ``task`` (see :func:`_driver`) and the solver's tables
    (``extra(solver)``). ``analytic()`` is compiled against the analytic densities' lane score (cached on disk),
    ``row(row_score)`` against a :class:`RowScore` (once per process and score)."""

    name: str
    task: object
    extra: object  # extra(solver) -> tuple of arrays
    _compiled: object = None

    @property
    def body(self):
        return self.task

    def _build(self, task, cache):
        g = dict(_driver.__globals__)
        g["task_fn"] = task
        driver = FunctionType(_driver.__code__, g, f"{self.name}_driver", _driver.__defaults__, _driver.__closure__)
        driver.__qualname__ = f"{self.name}_driver"
        return njit(cache=cache, parallel=True, error_model="numpy")(driver)

    def analytic(self):
        if self._compiled is None:
            self._compiled = self._build(njit(cache=True, error_model="numpy")(self.task), True)
        return self._compiled

    def row(self, row_score):
        """Compiled with ``row_score``'s lane adapter in place of the analytic score (not cached on disk)."""
        task = rebind(self.task, f"{self.task.__name__}_row", row_score.adapter(), row_score.lanes_adapter())
        return self._build(njit(error_model="numpy")(task), False)


@njit(cache=True, error_model="numpy")
def _task_rows(task, ntasks, c0, c1):
    """The share ``s0 .. s1`` of the samples ``c0 .. c1`` that task ``task`` of ``ntasks`` runs."""
    per = (c1 - c0 + ntasks - 1) // ntasks
    s0 = c0 + task * per
    return s0, min(c1, s0 + per)


def _adaptive_sde_task(task, samples, solve, sparams, wshape, extra, skey, c0, c1, block):
    """The adaptive reverse-SDE solver (:class:`sdekit.solvers.AdaptiveSDE`) on task ``task``'s share of the
    samples ``c0 .. c1`` (the arguments of :func:`_driver`); returns the tree splits drawn (bridge noise: the
    stack merges). The phases are compiled once (cached); this skeleton, which calls the score, is what a RowScore
    recompiles."""
    fp, ip = solve.fp, solve.ip
    d = samples.x.shape[1]
    s0, s1 = _task_rows(task, ip[I_NTASKS], c0, c1)
    NCL = 2 + ip[I_KLOG]
    B = block
    p0, p1, p2, p3 = sparams
    work = np.empty((wshape[0], wshape[1]))
    lanes = new_lanes(NCL, np.empty((d, B)))
    lf, li, xb, fb, xpb = lanes.lf, lanes.li, lanes.xb, lanes.fb, lanes.xpb
    noise = new_noise(d, B, ip[I_DEPTH], BRIDGE_DEPTH if ip[I_NOISE] == NOISE_BRIDGE else 1, True)
    # the Heun attempt: noise, Euler point, Heun point, score at the Euler point, coefficients at the step end
    z = np.empty((d, B))
    x1b = np.empty((d, B))
    x2b = np.empty((d, B))
    sb = np.empty((d, B))
    cn = np.empty((NCL, B))
    # the gathered batch of lanes whose drift at (x, t) is due
    gx = np.empty((d, B))
    gs = np.empty((d, B))
    gt = np.empty(B)
    gcl = np.empty((NCL, B))
    plist = np.empty(B, dtype=np.int64)
    nsplit = 0
    nextrow = s0
    L = 0
    while True:
        L, nextrow = refill(L, nextrow, s1, samples, skey, solve, lanes, noise)
        if L == 0:
            break
        # 1. the drift at (x, t) where it is not known (new samples, accepted steps), one gathered batch
        P = gather(li[NEED], L, xb, lf[T], lanes.ccur, plist, gx, gt, gcl)
        if P > 0:
            score_lanes(gx, P, gt, gcl, p0, p1, p2, p3, work, gs)
            scatter_drift(P, plist, xb, lf[ACUR], lf[G2CCUR], gs, fb, li[NEED])
        # 2.-3. step ends and their noise
        step_ends(L, solve.stops, fp, ip, lf, li)
        nsplit += step_noise(L, fp, ip, lanes, z, noise)
        # 4. Euler--Maruyama point, the drift there, Heun's average and the error
        heun_predict(L, solve, lf, cn, xb, fb, z, x1b)
        score_lanes(x1b, L, lf[TN], cn, p0, p1, p2, p3, work, sb)
        heun_correct(L, fp, ip, lf, xb, z, x1b, x2b, sb, xpb)
        # 5. accept or reject; finished samples leave their lanes
        L = heun_accept(L, solve, samples, lanes, x1b, x2b, cn, noise)
    return nsplit


def _dopri5_task(task, samples, solve, sparams, wshape, extra, skey, c0, c1, block):
    """Dormand--Prince 5(4) (:class:`sdekit.solvers.Dopri5`) on the probability-flow ODE, task ``task``'s share of
    the samples ``c0 .. c1`` (the arguments of :func:`_driver`); ``extra = (A (S, S), b (S,), b - b_err (S,),
    c (S,))`` of the tableau (FSAL: the last stage is the new point)."""
    A, bw, be, cc = extra
    NS = bw.shape[0]
    fp, ip = solve.fp, solve.ip
    d = samples.x.shape[1]
    s0, s1 = _task_rows(task, ip[I_NTASKS], c0, c1)
    NCL = 2 + ip[I_KLOG]
    B = block
    p0, p1, p2, p3 = sparams
    work = np.empty((wshape[0], wshape[1]))
    ks = np.empty((NS, d, B))
    lanes = new_lanes(NCL, ks[0])  # the drift at the state is the first stage
    lf, li, xb = lanes.lf, lanes.li, lanes.xb
    noise = new_noise(d, B, 0, 1, False)  # no noise: refill's tree arguments, unused
    xi = np.empty((d, B))
    sb = np.empty((d, B))
    gx = np.empty((d, B))
    gs = np.empty((d, B))
    gt = np.empty(B)
    gcl = np.empty((NCL, B))
    plist = np.empty(B, dtype=np.int64)
    ts = np.empty(B)
    cs = np.empty((NCL, B))
    asg = np.empty(B)
    g2s = np.empty(B)
    nextrow = s0
    L = 0
    while True:
        L, nextrow = refill(L, nextrow, s1, samples, skey, solve, lanes, noise)
        if L == 0:
            break
        P = gather(li[NEED], L, xb, lf[T], lanes.ccur, plist, gx, gt, gcl)
        if P > 0:  # k1 of new samples (FSAL keeps it afterwards)
            score_lanes(gx, P, gt, gcl, p0, p1, p2, p3, work, gs)
            scatter_drift(P, plist, xb, lf[ACUR], lf[G2CCUR], gs, ks[0], li[NEED])
        step_ends(L, solve.stops, fp, ip, lf, li)
        for i in range(1, NS):
            rk_stage_point(i, L, A, lf, xb, ks, xi)
            rk_stage_coef(cc[i], L, solve, lf, ts, cs, asg, g2s)
            score_lanes(xi, L, ts, cs, p0, p1, p2, p3, work, sb)
            rk_stage_drift(i, L, asg, g2s, xi, sb, ks)
        rk_error(L, fp, ip, lf, be, xb, xi, ks)
        L = rk_accept(L, solve, samples, lanes, xi, ks)
    return 0


def _dopri5_extra(solver):
    tab = solver.tableau.tableau
    b = np.array(tab.b, dtype=np.float64)
    be = b - np.array(solver.tableau.b_err, dtype=np.float64)
    # the numpy solver's error weights: float(b_i) - float(b_err_i), zero where they agree
    return (np.array(tab.a, order="C", dtype=np.float64), b, be, np.array(tab.c, dtype=np.float64))


ADAPTIVE_SDE = AdaptiveKernel("adaptive_sde", _adaptive_sde_task, lambda solver: (np.zeros(1),))
DOPRI5 = AdaptiveKernel("dopri5", _dopri5_task, _dopri5_extra)

#: Fused adaptive kernels by ``(solver class, process kind)`` (exact classes: a subclass may change the steps).
ADAPTIVE_KERNELS = {(AdaptiveSDE, "sde"): ADAPTIVE_SDE, (Dopri5, "ode"): DOPRI5}


# -- host side -------------------------------------------------------------------------------------------------
def _logdet_tables(params):
    """Distinct eigenvalues per component and their counts, ``(K, U)`` each (padded with count 0)."""
    lam = params[1]
    K = lam.shape[0]
    uniq = [np.unique(lam[k], return_counts=True) for k in range(K)]
    U = max(len(u[0]) for u in uniq)
    ulam = np.zeros((K, U))
    ucnt = np.zeros((K, U))
    for k, (vals, cnt) in enumerate(uniq):
        ulam[k, : len(vals)] = vals
        ucnt[k, : len(vals)] = cnt
    return ulam, ucnt


def adaptive_plan(job):
    """``(kernel, compiled, sparams, lcoef, klog, wshape)`` when ``job`` can run a fused adaptive kernel, else None.

    That is: ``adaptive`` on the reverse SDE or ``dopri5`` on the probability-flow ODE (exact classes), of a VP,
    sub-VP, VE or EDM SDE (exact classes), a float64 numpy state, and an analytic density's score or a
    :class:`RowScore` (a conditioned score or a callback needs the python loop)."""
    proc, solver = job.process, job.solver
    kind = "sde" if job.stochastic else "ode"
    kernel = ADAPTIVE_KERNELS.get((type(solver), kind))
    if kernel is None or job.callback is not None:
        return None
    if type(proc) is not (ReverseSDE if job.stochastic else ProbabilityFlowODE):
        return None
    if type(proc.sde) not in SDE_KINDS:
        if has_fused_score(proc.score):  # a compiled score that will not run compiled: say why, never silently
            warnings.warn(f"backend 'numba' runs {job.solver.name!r} on {type(proc.sde).__name__} in the numpy "
                          "host loop (slower): the fused adaptive kernels evaluate the coefficients of "
                          f"{', '.join(k.__name__ for k in SDE_KINDS)} only", RuntimeWarning, stacklevel=5)  # fmt: skip
        return None
    x0 = job.x0
    if not isinstance(x0, np.ndarray) or x0.dtype != np.float64:
        return None
    score = proc.score
    if is_analytic_score(score):
        if x0.shape[1:] != (score.density.dim,):
            return None
        params = analytic_params(score.density)
        lcoef = _logdet_tables(params)
        klog = params[0].shape[0] if params[0].shape[0] > 1 else 0
        wshape = (analytic_work_rows(params), block_size_adaptive(x0.shape[1]))
        return kernel, kernel.analytic(), params, lcoef, klog, wshape
    row = getattr(score, "numba_row_score", None)
    if isinstance(row, RowScore) and tuple(x0.shape[1:]) == row.event_shape:
        dummy = (np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1, 1)), np.zeros(1))
        d = math.prod(row.event_shape)
        return kernel, row.kernel(kernel), dummy, (np.zeros((1, 1)), np.zeros((1, 1))), 0, (2, d)
    return None


def block_size_adaptive(d: int) -> int:
    """Lanes per task of the adaptive kernels: about 64 KiB of state (their per-lane tree chains and stage buffers
    are several times the state), between 8 and 256."""
    return int(max(8, min(256, 8192 // max(d, 1))))


def run_adaptive(job, plan):
    """Run a fused adaptive ``job`` -> ``(x, saved, nfe, stats)`` in chunks of samples (see the module docstring)."""
    kernel, compiled, sparams, lcoef, klog, wshape = plan
    solver = job.solver
    start = time.perf_counter()
    shape = job.x0.shape
    n = shape[0]
    x = np.array(job.x0.reshape(n, -1), dtype=np.float64, order="C", copy=True)
    d = x.shape[1]
    block = block_size_adaptive(d)
    stops = np.ascontiguousarray(job.grid, dtype=np.float64)
    t0, t1 = float(stops[0]), float(stops[-1])
    span = abs(t1 - t0)
    order = sorted(job.save_index) if job.save_index is not None else []
    save_slot = np.full(stops.shape[0], -1, dtype=np.int64)
    for slot, idx in enumerate(order):
        save_slot[idx] = slot
    saved = np.empty((len(order), n, d)) if order else np.zeros((1, 1, 1))
    if 0 in order:
        saved[save_slot[0]] = x
    rtol = solver.rtol if job.rtol is None else float(job.rtol)
    atol = solver.atol if job.atol is None else float(job.atol)
    ctrl = solver.controller
    fp = np.zeros(NFP)
    fp[[F_RTOL, F_ATOL, F_SAFETY, F_BETA1, F_BETA2, F_MINF, F_MAXF]] = (
        rtol, atol, ctrl.safety, ctrl.beta1, ctrl.beta2, ctrl.min_factor, ctrl.max_factor)  # fmt: skip
    fp[F_H0] = min(solver.initial_step(t0, t1), span)
    fp[F_LO] = min(t0, t1)
    fp[F_L] = span
    fp[F_TOL] = TOL * span
    fp[F_W] = float(job.process.score_weight)
    fp[F_DIR] = 1.0 if t1 > t0 else -1.0
    fp[F_MINSTEP] = MIN_STEP_FRACTION * span
    noise = NOISE_NONE
    if job.stochastic:
        noise = {"tree": NOISE_TREE, "bridge": NOISE_BRIDGE}.get(job.noise, NOISE_COUNTER)
    ip = np.zeros(NIP, dtype=np.int64)
    kind = SDE_KINDS[type(job.process.sde)]
    ip[[I_KIND, I_NOISE, I_DEPTH, I_MAXSTEPS, I_CHECK, I_KLOG]] = (
        kind, noise, DEFAULT_DEPTH, solver.max_steps, int(job.check_finite), klog)  # fmt: skip
    sp = sde_params(job.process.sde)
    ids = np.require(job.sample_ids, dtype=np.int64, requirements=["C", "W"])
    skey = seed_key(job.seed)
    nfe = np.zeros(n, dtype=np.int64)
    nacc = np.zeros(n, dtype=np.int64)
    nrej = np.zeros(n, dtype=np.int64)
    status = np.zeros(n, dtype=np.int64)
    tfail = np.zeros(n)
    threads = get_num_threads()
    extra = kernel.extra(solver)
    solve = Solve(stops, save_slot, fp, ip, sp, *lcoef)
    samples = Samples(x, ids, saved, nfe, nacc, nrej, status, tfail)
    splits_total = 0
    c0 = 0
    if is_analytic_score(job.process.score):  # the shared score's symbol, before the kernel is compiled or loaded
        link_all(ADAPTIVE)
    chunk = min(n, max(block * threads, 64))  # a small first chunk measures the cost per sample
    with progress_bar(n, job.progress, desc=f"{solver.name} (samples finished)") as bar:
        while c0 < n:
            c1 = min(n, c0 + chunk)
            ip[I_NTASKS] = max(1, min(2 * threads, -(-(c1 - c0) // block)))
            splits = np.zeros(ip[I_NTASKS], dtype=np.int64)
            tic = time.perf_counter()
            compiled(samples, solve, sparams, wshape, extra, skey, c0, c1, splits, block)
            elapsed = time.perf_counter() - tic
            splits_total += int(splits.sum())
            bar.update(c1 - c0)
            bad = np.flatnonzero(status[c0:c1])
            if bad.size:
                _raise(solver, c0 + int(bad[0]), status, tfail, nacc, nrej)
            # the next chunk takes about CALL_SECONDS (Ctrl-C and the bar act between chunks)
            per_sample = elapsed / (c1 - c0)
            chunk = int(min(max(chunk, CALL_SECONDS / max(per_sample, 1e-12)), 4 * chunk))
            c0 = c1
    stats = attempt_stats(nfe, nacc, nrej, t1)
    stats.update(wall_time=time.perf_counter() - start, kernel=f"fused {kernel.name}")
    if noise == NOISE_TREE:
        stats["tree_splits"] = splits_total / n
    if noise == NOISE_BRIDGE:
        stats["bridge_merges"] = splits_total / n
    xs = saved.reshape((len(order),) + tuple(shape)) if order else None
    return x.reshape(shape), xs, int(round(float(np.mean(nfe)))), stats


def _raise(solver, i, status, tfail, nacc, nrej):
    """The numpy loop's error for sample ``i`` of a fused adaptive solve."""
    attempts = int(nacc[i] + nrej[i])
    if status[i] == 1:
        raise underflow_error(solver, attempts, tfail[i], i)
    raise max_steps_error(solver, attempts, tfail[i], f"sample {i}")
