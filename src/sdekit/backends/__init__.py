"""Backends: each knows arrays of one kind and runs the time loop; dispatched once by ``solve``.

A backend is a function ``run(job) -> (x, xs, nfe, stats)`` registered in :data:`BACKENDS`, where
``job`` is the validated :class:`sdekit.integrate.Job`. ``numpy`` is the reference implementation.
"""

from __future__ import annotations

from . import numpy_

BACKENDS = {"numpy": numpy_.run}

__all__ = ["BACKENDS"]
