"""Backends: each knows arrays of one kind and runs the time loop; dispatched once by ``solve``.

A backend is a function ``run(job) -> (x, xs, nfe, stats)`` registered in :data:`BACKENDS`, where
``job`` is the validated :class:`sdekit.integrate.Job`. ``numpy`` is the reference implementation.
``numba`` is registered when numba is installed; its module is imported on first use only.
"""

from __future__ import annotations

from importlib.util import find_spec

from . import numpy_

BACKENDS = {"numpy": numpy_.run}


def _run_numba(job):
    from . import numba_

    return numba_.run(job)


if find_spec("numba") is not None:
    BACKENDS["numba"] = _run_numba


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
