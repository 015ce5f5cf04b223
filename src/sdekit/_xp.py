"""Array-library helpers: one code path for numpy arrays, python floats and torch tensors.

Elementwise arithmetic (``+ - * / @``) is shared by numpy and torch, so most of sdekit is written
once against it. The few functions whose names differ between the two libraries go through here.
torch is imported lazily, and only when a tensor is actually seen, so numpy users never pay for it.
"""

from __future__ import annotations

import sys

import numpy as np


def is_torch(x) -> bool:
    """True when ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def lib(x):
    """The elementwise-math module for ``x``: ``torch`` for tensors, ``numpy`` otherwise."""
    if is_torch(x):
        return sys.modules["torch"]
    return np


def asarray_like(value, like):
    """``value`` as an array of the same library, dtype and device as ``like``."""
    if is_torch(like):
        torch = sys.modules["torch"]
        return torch.as_tensor(np.asarray(value), dtype=like.dtype, device=like.device)
    dtype = like.dtype if isinstance(like, np.ndarray) and like.dtype.kind == "f" else np.float64
    return np.asarray(value, dtype=dtype)


def clip_above(x, cap: float):
    """``min(x, cap)`` elementwise; ``cap`` a python float (torch's ``minimum`` wants a tensor there)."""
    if is_torch(x):
        return x.clamp(max=cap)
    return np.minimum(x, cap)


def sum_last(x, ndim: int):
    """Sum over the trailing ``ndim`` axes (the event axes)."""
    if ndim == 0:
        return x
    axes = tuple(range(-ndim, 0))
    if is_torch(x):
        return x.sum(dim=axes)
    return x.sum(axis=axes)


def logsumexp(x, axis: int):
    """Stable log-sum-exp along ``axis``."""
    if is_torch(x):
        return sys.modules["torch"].logsumexp(x, dim=axis)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def softmax(x, axis: int):
    """Stable softmax along ``axis``."""
    if is_torch(x):
        return sys.modules["torch"].softmax(x, dim=axis)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def per_sample(t, x):
    """Reshape a per-sample quantity of shape ``(n,)`` to ``(n, 1, ..., 1)`` so it broadcasts with ``x``.

    Scalars pass through as python floats (numpy's float64 scalars would promote a float32 ``x`` to float64; a
    python float keeps ``x``'s dtype), 0-d tensors unchanged; numpy arrays take ``x``'s floating dtype, so a state
    keeps one dtype for the whole solve.
    """
    if getattr(t, "ndim", 0) == 0:
        return float(t) if isinstance(t, (np.ndarray, np.generic)) else t
    if isinstance(t, np.ndarray) and isinstance(x, np.ndarray) and x.dtype.kind == "f":
        t = t.astype(x.dtype, copy=False)
    return t.reshape((t.shape[0],) + (1,) * (x.ndim - 1))


def full_time(t, x):
    """The time ``t`` as a 1-D array of shape ``(n,)`` in ``x``'s library and dtype (score convention)."""
    n = x.shape[0]
    if is_torch(x):
        torch = sys.modules["torch"]
        if isinstance(t, torch.Tensor) and t.ndim == 1:
            return t.to(dtype=x.dtype, device=x.device)
        return torch.full((n,), float(t), dtype=x.dtype, device=x.device)
    if isinstance(t, np.ndarray) and t.ndim == 1:
        return t.astype(x.dtype, copy=False)
    return np.full((n,), float(t), dtype=x.dtype)


def isfinite_all(x) -> bool:
    if is_torch(x):
        return bool(sys.modules["torch"].isfinite(x).all())
    return bool(np.isfinite(x).all())
