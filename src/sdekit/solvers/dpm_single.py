"""Single-step DPM-Solver and DPM-Solver++ (Lu et al. 2022a, "DPM-Solver: A Fast ODE Solver for Diffusion
Probabilistic Model Sampling in Around 10 Steps", Alg. 1; Lu et al. 2022, "DPM-Solver++", Alg. 1), in the form of
diffusers' ``DPMSolverSinglestepScheduler``, whose intermediate points are grid points.

The grid is cut into *groups* of ``order`` consecutive steps (:func:`singlestep_orders`). Over a group starting at
``s`` with points ``s = u_0, u_1, .., u_{m-1}`` (``m <= order``), step ``j`` of the group goes from ``s`` (not from
the previous point) to ``u_{j+1}`` with the data predictions ``D(u_0) .. D(u_j)`` evaluated at the points the
group's earlier steps reached: a first-order (DDIM) step, then a second-order step from ``s`` over two intervals,
then a third-order one over three. With ``h = lambda(t) - lambda(s)``, ``r_i = (lambda(u_i) - lambda(s)) / h``,
``phi1 = e^{-h} - 1`` and the exact solution ``x_t = (sigma_t / sigma_s) x_s + sigma_t int e^lambda D d lambda``:

* order 1: ``x_t = (sigma_t / sigma_s) x_s - alpha_t phi1 D_0``;
* order 2: ``D1 = (D(u_1) - D_0) / r_1``; ``variant="midpoint"``: ``- alpha_t phi1 D1 / 2``, ``variant="heun"``:
  ``+ alpha_t (phi1 / h + 1) D1`` (the exact weight of a linear ``D``);
* order 3: ``variant="midpoint"`` uses ``D1_2 = (D(u_2) - D_0) / r_2`` alone, ``+ alpha_t (phi1 / h + 1) D1_2``
  (DPM-Solver-3's last stage: third order when ``r_2 = 2/3 + O(h)``, i.e. on grids smooth in ``lambda``);
  ``variant="heun"`` the divided differences ``D1 = (r_2 D1_1 - r_1 D1_2) / (r_2 - r_1)`` and ``D2 = 2 (D1_2 -
  D1_1) / (r_2 - r_1)`` (``~ h D'`` and ``~ h^2 D''``) with their exact weights, ``+ alpha_t (phi1 / h + 1) D1 -
  alpha_t ((phi1 + h) / h^2 - 1/2) D2``.

``prediction="noise"`` gives DPM-Solver (diffusers' ``algorithm_type="dpmsolver"``): the same interpolation of the
noise prediction ``eps = -sigma score`` in ``x_t = (alpha_t / alpha_s) x_s - alpha_t int e^{-lambda} eps d lambda``,
i.e. the formulas with ``h -> -h`` and ``alpha <-> sigma`` (signs as in diffusers'). Order ``order`` (1--3) on
grids smooth in ``lambda``, 1 NFE per step.

On the reverse SDE (``process="sde"``; diffusers' ``"sde-dpmsolver++"``) the same groups integrate
``x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t int 2 e^{2(u - h)} D du + sigma_t sqrt(1 - e^{-2h}) z`` with a new
normal field ``z`` on every step (over the whole span from the group's start): the formulas above with ``phi1 =
e^{-2h} - 1``, ``h`` replaced by ``2h`` in the weights of ``D1`` and ``D2`` and the base ``(sigma_t / sigma_s)
e^{-h} x_s``. Those are diffusers' weights but for the third-order ``"heun"`` weight of ``D2``, whose exact value
``(1 - e^{-2h} - 2h) / (2h)^2 + 1/2`` (tends to 0) diffusers writes with ``- 1/2`` (tends to -1). Weak order 1; no
strong order (a later step of a group draws its noise anew for the whole span, not along one Brownian path).

Because every step is affine in the group's start, the group's evaluations and the step's noise, the step is also
written as an :class:`~sdekit.solvers.affine.AffineCoefficients` table: the group's start is the kernel's kept state
``x_prev`` (``keep_prev`` on a group's first step), restored on the group's later steps by a corrector
``x <- 1 * x_prev + 0 * E_k``.
"""

from __future__ import annotations

import math

import numpy as np

from ..sdes import ReverseSDE
from ..validation import boolean, integer_in, one_of
from ._common import coeffs, data_prediction, linear_sde_of, log_snr, score_at, sqrt_pos
from .affine import PROBE_E, PROBE_X, PROBE_X_PREV, PROBE_Z, AffineCoefficients, probe
from .base import FixedStepSolver, register

__all__ = ["DPMSolverSinglestep", "singlestep_orders", "VARIANTS", "PREDICTIONS"]

VARIANTS = ("midpoint", "heun")
PREDICTIONS = ("data", "noise")


def singlestep_orders(n_steps: int, order: int, lower_order_final: bool) -> list:
    """The order of each of ``n_steps`` steps: groups ``1, 2, .., order`` from the start, the last group shorter
    when ``order`` does not divide ``n_steps`` (diffusers' ``DPMSolverSinglestepScheduler.get_order_list``).

    ``lower_order_final=True`` changes only a last group of full length: order 2 then ends with two first-order
    steps (``.., 1, 2, 1, 1``), order 3 with a group of two and a first-order step (``.., 1, 2, 3, 1, 2, 1``).
    (diffusers' ``final_sigmas_type="zero"`` also makes the last step first order; in sdekit that last step is the
    final denoising step, which is first order by itself.)"""
    full, rest = divmod(n_steps, order)
    orders = list(range(1, order + 1)) * full + list(range(1, rest + 1))
    if lower_order_final and rest == 0 and order > 1 and n_steps > 0:
        orders[-order:] = list(range(1, order)) + [1]
    return orders


@register
class DPMSolverSinglestep(FixedStepSolver):
    """Single-step DPM-Solver++ (``prediction="data"``) or DPM-Solver (``"noise"``) of order ``order`` (1--3,
    default 2) with diffusers' ``variant`` (``"midpoint"`` or ``"heun"``) of the second- and third-order steps; see
    the module docstring. Order ``order``, 1 NFE per step; each group of ``order`` steps restarts from its first
    point (the group's intermediate points are grid points). On the reverse SDE (``process="sde"``, or
    ``stochastic=True`` to make it the default): SDE-DPM-Solver++ of the same groups, weak order 1."""

    name = "dpmpp_single"
    is_ode = True
    is_sde = True
    n_noise = 1
    weak_order = 1.0  # the reverse SDE (a later step of a group draws new noise over the whole group: no strong order)
    nfe_per_step = 1
    order = 2
    default_grid = "log_snr"  # DPM-Solver's schedule (equal steps in lambda: r = 1/3, 2/3 in a group of three)

    def __init__(self, order: int = 2, variant: str = "midpoint", prediction: str = "data",
                 lower_order_final: bool = False, stochastic: bool = False):  # fmt: skip
        self.order = self.multistep_order = integer_in("order", order, 1, 3)
        one_of("variant", variant, VARIANTS)
        one_of("prediction", prediction, PREDICTIONS)
        self.variant, self.prediction = variant, prediction
        self.lower_order_final = boolean("lower_order_final", lower_order_final)
        self.stochastic = boolean("stochastic", stochastic)
        if self.stochastic and prediction == "noise":
            raise ValueError(
                "stochastic=True (the reverse SDE) needs prediction='data' (SDE-DPM-Solver++), got 'noise'"
            )

    def __repr__(self):
        return (
            f"DPMSolverSinglestep(order={self.order}, variant={self.variant!r}, prediction={self.prediction!r}, "
            f"lower_order_final={self.lower_order_final}, stochastic={self.stochastic})"
        )

    @property
    def default_process(self) -> str:
        """``"sde"`` with ``stochastic=True`` (SDE-DPM-Solver++), else the probability-flow ODE."""
        return "sde" if self.stochastic else "ode"

    def check_process(self, process):
        linear_sde_of(process, self.name)
        if self.prediction == "noise" and isinstance(process, ReverseSDE):
            raise ValueError(
                f"solver {self.name!r} with prediction='noise' integrates the probability-flow ODE only (its "
                "reverse-SDE form is SDE-DPM-Solver++, prediction='data'); got the reverse SDE"
            )

    def step_orders(self, n_steps: int) -> list:
        """Order of each step of a solve of ``n_steps`` steps (:func:`singlestep_orders`)."""
        return singlestep_orders(n_steps, self.order, self.lower_order_final)

    def step(self, process, x, t, t_next, z, ctx):
        """Evaluate at ``x``; a group's first step keeps ``(x, t)`` as the group's start, every step of the group
        then goes from that start to ``t_next`` (:meth:`_update`)."""
        sde = process.sde
        mem = ctx.memory.get("dpm_single")
        if mem is None or mem.get("n_steps") != ctx.schedule_steps:  # (the whole schedule's groups: StepContext)
            mem = ctx.memory["dpm_single"] = {
                "n_steps": ctx.schedule_steps,
                "orders": self.step_orders(ctx.schedule_steps),
            }
        order = mem["orders"][ctx.schedule_index]
        alpha, sigma = coeffs(sde, t)
        if self.prediction == "noise":  # eps = -sigma score; the step callback still gets D = (x - sigma eps) / alpha
            value = -sigma * score_at(process, x, t)
            ctx.denoised = (x - sigma * value) / alpha
        else:
            value = ctx.denoised = data_prediction(process, sde, x, t)
        if order == 1 or "start" not in mem:
            mem["start"], mem["group"] = (x, t), []
        mem["group"].append((log_snr(sde, t), value))
        # (a run's first step starts a group; started inside a group of the whole schedule (offset), the order is
        # lowered to the values the group has, as diffusers' singlestep scheduler lowers it)
        order = min(order, len(mem["group"]))
        x_s, t_s = mem["start"]
        return self._update(sde, mem["group"][-order:], x_s, t_s, t_next, None if z is None else z[0])

    def _update(self, sde, group, x_s, t_s, t_next, noise=None):
        """The step from the group's start ``x_s`` at ``t_s`` to ``t_next`` with the group's ``[(lambda, value),
        ...]`` (oldest first; its length is the step's order) and, on the reverse SDE, the step's normal field
        ``noise``; linear in ``x_s``, the values and the noise."""
        alpha_s, sigma_s = coeffs(sde, t_s)
        alpha_t, sigma_t = coeffs(sde, t_next)
        lam_s, m0 = group[0]
        h = log_snr(sde, t_next) - lam_s
        hw = h  # the step of the weights: 2h on the reverse SDE (module docstring)
        order = len(group)
        if noise is not None:  # SDE-DPM-Solver++
            hw = 2.0 * h
            phi1, base, scale = math.expm1(-hw), (sigma_t / sigma_s * math.exp(-h)) * x_s, -alpha_t
        elif self.prediction == "noise":  # h -> -h, alpha <-> sigma, and the signs of diffusers' DPM-Solver
            phi1, base, scale = math.expm1(h), (alpha_t / alpha_s) * x_s, -sigma_t
        else:
            phi1, base, scale = math.expm1(-h), (sigma_t / sigma_s) * x_s, -alpha_t
        if self.prediction == "noise" and noise is None:
            w_d1, w_d2 = phi1 / h - 1.0, (phi1 - h) / (h * h) - 0.5
        else:
            w_d1, w_d2 = -(phi1 / hw + 1.0), (phi1 + hw) / (hw * hw) - 0.5
        x_next = base + (scale * phi1) * m0
        if noise is not None:
            x_next = x_next + (sigma_t * sqrt_pos(-phi1)) * noise
        if order == 1:
            return x_next
        if order == 2:
            r1 = (group[1][0] - lam_s) / h
            d1 = (group[1][1] - m0) / r1
            w = 0.5 * phi1 if self.variant == "midpoint" else w_d1
            return x_next + (scale * w) * d1
        r1, r2 = (group[1][0] - lam_s) / h, (group[2][0] - lam_s) / h
        d1_1, d1_2 = (group[1][1] - m0) / r1, (group[2][1] - m0) / r2
        if self.variant == "midpoint":
            return x_next + (scale * w_d1) * d1_2
        d1 = (r2 * d1_1 - r1 * d1_2) / (r2 - r1)
        d2 = 2.0 * (d1_2 - d1_1) / (r2 - r1)
        return x_next + (scale * w_d1) * d1 + (scale * w_d2) * d2

    def affine_coefficients(self, sde, grid, stochastic: bool = False) -> AffineCoefficients:
        """The per-step coefficients over ``grid`` (:mod:`sdekit.solvers.affine`) of the probability-flow ODE or,
        with ``stochastic``, the reverse SDE, read off :meth:`_update` with probe vectors: a group's first step
        keeps its state (``keep_prev``); a later step of the group first restores it (corrector ``x <- x_prev``),
        then updates with the group's evaluations, most recent first, and its own normals."""
        grid = np.asarray(grid, dtype=np.float64)
        steps = len(grid) - 1
        tab = AffineCoefficients.zeros(steps)
        lams = [log_snr(sde, float(t)) for t in grid[:-1]]
        for k, order in enumerate(self.step_orders(steps)):
            t, t_next = float(grid[k]), float(grid[k + 1])
            alpha, sigma = coeffs(sde, t)
            tab.ev[k] = (0.0, -sigma, 1.0) if self.prediction == "noise" else (1.0, sigma * sigma, alpha)
            g = k - order + 1  # the group's first step
            group = [(lams[g + j], probe(PROBE_E + order - 1 - j)) for j in range(order)]
            start = probe(PROBE_X) if order == 1 else probe(PROBE_X_PREV)
            v = self._update(sde, group, start, float(grid[g]), t_next, probe(PROBE_Z) if stochastic else None)
            tab.pred[k, 0] = v[PROBE_X] if order == 1 else v[PROBE_X_PREV]
            tab.pred[k, 1] = v[PROBE_Z]
            tab.pred[k, 2 : 2 + order] = v[PROBE_E : PROBE_E + order]
            if order == 1:
                tab.counts[k] = 1, 0, int(stochastic), 1, 0
            else:
                tab.corr[k, 0] = 1.0
                tab.counts[k] = order, 1, int(stochastic), 0, 0
        return tab
