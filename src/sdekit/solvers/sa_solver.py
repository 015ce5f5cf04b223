"""SA-Solver: stochastic Adams predictor-corrector (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver for Fast
Sampling of Diffusion Models", Alg. 1, data-prediction form; diffusers' ``SASolverScheduler``).

The reverse process with stochasticity ``tau`` (``tau = 0``: the probability-flow ODE, ``tau = 1``: the reverse
SDE) has, over a log-SNR step ``h = lambda_t - lambda_s``, the exact variation-of-constants form::

    x_t = e^{-tau^2 h} (sigma_t / sigma_s) x_s + alpha_t (1 + tau^2) int_0^h e^{(1 + tau^2)(u - h)} D(lambda_s + u) du
          + sigma_t sqrt(1 - e^{-2 tau^2 h}) z

(``D`` the data prediction). The SA-Predictor replaces ``D`` by its Lagrange interpolant through the last
``predictor_order`` data predictions (exponential Adams--Bashforth with the kernel ``c e^{c(u-h)}``, ``c = 1 +
tau^2``: the weights of :func:`~sdekit.solvers.dpm_solver.exp_adams_weights` at nodes and step scaled by ``c``);
the SA-Corrector re-integrates the step just taken, from its start and with the same noise ``z``, once the data
prediction at the predicted point is known, through ``corrector_order`` points including that one (exponential
Adams--Moulton). As in the reference code, second-order predictor and corrector steps add the ``O(h^3)`` term of
UniPC's simplified second-order formula (the paper's "modification", on by default, ``modified=False`` turns it
off). The corrector costs nothing (the next step evaluates there anyway); the last step is not corrected.

Orders (diffusers' schedule): step ``k`` of ``N`` predicts with ``min(predictor_order, k + 1)`` points and
prepares a corrector of ``min(corrector_order, k + 2)`` points; ``lower_order_final=True`` (default) also caps
them at ``N - k`` and ``N - k + 1``. ``tau`` applies on the steps that start at a noise level ``sigma / alpha`` in
``tau_interval`` (default: all; diffusers' default applies ``tau = 1`` for training timesteps 200..800 of a
1000-step DDPM schedule, i.e. a middle band of noise levels) and is 0 elsewhere. Deterministic order (``tau =
0``) ``min(corrector_order, predictor_order + 1)``; for ``tau > 0`` the output law converges with weak order 1
(measured by the exact law on Gaussian data). One normal field and 1 NFE per step.
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import boolean, integer_in, non_negative_number
from ._common import coeffs, data_prediction, linear_sde_of, log_snr, sqrt_pos
from .affine import PROBE_E, PROBE_X, PROBE_X_PREV, PROBE_Z, PROBE_Z_PREV, AffineCoefficients, probe
from .base import FixedStepSolver, register
from .dpm_solver import exp_adams_weights

__all__ = ["SASolver", "sa_weights"]


def sa_weights(nodes, h: float, tau: float, modified: bool) -> np.ndarray:
    """Weights ``w_j`` of the data predictions at log-SNR ``nodes`` (relative to the step's start ``lambda_s``,
    most recent first) in ``x_t = ... + alpha_t sum_j w_j D_j`` over a step of log-SNR length ``h``.

    ``w = c I_j`` with ``I_j = int_0^h e^{c(u-h)} l_j(u) du``, ``c = 1 + tau^2``; with ``modified`` and two nodes
    the reference code's second-order correction ``+-e^{...}(h^2/2 - (c h - 1 + e^{-c h}) / c^2) / Delta`` is added
    (``Delta``: the log-SNR distance of the two nodes; for the corrector ``Delta = h``).
    """
    c = 1.0 + tau * tau
    # c int_0^h e^{c(u-h)} p(u) du = int_0^{ch} e^{v-ch} p(v/c) dv: the exponential Adams weights at scaled nodes
    w = exp_adams_weights([c * u for u in nodes], c * h)
    if modified and len(nodes) == 2:
        # the reference code adds e^{c lambda_t} times this to its coefficients, which its gradient part multiplies
        # by c sigma_t e^{-tau^2 lambda_t}: c alpha_t times ``extra`` in x_t
        extra = (h * h / 2.0 - (c * h - 1.0 + math.exp(-c * h)) / (c * c)) / (nodes[0] - nodes[1])
        w[0] += c * extra
        w[1] -= c * extra
    return w


@register
class SASolver(FixedStepSolver):
    """SA-Solver with ``predictor_order`` (default 3) and ``corrector_order`` (default 3) points and stochasticity
    ``tau`` on the reverse SDE (default 1); see the module docstring. Integrates the reverse SDE (``tau`` as given)
    or the probability-flow ODE (``tau = 0``). 1 NFE per step.

    ``process="auto"`` (in ``sample``, ``k_diffusion_sampler``, ``SdekitScheduler``) runs the probability-flow ODE,
    as for every solver that does both, unless the stochasticity is asked for: ``tau > 0`` or ``tau_interval``
    given explicitly selects the reverse SDE. So ``sa_solver`` is deterministic and ``sa_solver(tau=1.0)`` (or
    ``process="sde"``) is the paper's stochastic sampler."""

    name = "sa_solver"
    is_sde = True
    is_ode = True
    nfe_per_step = 1
    n_noise = 1
    n_brownian = 1
    weak_order = 1.0
    strong_order = None
    default_grid = "log_snr"  # an exponential integrator in lambda, like dpmpp_3m_sde (best exact law at 20 steps)

    def __init__(
        self,
        predictor_order: int = 3,
        corrector_order: int = 3,
        tau: float | None = None,
        tau_interval=None,
        lower_order_final: bool = True,
        modified: bool = True,
    ):
        self.predictor_order = integer_in("predictor_order", predictor_order, 1, 4)
        self.corrector_order = integer_in("corrector_order", corrector_order, 1, 4)
        self.tau = 1.0 if tau is None else non_negative_number("tau", tau)
        # asked-for stochasticity makes the reverse SDE the natural process (default_process)
        self.stochastic = (tau is not None or tau_interval is not None) and self.tau > 0.0
        if tau_interval is not None:
            try:
                lo, hi = (non_negative_number("tau_interval", v, allow_inf=True) for v in tau_interval)
            except (TypeError, ValueError):
                raise ValueError(
                    f"tau_interval must be a pair (lo, hi) of noise levels, got {tau_interval!r}"
                ) from None
            if not lo <= hi:
                raise ValueError(f"tau_interval must have lo <= hi, got {tau_interval!r}")
            tau_interval = (lo, hi)
        self.tau_interval = tau_interval
        self.lower_order_final = boolean("lower_order_final", lower_order_final)
        self.modified = boolean("modified", modified)
        self.multistep_order = max(self.predictor_order, self.corrector_order - 1)
        self.order = min(self.corrector_order, self.predictor_order + 1)

    def __repr__(self):
        return (
            f"SASolver(predictor_order={self.predictor_order}, corrector_order={self.corrector_order}, "
            f"tau={self.tau}, tau_interval={self.tau_interval}, lower_order_final={self.lower_order_final}, "
            f"modified={self.modified})"
        )

    @property
    def default_process(self) -> str:
        """``"sde"`` when ``tau > 0`` or ``tau_interval`` was given, else the probability-flow ODE."""
        return "sde" if self.stochastic else "ode"

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def tau_at(self, sde, t: float, stochastic: bool) -> float:
        """The stochasticity of a step that starts at time ``t`` (0 on the probability-flow ODE)."""
        if not stochastic:
            return 0.0
        if self.tau_interval is None:
            return self.tau
        alpha, sigma = coeffs(sde, t)
        lo, hi = self.tau_interval
        return self.tau if lo <= sigma / alpha <= hi else 0.0

    def _advance(self, sde, x, t_from, t_to, lam_from, nodes, ds, tau, noise):
        """``x`` at ``t_from`` -> ``t_to`` given the data predictions ``ds`` at log-SNR ``nodes`` (relative to
        ``lam_from``); ``noise``: the normal field or ``None``. Linear in ``x``, the ``ds`` and the noise."""
        alpha_s, sigma_s = coeffs(sde, t_from)
        alpha_t, sigma_t = coeffs(sde, t_to)
        h = log_snr(sde, t_to) - lam_from
        w = sa_weights(nodes, h, tau, self.modified)
        out = (math.exp(-tau * tau * h) * sigma_t / sigma_s) * x
        for wj, dj in zip(w, ds):
            out = out + (alpha_t * float(wj)) * dj
        if noise is not None and tau > 0.0:
            out = out + (sigma_t * sqrt_pos(-math.expm1(-2.0 * tau * tau * h))) * noise
        return out

    def _orders(self, k: int, n_steps: int) -> tuple:
        """``(p, c)``: the predictor's points on step ``k`` and those of the corrector it prepares."""
        p, c = self.predictor_order, self.corrector_order
        if self.lower_order_final:
            p, c = min(p, n_steps - k), min(c, n_steps - k + 1)
        return min(p, k + 1), min(c, k + 2)

    def _corrected(self, sde, x_prev, t_prev, t, lam, lams_hist, ds_hist, d, c, tau, z_prev):
        """SA-Corrector: re-integrate ``[t_prev, t]`` from ``x_prev`` through the new data prediction ``d`` (at
        log-SNR ``lam``) and ``c - 1`` earlier ones (``lams_hist``, ``ds_hist``: most recent first), same noise."""
        lam_p = lams_hist[0]
        nodes = [lam - lam_p] + [lj - lam_p for lj in lams_hist[: c - 1]]
        return self._advance(sde, x_prev, t_prev, t, lam_p, nodes, [d] + ds_hist[: c - 1], tau, z_prev)

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        k, n_steps = ctx.index, ctx.n_steps
        stochastic = z is not None
        if k == 0:
            ctx.memory["sa_solver"] = {"lam": [], "d": [], "x_prev": None, "t_prev": None, "z_prev": None, "c": 0}
        st = ctx.memory["sa_solver"]
        lam = log_snr(sde, t)
        d = ctx.denoised = data_prediction(process, sde, x, t)  # (also for the step callback)
        if st["x_prev"] is not None:
            # SA-Corrector: re-integrate [t_prev, t] through the new point and c - 1 earlier ones, same noise
            tau = self.tau_at(sde, st["t_prev"], stochastic)
            x = self._corrected(
                sde, st["x_prev"], st["t_prev"], t, lam, st["lam"][::-1], st["d"][::-1], d, st["c"], tau, st["z_prev"]
            )
        st["lam"].append(lam)
        st["d"].append(d)
        del st["lam"][: -self.multistep_order], st["d"][: -self.multistep_order]
        p, c = self._orders(k, n_steps)
        nodes = [lj - lam for lj in st["lam"][::-1][:p]]
        tau = self.tau_at(sde, t, stochastic)
        noise = z[0] if stochastic else None
        x_next = self._advance(sde, x, t, t_next, lam, nodes, st["d"][::-1][:p], tau, noise)
        st["x_prev"], st["t_prev"], st["z_prev"], st["c"] = x, t, noise, c
        return x_next

    def affine_coefficients(self, sde, grid, stochastic: bool = True) -> AffineCoefficients:
        """The per-step coefficients over ``grid`` on the linear SDE ``sde`` (:mod:`sdekit.solvers.affine`) for the
        reverse SDE (``stochastic=True``) or the probability-flow ODE (``tau = 0``): the evaluation is the data
        prediction, the corrector (``cx x_prev + sum_j w_j E_{k-j} + cz z_{k-1}``, the previous step's noise again)
        and the predictor (``A x + sum_j B_j E_{k-j} + C z_k``) are :meth:`step`'s own, run on probe vectors."""
        grid = np.asarray(grid, dtype=np.float64)
        steps = len(grid) - 1
        tab = AffineCoefficients.zeros(steps)
        lams: list = []  # most recent first
        c_prev = 0
        for k in range(steps):
            t, t_next = float(grid[k]), float(grid[k + 1])
            alpha, sigma = coeffs(sde, t)
            tab.ev[k] = 1.0, sigma * sigma, alpha
            lam = log_snr(sde, t)
            nc = 0
            if k > 0:
                t_prev = float(grid[k - 1])
                tau = self.tau_at(sde, t_prev, stochastic)
                hist = [probe(PROBE_E + 1 + j) for j in range(len(lams))]
                z_prev = probe(PROBE_Z_PREV) if stochastic else None
                v = self._corrected(
                    sde, probe(PROBE_X_PREV), t_prev, t, lam, lams, hist, probe(PROBE_E), c_prev, tau, z_prev
                )
                nc = c_prev
                tab.corr[k, 0], tab.corr[k, 1] = v[PROBE_X_PREV], v[PROBE_Z_PREV]
                tab.corr[k, 2 : 2 + nc] = v[PROBE_E : PROBE_E + nc]
            lams.insert(0, lam)
            del lams[self.multistep_order :]
            p, c = self._orders(k, steps)
            tau = self.tau_at(sde, t, stochastic)
            noise = probe(PROBE_Z) if stochastic else None
            hist = [probe(PROBE_E + j) for j in range(p)]
            v = self._advance(sde, probe(PROBE_X), t, t_next, lam, [lj - lam for lj in lams[:p]], hist, tau, noise)
            tab.pred[k, 0], tab.pred[k, 1] = v[PROBE_X], v[PROBE_Z]
            tab.pred[k, 2 : 2 + p] = v[PROBE_E : PROBE_E + p]
            tab.counts[k] = p, nc, int(stochastic), 1, int(stochastic and nc > 0)
            c_prev = c
        return tab
