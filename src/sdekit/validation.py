"""Argument validators shared by every entry point: one check per kind of value, one wording of the error.

Each validator takes the argument's ``name`` (used in the message) and its ``value``, and returns the value as a
plain python ``int``, ``float`` or ``bool``. A value of the wrong kind (a string where a number is wanted, ``2.5``
or ``2.0`` where an integer is wanted) raises a plain ``TypeError``, as ``range(2.5)`` does; a value of the right kind
out of range raises ``ValueError``. Both name the argument and the value. numpy scalars
(``np.int64``, ``np.float32``, ``np.bool_``) are numbers like python's; ``True``/``False`` are not numbers here
(``steps=True`` is a mistake, not 1 step).
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

__all__ = [
    "positive_int",
    "integer_at_least",
    "integer_in",
    "real_number",
    "positive_number",
    "non_negative_number",
    "in_interval",
    "probability",
    "boolean",
    "output_path_problem",
    "check_output_paths",
]


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def integer_at_least(name: str, value, minimum: int) -> int:
    """``value`` as an ``int`` when it is an integer ``>= minimum``; ``ValueError`` naming ``name`` otherwise."""
    want = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {want}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return int(value)


def integer_in(name: str, value, low: int, high: int) -> int:
    """``value`` as an ``int`` when it is an integer in ``low..high`` (both included)."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return int(value)


def positive_int(name: str, value) -> int:
    """``value`` as an ``int`` when it is an integer ``>= 1``."""
    return integer_at_least(name, value, 1)


def real_number(name: str, value, *, finite: bool = True) -> float:
    """``value`` as a ``float`` when it is a real number (finite unless ``finite=False``)."""
    message = f"{name} must be a {'finite ' if finite else ''}real number, got {value!r}"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(message)
    if finite and not math.isfinite(float(value)):
        raise ValueError(message)
    return float(value)


def positive_number(name: str, value) -> float:
    """``value`` as a ``float`` when it is a finite number ``> 0``."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(float(value)) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def non_negative_number(name: str, value, *, allow_inf: bool = False) -> float:
    """``value`` as a ``float`` when it is a number ``>= 0`` (finite unless ``allow_inf``)."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a non-negative number, got {value!r}")
    if not (value >= 0 and (allow_inf or math.isfinite(float(value)))):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def in_interval(name: str, value, low: float, high: float, *, closed: str = "neither", what: str = "") -> float:
    """``value`` as a ``float`` when it lies in the interval from ``low`` to ``high``.

    ``closed``: which ends belong to it, ``"neither"``, ``"left"``, ``"right"`` or ``"both"``. ``what`` names the
    interval in the message (``"(0, T)"``); by default it is written out from the numbers.
    """
    lo_ok = (lambda v: v >= low) if closed in ("left", "both") else (lambda v: v > low)
    hi_ok = (lambda v: v <= high) if closed in ("right", "both") else (lambda v: v < high)
    left = "[" if closed in ("left", "both") else "("
    right = "]" if closed in ("right", "both") else ")"
    message = f"{name} must lie in {what or f'{left}{low}, {high}{right}'}, got {value!r}"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(message)
    if not (math.isfinite(float(value)) and lo_ok(float(value)) and hi_ok(float(value))):
        raise ValueError(message)
    return float(value)


def probability(name: str, value) -> float:
    """``value`` as a ``float`` in ``[0, 1]``."""
    return in_interval(name, value, 0.0, 1.0, closed="both")


def one_of(name: str, value, choices) -> str:
    """``value`` when it is one of the strings ``choices``, else ``ValueError`` naming ``name``, the choices and the
    value."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def boolean(name: str, value) -> bool:
    """``value`` as a ``bool`` when it is ``True`` or ``False`` (numpy's ``np.bool_`` too)."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def output_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written (a missing or unwritable directory, a directory in its place), else None."""
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        return f"{path!r} is a directory; give a file name"
    if not os.path.isdir(folder):
        return f"the directory {folder!r} of {path!r} does not exist"
    if not os.access(folder, os.W_OK):
        return f"the directory {folder!r} of {path!r} is not writable"
    return None


def check_output_paths(**paths) -> None:
    """Refuse, before any work, output paths that cannot be written: ``ValueError`` naming the argument.

    ``paths`` maps argument names to paths (``None``: not written, skipped).
    """
    for name, path in paths.items():
        if path is None:
            continue
        problem = output_path_problem(os.fspath(path))
        if problem is not None:
            raise ValueError(f"{name}: {problem}")
