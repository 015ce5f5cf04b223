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


# -- embedded pairs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedTableau:
    """An explicit Runge--Kutta pair: a :class:`ButcherTableau` plus embedded weights ``b_err``.

    The error estimate of a step is ``h sum_i (b[i] - b_err[i]) k_i``; ``b_err`` must also sum to one.
    ``fsal`` (first same as last) means the last stage is evaluated at the new point, so an accepted step's
    last stage is the next step's first stage (the last row of ``A`` equals ``b`` and ``c[-1] = 1``).
    """

    tableau: ButcherTableau
    b_err: np.ndarray
    error_order: int
    fsal: bool = False

    def __post_init__(self):
        b_err = np.asarray(self.b_err, dtype=np.float64)
        if b_err.shape != self.tableau.b.shape:
            raise ValueError(f"b_err shape {b_err.shape} differs from b shape {self.tableau.b.shape}")
        if abs(b_err.sum() - 1.0) > 1e-14:
            raise ValueError(f"embedded weights b_err must sum to 1, got {b_err.sum()!r}")
        if self.fsal and (
            not np.allclose(self.tableau.a[-1], self.tableau.b, rtol=0, atol=1e-15) or self.tableau.c[-1] != 1.0
        ):
            raise ValueError("fsal=True needs the last row of A equal to b and c[-1] = 1")
        b_err.setflags(write=False)
        object.__setattr__(self, "b_err", b_err)


# Dormand & Prince 1980, "A family of embedded Runge-Kutta formulae": order 5 propagated, order 4 embedded,
# FSAL; the coefficients of scipy's RK45 and of Hairer's DOPRI5.
DOPRI5 = EmbeddedTableau(
    tableau=ButcherTableau(
        c=[0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
        a=[
            [0, 0, 0, 0, 0, 0, 0],
            [1 / 5, 0, 0, 0, 0, 0, 0],
            [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
            [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
            [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
        ],
        b=[35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
        order=5,
    ),
    b_err=[5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40],
    error_order=4,
    fsal=True,
)


# -- stochastic tableaus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StochasticTableau:
    """A stochastic Runge--Kutta method of SRA type for additive noise (Roessler 2010), as data.

    For ``dx = f(x, t) dt + g(t) dW`` (diagonal, additive noise), step ``h``, ``I1 = W(t+h) - W(t)`` and
    ``I10 = int_t^{t+h} (W(s) - W(t)) ds``::

        H_i = x + h sum_j a0[i, j] f(H_j, t + c0[j] h) + (I10 / h) sum_j b0[i, j] g(t + c1[j] h)
        x'  = x + h sum_i alpha[i] f(H_i, t + c0[i] h) + sum_i (beta1[i] I1 + beta2[i] I10 / h) g(t + c1[i] h)

    Checked on construction: explicit (``a0``, ``b0`` strictly lower triangular), rows of ``a0`` sum to ``c0``,
    and the conditions of strong order 1 (``sum alpha = 1``, ``sum beta1 = 1``, ``sum beta2 = 0``); for
    ``strong_order = 1.5`` also ``alpha . a0 e = 1/2``, ``alpha . b0 e = 1``, ``alpha . (b0 e)^2 = 3/2``,
    ``beta1 . c1 = 1`` and ``beta2 . c1 = -1`` (Roessler 2010, Theorem 6.4), to 1e-14.
    """

    c0: np.ndarray
    c1: np.ndarray
    a0: np.ndarray
    b0: np.ndarray
    alpha: np.ndarray
    beta1: np.ndarray
    beta2: np.ndarray
    strong_order: float
    weak_order: float

    def __post_init__(self):
        arrs = {k: np.asarray(getattr(self, k), dtype=np.float64) for k in ("c0", "c1", "a0", "b0", "alpha")}
        arrs.update({k: np.asarray(getattr(self, k), dtype=np.float64) for k in ("beta1", "beta2")})
        s = arrs["alpha"].shape[0]
        for k in ("c0", "c1", "beta1", "beta2"):
            if arrs[k].shape != (s,):
                raise ValueError(f"stochastic tableau: {k} must have shape ({s},), got {arrs[k].shape}")
        for k in ("a0", "b0"):
            if arrs[k].shape != (s, s):
                raise ValueError(f"stochastic tableau: {k} must have shape ({s}, {s}), got {arrs[k].shape}")
            if np.any(np.triu(arrs[k]) != 0):
                raise ValueError(f"stochastic tableau: {k} must be strictly lower triangular (explicit method)")
        if not np.allclose(arrs["a0"].sum(axis=1), arrs["c0"], rtol=0, atol=1e-14):
            raise ValueError(f"rows of a0 must sum to c0: {arrs['a0'].sum(axis=1)} != {arrs['c0']}")
        e = np.ones(s)
        conditions = [("sum(alpha) = 1", arrs["alpha"] @ e, 1.0), ("sum(beta1) = 1", arrs["beta1"] @ e, 1.0)]
        conditions.append(("sum(beta2) = 0", arrs["beta2"] @ e, 0.0))
        if self.strong_order >= 1.5:
            b0e = arrs["b0"] @ e
            conditions += [
                ("alpha . a0 e = 1/2", arrs["alpha"] @ arrs["a0"] @ e, 0.5),
                ("alpha . b0 e = 1", arrs["alpha"] @ b0e, 1.0),
                ("alpha . (b0 e)^2 = 3/2", arrs["alpha"] @ (b0e * b0e), 1.5),
                ("beta1 . c1 = 1", arrs["beta1"] @ arrs["c1"], 1.0),
                ("beta2 . c1 = -1", arrs["beta2"] @ arrs["c1"], -1.0),
            ]
        for what, got, want in conditions:
            if abs(got - want) > 1e-14:
                raise ValueError(f"stochastic tableau violates the order condition {what}: got {got!r}")
        for k, arr in arrs.items():
            arr.setflags(write=False)
            object.__setattr__(self, k, arr)

    @property
    def stages(self) -> int:
        return self.alpha.shape[0]


# Roessler 2010, "Runge-Kutta methods for the strong approximation of solutions of stochastic differential
# equations", SIAM J. Numer. Anal. 48(3), Table 6.3 (SRA1): strong order 1.5 for additive noise, 2 stages.
SRA1 = StochasticTableau(
    c0=[0.0, 3 / 4],
    c1=[1.0, 0.0],
    a0=[[0.0, 0.0], [3 / 4, 0.0]],
    b0=[[0.0, 0.0], [3 / 2, 0.0]],
    alpha=[1 / 3, 2 / 3],
    beta1=[1.0, 0.0],
    beta2=[-1.0, 1.0],
    strong_order=1.5,
    weak_order=2.0,
)

__all__ += ["EmbeddedTableau", "DOPRI5", "StochasticTableau", "SRA1"]
