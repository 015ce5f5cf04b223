"""Backends: each knows arrays of one kind and runs the time loop; dispatched once by ``solve``.

A backend is a function ``run(job) -> (x, xs, nfe, stats)`` registered in :data:`BACKENDS`, where
``job`` is the validated :class:`sdekit.integrate.Job`. ``numpy`` is the reference implementation.
"""

from __future__ import annotations

import importlib.util

from . import numpy_

BACKENDS = {"numpy": numpy_.run}


def _run_torch(job):
    # imported on first use: numpy users never pay for importing torch
    from . import torch_

    return torch_.run(job)


def _torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked installation
        return False


if _torch_installed():  # torch is an optional extra
    BACKENDS["torch"] = _run_torch

__all__ = ["BACKENDS"]
