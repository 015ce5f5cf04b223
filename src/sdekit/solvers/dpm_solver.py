"""DPM-Solver++ multistep samplers in the log-SNR variable of a linear SDE (Lu et al. 2022, "DPM-Solver++:
Fast Solver for Guided Sampling of Diffusion Probabilistic Models", Alg. 2 and sec. 5; Lu et al. 2022a).

Write ``lambda = log(alpha / sigma)`` and the data prediction ``D(x, t) = (x + sigma^2 score) / alpha``. The
probability-flow ODE then has the exact solution (variation of constants)

    x_t = (sigma_t / sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^{lambda} D(x_lambda) d lambda,

and the multistep methods interpolate ``D`` through the last 2 or 3 grid points, using the history kept in
the solve's ``ctx.memory``. The SDE variant integrates the reverse SDE the same way, its Gaussian part exactly.
Formulas follow the "midpoint" variants of diffusers' ``DPMSolverMultistepScheduler``, with one correction in
the third-order step: with ``D2 ~ h^2 D''/2`` (diffusers' divided difference) the exact weight of ``D2`` is
``alpha_t (1 - 2 (e^{-h} - 1 + h) / h^2) ~ alpha_t h / 3``; the reference code (and Lu et al.'s) uses half of
it, ``alpha_t (1/2 - (e^{-h} - 1 + h) / h^2)``, which leaves an ``O(h^3)`` local error, i.e. a second-order
method (``tests/test_sampler_orders.py`` measures slope 2 with the halved weight and 3 with this one).

``prediction="noise"`` gives DPM-Solver (Lu et al. 2022a, the multistep form of diffusers' ``algorithm_type=
"dpmsolver"`` / ``"sde-dpmsolver"``, "midpoint"): the same interpolation of the noise prediction ``eps = -sigma
score`` in the solution ``x_t = (alpha_t / alpha_s) x_s - alpha_t int e^{-lambda} eps d lambda``, i.e. the formulas
with ``h -> -h``, ``alpha <-> sigma`` (third order: ``D2`` weight ``sigma_t (2 (e^h - 1 - h) / h^2 - 1)``, halved
with ``reference_d2``). The SDE variant: ``x_t = (alpha_t / alpha_s) x_s - 2 sigma_t (e^h - 1) (D0 + D1 / 2) +
sigma_t sqrt(e^{2h} - 1) z``. Both predictions give the same first-order (DDIM) ODE step.

Warm-up and end: the first step is first order, the second at most second order (as in the references;
the warm-up error is proportional to ``dD/dlambda`` at the noisiest end, which is tiny, so the observed order
is the nominal one). With ``lower_order_final=True`` and fewer than 15 steps, the last step is first order
and the one before at most second order (diffusers' stabilisation for few steps); at 15 steps or more
nothing changes.
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import boolean, one_of
from ._common import coeffs, data_prediction, linear_sde_of, log_snr, score_at
from .affine import PROBE_E, PROBE_X, PROBE_Z, AffineCoefficients, probe
from .base import FixedStepSolver, register, register_preset

__all__ = [
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "DPMSolverPP2MSDE",
    "exp_adams_weights",
]

PREDICTIONS = ("data", "noise")  # DPM-Solver++ (data prediction D) or DPM-Solver (noise prediction eps)
LOWER_ORDER_FINAL_STEPS = 15  # below this many steps, lower the order of the last steps (diffusers)


class _DPMSolverPP(FixedStepSolver):
    """Shared multistep machinery: history of ``(lambda, D)``, effective order per step."""

    multistep_order = 2
    default_grid = "log_snr"  # the schedule DPM-Solver is built for (equal steps in lambda)

    def __init__(self, lower_order_final: bool = True, prediction: str = "data"):
        self.lower_order_final = boolean("lower_order_final", lower_order_final)
        one_of("prediction", prediction, PREDICTIONS)
        self.prediction = prediction
        self.noise_prediction = self.prediction == "noise"

    def __repr__(self):
        return f"{type(self).__name__}(lower_order_final={self.lower_order_final}, prediction={self.prediction!r})"

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def step(self, process, x, t, t_next, z, ctx):
        """Record ``D(x, t)`` in the history, then take the multistep update of :meth:`_update`."""
        sde = process.sde
        hist, order = self._history(process, sde, x, t, ctx)
        return self._update(sde, hist, order, x, t, t_next, z)

    def _update(self, sde, hist, order, x, t, t_next, z):
        raise NotImplementedError

    def affine_coefficients(self, sde, grid) -> AffineCoefficients:
        """The per-step coefficients of this sampler over ``grid`` on the linear SDE ``sde`` (see
        :mod:`sdekit.solvers.affine`): ``E`` is the data prediction ``D`` and the update is :meth:`step`'s own,
        run on probe vectors in place of ``x``, the ``D`` of the history and ``z``."""
        grid = np.asarray(grid, dtype=np.float64)
        steps = len(grid) - 1
        noisy = self.n_noise > 0
        tab = AffineCoefficients.zeros(steps)
        lams = [log_snr(sde, float(t)) for t in grid[:-1]]
        for k in range(steps):
            t, t_next = float(grid[k]), float(grid[k + 1])
            alpha, sigma = coeffs(sde, t)
            tab.ev[k] = (0.0, -sigma, 1.0) if self.noise_prediction else (1.0, sigma * sigma, alpha)
            m = min(self.multistep_order, k + 1)
            hist = [(lams[k - j], probe(PROBE_E + j)) for j in range(m - 1, -1, -1)]  # most recent last
            order = self._order(k, m, steps)
            v = self._update(sde, hist, order, probe(PROBE_X), t, t_next, [probe(PROBE_Z)])
            tab.pred[k, 0], tab.pred[k, 1] = v[PROBE_X], (v[PROBE_Z] if noisy else 0.0)
            tab.pred[k, 2 : 2 + order] = v[PROBE_E : PROBE_E + order]
            tab.counts[k] = order, 0, int(noisy), 0, 0
        return tab

    def _history(self, process, sde, x, t, ctx):
        """Append ``(lambda(t), D(x, t))``; return the history (most recent last) and the effective order."""
        hist = ctx.memory.setdefault("dpmpp", [])
        if self.noise_prediction:  # eps = -sigma score; the step callback still gets D = (x - sigma eps) / alpha
            alpha, sigma = coeffs(sde, t)
            eps = -sigma * score_at(process, x, t)
            hist.append((log_snr(sde, t), eps))
            ctx.denoised = (x - sigma * eps) / alpha
        else:
            hist.append((log_snr(sde, t), data_prediction(process, sde, x, t)))
            ctx.denoised = hist[-1][1]  # for the step callback
        del hist[: -self.multistep_order]
        # (counted in the whole schedule, StepContext.offset: the solve's own steps when the offset is 0)
        return hist, self._order(ctx.schedule_index, len(hist), ctx.schedule_steps)

    def _order(self, k: int, n_hist: int, n_steps: int) -> int:
        """Effective order of step ``k`` of ``n_steps`` with ``n_hist`` data predictions in the history."""
        order = min(self.multistep_order, n_hist)
        if self.lower_order_final and n_steps < LOWER_ORDER_FINAL_STEPS:
            order = min(order, n_steps - k)  # 1 on the last step, at most 2 on the one before
        return order

    @staticmethod
    def _derivatives(hist, order, h):
        """``(D0, D1, D2)``: value and scaled divided differences of ``D`` (diffusers' notation)."""
        lam0, m0 = hist[-1]
        if order == 1:
            return m0, None, None
        lam1, m1 = hist[-2]
        r0 = (lam0 - lam1) / h
        d1_0 = (m0 - m1) / r0
        if order == 2:
            return m0, d1_0, None
        lam2, m2 = hist[-3]
        r1 = (lam1 - lam2) / h
        d1_1 = (m1 - m2) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        return m0, d1, d2


class _DPMSolverPPODE(_DPMSolverPP):
    is_ode = True
    nfe_per_step = 1
    d2_weight = 2.0  # the Taylor-exact weight of D2 (see the module docstring); the reference codes use 1

    def _update(self, sde, hist, order, x, t, t_next, z):
        """The step from ``x`` at ``t`` given the history ``[(lambda, D), ...]`` (most recent last); linear in
        ``x`` and the ``D`` (:meth:`affine_coefficients` reads its coefficients off probe vectors)."""
        alpha_s, sigma_s = coeffs(sde, t)
        alpha_t, sigma_t = coeffs(sde, t_next)
        h = log_snr(sde, t_next) - hist[-1][0]
        d0, d1, d2 = self._derivatives(hist, order, h)
        if self.noise_prediction:  # DPM-Solver: h -> -h, alpha <-> sigma (module docstring)
            phi1 = math.expm1(h)  # e^h - 1
            x_next = (alpha_t / alpha_s) * x - (sigma_t * phi1) * d0
            if order == 2:
                x_next = x_next - (0.5 * sigma_t * phi1) * d1
            elif order >= 3:
                phi3 = self.d2_weight * ((phi1 - h) / (h * h) - 0.5)
                x_next = x_next - (sigma_t * (phi1 / h - 1.0)) * d1 - (sigma_t * phi3) * d2
            return x_next
        phi1 = math.expm1(-h)  # e^{-h} - 1
        x_next = (sigma_t / sigma_s) * x - (alpha_t * phi1) * d0
        if order >= 2:
            if order == 2:
                x_next = x_next - (0.5 * alpha_t * phi1) * d1
            else:
                phi2 = phi1 / h + 1.0
                phi3 = self.d2_weight * ((phi1 + h) / (h * h) - 0.5)
                x_next = x_next + (alpha_t * phi2) * d1 - (alpha_t * phi3) * d2
        return x_next


@register
class DPMSolverPP2M(_DPMSolverPPODE):
    """DPM-Solver++(2M) for the probability-flow ODE: order 2, 1 NFE per step (Lu et al. 2022, Alg. 2)."""

    name = "dpmpp_2m"
    order = 2
    multistep_order = 2


@register
class DPMSolverPP3M(_DPMSolverPPODE):
    """DPM-Solver++(3M) for the probability-flow ODE: order 3, 1 NFE per step (third-order multistep).

    ``reference_d2=True`` takes the reference codes' weight of ``D2`` (diffusers' ``DPMSolverMultistepScheduler``
    with ``solver_order=3``, Lu et al.'s code): half the Taylor-exact one (module docstring), so the method is of
    order 2 then. It exists to reproduce those codes' numbers (``SdekitScheduler.from_config`` of such a
    scheduler uses it); the default is the third-order weight.
    """

    name = "dpmpp_3m"
    order = 3
    multistep_order = 3

    def __init__(self, lower_order_final: bool = True, reference_d2: bool = False, prediction: str = "data"):
        super().__init__(lower_order_final, prediction)
        self.reference_d2 = boolean("reference_d2", reference_d2)
        self.d2_weight = 1.0 if self.reference_d2 else 2.0

    def __repr__(self):
        return (
            f"{type(self).__name__}(lower_order_final={self.lower_order_final}, reference_d2={self.reference_d2}, "
            f"prediction={self.prediction!r})"
        )


@register
class DPMSolverPP2MSDE(_DPMSolverPP):
    """SDE-DPM-Solver++(2M) for the reverse SDE (Lu et al. 2022, sec. 5; diffusers "sde-dpmsolver++")::

        x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) (D0 + D1 / 2) + sigma_t sqrt(1 - e^{-2h}) z

    with ``h = lambda_t - lambda_s`` and ``D1`` the scaled difference of the last two data predictions. The
    linear part and the noise are exact; the data prediction is interpolated linearly. Deterministic order
    2; strong and weak order 1 for the reverse SDE (the noise enters through its exact variance over the
    step, so the path error is ``O(h)``). 1 NFE per step.
    """

    name = "dpmpp_2m_sde"
    order = 2
    strong_order = 1.0
    weak_order = 1.0
    is_sde = True
    nfe_per_step = 1
    n_noise = 1
    multistep_order = 2

    def _update(self, sde, hist, order, x, t, t_next, z):
        """The step given the history (see :meth:`_DPMSolverPPODE._update`); linear in ``x``, the ``D`` and ``z``."""
        alpha_s, sigma_s = coeffs(sde, t)
        alpha_t, sigma_t = coeffs(sde, t_next)
        h = log_snr(sde, t_next) - hist[-1][0]
        d0, d1, _ = self._derivatives(hist, order, h)
        if self.noise_prediction:  # SDE-DPM-Solver (module docstring)
            phi1 = math.expm1(h)  # e^h - 1
            x_next = (alpha_t / alpha_s) * x - (2.0 * sigma_t * phi1) * d0
            if order >= 2:
                x_next = x_next - (sigma_t * phi1) * d1
            return x_next + (sigma_t * math.sqrt(max(math.expm1(2.0 * h), 0.0))) * z[0]
        one_m = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
        x_next = (sigma_t / sigma_s * math.exp(-h)) * x + (alpha_t * one_m) * d0
        if order >= 2:
            x_next = x_next + (0.5 * alpha_t * one_m) * d1
        return x_next + (sigma_t * math.sqrt(max(one_m, 0.0))) * z[0]


def exp_adams_weights(nodes, h: float):
    """Weights ``w`` with ``sum_j w_j p(u_j) = int_0^h e^{u - h} p(u) du`` for every polynomial ``p`` of degree
    ``< len(nodes)`` (interpolatory quadrature of the exponential integrator, nodes ``u_j`` relative to ``lambda_s``).

    The moments ``I_k = int_0^h e^{u-h} u^k du`` follow ``I_0 = 1 - e^{-h}``, ``I_k = h^k - k I_{k-1}``.
    """
    m = len(nodes)
    moments = [-math.expm1(-h)]
    for k in range(1, m):
        moments.append(h**k - k * moments[-1])
    vander = np.vander(np.asarray(nodes, dtype=np.float64), m, increasing=True)  # rows: nodes, cols: powers
    return np.linalg.solve(vander.T, np.asarray(moments))


# Presets of the exponential predictor-corrector engine (``sdekit.solvers.exp_pc``), registered here to keep their
# place in the registry's order: the same numbers bit for bit as the engine with these options.
register_preset("dpmpp_3m_pc", "dpmpp_pc", order=3, corrector=True, lower_order_final=False)
register_preset("dpmpp_3m_sde", "dpmpp_sde_pc", order=3, corrector=False, lower_order_final=True)
