"""The counter-based Gaussian generator of :mod:`sdekit.noise`, on torch tensors of any device.

Same algorithm, same numbers: for float64 the output equals :func:`sdekit.noise.normals_numpy` to round-off
(the integer part is bit-identical; only ``log``/``cos``/``sin`` may differ in the last bit).

torch has no full-featured unsigned 64-bit integer type, so the uint64 arithmetic modulo ``2**64`` is
emulated on ``int64`` words holding the same 64 bits (two's complement):

* ``+``, ``*`` and ``^`` on int64 wrap exactly like uint64 (the low 64 bits of the result are the same);
* torch's ``>>`` on int64 is an *arithmetic* shift (it copies the sign bit), so the logical shift
  ``w >> s`` is ``(w >> s) & (2**(64 - s) - 1)``;
* constants above ``2**63`` are stored as their signed value ``c - 2**64``.

The seed-dependent and sample-dependent part of the stream key (``mix64(mix64(seed ^ SALT) + i * GAMMA_SAMPLE)``)
does not depend on the step; :class:`TorchNormals` computes it once per solve, so each step costs one more
``mix64`` on the ``(n,)`` keys and one on a ``(2, n, pairs)`` array holding both words of every pair, in
int64 scratch buffers reused from step to step. Nothing is read back to the host.
"""

from __future__ import annotations

import torch

from ..noise import (
    GAMMA,
    GAMMA_SAMPLE,
    GAMMA_STEP,
    MASK64,
    MIX_M1,
    MIX_M2,
    SEED_SALT,
    TWO_PI,
    TWO_POW_M53,
)

__all__ = ["TorchNormals", "normals_torch", "to_signed", "mix64_torch"]


def to_signed(u: int) -> int:
    """The int64 value with the same 64 bits as the unsigned integer ``u`` (taken modulo ``2**64``)."""
    u &= MASK64
    return u - (1 << 64) if u >= (1 << 63) else u


def _mix64_int(z: int) -> int:
    """SplitMix64 finaliser on a python integer (exact; used for host-side constants)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX_M1) & MASK64
    z = ((z ^ (z >> 27)) * MIX_M2) & MASK64
    return z ^ (z >> 31)


_M1 = to_signed(MIX_M1)
_M2 = to_signed(MIX_M2)
# masks that turn an arithmetic right shift by s into a logical one: 2**(64 - s) - 1
_LOW = {s: (1 << (64 - s)) - 1 for s in (11, 27, 30, 31)}


def _shr(w: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of the uint64 bits held in int64 ``w``."""
    return (w >> s) & _LOW[s]


def _mix64_(z: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser in place on ``z`` (int64 holding uint64 bits), using ``tmp`` (same shape) as scratch."""
    for shift, mult in ((30, _M1), (27, _M2), (31, None)):
        torch.bitwise_right_shift(z, shift, out=tmp)
        z.bitwise_xor_(tmp.bitwise_and_(_LOW[shift]))  # z ^= z >>> shift (logical shift)
        if mult is not None:
            z.mul_(mult)
    return z


def mix64_torch(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 tensors holding uint64 bits (wrapping arithmetic); a new tensor."""
    return _mix64_(z.clone(), torch.empty_like(z))


class TorchNormals:
    """Counter-based standard normals for a fixed ``(seed, sample_ids)`` on one device.

    Parameters
    ----------
    seed : int
        In ``[0, 2**64)``.
    sample_ids : array-like of int, shape ``(n,)``
        Global sample indices (the noise counters).
    device : torch.device
    dtype : torch.dtype
        Output dtype. float64 uses float64 arithmetic throughout (equal to numpy); float32 (and lower
        precisions) compute the uniforms and the Box--Muller transform in float32, from the same integers.

    ``normals(step, size)`` returns ``(n, size)``: row ``r``, column ``j`` is component ``j`` of sample
    ``sample_ids[r]`` at ``step``. It performs no host synchronisation.
    """

    def __init__(self, seed: int, sample_ids, device, dtype):
        self.device = torch.device(device)
        self.dtype = dtype
        self.compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        s = _mix64_int(seed ^ SEED_SALT)
        ids = torch.as_tensor(sample_ids, dtype=torch.int64).to(self.device)
        # per-sample part of the stream key: mix64(s + i * GAMMA_SAMPLE), computed once
        self.base = mix64_torch(ids * to_signed(GAMMA_SAMPLE) + to_signed(s))
        self._counters = {}
        self._buffers = {}

    def _counters_for(self, n_pairs: int):
        # (2p + 1) GAMMA in row 0 (word w1 of pair p) and (2p + 2) GAMMA in row 1 (w2), shape (2, 1, n_pairs),
        # kept on the device; the (2, n, n_pairs) layout keeps u1 and u2 contiguous
        c = self._counters.get(n_pairs)
        if c is None:
            k = torch.arange(1, 2 * n_pairs + 1, dtype=torch.int64, device=self.device) * to_signed(GAMMA)
            c = k.reshape(n_pairs, 2).T.contiguous().reshape(2, 1, n_pairs)
            self._counters[n_pairs] = c
        return c

    def _workspace(self, name: str, shape: tuple) -> torch.Tensor:
        # int64 scratch reused from step to step: the hash is memory-bound, and fresh buffers cost page faults
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != shape:
            buf = torch.empty(shape, dtype=torch.int64, device=self.device)
            self._buffers[name] = buf
        return buf

    def keys(self, step: int) -> torch.Tensor:
        """The int64 stream keys ``(n,)`` of one step (a new tensor)."""
        return mix64_torch(self.base + to_signed((step & MASK64) * GAMMA_STEP))

    def normals(self, step: int, size: int) -> torch.Tensor:
        """Standard normals of shape ``(n, size)`` at ``step`` (see the class docstring); a new tensor."""
        n = self.base.shape[0]
        key = self._workspace("key", (n,))
        torch.add(self.base, to_signed((step & MASK64) * GAMMA_STEP), out=key)
        _mix64_(key, self._workspace("key_tmp", (n,)))
        return self._from_keys(key, size)

    def normals_at(self, steps: torch.Tensor, size: int) -> torch.Tensor:
        """Standard normals ``(n, size)`` with row ``r`` at its own counter step ``steps[r]`` (an int64 tensor
        ``(n,)`` on the device, below ``2**63``); with every step equal to ``step`` it is ``normals(step, size)``."""
        key = mix64_torch(self.base + steps * to_signed(GAMMA_STEP))  # int64 products wrap like uint64
        return self._from_keys(key, size)

    def _from_keys(self, key: torch.Tensor, size: int) -> torch.Tensor:
        n_pairs = (size + 1) // 2
        n = key.shape[0]
        # both words of every pair in one (2, n, n_pairs) array: a single pass of the integer hash, with
        # u1 = u[0] and u2 = u[1] contiguous
        shape = (2, n, n_pairs)
        w, tmp = self._workspace("w", shape), self._workspace("w_tmp", shape)
        torch.add(key[None, :, None], self._counters_for(n_pairs), out=w)
        u1, u2 = self._uniform(_mix64_(w, tmp), tmp)
        r = torch.sqrt(torch.log(u1).mul_(-2.0))
        theta = u2.mul_(TWO_PI)
        # interleave: component 2p is r cos(theta_p), component 2p + 1 is r sin(theta_p)
        out = torch.empty((n, n_pairs, 2), dtype=u1.dtype, device=self.device)
        torch.mul(r, torch.cos(theta), out=out[:, :, 0])
        torch.mul(r, torch.sin(theta), out=out[:, :, 1])
        out = out.reshape(n, 2 * n_pairs)
        if size != 2 * n_pairs:
            out = out[:, :size]
        return out if out.dtype == self.dtype else out.to(self.dtype)

    def _uniform(self, w: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
        # u = ((w >> 11) + 0.5) 2**-53 on the open interval (0, 1); the 53-bit integer converts exactly to float64
        torch.bitwise_right_shift(w, 11, out=tmp).bitwise_and_(_LOW[11])
        return tmp.to(self.compute_dtype).add_(0.5).mul_(TWO_POW_M53)


def normals_torch(seed: int, sample_ids, step: int, size: int, *, device="cpu", dtype=torch.float64) -> torch.Tensor:
    """Standard normals ``(n, size)``; the torch twin of :func:`sdekit.noise.normals_numpy`."""
    return TorchNormals(seed, sample_ids, device, dtype).normals(step, size)
