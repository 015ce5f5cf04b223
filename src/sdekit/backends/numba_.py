"""The numba backend's former module path, kept as a thin re-export of :mod:`sdekit.backends.numba`.

``from sdekit.backends.numba_ import RowScore`` (and ``Kernel``, ``KERNELS``, ``register_kernel``,
``find_kernel``, ``score_block``, ``BLOCK``, ``run``) keeps working; new code imports from
:mod:`sdekit.backends.numba`, where the backend, its kernel registry and the "Adding a kernel" recipe live.
"""

from __future__ import annotations

from .numba import (
    BLOCK,
    KERNELS,
    NC,
    Kernel,
    RowScore,
    block_size,
    find_kernel,
    register_kernel,
    run,
    score_block,
)

__all__ = [
    "run",
    "RowScore",
    "Kernel",
    "KERNELS",
    "register_kernel",
    "find_kernel",
    "score_block",
    "NC",
    "BLOCK",
    "block_size",
]
