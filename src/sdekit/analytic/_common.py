"""Checks and conversions shared by the analytic densities (public names in a private module).

Nothing here is part of the public API; the densities, their score and :class:`~sdekit.analytic.MixtureParams`
use these helpers so that every entry point checks its arguments the same way, with the same messages.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _xp
from ..noise import PRIOR_STEP
from ..sdes import LinearSDE
from ..validation import non_negative_number

__all__ = [
    "DATA_STEP",
    "LOG_2PI",
    "as_float_array",
    "freeze",
    "eig_full",
    "check_sde",
    "check_time_value",
    "check_x",
    "check_sde_time",
    "coeffs",
    "float_coeffs",
    "consts_like",
]

#: Reserved step index of the counter-based noise used by ``sample`` (solvers use 0, 1, ...; the prior uses
#: ``PRIOR_STEP``), so that data samples and solver noise drawn with the same seed are independent.
DATA_STEP = PRIOR_STEP + 1

LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------------------
# construction
# ----------------------------------------------------------------------------------------------------------
def as_float_array(name: str, value) -> np.ndarray:
    """``value`` as a fresh finite float64 numpy array (a copy: the densities freeze their arrays)."""
    if _xp.is_torch(value):
        value = value.detach().cpu().numpy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def freeze(*arrays) -> None:
    """Make numpy arrays read-only (``None`` entries are skipped)."""
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def check_symmetric(name: str, c: np.ndarray) -> None:
    scale = float(np.max(np.abs(c))) if c.size else 0.0
    asym = float(np.max(np.abs(c - np.swapaxes(c, -1, -2)))) if c.size else 0.0
    if asym > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric, got max |C - C^T| = {asym:.3g} (max |C| = {scale:.3g})")


def eig_full(name: str, c: np.ndarray):
    """``(symmetrised c, eigenvalues, eigenvectors)`` of a symmetric positive-definite ``c`` (or a stack)."""
    check_symmetric(name, c)
    c = 0.5 * (c + np.swapaxes(c, -1, -2))
    lam, U = np.linalg.eigh(c)
    lam_min = lam.min(axis=-1)
    bad = np.flatnonzero(np.atleast_1d(lam_min) <= 0.0)
    if bad.size:
        where = f"{name}[{bad[0]}]" if c.ndim == 3 else name
        val = float(np.atleast_1d(lam_min)[bad[0]])
        raise ValueError(f"{where} must be positive definite, got smallest eigenvalue {val:.3g}")
    return c, lam, U


# ----------------------------------------------------------------------------------------------------------
# call arguments
# ----------------------------------------------------------------------------------------------------------
def check_sde(sde) -> None:
    if not isinstance(sde, LinearSDE):
        raise TypeError(
            f"sde must be an sdekit LinearSDE (VPSDE, SubVPSDE, VESDE, EDMSDE), got {sde!r}; "
            "analytic marginals exist only for linear SDEs"
        )


def check_time_value(name: str, t, n: int | None) -> None:
    """User-facing check of a time: finite, >= 0, a scalar or (n,)."""
    tn = t.detach().cpu().numpy() if _xp.is_torch(t) else t
    try:
        tn = np.asarray(tn, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or a 1-D array of times, got {t!r}") from None
    if tn.ndim > 1 or (tn.ndim == 1 and n is not None and tn.shape[0] != n):
        raise ValueError(f"{name} must be a scalar or of shape ({n},), got shape {tn.shape}")
    if not np.all(np.isfinite(tn)) or np.any(tn < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {t!r}")


def check_x(x, d: int) -> None:
    """Cheap shape/dtype check of a batch (also done inside score calls)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 2 or shape[1] != d:
        raise ValueError(f"x must have shape (n, {d}), got shape {shape}")
    if _xp.is_torch(x):
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array or torch tensor, got {type(x).__name__}")


def check_sde_time(t, sde, n) -> None:
    """``t`` (a float or ``(n,)``) and ``sde`` of a ``logpdf``-like call; ``sde=None`` needs ``t = 0``."""
    if sde is None:
        check_time_value("t", t, n)
        tn = t.detach().cpu().numpy() if _xp.is_torch(t) else t
        if np.any(np.asarray(tn, dtype=np.float64) != 0.0):
            raise ValueError(f"sde is needed for t != 0 (sde=None means the data law at t=0), got t={t!r}")
    else:
        check_sde(sde)
        check_time_value("t", t, n)


# ----------------------------------------------------------------------------------------------------------
# marginal coefficients
# ----------------------------------------------------------------------------------------------------------
def time_like(t, x):
    """``t`` in ``x``'s library, float dtype and device (a 0-d or 1-d array)."""
    if _xp.is_torch(x):
        torch = _xp.lib(x)
        if isinstance(t, torch.Tensor):
            return t.to(dtype=x.dtype, device=x.device)
        return torch.as_tensor(np.asarray(t, dtype=np.float64), dtype=x.dtype, device=x.device)
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    if _xp.is_torch(t):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=dtype)


def coeffs(t, sde, x, n_extra: int):
    """``(alpha, sigma)`` at ``t`` in ``x``'s library; per-sample times reshaped to ``(n, 1, ...)``.

    ``n_extra`` trailing singleton axes are added to per-sample coefficients so that they broadcast against
    ``(n, d)`` (``n_extra = 1``) or ``(n, K, d)`` (``n_extra = 2``) arrays. ``sde=None`` means the data law.
    """
    if sde is None:
        one = _xp.asarray_like(1.0, x)
        return one, 0.0 * one
    tt = time_like(t, x)
    if tt.ndim > 1 or (tt.ndim == 1 and tt.shape[0] != x.shape[0]):
        raise ValueError(f"t must be a scalar or of shape ({x.shape[0]},), got shape {tuple(tt.shape)}")
    alpha, sigma = sde.marginal(tt)
    if tt.ndim == 1:
        shape = (tt.shape[0],) + (1,) * n_extra
        alpha, sigma = alpha.reshape(shape), sigma.reshape(shape)
    return alpha, sigma


def float_coeffs(t, sde):
    """``(alpha, sigma)`` as python floats at a scalar time; ``sde=None`` is the data law (``t = 0`` only)."""
    try:
        tf = float(t)
    except (TypeError, ValueError):
        raise TypeError(f"t must be a real number, got {t!r}") from None
    non_negative_number("t", tf)
    if sde is None:
        if tf != 0.0:
            raise ValueError(f"sde is needed for t != 0 (sde=None means the data law at t=0), got t={t!r}")
        return 1.0, 0.0
    check_sde(sde)
    alpha, sigma = sde.marginal(tf)
    return float(alpha), float(sigma)


def consts_like(obj, tag: str, make, like):
    """The arrays ``make()`` (float64 numpy, or None) in ``like``'s library, dtype and device, cached on ``obj``.

    The densities are immutable after construction, so the converted constants are kept (one entry per ``tag``
    and numpy dtype or torch dtype/device): a sampler's loop does not re-upload them to the device every step,
    and ``make`` runs once per entry.
    """
    if _xp.is_torch(like):
        key = (tag, "torch", like.dtype, like.device)
    else:
        key = (tag, "numpy", like.dtype if like.dtype.kind == "f" else np.dtype(np.float64))
    cache = obj.__dict__.setdefault("_const_cache", {})
    out = cache.get(key)
    if out is None:
        # np.array(a): a writeable copy (torch warns on read-only numpy memory, and cpu tensors share it)
        out = tuple(
            None if a is None else _xp.asarray_like(np.array(a) if key[1] == "torch" else a, like) for a in make()
        )
        cache[key] = out
    return out
