"""The seed samplers of score-based modelling: reverse diffusion, ancestral, predictor--corrector, annealed Langevin.

All act on ``ReverseSDE`` processes (a forward SDE plus a score) and use the exact transition of a
:class:`~sdekit.sdes.LinearSDE` between two grid times ``s < t``: ``x_t | x_s ~ N(a x_s, b^2 I)`` with
``a = alpha(t) / alpha(s)`` and ``b^2 = sigma(t)^2 - a^2 sigma(s)^2``. Steps go from ``t`` (noisier) to
``t_next = s`` (cleaner).

References: Song et al. 2021 (score_sde, predictors and correctors, Alg. 2--5); Ho et al. 2020 (DDPM);
Song & Ermon 2019 (NCSN, annealed Langevin dynamics).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _xp
from ..sdes import LinearSDE
from ..validation import one_of, positive_int, positive_number
from ._common import check_score_process, coeffs, linear_sde_of, score_at, sqrt_pos
from .affine import AffineCoefficients
from .base import FixedStepSolver, get_solver, register
from .stochastic import brownian_increment

STEP_SIZE_RULES = ("sigma", "per_sample", "batch")

__all__ = ["ReverseDiffusion", "Ancestral", "Langevin", "PredictorCorrector", "AnnealedLangevin"]


def _transition(sde: LinearSDE, t: float, s: float) -> tuple[float, float]:
    """``(a, b^2)`` of the forward transition ``x_t = a x_s + b eps`` between times ``s < t``."""
    alpha_t, sigma_t = coeffs(sde, t)
    alpha_s, sigma_s = coeffs(sde, s)
    a = alpha_t / alpha_s
    return a, max(sigma_t * sigma_t - a * a * sigma_s * sigma_s, 0.0)


@register
class ReverseDiffusion(FixedStepSolver):
    """score_sde's reverse-diffusion predictor (Song et al. 2021, eq. 45 and ``ReverseDiffusionPredictor``).

    The forward SDE is discretised by its exact transition over the step, ``x_t = a x_s + b eps``
    (``f = (a - 1) x``, ``G = b``; for VP these are DDPM's ``sqrt(1 - beta_i)`` and ``sqrt(beta_i)``), and the
    reverse step is ``x_s = x_t - f + G^2 score(x_t, t) + G z``. For SDEs that are not linear it falls back to
    the Euler discretisation ``f = f(x, t) |h|``, ``G = g(x, t) sqrt(|h|)`` (then it is Euler--Maruyama).

    Strong order 1 and weak order 1 for additive noise (it differs from Euler--Maruyama by ``O(h^2)`` in the
    drift and ``O(h^{3/2})`` in the noise per step). 1 NFE per step.
    """

    name = "reverse_diffusion"
    order = 1
    strong_order = 1.0
    weak_order = 1.0
    is_sde = True
    n_noise = 1

    def check_process(self, process):
        check_score_process(process, self.name)

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        if not isinstance(sde, LinearSDE):
            h = t_next - t
            return x + h * process.drift(x, t) + process.diffusion(x, t) * brownian_increment(h, x, z[0])
        c_x, c_s, c_z = self.coefficients(sde, t, t_next)
        x_mean = c_x * x + c_s * score_at(process, x, t)
        return x_mean + c_z * z[0]

    @staticmethod
    def coefficients(sde: LinearSDE, t: float, t_next: float) -> tuple[float, float, float]:
        """``(2 - a, b^2, b)``: the step is ``x' = (2 - a) x + b^2 score(x, t) + b z`` on a :class:`LinearSDE`."""
        a, b2 = _transition(sde, t, t_next)
        return 2.0 - a, b2, math.sqrt(b2)

    def affine_coefficients(self, sde: LinearSDE, grid) -> AffineCoefficients:
        """The step as an affine multistep update (see :mod:`sdekit.solvers.affine`), from :meth:`coefficients`:
        the evaluation ``E = (2 - a) x + b^2 score`` is the mean itself, ``x' = 0 x + 1 E + b z``."""
        grid = np.asarray(grid, dtype=np.float64)
        tab = AffineCoefficients.zeros(len(grid) - 1)
        for k in range(len(grid) - 1):
            c_x, c_s, c_z = self.coefficients(sde, float(grid[k]), float(grid[k + 1]))
            tab.ev[k] = c_x, c_s, 1.0
            tab.pred[k, :3] = 0.0, c_z, 1.0
            tab.counts[k] = 1, 0, 1, 0, 0
        return tab


@register
class Ancestral(FixedStepSolver):
    """Ancestral sampling: DDPM for VP (Ho et al. 2020, Alg. 2), SMLD for VE (score_sde ``AncestralSamplingPredictor``).

    One step draws from the Gaussian posterior ``q(x_s | x_t, x_0 = x0_hat)`` of the forward process, with
    Tweedie's estimate ``x0_hat = (x_t + sigma_t^2 score(x_t, t)) / alpha_t``; for any :class:`LinearSDE`::

        mean = (alpha_s b^2 / sigma_t^2) x0_hat + (a sigma_s^2 / sigma_t^2) x_t
        var  = b^2 sigma_s^2 / sigma_t^2          (variance="posterior", DDPM's sigma_t^2 = beta-tilde)
        var  = b^2                                (variance="forward",   DDPM's sigma_t^2 = beta)

    For VE the mean is ``x + (sigma_t^2 - sigma_s^2) score`` and the posterior variance is SMLD's
    ``sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2``; for VP the mean is DDPM's
    ``(x + beta_i score) / sqrt(1 - beta_i)``. score_sde's VP predictor uses ``variance="forward"``.

    Strong order 1 and weak order 1 (a first-order discretisation of the reverse SDE). 1 NFE per step.
    """

    name = "ancestral"
    order = 1
    strong_order = 1.0
    weak_order = 1.0
    is_sde = True
    n_noise = 1

    def __init__(self, variance: str = "posterior"):
        if variance not in ("posterior", "forward"):
            raise ValueError(f"variance must be one of ['posterior', 'forward'], got {variance!r}")
        self.variance = variance

    def __repr__(self):
        return f"Ancestral(variance={self.variance!r})"

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def step(self, process, x, t, t_next, z, ctx):
        s2t, alpha_t, c_x0, c_x, c_z = self.coefficients(process.sde, t, t_next)
        x0 = ctx.denoised = (x + s2t * score_at(process, x, t)) / alpha_t  # (also for the step callback)
        mean = c_x0 * x0 + c_x * x
        return mean + c_z * z[0]

    def coefficients(self, sde: LinearSDE, t: float, t_next: float) -> tuple[float, float, float, float, float]:
        """``(sigma_t^2, alpha_t, c_x0, c_x, c_z)``: ``x0_hat = (x + sigma_t^2 score) / alpha_t`` and
        ``x' = c_x0 x0_hat + c_x x + c_z z`` (the posterior mean and standard deviation)."""
        alpha_t, sigma_t = coeffs(sde, t)
        alpha_s, sigma_s = coeffs(sde, t_next)
        a, b2 = _transition(sde, t, t_next)
        s2t, s2s = sigma_t * sigma_t, sigma_s * sigma_s
        var = b2 * s2s / s2t if self.variance == "posterior" else b2
        return s2t, alpha_t, alpha_s * b2 / s2t, a * s2s / s2t, sqrt_pos(var)

    def affine_coefficients(self, sde: LinearSDE, grid) -> AffineCoefficients:
        """The step as an affine multistep update (see :mod:`sdekit.solvers.affine`), from :meth:`coefficients`:
        the evaluation is ``x0_hat``, ``x' = c_x x + c_x0 x0_hat + c_z z``."""
        grid = np.asarray(grid, dtype=np.float64)
        tab = AffineCoefficients.zeros(len(grid) - 1)
        for k in range(len(grid) - 1):
            s2t, alpha_t, c_x0, c_x, c_z = self.coefficients(sde, float(grid[k]), float(grid[k + 1]))
            tab.ev[k] = 1.0, s2t, alpha_t
            tab.pred[k, :3] = c_x, c_z, c_x0
            tab.counts[k] = 1, 0, 1, 0, 0
        return tab


class Langevin:
    """The Langevin corrector of score_sde (Song et al. 2021, Alg. 4; ``LangevinCorrector``).

    ``n_steps`` steps of ``x <- x + eps score(x, t) + sqrt(2 eps) z`` at the fixed time ``t`` with
    ``eps = 2 r (snr ||z|| / ||score||)^2``, where ``r = (alpha(t) / alpha(t_next))^2`` (score_sde's
    ``alpha_i = 1 - beta_i`` for VP, 1 for VE). The norms are chosen by ``step_size``:

    * ``"batch"``: the batch means of the Euclidean norms of ``z`` and of the score, as score_sde does; a
      sample's result then depends on the batch it is in;
    * ``"per_sample"``: each sample's own norms; independent of the batch, and close to ``"batch"`` in high
      dimension where the norms concentrate, but heavy-tailed in low dimension (``||score||`` near 0 at a
      mode gives a huge step);
    * ``"sigma"`` (default): ``||z|| / ||score||`` replaced by ``sigma(t)``, the value both rules take when
      the data spread is small against the noise (``||score|| ~ sqrt(d) / sigma``, ``||z|| ~ sqrt(d)``):
      ``eps = 2 r (snr sigma(t))^2``, the same for every sample, so independent of the batch and stable.

    A corrector targets ``p_t`` at a fixed ``t``; with a fixed ``snr`` its step does not shrink with the grid,
    so it leaves a bias of order ``snr^2`` in the law (unadjusted Langevin), whatever the number of steps.
    """

    def __init__(self, snr: float = 0.16, n_steps: int = 1, step_size: str = "sigma"):
        snr, n_steps = positive_number("snr", snr), positive_int("n_steps", n_steps)
        one_of("step_size", step_size, STEP_SIZE_RULES)
        self.snr, self.n_steps, self.step_size = snr, n_steps, step_size

    def __repr__(self):
        return f"Langevin(snr={self.snr}, n_steps={self.n_steps}, step_size={self.step_size!r})"

    def correct(self, process, x, t, t_next, zs):
        """``n_steps`` corrector steps at time ``t``; ``zs`` is a list of ``n_steps`` standard-normal arrays."""
        sde = process.sde
        linear = isinstance(sde, LinearSDE)
        r = self._alpha_ratio(sde, t, t_next) if linear else 1.0
        if self.step_size == "sigma" and not linear:
            raise ValueError("Langevin step_size='sigma' needs a LinearSDE; use step_size='per_sample' or 'batch'")
        ev = x.ndim - 1
        xp = _xp.lib(x)
        for z in zs:
            grad = score_at(process, x, t)
            if self.step_size == "sigma":
                eps = self._sigma_eps(sde, r, t)
                x = x + eps * grad + math.sqrt(2.0 * eps) * z
                continue
            g_norm = xp.sqrt(_xp.sum_last(grad * grad, ev))
            z_norm = xp.sqrt(_xp.sum_last(z * z, ev))
            if self.step_size == "batch":
                g_norm, z_norm = g_norm.mean(), z_norm.mean()
            eps = _xp.per_sample(2.0 * r * (self.snr * z_norm / g_norm) ** 2, x)
            x = x + eps * grad + xp.sqrt(2.0 * eps) * z
        return x

    @staticmethod
    def _alpha_ratio(sde: LinearSDE, t: float, t_next: float) -> float:
        """``r = (alpha(t) / alpha(t_next))^2``, folded into ``(0, 1]`` (score_sde's ``alpha_i``)."""
        ratio = coeffs(sde, t)[0] / coeffs(sde, t_next)[0]
        return ratio * ratio if ratio < 1.0 else 1.0 / (ratio * ratio)

    def _sigma_eps(self, sde: LinearSDE, r: float, t: float) -> float:
        """The step of the ``"sigma"`` rule, ``eps = 2 r (snr sigma(t))^2``."""
        return 2.0 * r * (self.snr * coeffs(sde, t)[1]) ** 2

    def sigma_step(self, sde: LinearSDE, t: float, t_next: float) -> float:
        """``eps`` of every corrector step at ``t`` under the ``"sigma"`` rule (the same for every sample)."""
        return self._sigma_eps(sde, self._alpha_ratio(sde, t, t_next), t)


@register
class PredictorCorrector(FixedStepSolver):
    """Predictor--corrector sampling (Song et al. 2021, Alg. 1): per grid step, a Langevin corrector at ``t``,
    then a predictor step from ``t`` to ``t_next`` (the order of score_sde's ``pc_sampler``).

    Parameters
    ----------
    predictor : str or Solver
        Any SDE solver (default ``"reverse_diffusion"``).
    snr, n_steps, step_size
        The :class:`Langevin` corrector's parameters (score_sde's defaults ``snr=0.16``, ``n_steps=1``).
    corrector : Langevin, optional
        A corrector instance instead of ``snr``/``n_steps``/``step_size``.

    NFE per step: the predictor's plus ``n_steps``. The corrector's fixed ``snr`` leaves an ``O(snr^2)`` bias in
    the law (see :class:`Langevin`), so PC is not a convergent discretisation of the reverse SDE; its orders
    (``strong_order``, ``weak_order``) are therefore ``None``; ``order`` is the predictor's.
    """

    name = "pc"
    is_sde = True

    def __init__(self, predictor="reverse_diffusion", snr: float = 0.16, n_steps: int = 1,
                 step_size: str = "sigma", corrector: Langevin | None = None):  # fmt: skip
        self.predictor = get_solver(predictor)
        if not self.predictor.is_sde or self.predictor.adaptive:
            raise ValueError(f"predictor must be a fixed-step SDE solver, got {self.predictor!r}")
        if corrector is not None and not isinstance(corrector, Langevin):
            raise TypeError(f"corrector must be a Langevin instance, got {corrector!r}")
        self.corrector = corrector if corrector is not None else Langevin(snr, n_steps, step_size)
        self.order = self.predictor.order
        self.nfe_per_step = self.predictor.nfe_per_step + self.corrector.n_steps
        self.n_noise = self.predictor.n_noise + self.corrector.n_steps
        self.n_brownian = self.predictor.n_brownian
        self.needs_additive_noise = self.predictor.needs_additive_noise

    def __repr__(self):
        return f"PredictorCorrector(predictor={self.predictor!r}, corrector={self.corrector!r})"

    def check_process(self, process):
        check_score_process(process, self.name)
        self.predictor.check_process(process)

    def step(self, process, x, t, t_next, z, ctx):
        m = self.predictor.n_noise
        x = self.corrector.correct(process, x, t, t_next, z[m:])
        return self.predictor.step(process, x, t, t_next, z[:m], ctx)


@register
class AnnealedLangevin(FixedStepSolver):
    """Annealed Langevin dynamics (Song & Ermon 2019, NCSN, Alg. 1).

    The grid times are the noise levels: the step from ``t`` to ``t_next`` runs ``n_steps`` Langevin steps
    ``x <- x + (a_i / 2) score(x, t_next) + sqrt(a_i) z`` at level ``sigma_i = sigma(t_next)``, with
    ``a_i = eps sigma_i^2 / sigma_L^2`` and ``sigma_L = sigma(grid[-1])`` the smallest level. NCSN's geometric
    noise levels are the uniform grid of a VE SDE (or the ``log_snr`` grid of any linear SDE). NCSN's settings:
    ``eps = 2e-5``, ``n_steps = 100``.

    Not a discretisation of the reverse SDE: at each level it samples ``p_t`` up to the unadjusted-Langevin
    bias of order ``a_i`` (a Gaussian of variance ``v`` becomes ``v / (1 - a / (4 v))``), so it converges to
    ``p_t_end`` as ``eps -> 0`` and ``n_steps -> infinity``; ``strong_order`` and ``weak_order`` are ``None``.
    NFE per step: ``n_steps``.
    """

    name = "annealed_langevin"
    is_sde = True
    n_brownian = 0
    # NCSN's geometric levels on every linear SDE (on VE the uniform grid, to round-off); uniform in t on VP or in
    # sigma on EDM leaves ratios sigma_i / sigma_L so large that the first levels' Langevin steps diverge
    default_grid = "log_snr"

    def __init__(self, eps: float = 2e-5, n_steps: int = 100):
        self.eps, self.n_steps = positive_number("eps", eps), positive_int("n_steps", n_steps)
        self.nfe_per_step = n_steps
        self.n_noise = n_steps

    def __repr__(self):
        return f"AnnealedLangevin(eps={self.eps}, n_steps={self.n_steps})"

    def check_process(self, process):
        linear_sde_of(process, self.name)

    def step(self, process, x, t, t_next, z, ctx):
        sde = process.sde
        sigma_i = coeffs(sde, t_next)[1]
        sigma_l = coeffs(sde, float(ctx.grid[-1]))[1]
        a = self.eps * sigma_i * sigma_i / (sigma_l * sigma_l)
        for zi in z:
            x = x + (0.5 * a) * score_at(process, x, t_next) + math.sqrt(a) * zi
        return x
