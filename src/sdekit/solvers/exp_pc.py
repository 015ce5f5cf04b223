"""Exponential multistep predictor-corrector samplers of any order, for the probability-flow ODE and the reverse
SDE of a linear SDE (the UniPC construction, Zhao et al. 2023, with exact interpolatory exponential weights).

In the log-SNR variable ``lambda`` both processes have an exact variation-of-constants form over a step
``[s, t]`` with ``h = lambda_t - lambda_s``::

    ODE:  x_t = (sigma_t / sigma_s) x_s + alpha_t int_0^h e^{u - h} D(lambda_s + u) du
    SDE:  x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t int_0^h 2 e^{2(u - h)} D(lambda_s + u) du
                + sigma_t sqrt(1 - e^{-2h}) z

(``D`` the data prediction). The predictor replaces ``D`` by the polynomial through the last ``order`` data
predictions (exponential Adams--Bashforth, weights from :func:`~sdekit.solvers.dpm_solver.exp_adams_weights`;
the SDE kernel is the ODE kernel at doubled nodes and step). With ``corrector=True`` the data prediction at
the predicted point, which the next step evaluates anyway, is added as one more node and the step just taken
is integrated again from its start (exponential Adams--Moulton, UniPC's corrector); for the SDE the corrected
step reuses the same noise ``z``, so the corrector changes only the drift quadrature. Cost: 1 NFE per step.
The last step is never corrected (that would cost an NFE).

Orders: with predictor order ``p = order`` and a corrector on ``c = corrector_order`` nodes (default
``p + 1``), the deterministic order is ``min(c, p + 1)`` (PECE: the corrected step's quadrature error is
``O(h^{c+1})``, and the predicted point enters with weight ``~h``, adding ``O(h^{p+2})``); ``p`` without the
corrector. For the reverse SDE the noise enters with its
exact variance, so strong and weak order are 1 (as for SDE-DPM-Solver++).

``dpmpp_pc(order=3, corrector=True, lower_order_final=False)`` is the same scheme as ``dpmpp_3m_pc`` (the
tests check it to round-off). Warm-up: the predictor order grows with the history (1, 2, ...).
``lower_order_final=True`` caps the predictor order on the last steps at ``n_steps - k`` when there are fewer
than 15 steps (diffusers' rule for few steps).
"""

from __future__ import annotations

import math
import numbers

from ._common import coeffs, data_prediction, linear_sde_of, log_snr
from .base import Solver, register
from .dpm_solver import LOWER_ORDER_FINAL_STEPS, exp_adams_weights

__all__ = ["ExpPredictorCorrector", "ExpPredictorCorrectorSDE"]

MAX_ORDER = 4  # beyond this the interpolation through few widely spaced log-SNR nodes is ill-conditioned


class _ExpPC(Solver):
    nfe_per_step = 1
    kernel = 1.0  # ODE: e^{u - h}; SDE: 2 e^{2(u - h)}, i.e. the ODE kernel at doubled nodes and step

    def __init__(
        self,
        order: int = 3,
        corrector: bool = True,
        lower_order_final: bool = False,
        corrector_order: int | None = None,
    ):
        if isinstance(order, bool) or not isinstance(order, numbers.Integral) or not 1 <= order <= MAX_ORDER:
            raise ValueError(f"order must be an integer in 1..{MAX_ORDER}, got {order!r}")
        if corrector_order is None:
            corrector_order = int(order) + 1
        if (
            isinstance(corrector_order, bool)
            or not isinstance(corrector_order, numbers.Integral)
            or not 2 <= corrector_order <= MAX_ORDER + 1
        ):
            raise ValueError(
                f"corrector_order must be None or an integer in 2..{MAX_ORDER + 1}, got {corrector_order!r}"
            )
        if not isinstance(corrector, bool):
            raise TypeError(f"corrector must be a bool, got {corrector!r}")
        if not isinstance(lower_order_final, bool):
            raise TypeError(f"lower_order_final must be a bool, got {lower_order_final!r}")
        self.multistep_order = int(order)
        self.corrector = corrector
        self.corrector_order = int(corrector_order)
        self.lower_order_final = lower_order_final
        # the corrected step has local error O(h^{c+1}) from its quadrature plus O(h^{p+2}) from the predicted
        # point it evaluates (predictor error times the node's weight ~ h): global order min(c, p + 1)
        self.order = min(self.corrector_order, int(order) + 1) if corrector else int(order)
        self._keep = max(self.multistep_order, self.corrector_order - 1 if corrector else 1)

    def __repr__(self):
        return (
            f"{type(self).__name__}(order={self.multistep_order}, corrector={self.corrector}, "
            f"lower_order_final={self.lower_order_final}, corrector_order={self.corrector_order})"
        )

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def _decay(self, sigma_to, sigma_from, h):
        """The exact linear propagator over a log-SNR step ``h``."""
        return sigma_to / sigma_from * (math.exp(-h) if self.kernel == 2.0 else 1.0)

    def _quadrature(self, x, decay, alpha_to, nodes, ds, h):
        c = self.kernel
        w = exp_adams_weights([c * u for u in nodes], c * h)
        out = decay * x
        for wj, dj in zip(w, ds):
            out = out + (alpha_to * float(wj)) * dj
        return out

    def _noise(self, sigma_t, h, z):
        return None

    def step(self, process, x, t, t_next, z, state):
        sde = process.sde
        k = state["k"]
        if k == 0:
            state["exp_pc"] = {"lam": [], "d": [], "x_prev": None, "t_prev": None, "noise_prev": None}
        pc = state["exp_pc"]
        lam_s = log_snr(sde, t)
        d_s = data_prediction(process, sde, x, t)
        if self.corrector and pc["x_prev"] is not None:
            x = self._correct(sde, pc, lam_s, d_s, t)
        return self._predict(sde, pc, lam_s, d_s, x, t, t_next, z, k, len(state["grid"]) - 1)

    def _correct(self, sde, pc, lam_s, d_s, t):
        """Corrector: re-integrate ``[t_prev, t]`` from ``x_prev`` with ``D(x~_t)`` as one more interpolation
        node, adding the step's noise again. Linear in ``x_prev``, the ``D`` and the noise (the numba backend
        reads its coefficients off basis vectors)."""
        alpha_s, sigma_s = coeffs(sde, t)
        lam_p = pc["lam"][-1]
        hp = lam_s - lam_p
        m = self.corrector_order - 1
        nodes = [hp] + [lj - lam_p for lj in pc["lam"][::-1][:m]]
        ds = [d_s] + pc["d"][::-1][:m]
        sigma_p = coeffs(sde, pc["t_prev"])[1]
        x = self._quadrature(pc["x_prev"], self._decay(sigma_s, sigma_p, hp), alpha_s, nodes, ds, hp)
        if pc["noise_prev"] is not None:
            x = x + pc["noise_prev"]
        return x

    def _predictor_order(self, k: int, n_hist: int, n_steps: int) -> int:
        """Nodes of the predictor on step ``k`` of ``n_steps`` with ``n_hist`` data predictions in the history."""
        order = min(self.multistep_order, n_hist)
        if self.lower_order_final and n_steps < LOWER_ORDER_FINAL_STEPS:
            order = max(1, min(order, n_steps - k))
        return order

    def _predict(self, sde, pc, lam_s, d_s, x, t, t_next, z, k, n_steps):
        """Predictor from the (corrected) ``x`` at ``t``: appends ``(lambda_s, d_s)`` to the history and keeps
        ``x`` and the noise for the next step's corrector. Linear in ``x``, the ``D`` and ``z``."""
        sigma_s = coeffs(sde, t)[1]
        pc["lam"].append(lam_s)
        pc["d"].append(d_s)
        order = self._predictor_order(k, len(pc["lam"]), n_steps)
        del pc["lam"][: -self._keep], pc["d"][: -self._keep]
        h = log_snr(sde, t_next) - lam_s
        alpha_t, sigma_t = coeffs(sde, t_next)
        nodes = [lj - lam_s for lj in pc["lam"][::-1][:order]]
        x_next = self._quadrature(x, self._decay(sigma_t, sigma_s, h), alpha_t, nodes, pc["d"][::-1][:order], h)
        noise = self._noise(sigma_t, h, z)
        if noise is not None:
            x_next = x_next + noise
        pc["x_prev"], pc["t_prev"], pc["noise_prev"] = x, t, noise
        return x_next


@register
class ExpPredictorCorrector(_ExpPC):
    """Exponential Adams predictor (``order`` nodes) with an Adams--Moulton corrector for the probability-flow
    ODE: order ``order + 1`` (``order`` without the corrector), 1 NFE per step. See the module docstring."""

    name = "dpmpp_pc"
    is_ode = True


@register
class ExpPredictorCorrectorSDE(_ExpPC):
    """SDE-DPM-Solver++ of any multistep order with a UniPC-style corrector that reuses the step's noise.

    Deterministic order ``order + 1`` (``order`` without the corrector); strong and weak order 1 for the
    reverse SDE; 1 NFE per step, one normal field per step. See the module docstring.
    """

    name = "dpmpp_sde_pc"
    is_sde = True
    n_noise = 1
    n_brownian = 1
    strong_order = 1.0
    weak_order = 1.0
    kernel = 2.0

    def _noise(self, sigma_t, h, z):
        return (sigma_t * math.sqrt(max(-math.expm1(-2.0 * h), 0.0))) * z[0]
