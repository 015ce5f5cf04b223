"""Fixed-step SDE solvers."""

from __future__ import annotations

from .. import _xp
from .base import FixedStepSolver, register

__all__ = ["EulerMaruyama", "brownian_increment"]


def brownian_increment(h, x, z):
    """``dW = sqrt(|h|) z`` shaped like ``x``; ``h`` a float or ``(n,)`` array, ``z`` standard normal."""
    return _xp.per_sample(abs(h) ** 0.5, x) * z


@register
class EulerMaruyama(FixedStepSolver):
    """Euler--Maruyama: ``x' = x + f(x, t) h + g(x, t) sqrt(|h|) z``.

    Ito; strong order 1/2 in general and 1 for additive noise, weak order 1 (Kloeden & Platen 1992,
    sec. 10.2 and 14.1). 1 NFE per step.
    """

    name = "euler_maruyama"
    order = 1
    strong_order = 1.0
    weak_order = 1.0
    is_sde = True
    n_noise = 1

    def step(self, process, x, t, t_next, z, ctx):
        h = t_next - t
        return x + _xp.per_sample(h, x) * process.drift(x, t) + process.diffusion(x, t) * brownian_increment(h, x, z[0])
