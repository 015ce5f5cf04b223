"""Adaptive solvers with per-sample step sizes: the adaptive reverse-SDE solver of Jolicoeur-Martineau et al.
(2021) and Dormand--Prince 5(4) for the probability-flow ODE.

They do not follow the fixed-grid ``step`` protocol: the loop of :mod:`sdekit.loop.adaptive` calls

* ``init_carry(process, x, t) -> (carry, nfe)``: per-sample quantities kept between attempts (a dict of
  arrays with leading axis ``n``), valid at the current ``(x, t)``;
* ``attempt(process, x, t, t_next, z, carry, rtol, atol) -> (x_new, err, proposal, nfe)``: one trial step;
  ``err`` is the normalised error per sample (``(n,)``, accept when ``<= 1``);
* ``accept(process, x_new, t_next, carry, proposal) -> (carry, nfe)``: the carry at the accepted point;

with ``t``, ``t_next`` per-sample arrays in ``x``'s library and ``nfe`` the evaluations each sample paid.
"""

from __future__ import annotations

import inspect
import math

from .. import _xp
from ..controllers import DOPRI5_BETA, PIController
from ..timechange import check_time_variable
from ..validation import positive_int, positive_number
from .base import Solver, register
from .stochastic import brownian_increment
from .tableaus import DOPRI5, EmbeddedTableau

__all__ = ["AdaptiveSolver", "AdaptiveSDE", "Dopri5", "rms_norm"]


def rms_norm(v):
    """The scaled L2 norm ``||v||_2 / sqrt(d)`` over the event axes of each sample, shape ``(n,)``."""
    d = 1
    for s in v.shape[1:]:
        d *= int(s)
    return _xp.lib(v).sqrt(_xp.sum_last(v * v, v.ndim - 1) / d)


class AdaptiveSolver(Solver):
    """Base of per-sample adaptive solvers: tolerances, initial step, controller, time variable.

    ``time``: the variable the steps are taken in. ``"t"``: the process's own time. ``"log_snr"``: the
    log-SNR ``lambda = log(alpha / sigma)`` of a linear SDE (:mod:`sdekit.timechange`; Lu et al. 2022, sec. 3.1),
    where the flow is smooth near the data end (under EDM ``dx/dlambda = D - x`` instead of ``(x - D) / sigma``);
    :func:`sdekit.solve` integrates the time-changed process and returns the states at the original times. Step
    sizes (``h_init`` too) are then in ``lambda`` units. ``"auto"``: the SDE's ``adaptive_time`` (:meth:`time_for`):
    ``"log_snr"`` on ``EDMSDE``, ``"t"`` elsewhere.
    """

    adaptive = True
    controller: PIController

    def __init__(self, rtol: float, atol: float, h_init: float | None = None, max_steps: int = 100_000,
                 time: str = "t"):  # fmt: skip
        self.rtol = positive_number("rtol", rtol)
        self.atol = positive_number("atol", atol)
        if h_init is not None:
            h_init = positive_number("h_init", h_init)
        self.h_init = h_init
        self.max_steps = positive_int("max_steps", max_steps)
        self.time = check_time_variable("time", time, also=("auto",))

    def __repr__(self):
        default = inspect.signature(type(self).__init__).parameters["time"].default
        when = "" if self.time == default else f", time={self.time!r}"
        return f"{type(self).__name__}(rtol={self.rtol}, atol={self.atol}{when})"

    def time_for(self, sde) -> str:
        """The time variable a solve of a process of ``sde`` steps in: ``time``, or for ``time="auto"`` the SDE's
        ``adaptive_time`` (``"log_snr"`` on ``EDMSDE``, whose own time is the noise level and whose flow is stiff in
        it near ``sigma_min``; ``"t"`` on the other SDEs and on SDEs without a log-SNR)."""
        if self.time != "auto":
            return self.time
        return getattr(sde, "adaptive_time", "t")

    def initial_step(self, t0: float, t1: float) -> float:
        """The first attempted step size: ``h_init`` or 1% of the interval (Jolicoeur-Martineau et al.), in the
        solver's time variable."""
        return self.h_init if self.h_init is not None else 0.01 * abs(t1 - t0)

    def step(self, process, x, t, t_next, z, state):
        raise TypeError(f"solver {self.name!r} is adaptive; it runs in the adaptive loop (sdekit.solve)")


@register
class AdaptiveSDE(AdaptiveSolver):
    """Adaptive step sizes for the reverse SDE (Jolicoeur-Martineau et al. 2021, "Gotta Go Fast When Generating
    Data with Score-Based Models", Alg. 1), one step size per sample.

    One attempt with step ``h`` (signed) and noise ``z``::

        x'  = x + h F(x, t) + g(t) sqrt|h| z                       (Euler--Maruyama)
        x~  = x + h F(x', t + h) + g(t + h) sqrt|h| z               (same noise)
        x'' = (x' + x~) / 2                                         (improved Euler, i.e. stochastic Heun)
        delta = max(atol, rtol max(|x'|, |x'_prev|))                (mixed tolerance, elementwise)
        E = ||(x' - x'') / delta||_2 / sqrt(d)                      (scaled L2 norm)

    Accept when ``E <= 1`` and continue from ``x''`` (extrapolation); the next step is
    ``theta h E^(-r)`` with ``theta = 0.9``, ``r = 0.9`` (an I controller, no growth limit), capped at the
    remaining time. Defaults ``rtol = 0.05``, ``atol = 0.0078`` (the paper's, for data in ``[-1, 1]``).
    ``x'_prev`` is the previous accepted ``x'``. NFE: 2 per accepted attempt, 1 per rejected one (``F(x, t)``
    is kept). Strong order 1 (the accepted value is stochastic Heun's).

    Noise: by default (``noise=None`` in :func:`sdekit.solve`) ``noise="bridge"``: each sample keeps the
    increments it has drawn ahead of its time and refines them by Brownian bridges after a rejection
    (:mod:`sdekit.bridge_noise`, Rackauckas & Nie's rejection sampling with memory), the exact law at about the
    cost of fresh noise; its path depends on the sample's step sequence. ``noise="tree"`` reads one Brownian
    path per sample (:mod:`sdekit.brownian`), the same path at every tolerance (pathwise studies), at about three
    times the bridge's cost. The paper's rule, fresh noise for every attempt, is ``noise="counter"``; it biases
    the law, because rejections select the noise (on a 2-D Gaussian under VP the variance came out 1.4--2.6
    times too large at rtol 1e-1 to 1e-3).

    ``time="log_snr"`` takes the steps in the log-SNR ``lambda`` (see :class:`AdaptiveSolver`): drift
    ``F dt/dlambda``, diffusion ``g sqrt|dt/dlambda| = sqrt(2) sigma(t)``, the Brownian path in ``lambda``-time.
    """

    name = "adaptive"
    order = 2
    strong_order = 1.0
    weak_order = 1.0
    is_sde = True
    n_noise = 1
    nfe_per_step = 2
    needs_additive_noise = True

    def __init__(self, rtol: float = 0.05, atol: float = 0.0078, h_init: float | None = None,
                 exponent: float = 0.9, safety: float = 0.9, max_steps: int = 100_000, time: str = "t"):  # fmt: skip
        super().__init__(rtol, atol, h_init, max_steps, time)
        beta1, safety = positive_number("exponent", exponent), positive_number("safety", safety)
        self.controller = PIController(beta1=beta1, safety=safety, min_factor=0.0, max_factor=math.inf)

    def init_carry(self, process, x, t):
        return {"f": process.drift(x, t), "x_prev": 1.0 * x}, 1  # a copy: the loop updates x in place

    def attempt(self, process, x, t, t_next, z, carry, rtol, atol):
        h = t_next - t
        hx = _xp.per_sample(h, x)
        dw = brownian_increment(h, x, z[0])
        xp = _xp.lib(x)
        g0 = process.diffusion(x, t)
        x1 = x + hx * carry["f"] + g0 * dw
        f1 = process.drift(x1, t_next)
        g1 = process.diffusion(x1, t_next)
        x_tilde = x + hx * f1 + g1 * dw
        x2 = 0.5 * (x1 + x_tilde)
        delta = xp.maximum(rtol * xp.maximum(xp.abs(x1), xp.abs(carry["x_prev"])), _xp.asarray_like(atol, x))
        err = rms_norm((x1 - x2) / delta)
        return x2, err, {"x1": x1}, 1

    def accept(self, process, x_new, t_next, carry, proposal):
        return {"f": process.drift(x_new, t_next), "x_prev": proposal["x1"]}, 1


@register
class Dopri5(AdaptiveSolver):
    """Dormand--Prince 5(4) (Dormand & Prince 1980) for the probability-flow ODE, per-sample step sizes.

    The tableau :data:`sdekit.solvers.tableaus.DOPRI5` (FSAL: 6 new NFE per attempt, the 7th stage is the
    next step's first). Error ``e = h sum (b - b_err) k`` scaled by ``atol + rtol max(|x|, |x_new|)`` in the
    RMS norm (as scipy's ``RK45``); Hairer's PI controller (``beta2 = 0.04``, ``beta1 = 1/5 - 0.75 beta2``,
    ``SAFETY = 0.9``, factors in ``[0.2, 10]``). Order 5 (local extrapolation). Defaults ``rtol = atol = 1e-5``.

    ``time="log_snr"`` integrates ``dx/dlambda = F(x, t(lambda)) dt/dlambda`` (see :class:`AdaptiveSolver`): on
    EDM-like schedules the flow near ``sigma_min`` is no longer stiff, so loose tolerances stay stable and the
    same tolerance costs fewer steps. The default ``time="auto"`` takes it on ``EDMSDE`` (measured on a 2-D
    Gaussian, RMS endpoint error at rtol = atol = 1e-2: 0.42 in ``t``, 1.8e-3 in ``lambda`` at 53 and 55 NFE) and
    ``t`` on the other SDEs, whose time the flow is not stiff in (on VE ``lambda`` is linear in ``t``: the same
    steps).
    """

    name = "dopri5"
    order = 5
    is_ode = True
    nfe_per_step = 6
    tableau: EmbeddedTableau = DOPRI5

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5, h_init: float | None = None, max_steps: int = 100_000,
                 time: str = "auto"):  # fmt: skip
        super().__init__(rtol, atol, h_init, max_steps, time)
        beta2 = DOPRI5_BETA
        self.controller = PIController(beta1=1.0 / (self.tableau.error_order + 1) - 0.75 * beta2, beta2=beta2)

    def init_carry(self, process, x, t):
        return {"k1": process.drift(x, t)}, 1

    def attempt(self, process, x, t, t_next, z, carry, rtol, atol):
        tab = self.tableau.tableau
        b_err = self.tableau.b_err
        h = t_next - t
        hx = _xp.per_sample(h, x)
        ks = [carry["k1"]]
        for i in range(1, tab.stages):
            xi = x
            for j in range(i):
                if float(tab.a[i, j]) != 0.0:
                    xi = xi + (hx * float(tab.a[i, j])) * ks[j]
            ks.append(process.drift(xi, t + float(tab.c[i]) * h))
        x_new = xi  # FSAL: the last stage is evaluated at the new point, x + h sum b k
        e = (float(tab.b[0]) - float(b_err[0])) * ks[0]
        for i in range(1, tab.stages):
            if float(tab.b[i]) != float(b_err[i]):
                e = e + (float(tab.b[i]) - float(b_err[i])) * ks[i]
        xp = _xp.lib(x)
        scale = atol + rtol * xp.maximum(xp.abs(x), xp.abs(x_new))
        err = rms_norm(hx * e / scale)
        return x_new, err, {"k_last": ks[-1]}, tab.stages - 1

    def accept(self, process, x_new, t_next, carry, proposal):
        return {"k1": proposal["k_last"]}, 0
