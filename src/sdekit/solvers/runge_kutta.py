"""Explicit Runge--Kutta solvers for ODEs (and stochastic Heun for additive-noise SDEs)."""

from __future__ import annotations

from .. import _xp
from .base import FixedStepSolver, register
from .stochastic import brownian_increment
from .tableaus import EULER, HEUN2, RK4, ButcherTableau

__all__ = ["RungeKutta", "Euler", "Heun", "RK4Solver", "rk_step"]


def rk_step(process, x, t, t_next, tableau: ButcherTableau):
    """One explicit Runge--Kutta step of ``dx/dt = process.drift(x, t)`` from ``t`` to ``t_next``.

    ``t`` and ``t_next`` are floats or ``(n,)`` arrays; the step ``h = t_next - t`` may be negative.
    """
    h = t_next - t
    hx = _xp.per_sample(h, x)
    ks = []
    for i in range(tableau.stages):
        xi = x
        for j in range(i):
            if float(tableau.a[i, j]) != 0.0:
                xi = xi + (hx * float(tableau.a[i, j])) * ks[j]
        ks.append(process.drift(xi, t + float(tableau.c[i]) * h))
    incr = float(tableau.b[0]) * ks[0]
    for i in range(1, tableau.stages):
        incr = incr + float(tableau.b[i]) * ks[i]
    return x + hx * incr


class RungeKutta(FixedStepSolver):
    """An explicit Runge--Kutta ODE solver given by its Butcher tableau (global error ``O(h^order)``)."""

    is_ode = True
    tableau: ButcherTableau

    def __init__(self):
        self.order = self.tableau.order
        self.nfe_per_step = self.tableau.stages

    def step(self, process, x, t, t_next, z, ctx):
        return rk_step(process, x, t, t_next, self.tableau)


@register
class Euler(RungeKutta):
    """Explicit Euler for ODEs: ``x + h f(x, t)``; order 1, 1 NFE per step."""

    name = "euler"
    tableau = EULER


@register
class RK4Solver(RungeKutta):
    """The classic 4th-order Runge--Kutta method; 4 NFE per step."""

    name = "rk4"
    tableau = RK4


@register
class Heun(RungeKutta):
    """Heun's method: 2nd-order explicit trapezoid for ODEs, stochastic Heun for additive-noise SDEs.

    ODE (EDM, Karras et al. 2022, Alg. 1): ``x~ = x + h f(x, t)``, ``x' = x + h/2 (f(x, t) + f(x~, t + h))``.

    SDE with additive noise ``g(t)`` and ``dW = sqrt(|h|) z``::

        x~ = x + h f(x, t) + g(t) dW
        x' = x + h/2 (f(x, t) + f(x~, t + h)) + (g(t) + g(t + h))/2 dW

    Strong order 1 and weak order 2 for additive noise (Kloeden & Platen 1992, sec. 15.1); 2 NFE per step.
    """

    name = "heun"
    tableau = HEUN2
    is_sde = True
    strong_order = 1.0
    weak_order = 2.0
    n_noise = 1
    needs_additive_noise = True

    def step(self, process, x, t, t_next, z, ctx):
        if z is None:
            return rk_step(process, x, t, t_next, self.tableau)
        h = t_next - t
        hx = _xp.per_sample(h, x)
        dw = brownian_increment(h, x, z[0])
        f0 = process.drift(x, t)
        g0 = process.diffusion(x, t)
        x_pred = x + hx * f0 + g0 * dw
        f1 = process.drift(x_pred, t_next)
        g1 = process.diffusion(x_pred, t_next)
        return x + (0.5 * hx) * (f0 + f1) + (0.5 * (g0 + g1)) * dw
