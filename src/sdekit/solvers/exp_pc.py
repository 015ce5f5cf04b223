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

Gaussian linear part (``sigma_data``): with the data standard deviation ``sigma_data`` (EDM's constant) the
denoiser of Gaussian data ``N(0, sigma_data^2 I)``, ``c(lambda) x_hat`` with ``x_hat = x / alpha``,
``s = e^{-lambda} = sigma / alpha`` and ``c = sigma_data^2 / (sigma_data^2 + s^2)`` (EDM's ``c_skip``), is moved
into the linear part, which is then integrated exactly, and the polynomial extrapolates the rest of the
denoiser in EDM's output scaling, ``F = (D - c x_hat) / c_out`` with ``c_out = s sigma_data / sqrt(s^2 +
sigma_data^2)`` (the network output ``F`` of EDM's preconditioning)::

    ODE:  x_hat_t = Phi x_hat_s + int Phi(lambda_t, l) c_out(l) F(l) dl
    SDE:  x_hat_t = Phi^2 x_hat_s + int 2 Phi(lambda_t, l)^2 c_out(l) F(l) dl
                    + sqrt((s_t^2 + sd^2)(s_s^2 - s_t^2) / (s_s^2 + sd^2)) z

(``sd = sigma_data``, ``Phi(a, b) = sqrt((s_a^2 + sd^2) / (s_b^2 + sd^2))``, ``Phi = Phi(lambda_t, lambda_s)``,
``l`` runs over the step in log-SNR). The weights are Gauss--Legendre quadratures of the Lagrange basis against
these kernels (no closed form). For Gaussian data with standard deviation ``sigma_data`` and mean 0, ``F = 0`` and
every step is exact, at any step count; for other data the Gaussian part of the denoiser, which dominates at large
noise, is integrated without error and ``F`` is extrapolated instead of ``D``. The gain is largest at the fewest
steps: at 10 NFE the endpoint error falls 1.7x (log-SNR grid) to 12x (Karras grid) on the mixture of
``benchmarks/bench_samplers.py`` and 3x on the ``ring8`` mixture; at 20--40 NFE it ranges from 1.8x better to 1.4x
worse (``blobs3``, thin well-separated components, EDM). The idea is the one of DPM-Solver-v3 (Zheng et al. 2023,
"DPM-Solver-v3: Improved Diffusion ODE Solver with Empirical Model Statistics"), which moves a linear part of the
model into the exact integral; here that part is the Gaussian denoiser fixed by ``sigma_data`` instead of statistics
estimated from the model. ``sigma_data=None`` (the default) is DPM-Solver++'s data prediction with closed-form
weights. Orders are unchanged.

Presets (:func:`~sdekit.solvers.base.register_preset`, registered in :mod:`~sdekit.solvers.dpm_solver`):
``dpmpp_3m_pc`` is ``dpmpp_pc(order=3, corrector=True, lower_order_final=False)`` (order 4 at 1 NFE per step),
and ``dpmpp_3m_sde`` is ``dpmpp_sde_pc(order=3, corrector=False, lower_order_final=True)``: SDE-DPM-Solver++(3M)
with the exact weights of its interpolation (k-diffusion's ``sample_dpmpp_3m_sde`` with eta = 1 is the same
scheme with a halved second-difference weight). Warm-up: the predictor order grows with the history (1, 2, ...).
``lower_order_final=True`` caps the predictor order on the last steps at ``n_steps - k`` when there are fewer
than 15 steps (diffusers' rule for few steps).
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import boolean, integer_in, positive_number
from ._common import coeffs, linear_sde_of, log_snr, score_at
from .affine import PROBE_E, PROBE_X, PROBE_X_PREV, PROBE_Z, PROBE_Z_PREV, AffineCoefficients, probe
from .base import FixedStepSolver, register
from .dpm_solver import LOWER_ORDER_FINAL_STEPS, exp_adams_weights

__all__ = ["ExpPredictorCorrector", "ExpPredictorCorrectorSDE", "gaussian_part_weights"]

MAX_ORDER = 4  # beyond this the interpolation through few widely spaced log-SNR nodes is ill-conditioned
# Gauss--Legendre nodes per panel, and log-SNR length of a panel, of the sigma_data weights: the kernels vary like
# e^{-2 u} at worst, so a panel of length 2 is resolved to round-off by far fewer than 32 nodes
_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)
_PANEL = 2.0


class _ExpPC(FixedStepSolver):
    nfe_per_step = 1
    default_grid = "log_snr"  # equal steps in lambda, the variable of the exponential integrator
    kernel = 1.0  # ODE: e^{u - h}; SDE: 2 e^{2(u - h)}, i.e. the ODE kernel at doubled nodes and step

    def __init__(
        self,
        order: int = 3,
        corrector: bool = True,
        lower_order_final: bool = False,
        corrector_order: int | None = None,
        sigma_data: float | None = None,
    ):
        order = integer_in("order", order, 1, MAX_ORDER)
        corrector_order = integer_in(
            "corrector_order", order + 1 if corrector_order is None else corrector_order, 2, MAX_ORDER + 1
        )
        corrector = boolean("corrector", corrector)
        lower_order_final = boolean("lower_order_final", lower_order_final)
        if sigma_data is not None:
            sigma_data = positive_number("sigma_data", sigma_data)
        self.sigma_data = sigma_data
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
            f"lower_order_final={self.lower_order_final}, corrector_order={self.corrector_order}, "
            f"sigma_data={self.sigma_data})"
        )

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def evaluation_coefficients(self, sde, t: float) -> tuple[float, float, float]:
        """``(e0, e1, e2)`` with the interpolated quantity ``(e0 x + e1 score(x, t)) / e2`` at time ``t``: the data
        prediction ``D`` (``1, sigma^2, alpha``), or with ``sigma_data`` EDM's ``F = (D - c x_hat) / c_out``."""
        alpha, sigma = coeffs(sde, t)
        if self.sigma_data is None:
            return 1.0, sigma * sigma, alpha
        sd2, s = self.sigma_data**2, sigma / alpha
        c_out = s * self.sigma_data / math.sqrt(s * s + sd2)
        return s * s / (s * s + sd2), sigma * sigma, alpha * c_out

    def _evaluate(self, process, sde, x, t):
        # the formula the numba kernel applies to the same coefficients (with e0 = 1, bit for bit Tweedie's D)
        e0, e1, e2 = self.evaluation_coefficients(sde, t)
        return (e0 * x + e1 * score_at(process, x, t)) / e2

    def _denoised(self, sde, x, t, value):
        """The data prediction ``D`` at the evaluated ``x`` from the interpolated value (``D`` itself, or EDM's ``F``
        with ``sigma_data``: ``e2 F = e0 x + sigma^2 score`` and ``alpha D = x + sigma^2 score``)."""
        if self.sigma_data is None:
            return value
        e0, _, e2 = self.evaluation_coefficients(sde, t)
        return (e2 * value + (1.0 - e0) * x) / coeffs(sde, t)[0]

    def _decay(self, alpha_to, sigma_to, alpha_from, sigma_from, h):
        """The exact linear propagator of ``x`` over a log-SNR step ``h`` between the marginal coefficients
        ``(alpha_from, sigma_from)`` and ``(alpha_to, sigma_to)``."""
        if self.sigma_data is None:
            return sigma_to / sigma_from * (math.exp(-h) if self.kernel == 2.0 else 1.0)
        sd2 = self.sigma_data**2
        ratio = ((sigma_to / alpha_to) ** 2 + sd2) / ((sigma_from / alpha_from) ** 2 + sd2)
        return alpha_to / alpha_from * (ratio if self.kernel == 2.0 else math.sqrt(ratio))

    def _weights(self, lam_from, nodes, h):
        """Weights of the interpolated values at ``nodes`` (log-SNR, relative to ``lam_from``) over ``[0, h]``."""
        c = self.kernel
        if self.sigma_data is None:
            return exp_adams_weights([c * u for u in nodes], c * h)
        return gaussian_part_weights(self.sigma_data, c, lam_from, nodes, h)

    def _quadrature(self, x, decay, alpha_to, lam_from, nodes, ds, h):
        w = self._weights(lam_from, nodes, h)
        out = decay * x
        for wj, dj in zip(w, ds):
            out = out + (alpha_to * float(wj)) * dj
        return out

    def _noise(self, alpha_t, sigma_t, h, z):
        return None

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        k = ctx.index
        if k == 0:
            ctx.memory["exp_pc"] = {"lam": [], "d": [], "x_prev": None, "t_prev": None, "noise_prev": None}
        pc = ctx.memory["exp_pc"]
        lam_s = log_snr(sde, t)
        d_s = self._evaluate(process, sde, x, t)
        ctx.denoised = self._denoised(sde, x, t, d_s)  # for the step callback
        if self.corrector and pc["x_prev"] is not None:
            x = self._correct(sde, pc, lam_s, d_s, t)
        return self._predict(sde, pc, lam_s, d_s, x, t, t_next, z, ctx.schedule_index, ctx.schedule_steps)

    def affine_coefficients(self, sde, grid) -> AffineCoefficients:
        """The per-step coefficients of this sampler over ``grid`` on the linear SDE ``sde`` (see
        :mod:`sdekit.solvers.affine`): :meth:`step`'s corrector and predictor run on probe vectors.

        Before each step the kept state is renamed into probes: the stored evaluations become ``E_{k-1}, E_{k-2},
        ...``, ``x_prev`` the probe ``x_prev`` and the kept noise ``C_{k-1} z_{k-1}`` the coefficient ``C_{k-1}`` on
        ``z_{k-1}`` (the corrector adds the previous step's noise term again).
        """
        grid = np.asarray(grid, dtype=np.float64)
        steps = len(grid) - 1
        tab = AffineCoefficients.zeros(steps)
        ev, pred, corr, counts = tab
        noisy = self.n_noise > 0
        pc = {"lam": [], "d": [], "x_prev": None, "t_prev": None, "noise_prev": None}
        for k in range(steps):
            t, t_next = float(grid[k]), float(grid[k + 1])
            ev[k] = self.evaluation_coefficients(sde, t)
            lam_s = log_snr(sde, t)
            q = len(pc["d"])
            pc["d"] = [probe(PROBE_E + q - i) for i in range(q)]  # oldest first
            if pc["x_prev"] is not None:
                pc["x_prev"] = probe(PROBE_X_PREV)
            if pc["noise_prev"] is not None:
                pc["noise_prev"] = pc["noise_prev"][PROBE_Z] * probe(PROBE_Z_PREV)
            ncorr = znoisy = 0
            if self.corrector and pc["x_prev"] is not None:
                v = self._correct(sde, pc, lam_s, probe(PROBE_E), t)
                ncorr = 1 + min(self.corrector_order - 1, q)
                znoisy = int(pc["noise_prev"] is not None)
                corr[k, 0], corr[k, 1] = v[PROBE_X_PREV], v[PROBE_Z_PREV]
                corr[k, 2 : 2 + ncorr] = v[PROBE_E : PROBE_E + ncorr]
            z = [probe(PROBE_Z)] if noisy else None
            v = self._predict(sde, pc, lam_s, probe(PROBE_E), probe(PROBE_X), t, t_next, z, k, steps)
            npred = self._predictor_order(k, q + 1, steps)
            pred[k, 0], pred[k, 1] = v[PROBE_X], (v[PROBE_Z] if noisy else 0.0)
            pred[k, 2 : 2 + npred] = v[PROBE_E : PROBE_E + npred]
            counts[k] = npred, ncorr, int(noisy), int(self.corrector), znoisy
        return tab

    def _correct(self, sde, pc, lam_s, d_s, t):
        """Corrector: re-integrate ``[t_prev, t]`` from ``x_prev`` with ``D(x~_t)`` as one more interpolation
        node, adding the step's noise again. Linear in ``x_prev``, the ``D`` and the noise
        (:meth:`affine_coefficients` reads its coefficients off probe vectors)."""
        alpha_s, sigma_s = coeffs(sde, t)
        lam_p = pc["lam"][-1]
        hp = lam_s - lam_p
        m = self.corrector_order - 1
        nodes = [hp] + [lj - lam_p for lj in pc["lam"][::-1][:m]]
        ds = [d_s] + pc["d"][::-1][:m]
        decay = self._decay(alpha_s, sigma_s, *coeffs(sde, pc["t_prev"]), hp)
        x = self._quadrature(pc["x_prev"], decay, alpha_s, lam_p, nodes, ds, hp)
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
        pc["lam"].append(lam_s)
        pc["d"].append(d_s)
        order = self._predictor_order(k, len(pc["lam"]), n_steps)
        del pc["lam"][: -self._keep], pc["d"][: -self._keep]
        h = log_snr(sde, t_next) - lam_s
        alpha_t, sigma_t = coeffs(sde, t_next)
        nodes = [lj - lam_s for lj in pc["lam"][::-1][:order]]
        decay = self._decay(alpha_t, sigma_t, *coeffs(sde, t), h)
        x_next = self._quadrature(x, decay, alpha_t, lam_s, nodes, pc["d"][::-1][:order], h)
        noise = self._noise(alpha_t, sigma_t, h, z)
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

    def _noise(self, alpha_t, sigma_t, h, z):
        if self.sigma_data is None:
            return (sigma_t * math.sqrt(max(-math.expm1(-2.0 * h), 0.0))) * z[0]
        # the linear part's exact noise variance (s_t^2 + sd^2)(s_s^2 - s_t^2) / (s_s^2 + sd^2), s = sigma / alpha
        sd2, s_t2 = self.sigma_data**2, (sigma_t / alpha_t) ** 2
        s_s2 = s_t2 * math.exp(2.0 * h)
        var = (s_t2 + sd2) * s_t2 * math.expm1(2.0 * h) / (s_s2 + sd2)
        return (alpha_t * math.sqrt(max(var, 0.0))) * z[0]


def gaussian_part_weights(sigma_data: float, kernel: float, lam_from: float, nodes, h: float) -> np.ndarray:
    """Weights ``w_j = int_0^h K(u) l_j(u) du`` of the ``sigma_data`` schemes (see the module docstring): ``l_j``
    the Lagrange basis on ``nodes`` (log-SNR relative to ``lam_from``), ``K(u) = kernel Phi(lambda_t,
    lambda_from + u)^kernel c_out(lambda_from + u)``, ``kernel`` 1 (ODE) or 2 (SDE). Composite Gauss--Legendre
    on panels of log-SNR length at most 2 (exact to round-off for these smooth kernels)."""
    nodes = np.asarray(nodes, dtype=np.float64)
    panels = max(1, math.ceil(abs(h) / _PANEL))
    edges = np.linspace(0.0, h, panels + 1)
    u = (0.5 * (edges[1:] - edges[:-1])[:, None] * _GL_X + 0.5 * (edges[1:] + edges[:-1])[:, None]).ravel()
    wq = (0.5 * (edges[1:] - edges[:-1])[:, None] * _GL_W).ravel()
    sd2 = sigma_data * sigma_data
    s2 = np.exp(-2.0 * (lam_from + u))  # (sigma / alpha)^2 along the step
    s2_to = math.exp(-2.0 * (lam_from + h))
    phi = (s2_to + sd2) / (s2 + sd2)
    k = kernel * (phi if kernel == 2.0 else np.sqrt(phi)) * np.sqrt(s2) * sigma_data / np.sqrt(s2 + sd2)
    w = np.empty(len(nodes))
    for j in range(len(nodes)):
        others = np.delete(nodes, j)
        basis = np.prod((u[:, None] - others) / (nodes[j] - others), axis=1)
        w[j] = np.sum(wq * k * basis)
    return w
