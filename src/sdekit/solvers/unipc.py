"""UniPC: the unified predictor-corrector of Zhao et al. 2023 ("UniPC: A Unified Predictor-Corrector Framework for
Fast Sampling of Diffusion Models", Alg. 1--3), with the B(h) variants ``bh1`` and ``bh2`` of its sec. 3.2 and
appendix, as diffusers' ``UniPCMultistepScheduler`` computes them.

In the log-SNR ``lambda = log(alpha / sigma)`` with ``h = lambda_t - lambda_s`` and the data prediction
``m = D`` (``prediction="data"``, UniPC's ``predict_x0``) the predictor UniP-p from ``x`` at ``s`` is::

    x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) m_0 - alpha_t B(h) sum_{i<p} rho_i (m_i - m_0) / r_i,

with ``r_i = (lambda_{s_i} - lambda_s) / h`` for the earlier history points ``s_i``. The ``rho`` solve the order
conditions ``sum_i rho_i r_i^{k-1} = k! h phi_{k+1}(h) / B(h)``, ``k = 1..p-1`` (``phi`` the exponential
integrator's phi functions at ``-h``), except that UniP-2 takes ``rho = 1/2``. The corrector UniC-p re-integrates
the step just taken, from its start, once ``m_t`` at the predicted point is known (the evaluation the next step
needs anyway): the same formula with ``m_t`` as one more node at ``r = 1`` and the full ``p x p`` system, except
that UniC-1 takes ``rho = 1/2``. ``B(h) = -h`` (bh1) or ``e^{-h} - 1`` (bh2). ``prediction="noise"`` is the same
in the noise prediction ``m = eps`` with ``h -> -h`` and ``x_t = (alpha_t / alpha_s) x - sigma_t (...)``.

Relation to ``dpmpp_pc``: wherever the ``rho`` are solved, ``B(h)`` cancels and the weights are the exact
interpolatory exponential-integrator weights, i.e. ``dpmpp_pc``'s (tested to round-off); the two simplified cases
(UniP-2 and UniC-1, which every warm-up passes through) are what bh1 and bh2 change, and no ``B(h)`` gives the exact
weights there, so ``dpmpp_pc`` is "UniPC with exact weights everywhere" and ``unipc`` is its own engine.

Schedule of orders (diffusers'): step ``k`` of ``N`` predicts with ``p_k = min(order, k + 1)`` points, and with
``lower_order_final=True`` (diffusers' default, at every step count) at most ``N - k``; the corrector applied at
the start of step ``k`` is UniC-``p_{k-1}``. ``corrector=False`` gives UniP alone; ``disable_corrector`` lists the
steps whose result is left uncorrected (diffusers' ``disable_corrector``). The last step is never corrected (that
would cost an evaluation). 1 NFE per step.
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import boolean, integer_in, one_of
from ._common import coeffs, data_prediction, linear_sde_of, log_snr, score_at
from .affine import HISTORY, PROBE_E, PROBE_X, PROBE_X_PREV, AffineCoefficients, probe
from .base import FixedStepSolver, register

__all__ = ["UniPC", "unipc_rhos"]

VARIANTS = ("bh1", "bh2")
PREDICTIONS = ("data", "noise")


def unipc_rhos(rks, h: float, variant: str, prediction: str, corrector: bool):
    """``(B(h), rho)`` of UniP-p (``corrector=False``; ``rks``: the ``p - 1`` ratios of the earlier points) or
    UniC-p (``corrector=True``; ``rks``: the ``p - 1`` earlier ratios, the new point's ``r = 1`` is added here).

    UniP-2 and UniC-1 take the simplified ``rho = [1/2]``; the other orders solve the order conditions.
    """
    hh = -h if prediction == "data" else h
    b_h = hh if variant == "bh1" else math.expm1(hh)
    rks = list(rks) + [1.0]
    p = len(rks) if corrector else len(rks) - 1
    if p == 0:
        return b_h, np.zeros(0)
    if (corrector and p == 1) or (not corrector and p == 1):
        return b_h, np.array([0.5])
    # b_k = k! h phi_{k+1}(hh) / B(h) through the recursion of the reference implementations
    h_phi_k = math.expm1(hh) / hh - 1.0
    factorial = 1
    b = []
    for k in range(1, p + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    r = np.asarray(rks[:p] if not corrector else rks, dtype=np.float64)
    mat = np.vander(r, p, increasing=True).T  # row k: r_i^k
    return b_h, np.linalg.solve(mat, np.asarray(b))


@register
class UniPC(FixedStepSolver):
    """UniPC-``order`` (default 3, predictor order ``order``, corrected to ``order + 1``) for the probability-flow
    ODE of a linear SDE, with ``variant`` ``"bh1"`` or ``"bh2"`` (default, diffusers' default) and data or noise
    prediction; see the module docstring. Declared order ``order + 1`` with the corrector, ``order`` without
    (measured with ``lower_order_final=False``; with it the last steps' lower orders add an ``O(h^2)`` term that is
    tiny next to the rest in practice). 1 NFE per step."""

    name = "unipc"
    is_ode = True
    nfe_per_step = 1
    default_grid = "time_uniform"  # measured best of the named grids at 5-20 NFE (benchmarks/bench_fewstep.py)

    def __init__(
        self,
        order: int = 3,
        variant: str = "bh2",
        prediction: str = "data",
        corrector: bool = True,
        disable_corrector=(),
        lower_order_final: bool = True,
    ):
        self.multistep_order = integer_in("order", order, 1, 6)
        one_of("variant", variant, VARIANTS)
        one_of("prediction", prediction, PREDICTIONS)
        self.variant, self.prediction = variant, prediction
        self.corrector = boolean("corrector", corrector)
        try:
            self.disable_corrector = frozenset(integer_in("disable_corrector", k, 0, 10**9) for k in disable_corrector)
        except TypeError:
            raise ValueError(f"disable_corrector must be a list of step indices, got {disable_corrector!r}") from None
        self.lower_order_final = boolean("lower_order_final", lower_order_final)
        self.order = self.multistep_order + (1 if self.corrector else 0)

    def __repr__(self):
        return (
            f"UniPC(order={self.multistep_order}, variant={self.variant!r}, prediction={self.prediction!r}, "
            f"corrector={self.corrector}, disable_corrector={sorted(self.disable_corrector)}, "
            f"lower_order_final={self.lower_order_final})"
        )

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def _model(self, process, sde, x, t):
        if self.prediction == "data":
            return data_prediction(process, sde, x, t)
        _, sigma = coeffs(sde, t)
        return -sigma * score_at(process, x, t)

    def _update(self, sde, x, t_from, t_to, lams, ms, rho, b_h):
        """``x`` at ``t_from`` -> ``t_to`` with the history values ``ms`` (``ms[0]`` at ``t_from``, then earlier ones,
        then, for the corrector, the new value) and their log-SNRs ``lams``; linear in ``x`` and the ``ms``."""
        alpha_s, sigma_s = coeffs(sde, t_from)
        alpha_t, sigma_t = coeffs(sde, t_to)
        h = log_snr(sde, t_to) - lams[0]
        if self.prediction == "data":
            base, scale, phi1 = sigma_t / sigma_s, alpha_t, math.expm1(-h)
        else:
            base, scale, phi1 = alpha_t / alpha_s, sigma_t, math.expm1(h)
        m0 = ms[0]
        out = base * x - (scale * phi1) * m0
        for j, rho_j in enumerate(rho):
            lam_j, m_j = lams[j + 1], ms[j + 1]
            rk = (lam_j - lams[0]) / h if lam_j is not None else 1.0
            out = out - (scale * b_h * float(rho_j) / rk) * (m_j - m0)
        return out

    def _evaluation(self, sde, t):
        """``(e0, e1, e2)`` with ``m = (e0 x + e1 score) / e2`` (:mod:`sdekit.solvers.affine`), as :meth:`_model`."""
        alpha, sigma = coeffs(sde, t)
        return (1.0, sigma * sigma, alpha) if self.prediction == "data" else (0.0, -sigma, 1.0)

    def _corrected(self, sde, x_prev, t_prev, t, lam, lams_hist, ms_hist, m_t, p):
        """UniC-``p``: re-integrate ``[t_prev, t]`` from ``x_prev`` with ``m_t`` (at log-SNR ``lam``) as one more
        node (``r = 1``); ``lams_hist``, ``ms_hist``: the history before ``m_t``, most recent first."""
        lams, ms = lams_hist[:p], ms_hist[:p]
        h = lam - lams[0]
        b_h, rho = unipc_rhos([(lj - lams[0]) / h for lj in lams[1:]], h, self.variant, self.prediction, True)
        return self._update(sde, x_prev, t_prev, t, lams + [None], ms + [m_t], rho, b_h)

    def _predicted(self, sde, x, t, t_next, lams, ms):
        """UniP-``len(lams)`` from ``x`` at ``t`` with the history ``lams``, ``ms`` (most recent first, at ``t``)."""
        h = log_snr(sde, t_next) - lams[0]
        b_h, rho = unipc_rhos([(lj - lams[0]) / h for lj in lams[1:]], h, self.variant, self.prediction, False)
        return self._update(sde, x, t, t_next, lams, ms, rho, b_h)

    def _predictor_order(self, k: int, n_hist: int, n_steps: int) -> int:
        p = min(self.multistep_order, n_hist)
        if self.lower_order_final:
            p = max(1, min(p, n_steps - k))
        return p

    def _corrects(self, k: int, offset: int = 0) -> bool:
        """True when step ``k`` starts with the corrector of step ``k - 1``'s result (``disable_corrector`` counts
        the steps of the whole schedule, ``offset`` of them before this solve: ``StepContext.offset``)."""
        return self.corrector and k > 0 and (offset + k - 1) not in self.disable_corrector

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        k = ctx.index
        if k == 0:
            ctx.memory["unipc"] = {"lam": [], "m": [], "x_prev": None, "t_prev": None, "order_prev": 0}
        st = ctx.memory["unipc"]
        lam = log_snr(sde, t)
        m_t = self._model(process, sde, x, t)
        if self.prediction == "data":
            ctx.denoised = m_t  # for the step callback
        else:
            alpha, sigma = coeffs(sde, t)
            ctx.denoised = (x - sigma * m_t) / alpha
        if self._corrects(k, ctx.offset):
            # UniC-p_{k-1}: re-integrate [t_prev, t] with m_t as one more node (r = 1)
            x = self._corrected(
                sde, st["x_prev"], st["t_prev"], t, lam, st["lam"][::-1], st["m"][::-1], m_t, st["order_prev"]
            )
        st["lam"].append(lam)
        st["m"].append(m_t)
        del st["lam"][: -self.multistep_order], st["m"][: -self.multistep_order]
        p = self._predictor_order(k, len(st["lam"]), ctx.n_steps)
        x_next = self._predicted(sde, x, t, t_next, st["lam"][::-1][:p], st["m"][::-1][:p])
        st["x_prev"], st["t_prev"], st["order_prev"] = x, t, p
        return x_next

    @property
    def has_affine_coefficients(self) -> bool:
        """True when :meth:`affine_coefficients` fits the affine kernel's history (``order <= 4``: the corrector
        combines ``order + 1`` evaluations, at most :data:`~sdekit.solvers.affine.HISTORY`)."""
        return self.multistep_order + 1 <= HISTORY

    def affine_coefficients(self, sde, grid) -> AffineCoefficients:
        """The per-step coefficients over ``grid`` on the linear SDE ``sde`` (:mod:`sdekit.solvers.affine`): the
        evaluation is ``m`` (data or noise prediction), the corrector (``cx x_prev + sum_j w_j E_{k-j}``) and the
        predictor are :meth:`step`'s own, run on probe vectors. ``ValueError`` when ``order > 4``."""
        if not self.has_affine_coefficients:
            raise ValueError(
                f"affine_coefficients covers unipc orders up to {HISTORY - 1}, got order={self.multistep_order}"
            )
        grid = np.asarray(grid, dtype=np.float64)
        steps = len(grid) - 1
        tab = AffineCoefficients.zeros(steps)
        lams: list = []  # most recent first
        p_prev = 0
        for k in range(steps):
            t, t_next = float(grid[k]), float(grid[k + 1])
            lam = log_snr(sde, t)
            tab.ev[k] = self._evaluation(sde, t)
            nc = 0
            if self._corrects(k):
                hist = [probe(PROBE_E + 1 + j) for j in range(len(lams))]
                v = self._corrected(
                    sde, probe(PROBE_X_PREV), float(grid[k - 1]), t, lam, lams, hist, probe(PROBE_E), p_prev
                )
                nc = p_prev + 1
                tab.corr[k, 0] = v[PROBE_X_PREV]
                tab.corr[k, 2 : 2 + nc] = v[PROBE_E : PROBE_E + nc]
            lams.insert(0, lam)
            del lams[self.multistep_order :]
            p = self._predictor_order(k, len(lams), steps)
            v = self._predicted(sde, probe(PROBE_X), t, t_next, lams[:p], [probe(PROBE_E + j) for j in range(p)])
            tab.pred[k, 0] = v[PROBE_X]
            tab.pred[k, 2 : 2 + p] = v[PROBE_E : PROBE_E + p]
            tab.counts[k] = p, nc, 0, int(self.corrector), 0
            p_prev = p
        return tab
