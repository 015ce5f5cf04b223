"""Backends: each knows arrays of one kind and runs the time loop; dispatched once by ``solve``.

A backend is a function ``run(job) -> (x, xs, nfe, stats)`` registered in :data:`BACKENDS`, where
``job`` is the validated :class:`sdekit.integrate.Job`. ``numpy`` is the reference implementation.
``numba`` and ``torch`` are registered when installed; their modules are imported on first use only.
"""

from __future__ import annotations

import importlib.util

from . import numpy_

BACKENDS = {"numpy": numpy_.run}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked installation
        return False


def _run_numba(job):
    # imported on first use: the kernels load (or compile) only when a numba solve runs
    from . import numba_

    return numba_.run(job)


def _run_torch(job):
    # imported on first use: numpy users never pay for importing torch
    from . import torch_

    return torch_.run(job)


if _installed("numba"):
    BACKENDS["numba"] = _run_numba

if _installed("torch"):  # torch is an optional extra
    BACKENDS["torch"] = _run_torch


def has_fused_score(score) -> bool:
    """True when the numba backend can run ``score`` inside its fused kernels.

    That is an analytic density's exact score (:mod:`sdekit.analytic`) or an object with a
    ``numba_row_score`` attribute (:class:`sdekit.backends.numba_.RowScore`).
    """
    if getattr(score, "numba_row_score", None) is not None:
        return True
    from ..analytic import AnalyticScore

    return isinstance(score, AnalyticScore)


__all__ = ["BACKENDS", "has_fused_score"]
