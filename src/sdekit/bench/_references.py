"""The reference probability-flow map of :func:`sdekit.bench.compare`'s ODE errors.

Exact for a density that declares ``exact_flow`` (a Gaussian: ``density.flow``); otherwise scipy's DOP853 at
``rtol = atol = ODE_REF_TOL``, whose own error is far below the errors reported (orders are fitted only above
``ODE_FIT_FLOOR["dop853"]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ODE_REF_TOL", "ODE_FIT_FLOOR", "ReferenceFlow", "reference_flow"]

ODE_REF_TOL = 1e-10

#: Errors at or below these carry no order information (the reference's own error, or round-off).
ODE_FIT_FLOOR = {"exact": 1e-12, "dop853": 1e-8}


@dataclass(frozen=True)
class ReferenceFlow:
    """End points ``x`` of the reference flow, its ``kind`` (``"exact"`` or ``"dop853"``), descriptions, cost."""

    x: np.ndarray
    kind: str
    description: str
    nfev: int

    @property
    def short(self) -> str:
        """The plot title's name of the reference."""
        return "exact flow" if self.kind == "exact" else "DOP853 reference"

    @property
    def fit_floor(self) -> float:
        """Errors at or below this are not used in order fits."""
        return ODE_FIT_FLOOR[self.kind]


def reference_flow(density, sde, x, t0, t1) -> ReferenceFlow:
    """The probability-flow map of ``x`` from ``t0`` to ``t1``: exact where declared, else DOP853 at 1e-10."""
    if density.exact_flow:
        return ReferenceFlow(density.flow(x, t0, t1, sde), "exact", f"exact flow ({type(density).__name__}.flow)", 0)
    from scipy.integrate import solve_ivp

    proc = sde.probability_flow(density.score(sde))
    shape = x.shape

    def rhs(t, y):
        return proc.drift(y.reshape(shape), t).ravel()

    sol = solve_ivp(rhs, (t0, t1), x.ravel(), method="DOP853", rtol=ODE_REF_TOL, atol=ODE_REF_TOL)
    if not sol.success:
        raise RuntimeError(f"reference solve failed: {sol.message}")
    desc = f"scipy DOP853, rtol=atol={ODE_REF_TOL:g} ({sol.nfev} evaluations)"
    return ReferenceFlow(sol.y[:, -1].reshape(shape), "dop853", desc, sol.nfev)
