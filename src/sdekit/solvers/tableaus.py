"""Butcher tableaus as validated data (explicit Runge--Kutta methods).

A tableau is checked on construction: ``A`` strictly lower triangular (explicit), the rows of ``A`` sum
to ``c`` and the weights ``b`` sum to one, to 1e-14. The order conditions beyond consistency are tested in
``tests/test_tableaus.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ButcherTableau", "EULER", "HEUN2", "RK4"]


@dataclass(frozen=True)
class ButcherTableau:
    """Explicit Runge--Kutta coefficients ``(c, A, b)`` of a method of order ``order``.

    Stage ``i``: ``k_i = f(x + h sum_j A[i, j] k_j, t + c[i] h)``; step: ``x + h sum_i b[i] k_i``.
    """

    c: np.ndarray
    a: np.ndarray
    b: np.ndarray
    order: int

    def __post_init__(self):
        c = np.asarray(self.c, dtype=np.float64)
        a = np.asarray(self.a, dtype=np.float64)
        b = np.asarray(self.b, dtype=np.float64)
        s = b.shape[0]
        if c.shape != (s,) or a.shape != (s, s):
            raise ValueError(f"tableau shapes disagree: c {c.shape}, a {a.shape}, b {b.shape}")
        if np.any(np.triu(a) != 0):
            raise ValueError("tableau A must be strictly lower triangular (explicit method)")
        if not np.allclose(a.sum(axis=1), c, rtol=0, atol=1e-14):
            raise ValueError(f"rows of A must sum to c: {a.sum(axis=1)} != {c}")
        if abs(b.sum() - 1.0) > 1e-14:
            raise ValueError(f"weights b must sum to 1, got {b.sum()!r}")
        for name, arr in (("c", c), ("a", a), ("b", b)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def stages(self) -> int:
        return self.b.shape[0]


EULER = ButcherTableau(c=[0.0], a=[[0.0]], b=[1.0], order=1)

# explicit trapezoidal rule: Heun's 2nd-order method as in EDM (Karras et al. 2022, Alg. 1)
HEUN2 = ButcherTableau(c=[0.0, 1.0], a=[[0.0, 0.0], [1.0, 0.0]], b=[0.5, 0.5], order=2)

# the classic fourth-order Runge--Kutta method
RK4 = ButcherTableau(
    c=[0.0, 0.5, 0.5, 1.0],
    a=[[0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
    b=[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
    order=4,
)
