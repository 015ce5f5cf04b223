"""Backends: each knows arrays of one kind and runs the time loop; dispatched once by ``solve``.

The registry (:mod:`sdekit.backends.registry`) names each backend, its capabilities and the module whose
``run(job) -> (x, saved, nfe, stats)`` runs a solve, ``job`` being the validated :class:`sdekit.backends.job.Job`.
``numpy`` is the reference implementation; the ``numba`` and ``torch`` modules are imported on first use only.
"""

from __future__ import annotations

from .registry import BACKENDS, Backend, available_backends, backend_names, get_backend, register_backend


def has_fused_score(score) -> bool:
    """True when the numba backend can run ``score`` inside its fused kernels.

    That is an analytic density's exact score (:mod:`sdekit.analytic`) or an object with a
    ``numba_row_score`` attribute (:class:`sdekit.backends.numba_.RowScore`).
    """
    if getattr(score, "numba_row_score", None) is not None:
        return True
    from ..analytic import AnalyticScore

    return isinstance(score, AnalyticScore)


__all__ = [
    "BACKENDS",
    "Backend",
    "available_backends",
    "backend_names",
    "get_backend",
    "register_backend",
    "has_fused_score",
]
