"""Bridge noise (:mod:`sdekit.bridge_noise`) on torch tensors, for the device-side adaptive loop.

The stacks and draws of :class:`sdekit.bridge_noise.BridgeNoise` -- the same definition, the same counter steps
``BRIDGE_STEP + c`` -- with every operation masked, so an attempt reads nothing on the host:

* the walk over whole pieces is a suffix sum of the durations from the top (durations are differences of the
  snapped, dyadic step ends, so the sums are exact in any order) and a masked sum of their increments (the
  increments' sum is rounded in another order than the numpy walk: round-off only);
* the split of the next piece or the fresh piece below the stack, and the insertion that shifts the used pieces
  up by one, are ``torch.where`` over the stack positions;
* capacity is set on the host at each read (a stack grows by at most one piece per attempt), up to
  :data:`~sdekit.bridge_noise.BRIDGE_DEPTH`; a full stack merges its two bottom pieces first, as on numpy.

Shapes: ``w`` rows (the working set), ``cap`` stack positions (bottom first), ``size`` components.
"""

from __future__ import annotations

import copy

import torch

from ..bridge_noise import BRIDGE_DEPTH, BRIDGE_RTOL, BRIDGE_STEP

__all__ = ["TorchBridge"]


class TorchBridge:
    """Stacks of ``n`` samples on a device: ``tau`` ``(n, cap)``, ``dw`` ``(n, cap, size)`` float64, ``k`` (pieces),
    ``count`` (fresh draws), ``used`` (pieces the last attempt used), ``merges`` -- int64 ``(n,)``."""

    def __init__(self, n: int, size: int, device, depth: int = BRIDGE_DEPTH):
        self.size, self.depth = int(size), int(depth)
        cap = min(4, self.depth)
        f64 = {"dtype": torch.float64, "device": device}
        self.tau = torch.zeros((n, cap), **f64)
        self.dw = torch.zeros((n, cap, self.size), **f64)
        self.k, self.count, self.used, self.merges = (
            torch.zeros(n, dtype=torch.int64, device=device) for _ in range(4)
        )

    def reserve(self, need: int) -> None:
        """Room for ``need`` pieces per stack (at most ``depth``; grows by doubling, as numpy's)."""
        cap = self.tau.shape[1]
        if need <= cap or cap >= self.depth:
            return
        new = min(self.depth, max(need, 2 * cap))
        n = self.tau.shape[0]
        self.tau = torch.cat([self.tau, self.tau.new_zeros((n, new - cap))], dim=1)
        self.dw = torch.cat([self.dw, self.dw.new_zeros((n, new - cap, self.size))], dim=1)

    def take(self, rows) -> TorchBridge:
        """The stacks of ``rows`` (a device index tensor), as a new object."""
        sub = copy.copy(self)
        for name in ("tau", "dw", "k", "count", "used", "merges"):
            setattr(sub, name, getattr(self, name)[rows])
        return sub

    def put(self, rows, sub: TorchBridge) -> None:
        """Write the stacks ``sub`` (taken with :meth:`take` and advanced) back to ``rows``."""
        self.reserve(sub.tau.shape[1])
        cap = sub.tau.shape[1]
        self.tau[rows, :cap], self.dw[rows, :cap] = sub.tau, sub.dw
        self.k[rows], self.count[rows], self.used[rows], self.merges[rows] = sub.k, sub.count, sub.used, sub.merges

    def increment(self, active, h, normals):
        """The increments ``(w, size)`` of attempts of lengths ``h`` ``(w,)`` (positive where ``active``); rows not
        ``active`` are left unchanged (their result is zero). ``normals``: the rows'
        :class:`~sdekit.backends.torch_noise.TorchNormals`."""
        w, cap = self.tau.shape
        dev = self.tau.device
        pos_idx = torch.arange(cap, device=dev)[None, :]
        if cap >= self.depth:  # a full stack merges its two bottom pieces first
            full = active & (self.k >= self.depth)
            fm = full[:, None]
            tau, dw = self.tau.clone(), self.dw.clone()
            tau[:, 0] = torch.where(full, self.tau[:, 0] + self.tau[:, 1], self.tau[:, 0])
            dw[:, 0] = torch.where(fm, self.dw[:, 0] + self.dw[:, 1], self.dw[:, 0])
            tau[:, 1:-1] = torch.where(fm, self.tau[:, 2:], self.tau[:, 1:-1])
            dw[:, 1:-1] = torch.where(fm[..., None], self.dw[:, 2:], self.dw[:, 1:-1])
            self.tau, self.dw = tau, dw
            self.k = self.k - full.long()
            self.merges = self.merges + full
        k = self.k
        valid = pos_idx < k[:, None]
        tv = torch.where(valid, self.tau, 0.0)
        below_top = tv.flip(1).cumsum(1).flip(1)  # durations from the top down to each position
        lim_hi, lim_lo = h * (1.0 + BRIDGE_RTOL), h * (1.0 - BRIDGE_RTOL)
        # whole pieces from the top while they fit and the attempt is not covered yet
        taken = valid & active[:, None] & (below_top <= lim_hi[:, None]) & (below_top - tv < lim_lo[:, None])
        n_taken = taken.sum(1)
        acc_tau = torch.where(taken, tv, 0.0).sum(1)
        acc = torch.where(taken[..., None], self.dw, 0.0).sum(1)
        pos = k - 1 - n_taken  # the next piece, -1 when the stack is exhausted
        open_ = active & (acc_tau < lim_lo)
        split = open_ & (pos >= 0)
        s = torch.where(open_, h - acc_tau, 0.0)
        xi = normals.normals_at(BRIDGE_STEP + self.count, self.size)
        self.count = self.count + open_
        p = pos.clamp(min=0)
        rows = torch.arange(w, device=dev)
        tau_p = torch.where(split, self.tau[rows, p], 1.0)
        dw_p = self.dw[rows, p]
        bridge = (s / tau_p)[:, None] * dw_p + torch.sqrt(torch.clamp(s * (tau_p - s) / tau_p, min=0.0))[:, None] * xi
        a = torch.where(split[:, None], bridge, torch.sqrt(s)[:, None] * xi)
        acc = acc + torch.where(open_[:, None], a, 0.0)
        # insert (s, a) at pos + 1 (0 for a fresh piece): the used pieces above move up one; a split piece at pos
        # keeps its remainder
        at = (pos + 1)[:, None]
        ins = open_[:, None]
        tau_up = torch.cat([self.tau.new_zeros((w, 1)), self.tau[:, :-1]], dim=1)
        dw_up = torch.cat([self.dw.new_zeros((w, 1, self.size)), self.dw[:, :-1]], dim=1)
        move, here, rest = ins & (pos_idx > at), ins & (pos_idx == at), split[:, None] & (pos_idx == at - 1)
        tau = torch.where(move, tau_up, self.tau)
        tau = torch.where(here, s[:, None], tau)
        self.tau = torch.where(rest, (tau_p - s)[:, None], tau)
        dw = torch.where(move[..., None], dw_up, self.dw)
        dw = torch.where(here[..., None], a[:, None, :], dw)
        self.dw = torch.where(rest[..., None], (dw_p - a)[:, None, :], dw)
        self.k = k + open_
        self.used = n_taken + open_
        return acc

    def settle(self, accept) -> None:
        """After the decisions: accepted rows drop the pieces their attempt used; every row forgets ``used``."""
        self.k = torch.where(accept, self.k - self.used, self.k)
        self.used = torch.zeros_like(self.used)
