"""The adaptive loop: every sample advances with its own step size until it reaches ``t1``.

Array-generic: the states and the solver's arithmetic stay in ``x0``'s library (numpy arrays or torch
tensors on any device); the control (times, step sizes, errors, accept decisions) lives in float64 numpy
arrays of shape ``(n,)``. Each iteration gathers the samples that have not finished, lets the solver
attempt one step for each of them, and scatters back the accepted ones. Samples therefore end after
different numbers of steps; ``nfe`` is the mean over samples (``stats`` has the maximum too).

Save times: ``job.grid`` is ``[t0, stops..., t1]``; a sample's step is shortened to land exactly on its next
stop, and its state there goes to the save slot of that stop when ``job.save_index`` asks for it (exact
states, no interpolation; each stop can cost a shortened step).

Noise: with ``noise="counter"`` the ``j``-th attempt of sample ``i`` draws ``(seed, i, j)`` from the
counter-based generator, fresh for every attempt as in Jolicoeur-Martineau et al. 2021. With ``noise="tree"``
the attempt reads the increment of sample ``i``'s Brownian path over its own ``[t, t + h]``
(:class:`sdekit.brownian.BrownianTree`), so a rejected step's retry stays on the same path. Tree steps end on
shallow node times of the tree (:func:`sdekit.brownian.snap_step`: a step shortened by at most a quarter), which
the per-sample walker :class:`sdekit.brownian.BrownianPaths` reaches in about two splits per attempt. With
``noise="bridge"`` the attempt reads its increment from sample ``i``'s stack of drawn future increments
(:class:`sdekit.bridge_noise.BridgeNoise`, refined by Brownian bridges, kept on rejection): the exact law at
one draw per attempt at most, on a path that depends on the sample's own step sequence. Its steps end on the
same shallow dyadic times as the tree's: the step ends (and the durations of the pieces) are then exact, so a
round-off change of an error norm does not move the noise, and the numpy, torch and compiled loops, and every
batch, take the same decisions (with unsnapped ends, round-off grows through the step sizes and the bridges by
about 10x every few attempts).

Progress (``progress=True``): a bar of the time covered, averaged over the samples, in permille of the interval.
"""

from __future__ import annotations

import time

import numpy as np

from .. import _xp
from ..backends.job import Trajectory
from ..bridge_noise import BridgeNoise
from ..brownian import BrownianPaths, BrownianTree, increment_from, snap_step
from ..errors import NonFiniteError
from ..noise import normals_numpy
from ..progress import progress_bar

MIN_STEP_FRACTION = 1e-14  # a step shorter than this fraction of the interval means the solve has failed


def _index(idx: np.ndarray, like):
    """Integer row indices usable on ``like`` (a torch index tensor on its device, or the numpy array)."""
    if _xp.is_torch(like):
        return _xp.lib(like).as_tensor(idx, dtype=_xp.lib(like).long, device=like.device)
    return idx


def _to_numpy(v) -> np.ndarray:
    if _xp.is_torch(v):
        return v.detach().cpu().double().numpy()
    return np.asarray(v, dtype=np.float64)


def run(job):
    """Run an adaptive ``job`` (``job.solver.adaptive`` is true) on numpy arrays or torch tensors (the host mode:
    the control is read every attempt)."""
    start = time.perf_counter()
    st = _HostState(job)
    with progress_bar(PROGRESS_UNITS, job.progress, desc=f"{job.solver.name} (time covered, permille)") as bar:
        shown = 0
        while True:
            idx = np.flatnonzero(np.abs(st.t1 - st.t) > 0.0)
            if idx.size == 0:
                break
            if st.it >= job.solver.max_steps:
                raise max_steps_error(job.solver, st.it, st.t[idx[0]], f"{idx.size} samples")
            _host_attempt(st, idx)
            if job.callback is not None:  # per attempt: every sample's time (n,) and the state
                job.callback({"step": st.it, "t": st.t.copy(), "x": st.x, "denoised": None})
            if job.progress:
                now = coverage(st.t, st.t0, st.span)
                bar.update(now - shown)
                shown = now
            st.it += 1
    stats = st.stats()
    stats["wall_time"] = time.perf_counter() - start
    return st.x, st.saved.data, int(round(float(np.mean(st.nfe)))), stats


#: Units of the adaptive progress bar: the time covered, averaged over the samples, in permille.
PROGRESS_UNITS = 1000


def max_steps_error(solver, attempts: int, t: float, unfinished: str) -> NonFiniteError:
    """The error of a solve that ran ``solver.max_steps`` attempts with ``unfinished`` samples left (every
    adaptive loop raises this one)."""
    return NonFiniteError(attempts, float(t), f"adaptive solver {solver.name!r} exceeded max_steps="
                          f"{solver.max_steps} attempts with {unfinished} unfinished")  # fmt: skip


def underflow_error(solver, attempts: int, t: float, sample: int) -> NonFiniteError:
    """The error of a sample whose step size fell below ``MIN_STEP_FRACTION`` of the interval."""
    return NonFiniteError(attempts, float(t), f"adaptive solver {solver.name!r}: step size underflow at t = "
                          f"{float(t)!r} for sample {sample} (non-finite or too stiff); loosen rtol/atol or check the "
                          "score")  # fmt: skip


def attempt_stats(nfe, n_acc, n_rej, t1: float) -> dict:
    """The per-sample counters ``(n,)`` of an adaptive solve as its ``stats`` (means over the samples)."""
    return {
        "steps": float(np.mean(n_acc + n_rej)),
        "accepted": float(np.mean(n_acc)),
        "rejected": float(np.mean(n_rej)),
        "nfe_mean": float(np.mean(nfe)),
        "nfe_max": int(np.max(nfe)),
        "t_final": t1,
    }


def coverage(t, t0: float, span: float) -> int:
    """Permille of the interval covered, averaged over the samples at times ``t`` (what the bar shows)."""
    return int(PROGRESS_UNITS * float(np.mean(np.abs(np.asarray(t, dtype=np.float64) - t0))) / span)


class _HostState:
    """The state of a host-mode adaptive solve: the samples' states and carry in ``x0``'s library, the control
    (times, step sizes, previous errors, next stops, counters) in float64/int64 numpy arrays ``(n,)``, the noise."""

    def __init__(self, job):
        solver = self.solver = job.solver
        self.job, self.process = job, job.process
        self.t0, self.t1 = float(job.grid[0]), float(job.grid[-1])
        self.direction = 1.0 if self.t1 > self.t0 else -1.0
        self.span = abs(self.t1 - self.t0)
        self.lo = min(self.t0, self.t1)
        self.rtol = solver.rtol if job.rtol is None else float(job.rtol)
        self.atol = solver.atol if job.atol is None else float(job.atol)
        x = self.x = job.x0.clone() if _xp.is_torch(job.x0) else job.x0.copy()  # keeps an array subclass
        n = self.n = x.shape[0]
        self.event = tuple(x.shape[1:])
        self.size = int(np.prod(self.event, dtype=np.int64))
        self.m = solver.n_noise if job.stochastic else 0
        self.t = np.full(n, self.t0)
        self.h = np.full(n, min(solver.initial_step(self.t0, self.t1), self.span))
        self.stops = np.asarray(job.grid, dtype=np.float64)
        self.nxt = np.ones(n, dtype=np.int64)  # index in ``stops`` of each sample's next stop
        self.saved = Trajectory(job.save_index, x)  # rows of stop i are filled as the samples reach it
        self.saved.put(0, x)
        self.err_prev = np.ones(n)
        self.nfe = np.zeros(n, dtype=np.int64)
        self.n_acc = np.zeros(n, dtype=np.int64)
        self.n_rej = np.zeros(n, dtype=np.int64)
        self.carry, c_nfe = solver.init_carry(self.process, x, self.as_x(self.t))
        self.nfe += c_nfe
        # the path noise: a BrownianPaths walker (tree) or BridgeNoise stacks (one increment per step: solve
        # refuses solvers that need more)
        self.tree = self.bridge = self.w_now = self.y_now = None
        if self.m and job.noise == "tree":
            self.tree = BrownianPaths(job.seed, job.sample_ids, self.t0, self.t1, self.size)
            self.w_now, self.y_now = self.tree.query(self.t0)
        elif self.m and job.noise == "bridge":
            self.bridge = BridgeNoise(job.seed, job.sample_ids, self.size)
        self.it = 0

    def as_x(self, v):
        return _xp.asarray_like(v, self.x)

    def proposal(self, idx):
        """The next step of the samples ``idx``: ``(t_next, hh, last)`` -- shortened to land on the next stop
        (``last``), and for path noise onto a shallow dyadic time (shortened by at most 1/4)."""
        target = self.stops[self.nxt[idx]]
        rem = np.abs(target - self.t[idx])
        hh = np.minimum(self.h[idx], rem)
        last = hh >= rem * (1.0 - 1e-12)
        if self.tree is not None or self.bridge is not None:
            t_next = np.where(last, target, snap_step(self.t[idx], hh, self.direction, self.lo, self.span))
        else:
            t_next = np.where(last, target, self.t[idx] + self.direction * hh)
        return t_next, np.abs(t_next - self.t[idx]), last

    def noise(self, idx, t_next, hh):
        """The attempt's normal fields for the samples ``idx`` (``None`` for an ODE) and the tree's end point."""
        if not self.m:
            return None, None
        end = None
        if self.bridge is not None:
            fields = [self.bridge.increment(idx, hh) / np.sqrt(hh)[:, None]]
        elif self.tree is not None:
            end = self.tree.query(t_next, idx)
            dw, i10 = increment_from(self.w_now[idx], self.y_now[idx], end[0], end[1], t_next - self.t[idx])
            z0, z1 = BrownianTree.standardise(dw, i10, hh)
            fields = [z0, z1][: min(self.m, 2)]
        else:
            zz = normals_numpy(self.job.seed, self.job.sample_ids[idx], self.it, self.m * self.size)
            fields = [zz[:, r * self.size : (r + 1) * self.size] for r in range(self.m)]
        return [self.as_x(f.reshape((idx.size,) + self.event)) for f in fields], end

    def restricted(self, rows):
        """The samples ``rows``' own process (their rows of a per-sample conditioning)."""
        return self.process if rows.size == self.n else self.process.restrict(rows)

    def stats(self) -> dict:
        stats = attempt_stats(self.nfe, self.n_acc, self.n_rej, self.t1)
        if self.bridge is not None:
            stats["bridge_merges"] = float(np.mean(self.bridge.merges))
        if self.tree is not None:
            stats["tree_splits"] = self.tree.splits / self.n
        return stats


def attempt(solver, process, x, t, t_next, z, carry, rtol, atol, check_finite: bool):
    """One trial step of every row: ``solver.attempt`` (the only call of it outside :mod:`sdekit.solvers`), with
    a non-finite trial counted as a failed attempt (error ``inf``: the step shrinks and is retried) when
    ``check_finite``. Returns ``(x_new, err, proposal, nfe)``; ``err`` ``(n,)`` in ``x``'s library, detached."""
    x_new, err, proposal, a_nfe = solver.attempt(process, x, t, t_next, z, carry, rtol, atol)
    if _xp.is_torch(err):
        err = err.detach()  # the control carries no gradient
    if check_finite:
        xp = _xp.lib(x_new)
        finite = xp.isfinite(_xp.sum_last(x_new * 0.0, x_new.ndim - 1))
        err = xp.where(finite & xp.isfinite(err), err, xp.inf)
    return x_new, err, proposal, a_nfe


def _host_attempt(st: _HostState, idx: np.ndarray) -> None:
    """One attempt of the unfinished samples ``idx``: propose, draw, attempt, control, accept, save."""
    solver = st.solver
    t_next, hh, last = st.proposal(idx)
    ix = _index(idx, st.x)
    cs = {k: v[ix] for k, v in st.carry.items()}
    z, end = st.noise(idx, t_next, hh)
    x_new, err, proposal, a_nfe = attempt(solver, st.restricted(idx), st.x[ix], st.as_x(st.t[idx]),
                                          st.as_x(t_next), z, cs, st.rtol, st.atol, st.job.check_finite)  # fmt: skip
    st.nfe[idx] += a_nfe
    err = _to_numpy(err)
    accept, h_new = solver.controller.propose(hh, err, st.err_prev[idx])
    st.h[idx] = h_new
    st.n_acc[idx[accept]] += 1
    st.n_rej[idx[~accept]] += 1
    pos = np.flatnonzero(accept)
    if pos.size:
        _host_accept(st, idx, pos, x_new, t_next, err, last, cs, proposal, end)
    if st.bridge is not None and pos.size < idx.size:
        st.bridge.reject(idx[~accept])
    small = st.h[idx] < MIN_STEP_FRACTION * st.span
    if np.any(small):
        bad = idx[small][0]
        raise underflow_error(solver, int(st.n_acc[bad] + st.n_rej[bad]), st.t[bad], int(bad))


def _host_accept(st: _HostState, idx, pos, x_new, t_next, err, last, cs, proposal, end) -> None:
    """The accepted rows ``pos`` of the attempt of ``idx``: their carry, state, time, saves and noise."""
    ip = _index(pos, st.x)
    acc = idx[pos]
    ia = _index(acc, st.x)
    x_acc = x_new[ip]
    carry, prop = {k: v[ip] for k, v in cs.items()}, {k: v[ip] for k, v in proposal.items()}
    c_new, acc_nfe = st.solver.accept(st.restricted(acc), x_acc, st.as_x(t_next[pos]), carry, prop)
    st.nfe[acc] += acc_nfe
    st.x[ia] = x_acc
    for k, v in c_new.items():
        st.carry[k][ia] = v
    st.t[acc] = t_next[pos]
    st.err_prev[acc] = np.maximum(err[pos], 1e-4)
    landed = last[pos]
    if np.any(landed):
        for i in np.unique(st.nxt[acc[landed]]):
            slot = st.saved.slot(int(i))
            if slot is not None:
                rows = landed & (st.nxt[acc] == i)
                st.saved.data[slot][_index(acc[rows], st.x)] = x_acc[_index(np.flatnonzero(rows), st.x)]
        st.nxt[acc[landed]] += 1
    if st.bridge is not None:
        st.bridge.accept(acc)
    if st.tree is not None:
        st.w_now[acc], st.y_now[acc] = end[0][pos], end[1][pos]
