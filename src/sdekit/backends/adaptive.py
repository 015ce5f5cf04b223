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
from ..bridge_noise import BridgeNoise
from ..brownian import BrownianPaths, BrownianTree, increment_from, snap_step
from ..errors import NonFiniteError
from ..noise import normals_numpy
from ..progress import progress_bar
from .job import Trajectory

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
    """Run an adaptive ``job`` (``job.solver.adaptive`` is true) on numpy arrays or torch tensors."""
    solver, process = job.solver, job.process
    start = time.perf_counter()
    t0, t1 = float(job.grid[0]), float(job.grid[-1])
    direction = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)
    rtol = solver.rtol if job.rtol is None else float(job.rtol)
    atol = solver.atol if job.atol is None else float(job.atol)
    ctrl = solver.controller

    x = job.x0.clone() if _xp.is_torch(job.x0) else np.array(job.x0, copy=True)
    n = x.shape[0]
    event = tuple(x.shape[1:])
    size = int(np.prod(event, dtype=np.int64))
    m = solver.n_noise if job.stochastic else 0

    t = np.full(n, t0)
    h = np.full(n, min(solver.initial_step(t0, t1), span))
    stops = np.asarray(job.grid, dtype=np.float64)
    nxt = np.ones(n, dtype=np.int64)  # index in ``stops`` of each sample's next stop
    saved = Trajectory(job.save_index, x)  # rows of stop i are filled as the samples reach it
    saved.put(0, x)
    err_prev = np.ones(n)
    nfe = np.zeros(n, dtype=np.int64)
    n_acc = np.zeros(n, dtype=np.int64)
    n_rej = np.zeros(n, dtype=np.int64)

    def as_x(v):
        return _xp.asarray_like(v, x)

    carry, c_nfe = solver.init_carry(process, x, as_x(t))
    nfe += c_nfe

    tree = w_now = y_now = None
    if m and job.noise == "tree":
        tree = BrownianPaths(job.seed, job.sample_ids, t0, t1, size)
        w_now, y_now = tree.query(t0)
    elif m and job.noise == "bridge":  # one increment per step: solve refuses solvers that need more
        tree = BridgeNoise(job.seed, job.sample_ids, size)
    lo = min(t0, t1)

    with progress_bar(PROGRESS_UNITS, job.progress, desc=f"{solver.name} (time covered, permille)") as bar:
        stats = _loop(job, solver, process, ctrl, x, t, h, stops, nxt, saved, err_prev, nfe, n_acc, n_rej,
                      carry, tree, w_now, y_now, t0, t1, lo, direction, span, rtol, atol, m, size, event, as_x,
                      bar)  # fmt: skip
    stats["wall_time"] = time.perf_counter() - start
    return x, saved.data, int(round(float(np.mean(nfe)))), stats


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


def _loop(job, solver, process, ctrl, x, t, h, stops, nxt, saved, err_prev, nfe, n_acc, n_rej, carry, tree, w_now,
          y_now, t0, t1, lo, direction, span, rtol, atol, m, size, event, as_x, bar):  # fmt: skip
    n = x.shape[0]
    shown = 0
    it = 0
    # ``tree``: the path noise, a BrownianPaths walker or BridgeNoise stacks
    bridge, tree = (tree, None) if isinstance(tree, BridgeNoise) else (None, tree)
    while True:
        idx = np.flatnonzero(np.abs(t1 - t) > 0.0)
        if idx.size == 0:
            break
        if it >= solver.max_steps:
            raise max_steps_error(solver, it, t[idx[0]], f"{idx.size} samples")
        target = stops[nxt[idx]]
        rem = np.abs(target - t[idx])
        hh = np.minimum(h[idx], rem)
        last = hh >= rem * (1.0 - 1e-12)
        if tree is not None or bridge is not None:  # land on a shallow dyadic time (shortened by at most 1/4)
            t_next = np.where(last, target, snap_step(t[idx], hh, direction, lo, span))
        else:
            t_next = np.where(last, target, t[idx] + direction * hh)
        hh = np.abs(t_next - t[idx])
        ix = _index(idx, x)
        xs = x[ix]
        cs = {k: v[ix] for k, v in carry.items()}

        z = None
        if m:
            if bridge is not None:
                fields = [bridge.increment(idx, hh) / np.sqrt(hh)[:, None]]
            elif tree is not None:
                end = tree.query(t_next, idx)
                dw, i10 = increment_from(w_now[idx], y_now[idx], end[0], end[1], t_next - t[idx])
                z0, z1 = BrownianTree.standardise(dw, i10, hh)
                fields = [z0, z1][: min(m, 2)]
            else:
                zz = normals_numpy(job.seed, job.sample_ids[idx], it, m * size)
                fields = [zz[:, r * size : (r + 1) * size] for r in range(m)]
            z = [as_x(f.reshape((idx.size,) + event)) for f in fields]

        # the active samples' own process (their rows of a per-sample conditioning)
        proc = process if idx.size == n else process.restrict(idx)
        x_new, err, proposal, a_nfe = solver.attempt(proc, xs, as_x(t[idx]), as_x(t_next), z, cs, rtol, atol)
        nfe[idx] += a_nfe
        err = _to_numpy(err)
        if job.check_finite:
            # a non-finite trial counts as a failed attempt: the step shrinks and is retried
            finite = _to_numpy(_xp.sum_last(x_new * 0.0, x_new.ndim - 1)) == 0.0
            err = np.where(finite & np.isfinite(err), err, np.inf)
        accept, h_new = ctrl.propose(hh, err, err_prev[idx])
        h[idx] = h_new
        n_acc[idx[accept]] += 1
        n_rej[idx[~accept]] += 1
        pos = np.flatnonzero(accept)
        if pos.size:
            ip = _index(pos, x)
            acc = idx[pos]
            ia = _index(acc, x)
            x_acc = x_new[ip]
            proc_acc = process if acc.size == n else process.restrict(acc)
            c_new, acc_nfe = solver.accept(
                proc_acc, x_acc, as_x(t_next[pos]), {k: v[ip] for k, v in cs.items()},
                {k: v[ip] for k, v in proposal.items()},
            )  # fmt: skip
            nfe[acc] += acc_nfe
            x[ia] = x_acc
            for k, v in c_new.items():
                carry[k][ia] = v
            t[acc] = t_next[pos]
            err_prev[acc] = np.maximum(err[pos], 1e-4)
            landed = last[pos]
            if np.any(landed):
                for i in np.unique(nxt[acc[landed]]):
                    slot = saved.slot(int(i))
                    if slot is not None:
                        rows = landed & (nxt[acc] == i)
                        saved.data[slot][_index(acc[rows], x)] = x_acc[_index(np.flatnonzero(rows), x)]
                nxt[acc[landed]] += 1
            if bridge is not None:
                bridge.accept(acc)
            if tree is not None:
                w_now[acc], y_now[acc] = end[0][pos], end[1][pos]
        if bridge is not None and pos.size < idx.size:
            bridge.reject(idx[~accept])
        small = h[idx] < MIN_STEP_FRACTION * span
        if np.any(small):
            bad = idx[small][0]
            raise underflow_error(solver, int(n_acc[bad] + n_rej[bad]), t[bad], int(bad))
        if job.callback is not None:  # per attempt: every sample's time (n,) and the state
            job.callback({"step": it, "t": t.copy(), "x": x, "denoised": None})
        if job.progress:
            now = coverage(t, t0, span)
            bar.update(now - shown)
            shown = now
        it += 1

    stats = attempt_stats(nfe, n_acc, n_rej, t1)
    if bridge is not None:
        stats["bridge_merges"] = float(np.mean(bridge.merges))
    if tree is not None:
        stats["tree_splits"] = tree.splits / n
    return stats
