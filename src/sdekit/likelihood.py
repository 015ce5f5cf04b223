"""Exact log-likelihoods through the probability-flow ODE (instantaneous change of variables).

For a linear SDE the probability-flow ODE ``dx/dt = f~(x, t) = a(t) x - g(t)^2 s(x, t) / 2`` transports
``p_t`` to ``p_T``, and along a trajectory ``d log p_t(x_t) / dt = -div f~(x_t, t)`` (Chen et al. 2018;
Song et al. 2021, sec. 4.3 and app. D.2). Integrating the augmented ODE

    d/dt [x, l] = [f~(x, t), div f~(x, t)],      div f~ = a(t) D - g(t)^2 tr(grad s(x, t)) / 2,

from ``(x, 0)`` at ``t_eps`` to ``(x_T, l_T)`` at ``T`` gives ``log p_{t_eps}(x) = log p_T(x_T) + l_T`` with the
prior's log density in place of ``log p_T`` (``D`` is the number of components of one sample).

The trace ``tr(grad s)`` is exact (analytic scores' ``divergence`` method, or autograd for torch scores, one
backward pass per component) or the Hutchinson--Skilling estimate ``eps^T (grad s) eps`` (Hutchinson 1989;
Skilling 1989; Grathwohl et al. 2019) with probes ``eps`` drawn once per solve (Rademacher or Gaussian, ``n_probes``
of them averaged), which makes the result an unbiased estimate of ``l_T``. The product ``(grad s) eps`` comes from
the score's ``jvp`` method, torch autograd, or, for other numpy scores, central differences (2 extra score
evaluations per probe, counted in ``nfe``; bias ``O(h^2)``, ``h = 1e-5 (1 + max_j |x_j|)`` per sample).

Integrator. ``solver="dopri5"`` is the Dormand--Prince 5(4) pair (Dormand & Prince 1980; the shared
:data:`sdekit.solvers.tableaus.DOPRI5` tableau), FSAL, Hairer's starting step and the step-size control of
scipy's ``RK45`` (an I-controller, ``h_new = h min(MAX_FACTOR, max(MIN_FACTOR, SAFETY err^{-1/5}))`` with the
constants of :mod:`sdekit.controllers`, no growth right after a rejection; Hairer, Norsett & Wanner, *Solving
ODEs I*, sec. II.4), with **one step size per sample**: each sample is accepted or rejected on its own error
norm ``sqrt(mean((err / (atol + rtol max(|y|, |y_new|)))^2))`` over its ``D + 1`` components, so a hard sample
does not slow the others down, and ``nfe`` is the mean over samples. On one sample it takes exactly the steps of
``scipy.integrate.solve_ivp(method="RK45")``; on a batch it needs fewer evaluations than RK45 on the flattened
batch (score_sde's way), whose shared step follows the hardest sample. It is the augmented ODE's own loop, not
the registered ``dopri5`` sampler: :class:`sdekit.controllers.PIController` floors the error at ``ERR_FLOOR``
(growth capped at 5.7x instead of RK45's 10x), which loses the step-for-step agreement with RK45 and took
1 % more evaluations on the likelihood problems (Hairer's ``beta2 = 0.04`` more still).
``"scipy_rk45"`` and ``"scipy_dop853"`` hand the whole flattened batch to ``scipy.integrate.solve_ivp`` (one step
size for the batch), as reference paths.

Time variable. ``"t"`` (the default) integrates in ``t``. ``"log_snr"`` integrates in
``lambda = log(alpha / sigma)`` (``dt/dlambda = -2 sigma^2 / g^2``) and ``"sigma"`` in EDM coordinates
``xbar = x / alpha`` with time ``sigma / alpha`` (Karras et al. 2022); on the analytic test problems of
``benchmarks/bench_likelihood.py`` neither needed fewer evaluations than ``t`` at equal tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import _xp
from .backends.job import CheckedScore
from .controllers import RK45Controller
from .errors import NonFiniteError
from .noise import PRIOR_STEP, check_seed, normals_numpy
from .sdes import LinearSDE
from .solvers.tableaus import DOPRI5
from .validation import boolean, positive_int, positive_number, real_number

__all__ = [
    "log_likelihood",
    "bits_per_dim",
    "LikelihoodResult",
    "LIKELIHOOD_SOLVERS",
]

#: Reserved step index of the counter-based noise for the Hutchinson probes (the prior uses ``PRIOR_STEP``,
#: analytic data samples ``PRIOR_STEP + 1``).
PROBE_STEP = PRIOR_STEP + 2

# name -> FSAL embedded pair (shared tableaus of sdekit.solvers.tableaus)
_EMBEDDED = {"dopri5": DOPRI5}

LIKELIHOOD_SOLVERS = ("dopri5", "scipy_rk45", "scipy_dop853")
_TRACES = ("exact", "hutchinson")
_PROBES = ("rademacher", "gaussian")
_TIME_VARIABLES = ("auto", "t", "log_snr", "sigma")

_FD_STEP = 1e-5  # relative central-difference step of the numpy Hutchinson product (grad s) eps


@dataclass
class LikelihoodResult:
    """Result of :func:`log_likelihood`.

    Attributes
    ----------
    logp : (n,)
        ``log p_{t_eps}(x)`` in nats (numpy float64, or a tensor like ``x``).
    nfe : float
        Score evaluations per sample (one per augmented-drift evaluation, plus the finite-difference ones of a
        numpy Hutchinson trace), mean over samples.
    prior_logp, delta_logp : (n,)
        ``log p_T(x_T)`` and ``l_T = int div f~ dt``; ``logp = prior_logp + delta_logp``.
    z : (n, *event)
        The end points ``x_T``.
    nfe_per_sample : (n,) int array
    stats : dict
        ``accepted``, ``rejected`` (mean per sample), ``solver``, ``trace``, ``time_variable``,
        ``finite_difference_score_evals`` (mean per sample, included in ``nfe``).
    """

    logp: object
    nfe: float
    prior_logp: object
    delta_logp: object
    z: object
    nfe_per_sample: np.ndarray
    stats: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# the augmented drift
# ----------------------------------------------------------------------------------------------------------
class _AugmentedDrift:
    """``F(y, u) -> dy/du`` for ``y = [x (flattened), l]`` of shape ``(m, D + 1)``; ``u`` numpy ``(m,)``."""

    def __init__(self, sde, score, event, like, trace, probes, time_variable, check_finite=True):
        # every call's output shape is checked (a later (n, 1) output would broadcast into garbage); the
        # divergence and jvp hooks are looked up on the user's score itself
        self.sde, self.score, self.event, self.like = sde, CheckedScore(score), event, like
        self.user_score = score
        self.check_finite = check_finite
        self.evaluations = 0
        self.D = int(np.prod(event, dtype=np.int64))
        self.trace, self.probes = trace, probes
        self.time_variable = time_variable
        self.torch = _xp.is_torch(like)
        self.extra = np.zeros(like.shape[0], dtype=np.int64)  # finite-difference score evaluations per sample

    def times(self, u):
        """``t(u)`` and ``dt/du`` (numpy ``(m,)``)."""
        if self.time_variable == "t":
            return u, np.ones_like(u)
        if self.time_variable == "sigma":
            return np.asarray(self.sde.t_from_log_snr(-np.log(u)), dtype=np.float64), None
        t = np.asarray(self.sde.t_from_log_snr(u), dtype=np.float64)
        alpha, sigma = self.sde.marginal(t)
        return t, -2.0 * np.asarray(sigma) ** 2 / np.asarray(self.sde.g2(t))

    def _trace(self, x, tt, idx):
        score, hooks = self.score, self.user_score
        if self.trace == "exact":
            if hasattr(hooks, "divergence"):
                return None, hooks.divergence(x, tt)
            return self._trace_autograd(x, tt)
        eps = self.probes[idx]  # (m, P, D) in x's library
        eps = eps.reshape((eps.shape[0], eps.shape[1]) + tuple(self.event))
        P = eps.shape[1]
        if hasattr(hooks, "jvp"):
            s = score(x, tt)
            est = sum(_xp.sum_last(eps[:, p] * hooks.jvp(x, tt, eps[:, p]), len(self.event)) for p in range(P))
            return s, est / P
        if self.torch:
            return self._hutchinson_autograd(x, tt, eps)
        s = score(x, tt)
        est = 0.0
        # one step per sample along the probe (a directional derivative), about eps^(1/3) relative
        h = _xp.per_sample(_FD_STEP * (1.0 + np.abs(x.reshape(x.shape[0], -1)).max(axis=1)), x)
        for p in range(P):
            v = eps[:, p]
            jv = (score(x + h * v, tt) - score(x - h * v, tt)) / (2.0 * h)
            est = est + _xp.sum_last(v * jv, len(self.event))
        self.extra[idx] += 2 * P
        return s, est / P

    def _trace_autograd(self, x, tt):
        torch = _xp.lib(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = self.score(xg, tt)
            flat = s.reshape(s.shape[0], -1)
            tr = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for j in range(flat.shape[1]):
                (g,) = torch.autograd.grad(flat[:, j].sum(), xg, retain_graph=j + 1 < flat.shape[1])
                tr = tr + g.reshape(g.shape[0], -1)[:, j]
        return s.detach(), tr.detach()

    def _hutchinson_autograd(self, x, tt, eps):
        torch = _xp.lib(x)
        P = eps.shape[1]
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = self.score(xg, tt)
            est = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for p in range(P):
                (g,) = torch.autograd.grad((s * eps[:, p]).sum(), xg, retain_graph=p + 1 < P)
                est = est + _xp.sum_last(g * eps[:, p], len(self.event))
        return s.detach(), (est / P).detach()

    def __call__(self, y, u, idx):
        out = self._derivative(y, u, idx)
        self.evaluations += 1
        # every evaluation, as solve checks every step: a score that turns NaN stops the solve at once (an
        # adaptive loop would otherwise shrink the step to nothing, and scipy's would spin until max_steps)
        if self.check_finite and not _xp.isfinite_all(out):
            t = self.times(np.asarray(u, dtype=np.float64))[0]
            bad = np.flatnonzero(~np.isfinite(_to_numpy(out)).all(axis=1))
            raise NonFiniteError(
                self.evaluations,
                float(np.ravel(t)[bad[0]]),
                f"log_likelihood: the augmented drift (score or its trace) is not finite at evaluation "
                f"{self.evaluations}, t = {float(np.ravel(t)[bad[0]])!r}, for {bad.size} of {out.shape[0]} samples; "
                "check the score (pass check_finite=False to skip this check)",
            )
        return out

    def _derivative(self, y, u, idx):
        m = y.shape[0]
        t, dtdu = self.times(u)
        x = y[:, : self.D].reshape((m,) + tuple(self.event))
        if self.time_variable == "sigma":
            # EDM coordinates: xbar = x / alpha, u = sigma / alpha; dxbar/du = -u alpha s(alpha xbar, t),
            # dl/du = -u alpha^2 tr(grad_x s) (Karras et al. 2022, eq. 4 with s(t) = 1)
            alpha = np.asarray(self.sde.marginal(t)[0], dtype=np.float64) * np.ones(m)
            al = _xp.asarray_like(alpha, self.like)
            xs = _xp.per_sample(al, x) * x
            tt = _xp.asarray_like(t, self.like)
            s, tr = self._trace(xs, tt, idx)
            if s is None:
                s = self.score(xs, tt)
            uu = _xp.asarray_like(u, self.like)
            dx = (-_xp.per_sample(uu * al, x) * s).reshape(m, self.D)
            return _cat(dx, (-uu * al * al * tr)[:, None])
        tt = _xp.asarray_like(t, self.like)
        s, tr = self._trace(x, tt, idx)
        if s is None:
            s = self.score(x, tt)
        a = _xp.asarray_like(np.asarray(self.sde.drift_coef(t), dtype=np.float64) * np.ones(m), self.like)
        g2 = _xp.asarray_like(np.asarray(self.sde.g2(t), dtype=np.float64) * np.ones(m), self.like)
        w = _xp.asarray_like(dtdu, self.like)
        dx = (_xp.per_sample(a, x) * x - 0.5 * _xp.per_sample(g2, x) * s).reshape(m, self.D)
        dl = a * self.D - 0.5 * g2 * tr
        out = _cat(dx, dl[:, None])
        return out * w[:, None]


def _cat(a, b):
    if _xp.is_torch(a):
        return _xp.lib(a).cat([a, b], dim=1)
    return np.concatenate([a, b], axis=1)


def _to_numpy(v):
    return v.detach().cpu().numpy() if _xp.is_torch(v) else np.asarray(v)


# ----------------------------------------------------------------------------------------------------------
# Dormand--Prince 5(4) with one step size per sample
# ----------------------------------------------------------------------------------------------------------
def _rms_norm(err, y0, y1, rtol, atol):
    scale = atol + rtol * np.maximum(np.abs(y0), np.abs(y1))
    return np.sqrt(np.mean((err / scale) ** 2, axis=1))


def _initial_step(F, y, u, direction, span, rtol, atol, expo):
    """Hairer's starting step (Solving ODEs I, sec. II.4), per sample, from two drift evaluations; returns ``(k1,
    h)``: the drift at the start (reused by the first attempt, FSAL) and the step sizes ``(n,)``."""
    idx_all = np.arange(y.shape[0])
    k1 = F(y, u, idx_all)
    y_np, f_np = _to_numpy(y), _to_numpy(k1)
    sc = atol + rtol * np.abs(y_np)
    d0 = np.sqrt(np.mean((y_np / sc) ** 2, axis=1))
    d1 = np.sqrt(np.mean((f_np / sc) ** 2, axis=1))
    h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / np.maximum(d1, 1e-300))
    h0 = np.minimum(h0, span)
    hw = _xp.asarray_like(direction * h0, y)
    f1 = F(y + _xp.per_sample(hw, y) * k1, u + direction * h0, idx_all)
    d2 = np.sqrt(np.mean(((_to_numpy(f1) - f_np) / sc) ** 2, axis=1)) / h0
    dm = np.maximum(d1, d2)
    h1 = np.where(dm <= 1e-15, np.maximum(1e-6, h0 * 1e-3), (0.01 / np.maximum(dm, 1e-300)) ** expo)
    return k1, np.minimum(np.minimum(100.0 * h0, h1), span)


def _embedded_rk(F, y0, u0, u1, rtol, atol, max_steps, method="dopri5"):
    """Integrate ``dy/du = F(y, u, idx)`` from ``u0`` to ``u1`` (floats) for each row of ``y0`` separately.

    ``method`` names an FSAL 5(4) pair in ``_EMBEDDED`` (the last row of ``A`` equals ``b``).
    """
    n = y0.shape[0]
    pair = _EMBEDDED[method]
    tab = pair.tableau
    e = tab.b - pair.b_err
    control = RK45Controller(1.0 / (pair.error_order + 1))
    direction = 1.0 if u1 > u0 else -1.0
    span = abs(u1 - u0)
    u = np.full(n, u0)
    y = y0
    nfe = np.full(n, 2, dtype=np.int64)  # the starting step's two evaluations
    accepted = np.zeros(n, dtype=np.int64)
    rejected = np.zeros(n, dtype=np.int64)
    k1, h = _initial_step(F, y, u, direction, span, rtol, atol, control.exponent)

    last_rejected = np.zeros(n, dtype=bool)
    active = np.ones(n, dtype=bool)
    steps = 0
    while active.any():
        steps += 1
        if steps > max_steps:
            raise RuntimeError(
                f"log_likelihood: {method} took more than max_steps={max_steps} steps "
                f"({int(active.sum())} samples unfinished); loosen rtol/atol or raise max_steps"
            )
        idx = np.flatnonzero(active)
        ys, us = y[idx] if len(idx) < n else y, u[idx]
        remaining = np.abs(u1 - us)
        hs = np.minimum(h[idx], remaining)
        last = hs >= remaining * (1.0 - 1e-12)
        hsigned = direction * hs
        hx = _xp.asarray_like(hsigned, ys)[:, None]
        ks = [k1[idx] if len(idx) < n else k1]
        for i in range(1, tab.stages):
            yi = ys
            for j in range(i):
                if tab.a[i, j] != 0.0:
                    yi = yi + (hx * tab.a[i, j]) * ks[j]
            ui = np.where(last, u1, us + hsigned) if tab.c[i] == 1.0 else us + tab.c[i] * hsigned
            ks.append(F(yi, ui, idx))
        nfe[idx] += tab.stages - 1
        # the 7th stage was evaluated at the 5th-order solution (last row of A = b): FSAL
        y_new = ys
        for j in range(tab.stages):
            if tab.b[j] != 0.0:
                y_new = y_new + (hx * tab.b[j]) * ks[j]
        err = 0.0
        for j in range(tab.stages):
            if e[j] != 0.0:
                err = err + (hx * e[j]) * ks[j]
        en = _rms_norm(_to_numpy(err), _to_numpy(ys), _to_numpy(y_new), rtol, atol)
        acc, h_next = control.propose(hs, en, last_rejected[idx])  # scipy RK45's rule (controllers.RK45Controller)
        if acc.any():
            ia = idx[acc]
            sel = np.flatnonzero(acc)
            if _xp.is_torch(y):
                torch = _xp.lib(y)
                ia_t = torch.as_tensor(ia, device=y.device)
                sel_t = torch.as_tensor(sel, device=y.device)
                y = y.index_copy(0, ia_t, y_new[sel_t])
                k1 = k1.index_copy(0, ia_t, ks[-1][sel_t])
            else:
                y = y.copy()
                k1 = k1.copy()
                y[ia] = y_new[sel]
                k1[ia] = ks[-1][sel]
            u[ia] = np.where(last[acc], u1, us[acc] + hsigned[acc])
            accepted[ia] += 1
            active[ia[last[acc]]] = False
        rej = ~acc
        if rej.any():
            rejected[idx[rej]] += 1
        h[idx] = h_next
        last_rejected[idx] = rej
        if np.any(h[idx] < 1e-14 * max(span, 1.0)):
            raise RuntimeError(f"log_likelihood: {method} step size underflow (the drift is not finite or too stiff)")
    return y, nfe, accepted, rejected


def _scipy_solve(F, y0, u0, u1, rtol, atol, method, like):
    from scipy.integrate import solve_ivp

    n, width = y0.shape
    idx = np.arange(n)

    def rhs(u, yflat):
        y = _xp.asarray_like(yflat.reshape(n, width), like)
        return _to_numpy(F(y, np.full(n, u), idx)).ravel()

    sol = solve_ivp(rhs, (u0, u1), _to_numpy(y0).ravel(), method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"log_likelihood: scipy {method} failed: {sol.message}")
    y = _xp.asarray_like(sol.y[:, -1].reshape(n, width), like)
    nfe = np.full(n, sol.nfev, dtype=np.int64)
    return y, nfe, np.full(n, sol.t.size - 1), np.zeros(n, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------
def _choice(name, v, valid):
    if v not in valid:
        raise ValueError(f"unknown {name} {v!r}; valid choices: {list(valid)}")
    return v


def _probes(seed, n, n_probes, D, kind, like):
    z = normals_numpy(seed, np.arange(n), PROBE_STEP, n_probes * D).reshape(n, n_probes, D)
    if kind == "rademacher":
        z = np.where(z >= 0.0, 1.0, -1.0)
    return _xp.asarray_like(z, like)


def _check_points(x) -> bool:
    """Check the points ``x`` (a floating numpy array or tensor ``(n, *event)``, finite); True for a tensor."""
    is_torch = _xp.is_torch(x)
    if not is_torch:
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise TypeError(f"x must be a floating-point numpy array or torch tensor, got {type(x).__name__}")
    elif not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must have shape (n, *event_shape) with n >= 1, got shape {tuple(x.shape)}")
    if not _xp.isfinite_all(x):
        raise ValueError("x contains NaN or infinite values")
    return is_torch


def _interval(sde, tv: str, t_eps: float, x):
    """``(u0, u1, x_start)``: the ODE's interval in the time variable ``tv`` and its start state (``x``, or in EDM
    coordinates ``x / alpha(t_eps)``)."""
    T = float(sde.T)
    if tv == "t":
        return t_eps, T, x
    if tv == "log_snr":
        return float(sde.log_snr(t_eps)), float(sde.log_snr(T)), x
    return float(sde.edm_sigma(t_eps)), float(sde.edm_sigma(T)), x / float(sde.marginal(t_eps)[0])


def log_likelihood(
    sde,
    score,
    x,
    *,
    t_eps=1e-5,
    solver="dopri5",
    rtol=1e-5,
    atol=1e-5,
    trace="exact",
    probe="rademacher",
    n_probes=1,
    seed=0,
    time_variable="auto",
    prior_logpdf=None,
    max_steps=100_000,
    check_finite=True,
) -> LikelihoodResult:
    """``log p_{t_eps}(x)`` of the model defined by ``score`` through the probability-flow ODE.

    Parameters
    ----------
    sde : LinearSDE
        The forward process (VP, sub-VP, VE, EDM).
    score : callable ``score(x, t)``
        ``x`` of shape ``(n, *event)``, ``t`` of shape ``(n,)`` (per-sample times). For ``trace="exact"`` it
        needs a ``divergence(x, t)`` method (analytic scores have one) or must be a torch function (autograd).
    x : array (n, *event)
        Points (numpy float array or torch tensor; the result is in the same library).
    t_eps : float
        Start time of the ODE (score_sde's ``eps``); the result is the model density at ``t_eps``.
    solver : {"dopri5", "scipy_rk45", "scipy_dop853"}
        See the module docstring (``dopri5`` here is this module's per-sample Dormand--Prince 5(4)).
    rtol, atol : float
        Tolerances of the adaptive integrator, on the ``D + 1`` components of each sample (``x`` and ``l``).
    trace : {"exact", "hutchinson"}
    probe : {"rademacher", "gaussian"}
        Hutchinson probe law; probes are drawn once per solve from ``(seed, sample index)``.
    n_probes : int
        Probes averaged per sample (Hutchinson).
    time_variable : {"auto", "t", "log_snr", "sigma"}
        Integrate in ``t`` (``auto``), in ``lambda = log(alpha/sigma)``, or in EDM coordinates.
    prior_logpdf : callable, optional
        ``log p_T`` of the end points, ``(n, *event) -> (n,)``; default ``sde.prior_logpdf``.
    max_steps : int
        Bound on the number of step attempts.
    check_finite : bool
        Raise :class:`sdekit.NonFiniteError` at the first evaluation of the augmented drift (the score and its
        trace) that is not finite, instead of letting the integrator shrink its steps until ``max_steps``.

    Returns
    -------
    LikelihoodResult
        ``logp`` in nats, ``nfe`` per sample; see :class:`LikelihoodResult`.
    """
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"sde must be a LinearSDE (VPSDE, SubVPSDE, VESDE, EDMSDE), got {sde!r}")
    if not callable(score):
        raise TypeError(f"score must be callable score(x, t), got {score!r}")
    is_torch = _check_points(x)
    t_eps = positive_number("t_eps", t_eps)
    if not t_eps < sde.T:
        raise ValueError(f"t_eps must lie in (0, T) = (0, {sde.T}), got {t_eps!r}")
    choices = {"solver": LIKELIHOOD_SOLVERS, "trace": _TRACES, "probe": _PROBES, "time_variable": _TIME_VARIABLES}
    for name, value in zip(choices, (solver, trace, probe, time_variable)):
        _choice(name, value, choices[name])
    rtol, atol = positive_number("rtol", rtol), positive_number("atol", atol)
    n_probes, max_steps = positive_int("n_probes", n_probes), positive_int("max_steps", max_steps)
    seed = check_seed(seed)
    if trace == "exact" and not hasattr(score, "divergence") and not is_torch:
        raise ValueError("trace='exact' needs a score with a divergence(x, t) method (analytic scores have one) or a "
                         f"torch score with torch inputs (autograd); got {score!r} with a numpy x. Use "
                         "trace='hutchinson'.")  # fmt: skip
    if prior_logpdf is not None and not callable(prior_logpdf):
        raise TypeError(f"prior_logpdf must be callable or None, got {prior_logpdf!r}")
    tv = "t" if time_variable == "auto" else time_variable

    n, event = x.shape[0], tuple(x.shape[1:])
    D = int(np.prod(event, dtype=np.int64))
    probes = _probes(seed, n, int(n_probes), D, probe, x) if trace == "hutchinson" else None
    F = _AugmentedDrift(sde, score, event, x, trace, probes, tv, boolean("check_finite", check_finite))
    u0, u1, x_start = _interval(sde, tv, t_eps, x)
    y0 = _cat(x_start.reshape(n, D), 0.0 * x.reshape(n, D)[:, :1])
    if solver in _EMBEDDED:
        y, nfe, acc, rej = _embedded_rk(F, y0, u0, u1, rtol, atol, int(max_steps), solver)
    else:
        y, nfe, acc, rej = _scipy_solve(F, y0, u0, u1, rtol, atol, "RK45" if solver == "scipy_rk45" else "DOP853", x)
    z = y[:, :D].reshape((n,) + event)
    delta = y[:, D]
    if tv == "sigma":
        # back from EDM coordinates: x_T = alpha(T) xbar_T, log p_t(x) = log pbar(x / alpha) - D log alpha(t)
        a_T, a_eps = float(sde.marginal(float(sde.T))[0]), float(sde.marginal(t_eps)[0])
        z = z * a_T
        delta = delta + D * (math.log(a_T) - math.log(a_eps))
    prior = (prior_logpdf or sde.prior_logpdf)(z)
    stats = {"solver": solver, "trace": trace, "time_variable": tv, "accepted": float(np.mean(acc)),
             "rejected": float(np.mean(rej)), "finite_difference_score_evals": float(np.mean(F.extra))}  # fmt: skip
    nfe_total = nfe + F.extra
    return LikelihoodResult(logp=prior + delta, nfe=float(np.mean(nfe_total)), prior_logp=prior, delta_logp=delta,
                            z=z, nfe_per_sample=nfe_total, stats=stats)  # fmt: skip


def bits_per_dim(logp, dim, offset=8.0):
    """Bits per dimension of discrete data from a continuous log density: ``-logp / (dim ln 2) + offset``.

    With 8-bit data dequantised uniformly (``x = (k + u) / 256``, ``u ~ U[0, 1)``) and scaled to ``[0, 1]``,
    ``log P(k) >= log p(x) - dim log 256``, hence ``offset = 8`` (Theis et al. 2016; Ho et al. 2020). For data
    scaled to ``[-1, 1]`` the Jacobian is ``2/256`` per dimension and ``offset = 7`` (score_sde's convention).
    In general ``offset = log2(256 / width of the data range)``.
    """
    dim, offset = positive_int("dim", dim), real_number("offset", offset)
    return -logp / (dim * math.log(2.0)) + offset
