"""The adaptive loop on torch tensors with device-side accept/reject: the host reads once every ``k`` attempts.

Same method and the same decisions as the array-generic loop of :mod:`sdekit.loop.adaptive` (which reads
every attempt's error norm on the host to pick the samples that go on), arranged for a device:

* The control state -- per-sample time, step size, previous error, next stop, counters -- lives in float64 /
  int64 tensors on ``x0``'s device. The controller (:meth:`sdekit.controllers.PIController.propose`) runs on
  them; acceptance is a boolean mask and every update is a ``torch.where``.
* The loop works on a *working set* of rows, gathered once per host read: every row of it attempts a step on
  every attempt; a row that has finished attempts a zero step whose result the masks discard. At most every
  ``k`` attempts (``k = torch_options(sync_every=k)``, default :data:`DEFAULT_SYNC_EVERY`) the working set is
  written back, its times and step sizes are read on the host (the one synchronisation), and the unfinished rows
  become the next working set. The next read comes after the largest number of attempts ``c <= k`` (and no more
  than the attempts made so far: 1, 2, 4, ... at the start, while the step sizes settle) whose expected idle
  work -- samples that finish before the read, judged by their remaining time over their step size -- stays
  within 10% (:func:`attempts_to_next_read`): reads are rare in the bulk of the solve and more frequent in its
  tail, when most samples are about to finish and would otherwise be carried idle. The waste -- finished rows
  carried to the next read -- is at most ``k`` attempts per sample.
* Counter noise is drawn on the device (:class:`sdekit.backends.torch_noise.TorchNormals`, in float64 then
  cast, so it equals the numpy noise bit for bit): attempt ``j`` of sample ``i`` reads step ``j`` of its
  stream, as in the host loop. Save stops are written by one ``index_copy_`` per attempt into a flat buffer
  with a spare row that takes the writes of rows that did not land.
* Failures are recorded on the device and raised at the next read: a step-size underflow
  (:class:`sdekit.NonFiniteError` for the first failing sample), ``max_steps`` attempts with samples left.

* Bridge noise (``noise="bridge"``, the default of adaptive SDE solvers) keeps its stacks on the device
  (:class:`sdekit.backends.torch_bridge.TorchBridge`, the numpy definition with masks); the step ends are
  snapped to shallow dyadic times as in the host loop (:func:`sdekit.brownian.snap_step`). For CPU tensors it
  runs in the host loop unless ``sync_every`` is set (see :func:`supports`).

What it does not take -- a ``callback`` (it sees every attempt's times on the host) and the tree's per-sample
walker (``noise="tree"``) -- runs in the host loop, with the same numbers; see :func:`supports`.

Decisions equal the host loop's on the same torch arithmetic (the same tensors enter the solver); the host
loop's controller runs in numpy, whose ``pow`` can differ from torch's in the last bit, so a decision on the
border ``err = 1`` may flip between the two (the tests compare them on problems where none is that close).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..bridge_noise import BRIDGE_DEPTH
from ..brownian import snap_step
from ..loop.adaptive import (
    MIN_STEP_FRACTION,
    PROGRESS_UNITS,
    attempt,
    attempt_stats,
    coverage,
    max_steps_error,
    underflow_error,
)
from ..progress import progress_bar
from .torch_bridge import TorchBridge
from .torch_noise import TorchNormals

__all__ = ["run", "supports", "attempts_to_next_read", "DEFAULT_SYNC_EVERY", "IDLE_BUDGET"]

#: Attempts between two host reads when ``torch_options(sync_every=...)`` is not set. Measured by
#: ``benchmarks/bench_torch_adaptive.py`` (benchmarks/README.md, "torch adaptive loop").
DEFAULT_SYNC_EVERY = 8
#: Largest expected fraction of idle row-attempts (samples carried after they finish) between two reads.
IDLE_BUDGET = 0.1


def attempts_to_next_read(ahead: np.ndarray, k: int) -> int:
    """The attempts before the next host read: the largest ``c <= k`` whose expected idle work, ``mean(max(0,
    c - ahead))``, is at most ``IDLE_BUDGET * c``; ``ahead`` ``(w,)`` are the unfinished samples' remaining times
    over their present step sizes (the attempts each expects to need). At least 1."""
    for c in range(k, 1, -1):
        if float(np.mean(np.maximum(c - ahead, 0.0))) <= IDLE_BUDGET * c:
            return c
    return 1


def supports(job, sync_every: int | None = None) -> bool:
    """Whether ``job`` (adaptive, on torch) runs with device-side control: no callback, and counter noise or
    no noise (an ODE), or bridge noise on an accelerator (or anywhere once ``sync_every`` is set). The others run
    in the host loop of :mod:`sdekit.loop.adaptive`, with the same numbers.

    Bridge noise stays on the host loop for CPU tensors by default: there a host read costs nothing, and the
    masked stack operations (every stack position, every attempt) cost more than the host loop's indexed ones
    (measured 2.4x on an 8-D Gaussian, ``benchmarks/bench_torch_adaptive.py``)."""
    if job.callback is not None:
        return False
    if not (job.stochastic and job.solver.n_noise) or job.noise == "counter":
        return True
    return job.noise == "bridge" and (sync_every is not None or job.x0.device.type != "cpu")


class _Saves:
    """Save stops of a device-side loop: ``data`` ``(len(save_index), n, *event)`` is a view of a flat buffer
    with one spare row, so a masked write is a single ``index_copy_`` with no host read."""

    def __init__(self, save_index, x, n_stops: int):
        order = sorted(save_index) if save_index is not None else []
        n = x.shape[0]
        self.n, self.size = n, int(np.prod(tuple(x.shape[1:]), dtype=np.int64))
        self.data = None
        slot_of_stop = np.full(n_stops, -1, dtype=np.int64)
        if order:
            self.buffer = x.new_empty((len(order) * n + 1, self.size))
            self.data = self.buffer[: len(order) * n].view((len(order), *tuple(x.shape)))
            slot_of_stop[order] = np.arange(len(order))
            if order[0] == 0:
                self.data[0] = x
        self.slot_of_stop = torch.as_tensor(slot_of_stop, device=x.device)

    def write(self, landed, stop, rows, x_new):
        """Rows ``rows`` (global indices) with ``landed`` true reached stop ``stop``: store ``x_new`` there."""
        if self.data is None:
            return
        slot = self.slot_of_stop[stop]
        spare = self.buffer.shape[0] - 1
        pos = torch.where(landed & (slot >= 0), slot * self.n + rows, spare)
        self.buffer.index_copy_(0, pos, x_new.reshape(x_new.shape[0], self.size))


def run(job, sync_every: int | None = None):
    """Run an adaptive ``job`` on torch tensors with device-side control (see the module docstring).

    Returns ``(x, saved, nfe, stats)`` as :func:`sdekit.loop.adaptive.run` does; ``stats["host_reads"]``
    counts the synchronisations.
    """
    solver, process = job.solver, job.process
    start = time.perf_counter()
    k = DEFAULT_SYNC_EVERY if sync_every is None else int(sync_every)
    t0, t1 = float(job.grid[0]), float(job.grid[-1])
    span = abs(t1 - t0)
    ctl = _Control(job, t0, t1)
    x = job.x0.clone()
    n = x.shape[0]
    dev = x.device
    f64 = {"dtype": torch.float64, "device": dev}
    stops = torch.as_tensor(np.asarray(job.grid, dtype=np.float64), **f64)
    saves = _Saves(job.save_index, x, len(job.grid))

    t = torch.full((n,), t0, **f64)
    h0 = min(solver.initial_step(t0, t1), span)
    h = torch.full((n,), h0, **f64)
    err_prev = torch.ones(n, **f64)
    nxt = torch.ones(n, dtype=torch.int64, device=dev)
    counts = torch.zeros((3, n), dtype=torch.int64, device=dev)  # nfe, accepted, rejected
    carry, c_nfe = solver.init_carry(process, x, t.to(x.dtype))
    counts[0] += c_nfe
    bridge = TorchBridge(n, ctl.size, dev) if ctl.bridge else None  # one increment per step (solve checks)
    k_max = 0  # the deepest stack at the last read (a stack grows by at most one piece per attempt)

    it = reads = shown = 0
    t_host, h_host = np.full(n, t0), np.full(n, h0)
    with progress_bar(PROGRESS_UNITS, job.progress, desc=f"{solver.name} (time covered, permille)") as bar:
        while True:
            idx = np.flatnonzero(np.abs(t1 - t_host) > 0.0)
            if idx.size == 0:
                break
            if it >= solver.max_steps:
                raise max_steps_error(solver, it, t_host[idx[0]], f"{idx.size} samples")
            rows = torch.as_tensor(idx, device=dev)
            work = _Work(x, t, h, err_prev, nxt, counts, carry, rows)
            proc = process if idx.size == n else process.restrict(idx)
            normals = TorchNormals(job.seed, job.sample_ids[idx], dev, torch.float64) if ctl.m else None
            # at most k attempts, fewer when finishing samples would leave the working set idle
            # no more than the attempts made so far either: the step sizes of the first attempts say little
            chunk = attempts_to_next_read(np.abs(t1 - t_host[idx]) / h_host[idx], min(k, max(1, it)))
            chunk = min(chunk, solver.max_steps - it)
            if bridge is not None:
                bridge.reserve(min(BRIDGE_DEPTH, k_max + chunk + 1))
                work.bridge = bridge.take(rows)
            for _ in range(chunk):
                ctl.attempt(work, proc, it, normals, stops, saves)
                it += 1
            work.write_back(x, t, h, err_prev, nxt, counts, carry)
            if bridge is not None:
                bridge.put(rows, work.bridge)
            k_now = bridge.k if bridge is not None else torch.zeros_like(t)
            t_host, h_host, k_host = torch.stack((t, h, k_now.to(torch.float64))).cpu().numpy()  # the host read
            k_max = int(k_host.max())
            reads += 1
            if bool(work.failed.any()):
                bad = int(idx[int(torch.nonzero(work.failed)[0, 0])])
                raise underflow_error(solver, int(counts[1, bad] + counts[2, bad]), t_host[bad], bad)
            if job.progress:
                now = coverage(t_host, t0, span)
                bar.update(now - shown)
                shown = now

    nfe, n_acc, n_rej = (c.cpu().numpy() for c in counts)
    stats = attempt_stats(nfe, n_acc, n_rej, t1)
    stats.update(host_reads=reads, sync_every=k, wall_time=time.perf_counter() - start)
    if bridge is not None:
        stats["bridge_merges"] = float(bridge.merges.double().mean())
    return x, saves.data, int(round(float(np.mean(nfe)))), stats


class _Work:
    """The working set: the unfinished rows' state and control, gathered at a host read."""

    def __init__(self, x, t, h, err_prev, nxt, counts, carry, rows):
        self.rows = rows
        self.x, self.t, self.h, self.err_prev, self.nxt = x[rows], t[rows], h[rows], err_prev[rows], nxt[rows]
        self.counts = counts[:, rows]
        self.carry = {key: v[rows] for key, v in carry.items()}
        self.failed = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
        self.bridge = None  # the rows' bridge stacks (TorchBridge), when the noise is "bridge"

    def write_back(self, x, t, h, err_prev, nxt, counts, carry):
        r = self.rows
        x[r], t[r], h[r], err_prev[r], nxt[r] = self.x, self.t, self.h, self.err_prev, self.nxt
        counts[:, r] = self.counts
        for key, v in self.carry.items():
            carry[key][r] = v


def _rows_like(mask, v):
    """``mask`` ``(w,)`` shaped to broadcast against ``v`` ``(w, ...)``."""
    return mask.reshape((mask.shape[0],) + (1,) * (v.ndim - 1))


class _Control:
    """One masked attempt of every row of a working set (the body of the host loop, with masks)."""

    def __init__(self, job, t0: float, t1: float):
        self.job, self.solver = job, job.solver
        self.t1 = t1
        self.direction = 1.0 if t1 > t0 else -1.0
        self.span = abs(t1 - t0)
        self.rtol = job.solver.rtol if job.rtol is None else float(job.rtol)
        self.atol = job.solver.atol if job.atol is None else float(job.atol)
        self.m = job.solver.n_noise if job.stochastic else 0
        self.bridge = bool(self.m) and job.noise == "bridge"
        self.lo = min(t0, t1)
        self.event = tuple(job.x0.shape[1:])
        self.size = int(np.prod(self.event, dtype=np.int64))
        self.last_stop = len(job.grid) - 1

    def attempt(self, w: _Work, proc, it: int, normals, stops, saves):
        solver = self.solver
        xs, ts = w.x, w.t
        active = ts != self.t1
        stop = torch.clamp(w.nxt, max=self.last_stop)
        target = stops[stop]
        rem = torch.abs(target - ts)
        hh = torch.minimum(w.h, rem)
        last = hh >= rem * (1.0 - 1e-12)
        if self.bridge:  # land on a shallow dyadic time (shortened by at most 1/4), as the host loop does
            t_next = torch.where(last, target, snap_step(ts, hh, self.direction, self.lo, self.span, xp=torch))
        else:
            t_next = torch.where(last, target, ts + self.direction * hh)
        t_next = torch.where(active, t_next, ts)  # a finished row attempts a zero step (discarded)
        hh = torch.abs(t_next - ts)
        z = None
        if self.bridge:
            dw = w.bridge.increment(active, hh, normals)
            z = [(dw / torch.sqrt(torch.where(active, hh, 1.0))[:, None]).reshape((-1,) + self.event).to(xs.dtype)]
        elif self.m:
            zz = normals.normals(it, self.m * self.size)
            z = [zz[:, r * self.size : (r + 1) * self.size].reshape((-1,) + self.event).to(xs.dtype)
                 for r in range(self.m)]  # fmt: skip
        t_x, t_next_x = ts.to(xs.dtype), t_next.to(xs.dtype)
        # a non-finite trial counts as a failed attempt (error inf); the control carries no gradient
        x_new, err, proposal, a_nfe = attempt(solver, proc, xs, t_x, t_next_x, z, w.carry, self.rtol, self.atol,
                                              self.job.check_finite)  # fmt: skip
        err = err.to(torch.float64)
        accept, h_new = solver.controller.propose(hh, err, w.err_prev)
        accept = accept & active
        if self.bridge:
            w.bridge.settle(accept)
        w.h = torch.where(active, h_new, w.h)
        w.counts[0] += active * a_nfe
        w.counts[1] += accept
        w.counts[2] += active & ~accept
        c_new, acc_nfe = solver.accept(proc, x_new, t_next_x, w.carry, proposal)
        if acc_nfe:
            w.counts[0] += accept * acc_nfe
        w.x = torch.where(_rows_like(accept, xs), x_new, xs)
        w.carry = {key: torch.where(_rows_like(accept, v), c_new[key], v) for key, v in w.carry.items()}
        w.t = torch.where(accept, t_next, ts)
        w.err_prev = torch.where(accept, torch.clamp(err, min=1e-4), w.err_prev)
        landed = accept & last
        saves.write(landed, stop, w.rows, x_new)
        w.nxt = w.nxt + landed
        w.failed |= active & (w.h < MIN_STEP_FRACTION * self.span)
