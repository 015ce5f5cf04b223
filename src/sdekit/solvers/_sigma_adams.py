"""Adams--Bashforth methods in EDM's noise level: the engine of ``ipndm``, ``ipndm_v`` and ``deis``.

For a linear SDE with marginal coefficients ``alpha(t)``, ``sigma(t)`` write ``x_hat = x / alpha`` and the noise
level ``s = sigma / alpha`` (EDM's ``sigma``; ``rho`` in DEIS). The probability-flow ODE then reads

    d x_hat / d s = eps(x, t),    eps = (x_hat - D) / s = -sigma * score(x, t)

(``D`` the data prediction, ``eps`` the noise prediction; Karras et al. 2022, eq. 4; Zhang & Chen 2022, eq. 12).
A multistep method keeps the last ``order`` values of ``eps`` and advances

    x_hat(s') = x_hat(s) + sum_j w_j eps_{k-j},

with weights that integrate a polynomial through the history over ``[s, s']``. The subclasses differ only in
those weights (:meth:`SigmaAdams.weights`):

* ``ipndm`` -- the fixed coefficients of the equal-step Adams--Bashforth formulas times ``s' - s`` (Zhang & Chen
  2022's improved PNDM in EDM form; zju-pi/diff-sampler ``ipndm_sampler``),
* ``ipndm_v`` -- diff-sampler's variable-step coefficients (``ipndm_v_sampler``),
* ``deis`` -- the exact integral of the Lagrange interpolant of ``eps`` in a chosen variable: VP time (``tab``),
  ``s`` itself (``rhoab``) or ``log s`` (``logrho``, diffusers' ``DEISMultistepScheduler``).

Warm-up: step ``k`` uses ``min(order, k + 1)`` values. With ``afs=True`` (diff-sampler's "analytical first step")
the first step takes ``eps = x_hat / sqrt(1 + s^2)`` instead of a score evaluation (the noise of ``x_hat``
when the data have unit variance, exact in the limit of large ``s``), saving one NFE; the value enters the history
like an evaluated one. ``lower_order_final=True`` lowers the order of the last steps below 15 steps (diffusers'
rule: order 1 on the last step, at most 2 on the one before).
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import boolean, integer_in
from ._common import coeffs, linear_sde_of, score_at
from .affine import PROBE_E, PROBE_X, AffineCoefficients, probe
from .base import FixedStepSolver, StepContext
from .dpm_solver import LOWER_ORDER_FINAL_STEPS

__all__ = ["SigmaAdams", "lagrange_weights", "AB_COEFFICIENTS"]

# equal-step Adams--Bashforth coefficients, most recent value first (Hairer, Norsett & Wanner, Table III.1.1)
AB_COEFFICIENTS = {
    1: (1.0,),
    2: (3.0 / 2.0, -1.0 / 2.0),
    3: (23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0),
    4: (55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0),
}

_GL_X, _GL_W = np.polynomial.legendre.leggauss(24)


def lagrange_weights(nodes, a: float, b: float, jacobian=None, panels: int = 4) -> np.ndarray:
    """``w_j = int_a^b l_j(v) J(v) dv`` for the Lagrange basis ``l_j`` on ``nodes`` (in the variable ``v``).

    ``jacobian``: ``J(v)`` (vectorised; default 1). Composite Gauss--Legendre with ``panels`` panels of 24 nodes,
    exact to round-off for the smooth Jacobians used here (polynomial basis of degree <= 3 times an analytic J).
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    edges = np.linspace(a, b, panels + 1)
    half = 0.5 * (edges[1:] - edges[:-1])[:, None]
    v = (half * _GL_X + 0.5 * (edges[1:] + edges[:-1])[:, None]).ravel()
    wq = (half * _GL_W).ravel()
    if jacobian is not None:
        wq = wq * jacobian(v)
    out = np.empty(len(nodes))
    for j in range(len(nodes)):
        others = np.delete(nodes, j)
        out[j] = np.sum(wq * np.prod((v[:, None] - others) / (nodes[j] - others), axis=1))
    return out


class SigmaAdams(FixedStepSolver):
    """Adams--Bashforth on ``d x_hat / d s = eps`` (see the module docstring); subclasses supply :meth:`weights`."""

    is_ode = True
    nfe_per_step = 1
    default_grid = "time_uniform"  # diff-sampler's schedule for these methods (rho 2; best measured at 5-20 NFE)
    max_order = 4
    memory_key = "sigma_adams"

    def __init__(self, order: int = 4, afs: bool = False, lower_order_final: bool = False):
        self.multistep_order = integer_in("order", order, 1, self.max_order)
        self.order = self.multistep_order
        self.afs = boolean("afs", afs)
        self.lower_order_final = boolean("lower_order_final", lower_order_final)

    def __repr__(self):
        return (
            f"{type(self).__name__}(order={self.multistep_order}, afs={self.afs}, "
            f"lower_order_final={self.lower_order_final})"
        )

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def nfe(self, grid, process=None) -> int:
        """One score evaluation per step, less the analytic first step with ``afs=True``."""
        return len(grid) - 1 - (1 if self.afs else 0)

    def step_order(self, k: int, n_hist: int, n_steps: int) -> int:
        """Number of history values step ``k`` of ``n_steps`` uses (warm-up, optional lower order at the end)."""
        order = min(self.multistep_order, n_hist)
        if self.lower_order_final and n_steps < LOWER_ORDER_FINAL_STEPS:
            order = max(1, min(order, n_steps - k))
        return order

    def weights(self, levels, s_next: float, ctx, sde) -> np.ndarray:
        """Weights of the history values at noise levels ``levels`` (most recent first) over ``[levels[0],
        s_next]``, so that ``x_hat' = x_hat + sum_j w_j eps_j`` (``ctx``, ``sde``: the step's context and SDE)."""
        raise NotImplementedError

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        if ctx.index == 0:
            ctx.memory[self.memory_key] = {"s": [], "eps": []}
        hist = ctx.memory[self.memory_key]
        alpha, sigma = coeffs(sde, t)
        alpha_n, sigma_n = coeffs(sde, t_next)
        s, s_next = sigma / alpha, sigma_n / alpha_n
        x_hat = x / alpha
        if self.afs and ctx.index == 0:
            eps = x_hat / math.sqrt(1.0 + s * s)  # analytical first step: no score evaluation
        else:
            eps = -sigma * score_at(process, x, t)
        ctx.denoised = x_hat - s * eps  # the data prediction D, for the step callback
        hist["s"].insert(0, s)
        hist["eps"].insert(0, eps)
        del hist["s"][self.multistep_order :], hist["eps"][self.multistep_order :]
        w = self._step_weights(hist["s"], s_next, ctx, sde)
        return self._combine(x_hat, alpha_n, w, hist["eps"])

    def _step_weights(self, levels, s_next, ctx, sde):
        """The weights of step ``ctx.index`` given the history's noise levels (most recent first)."""
        m = self.step_order(ctx.schedule_index, len(levels), ctx.schedule_steps)
        return self.weights(levels[:m], s_next, ctx, sde)

    @staticmethod
    def _combine(x_hat, alpha_n, w, eps):
        """``alpha_n (x_hat + sum_j w_j eps_j)``: the update, linear in ``x_hat`` and the ``eps``."""
        out = x_hat
        for wj, ej in zip(w, eps):
            out = out + float(wj) * ej
        return alpha_n * out

    def affine_coefficients(self, sde, grid) -> AffineCoefficients:
        """The per-step coefficients of this sampler over ``grid`` on the linear SDE ``sde`` (see
        :mod:`sdekit.solvers.affine`). The evaluation is the noise prediction ``E = eps = -sigma score`` (``e0 = 0,
        e1 = -sigma, e2 = 1``; with ``afs`` the first one is ``x / (alpha sqrt(1 + s^2))``, no score), and the
        update ``x' = alpha_n (x / alpha + sum_j w_j E_{k-j})`` is :meth:`step`'s own, run on probe vectors."""
        grid = np.asarray(grid, dtype=np.float64)
        steps = len(grid) - 1
        tab = AffineCoefficients.zeros(steps)
        memory: dict = {}  # what the weights may keep per solve (deis's VP-time fit)
        levels: list = []
        for k in range(steps):
            alpha, sigma = coeffs(sde, float(grid[k]))
            alpha_n, sigma_n = coeffs(sde, float(grid[k + 1]))
            s, s_next = sigma / alpha, sigma_n / alpha_n
            if self.afs and k == 0:
                tab.ev[k] = 1.0, 0.0, alpha * math.sqrt(1.0 + s * s)
            else:
                tab.ev[k] = 0.0, -sigma, 1.0
            levels.insert(0, s)
            del levels[self.multistep_order :]
            ctx = StepContext(k, grid, memory)
            w = self._step_weights(levels, s_next, ctx, sde)
            m = len(w)
            v = self._combine(probe(PROBE_X) / alpha, alpha_n, w, [probe(PROBE_E + j) for j in range(m)])
            tab.pred[k, 0] = v[PROBE_X]
            tab.pred[k, 2 : 2 + m] = v[PROBE_E : PROBE_E + m]
            tab.counts[k] = m, 0, 0, 0, 0
        return tab
