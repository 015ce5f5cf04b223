"""Stochastic Runge--Kutta methods of SRA type for additive noise, driven by a :class:`StochasticTableau`."""

from __future__ import annotations

import math

from .. import _xp
from .base import FixedStepSolver, register
from .tableaus import SRA1, StochasticTableau

__all__ = ["SRA", "SRA1Solver", "sra_step"]


def sra_step(process, x, t, t_next, z0, z1, tableau: StochasticTableau):
    """One SRA step (Roessler 2010) of ``dx = f(x, t) dt + g(t) dW`` from ``t`` to ``t_next``.

    ``z0, z1`` are independent standard normals like ``x``: ``I1 = sqrt(|h|) z0`` and
    ``I10 / |h| = sqrt(|h|) (z0 + z1 / sqrt(3)) / 2``, the exact joint law of ``(W(t+h) - W(t),
    int (W(s) - W(t)) ds)``. A backward step (``t_next < t``, the reverse SDE) runs the same scheme in the
    reversed time ``s = -t``, which is what the signed ``h`` in the drift terms does.
    """
    h = t_next - t
    hx = _xp.per_sample(h, x)
    sq = _xp.per_sample(abs(h) ** 0.5, x)
    i1 = sq * z0
    i10_h = (0.5 * sq) * (z0 + z1 * (1.0 / math.sqrt(3.0)))
    s = tableau.stages
    gs = [process.diffusion(x, t + float(tableau.c1[j]) * h) for j in range(s)]
    fs = []
    for i in range(s):
        hi = x
        for j in range(i):
            if float(tableau.a0[i, j]) != 0.0:
                hi = hi + (hx * float(tableau.a0[i, j])) * fs[j]
            if float(tableau.b0[i, j]) != 0.0:
                hi = hi + (float(tableau.b0[i, j]) * gs[j]) * i10_h
        fs.append(process.drift(hi, t + float(tableau.c0[i]) * h))
    out = x
    for i in range(s):
        out = out + (hx * float(tableau.alpha[i])) * fs[i]
        if float(tableau.beta1[i]) != 0.0 or float(tableau.beta2[i]) != 0.0:
            out = out + gs[i] * (float(tableau.beta1[i]) * i1 + float(tableau.beta2[i]) * i10_h)
    return out


class SRA(FixedStepSolver):
    """A stochastic Runge--Kutta method for additive noise given by its :class:`StochasticTableau`.

    Uses two normals per component and step (``I1`` and ``I10``, see :func:`sra_step`); with
    ``noise="tree"`` both come from the same Brownian path. NFE per step: the number of stages.
    """

    is_sde = True
    needs_additive_noise = True
    n_noise = 2
    n_brownian = 2
    tableau: StochasticTableau

    def __init__(self):
        self.strong_order = self.tableau.strong_order
        self.weak_order = self.tableau.weak_order
        self.nfe_per_step = self.tableau.stages

    def step(self, process, x, t, t_next, z, ctx):
        return sra_step(process, x, t, t_next, z[0], z[1], self.tableau)


@register
class SRA1Solver(SRA):
    """Roessler's SRA1: strong order 1.5 and weak order 2 for additive noise, 2 stages, 2 NFE per step.

    Deterministic order 2 (with ``g = 0`` it is a 2-stage Runge--Kutta method with ``c = (0, 3/4)``).
    """

    name = "sra1"
    order = 2
    tableau = SRA1
