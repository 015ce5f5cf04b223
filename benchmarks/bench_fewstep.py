"""The few-step frontier: sdekit's best against the best public sampler at 5, 6, 8, 10 and 20 NFE.

Problems: Gaussian mixtures under the EDM SDE (noise level sigma in [0.002, 80]) with exact scores, from 1-D to
64-D, among them an anisotropic 64-D mixture (covariance eigenvalues over three decades, rotated per component)
and strongly skewed ones (a dominant broad component and thin rare far ones), and ``digits``, the learned 8x8-digits
denoiser of ``sdekit.zoo.digits()`` (64-D, cast to float64; ODE only, ``--n-learned`` test and warm-up points, one
optimised configuration per budget, since a network call costs about 100 analytic ones). Every sampler gets the same
closed-form denoiser ``D(x, sigma) = x + sigma^2 score(x, sigma)`` and every evaluation is counted (NFE includes a
final denoising or final step to sigma = 0).

ODE: the endpoint error, the RMS over test trajectories of ``|x - x_ref|``, where ``x_ref`` is the probability-flow
solution from the same ``x_T`` to ``sigma_min`` by dopri5 at rtol = atol = 1e-10 (for runs that end at sigma = 0:
``D(x_ref, sigma_min)``; the two references differ by ``sigma_min^2 |score|``, printed per problem, below every error
in the tables).

Peers (each on every grid below, and with both endings where it supports them: a last step to sigma = 0, as
k-diffusion's ``append_zero`` and diffusers' ``final_sigmas_type="zero"``, or ending at sigma_min):

* k-diffusion 0.1.1: euler, heun, dpm_2, lms, dpmpp_2m, dpmpp_3m_sde(eta=0), dpmpp_2s_ancestral(eta=0), dpm_fast
  (its own grid);
* diffusers 0.42: UniPCMultistepScheduler (bh1, bh2; orders 1--3), DEISMultistepScheduler (orders 2, 3),
  DPMSolverMultistepScheduler and DPMSolverSinglestepScheduler (dpmsolver++, orders 2, 3), EDMDPMSolverMultistep
  (orders 2, 3), EDMEulerScheduler -- driven on the same noise levels (their ``sigmas`` replaced by the grid's, in
  float64), the VP schedulers through ``x_vp = x / sqrt(1 + sigma^2)`` and ``eps = (x - D) / sigma``;
* zju-pi/diff-sampler's iPNDM, iPNDM_v and DEIS-tAB (max_order 4, with and without AFS), transcribed from its
  ``solvers.py`` (not a package), and iPNDM on a GITS grid (its dynamic programme on a 61-point polynomial teacher
  grid, teacher iPNDM, L2 Euler cost, coeff 1.15, on the warm-up points).

Grids (sigma levels from 80 to 0.002): karras rho = 7 (EDM, k-diffusion, diffusers, diff-sampler "polynomial"),
log-SNR uniform (k-diffusion "exponential", diff-sampler "logsnr"), time_uniform rho = 1 and 2 (diff-sampler),
beta(0.6, 0.6) (diffusers ``use_beta_sigmas``). sdekit gets the same grids as arrays, plus grids from
``sdekit.grids.optimize`` fitted on warm-up start points (seeds disjoint from the test points) for the configurations
that do best on the warm-up points at that budget.

Stochastic samplers: MMD^2 to the exact data law (closed form, ``sdekit.metrics.mmd_to_mixture``, kernel at the
narrowest component's scale), with its Monte Carlo floor (exact samples of the same size).

Run: ``PYTHONPATH=src python benchmarks/bench_fewstep.py`` (about 1 hour on 2 shared cores; ``--quick`` a few
minutes: fewer points, NFE 5 and 10, no SDE part).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_samplers import load_k_diffusion as _load_k_diffusion  # noqa: E402
from bench_samplers import mixture as mixture_2d  # noqa: E402

from sdekit import EDMSDE, GaussianMixture, sample, solve  # noqa: E402
from sdekit.grid_search import grid_error  # noqa: E402
from sdekit.grids import make_grid, optimize  # noqa: E402
from sdekit.metrics import mmd_to_mixture, noise_floor  # noqa: E402

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
NFES = (5, 6, 8, 10, 20)


# ----------------------------------------------------------------------------------------------------------
# problems
# ----------------------------------------------------------------------------------------------------------
def _rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def problems() -> dict:
    rng = np.random.default_rng(13)
    out = {"mix2d": mixture_2d()}
    # anisotropic 64-D: 4 components, eigenvalues log-uniform over [1e-3, 1], each component rotated
    d, k = 64, 4
    covs = []
    for _ in range(k):
        q = _rotation(rng, d)
        lam = np.exp(rng.uniform(np.log(1e-3), 0.0, d))
        covs.append((q * lam) @ q.T)
    means = rng.standard_normal((k, d))
    means *= 2.5 / np.linalg.norm(means, axis=1, keepdims=True)
    out["aniso64"] = GaussianMixture(weights=[0.4, 0.3, 0.2, 0.1], means=means, covs=np.array(covs))
    # skewed 1-D: a dominant broad mode, a rare thin far mode and a rarer very thin one
    out["skew1d"] = GaussianMixture(weights=[0.9, 0.08, 0.02], means=[[0.0], [3.0], [-2.5]], covs=[0.5, 0.01, 0.002])
    # skewed 16-D: a broad anisotropic bulk and two rare thin satellites far out
    d = 16
    q = _rotation(rng, d)
    bulk = (q * np.exp(rng.uniform(np.log(0.05), np.log(1.0), d))) @ q.T
    m = np.zeros((3, d))
    m[1, 0], m[2, 1] = 4.0, -3.5
    out["skew16d"] = GaussianMixture(
        weights=[0.94, 0.05, 0.01], means=m, covs=np.array([bulk, 0.01 * np.eye(d), 0.003 * np.eye(d)])
    )
    return out


class LearnedDigits:
    """The learned 8x8-digits denoiser (``sdekit.zoo.digits()``, cast to float64) as an ODE problem: the score
    ``(D(x, sigma) - x) / sigma^2`` on flattened ``(n, 64)`` states (its SDE is EDM's, ``sigma(t) = t`` from 80 to
    0.002, the bench's). No closed-form law, so it is in the ODE table only (errors against a tight dopri5 solve of
    the same network, as for the mixtures); ``sigma_data`` is the network's."""

    dim = 64
    description = "learned denoiser (sdekit.zoo.digits, float64)"

    def __init__(self):
        import sdekit.zoo

        zoo = sdekit.zoo.digits()
        self.net = zoo.denoiser.double()
        self.sigma_data = zoo.sigma_data

    def score(self, sde):
        net = self.net

        def score(x, t):
            x = np.asarray(x, dtype=np.float64)
            n = x.shape[0]
            sig = np.ascontiguousarray(np.broadcast_to(np.asarray(t, dtype=np.float64), (n,)))  # EDM: sigma(t) = t
            with torch.no_grad():
                den = net(torch.from_numpy(np.ascontiguousarray(x).reshape(n, 1, 8, 8)), torch.from_numpy(sig))
            return (den.numpy().reshape(n, -1) - x) / sig[:, None] ** 2

        return score


def describe(mix) -> str:
    return getattr(mix, "description", None) or f"{mix.n_components} components"


def sigma_data(mix) -> float:
    """The data's RMS standard deviation sqrt(tr Cov / d): EDM's sigma_data for this data (a learned model's
    own where it has one)."""
    if getattr(mix, "sigma_data", None) is not None:
        return float(mix.sigma_data)
    return round(float(np.sqrt(np.trace(mix.mean_cov(0.0)[1]) / mix.dim)), 3)


# ----------------------------------------------------------------------------------------------------------
# grids (noise levels, decreasing, N + 1 points from SIGMA_MAX to SIGMA_MIN)
# ----------------------------------------------------------------------------------------------------------
def beta_levels(n_steps, a=0.6, b=0.6):
    """diffusers' ``use_beta_sigmas`` (Lee et al. 2024): beta(a, b) quantiles mapped linearly onto the range."""
    from scipy.stats import beta

    ppf = beta.ppf(1.0 - np.linspace(0.0, 1.0, n_steps + 1), a, b)
    return SIGMA_MIN + ppf * (SIGMA_MAX - SIGMA_MIN)


def grid_levels(sde, name, n_steps):
    if name == "beta0.6":
        return beta_levels(n_steps)
    opts = {
        "karras7": ("karras", {"rho": 7.0}),
        "logsnr": ("log_snr", {}),
        "time_uniform1": ("time_uniform", {"rho": 1.0}),
        "time_uniform2": ("time_uniform", {"rho": 2.0}),
    }[name]
    return make_grid(sde, n_steps, opts[0], **opts[1])  # EDM: t is sigma


GRID_NAMES = ("karras7", "logsnr", "time_uniform1", "time_uniform2", "beta0.6")


# ----------------------------------------------------------------------------------------------------------
# peers
# ----------------------------------------------------------------------------------------------------------
@functools.cache
def load_k_diffusion():
    """k_diffusion.sampling (``sdekit.interop.load_k_diffusion_sampling``, through ``bench_samplers``; it stands in
    for ``torchdiffeq`` when that is missing), loaded once; ``None`` without k-diffusion."""
    return _load_k_diffusion()


class Denoiser:
    """``D(x, sigma)`` on float64 torch tensors from the analytic score; counts evaluations."""

    def __init__(self, score):
        self.score, self.calls = score, 0

    def __call__(self, x, sigma, **kwargs):
        self.calls += 1
        s = sigma.to(x.dtype) if isinstance(sigma, torch.Tensor) else torch.tensor(float(sigma), dtype=x.dtype)
        s = s.expand(x.shape[0]) if s.ndim == 0 else s
        sn = s.numpy()
        return x + torch.from_numpy(sn[:, None] ** 2 * np.asarray(self.score(x.numpy(), sn)))


def kd_peers(kd):
    """name -> (run(D, x, sigmas) -> x, takes_zero_end)."""

    def heun(m, x, s):
        return kd.sample_heun(m, x, s, disable=True)

    return {
        "kd euler": lambda m, x, s: kd.sample_euler(m, x, s, disable=True),
        "kd heun": heun,
        "kd dpm_2": lambda m, x, s: kd.sample_dpm_2(m, x, s, disable=True),
        "kd lms": lambda m, x, s: kd.sample_lms(m, x, s, disable=True),
        "kd dpmpp_2m": lambda m, x, s: kd.sample_dpmpp_2m(m, x, s, disable=True),
        "kd dpmpp_3m(eta=0)": lambda m, x, s: kd.sample_dpmpp_3m_sde(m, x, s, eta=0.0, disable=True),
        "kd dpmpp_2s(eta=0)": lambda m, x, s: kd.sample_dpmpp_2s_ancestral(m, x, s, eta=0.0, disable=True),
    }


def _final(zero: bool) -> str:
    return "zero" if zero else "sigma_min"


def diffusers_peers():
    """name -> (make(final_zero) -> scheduler, kind, supports_zero_end)."""
    import diffusers as dfs
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    out = {}
    for v in ("bh1", "bh2"):
        for p in (1, 2, 3):
            out[f"diffusers UniPC-{p} {v}"] = (
                lambda z, p=p, v=v: dfs.UniPCMultistepScheduler(solver_order=p, solver_type=v,
                                                                final_sigmas_type="zero" if z else "sigma_min"),
                "vp", True)  # fmt: skip
    for p in (2, 3):
        out[f"diffusers DEIS-{p}"] = (lambda z, p=p: dfs.DEISMultistepScheduler(solver_order=p), "vp", False)
        out[f"diffusers DPM++ {p}M"] = (
            lambda z, p=p: dfs.DPMSolverMultistepScheduler(solver_order=p, final_sigmas_type=_final(z)),
            "vp",
            True,
        )
        out[f"diffusers DPM++ {p}S"] = (
            lambda z, p=p: dfs.DPMSolverSinglestepScheduler(solver_order=p, lower_order_final=True,
                                                            final_sigmas_type="zero" if z else "sigma_min"),
            "vp", True)  # fmt: skip
        out[f"diffusers EDM-DPM++ {p}M"] = (
            lambda z, p=p: dfs.EDMDPMSolverMultistepScheduler(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, solver_order=p,
                                                              final_sigmas_type="zero" if z else "sigma_min"),
            "edm", True)  # fmt: skip
    out["diffusers EDM-Euler"] = (
        lambda z: dfs.EDMEulerScheduler(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, final_sigmas_type=_final(z)),
        "edm",
        True,
    )
    return out


def drive_diffusers(sched, kind, D, x, levels, **step_kwargs):
    """Run ``sched`` on the noise ``levels`` (len N + 1, the last may be 0) from ``x`` at ``levels[0]``."""
    n_steps = len(levels) - 1
    sched.set_timesteps(n_steps)
    sched.sigmas = torch.tensor(np.asarray(levels, dtype=np.float64))
    sched.timesteps = torch.arange(n_steps, 0, -1, dtype=torch.float64) * 1000.0 / n_steps
    if hasattr(sched, "_step_index"):
        sched._step_index = None
    sigmas = sched.sigmas
    if kind == "vp":
        state = x / math.sqrt(1.0 + float(levels[0]) ** 2)
    else:
        state = x
    sd = getattr(sched.config, "sigma_data", 0.5)
    for i, t in enumerate(sched.timesteps):
        s = float(sigmas[i])
        a = 1.0 / math.sqrt(1.0 + s * s) if kind == "vp" else 1.0
        xhat = state / a
        den = D(xhat, torch.tensor(s, dtype=torch.float64))
        if kind == "vp":
            out = (xhat - den) / s
        else:  # invert EDM's output preconditioning so that its "denoised" is exactly D
            c_skip, c_out = sd**2 / (s * s + sd**2), s * sd / math.sqrt(s * s + sd**2)
            out = (den - c_skip * state) / c_out
        state = sched.step(out, t, state, **step_kwargs).prev_sample.to(torch.float64)
    s_last = float(levels[-1])
    return state * math.sqrt(1.0 + s_last * s_last) if kind == "vp" else state


# -- zju-pi/diff-sampler (transcribed from diff-solvers-main/solvers.py and solver_utils.py) -------------------
def ds_ipndm(D, x, t_steps, afs=False, max_order=4, variable=False):
    buf = []
    for i in range(len(t_steps) - 1):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        if afs and i == 0:
            d_cur = x / math.sqrt(1.0 + t_cur**2)
        else:
            d_cur = (x - D(x, torch.tensor(t_cur))) / t_cur
        order = min(max_order, i + 1)
        h = t_next - t_cur
        if not variable or order == 1:
            c = {1: [1.0], 2: [1.5, -0.5], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}[
                order
            ]
        else:
            h1 = t_cur - t_steps[i - 1]
            if order == 2:
                c = [(2 + h / h1) / 2, -(h / h1) / 2]
            else:
                h2 = t_steps[i - 1] - t_steps[i - 2]
                t1 = (1 - h / (3 * (h + h1)) * (h * (h + h1)) / (h1 * (h1 + h2))) / 2
                if order == 3:
                    c = [(2 + h / h1) / 2 + t1, -(h / h1) / 2 - (1 + h1 / h2) * t1, t1 * h1 / h2]
                else:
                    h3 = t_steps[i - 2] - t_steps[i - 3]
                    t2 = ((1 - h / (3 * (h + h1))) / 2 + (1 - h / (2 * (h + h1))) * h / (6 * (h + h1 + h2))) * (
                        h * (h + h1) * (h + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3))  # fmt: skip
                    q = h1 * (h1 + h2) / (h2 * (h2 + h3))
                    c = [(2 + h / h1) / 2 + t1 + t2, -(h / h1) / 2 - (1 + h1 / h2) * t1 - (1 + h1 / h2 + q) * t2,
                         t1 * h1 / h2 + (h1 / h2 + q * (1 + h2 / h3)) * t2, -t2 * q * h1 / h2]  # fmt: skip
        hist = [d_cur] + buf[::-1]
        x = x + h * sum(cj * dj for cj, dj in zip(c, hist))
        buf = (buf + [d_cur])[-(max_order - 1) :] if max_order > 1 else []
    return x


def ds_deis_coeffs(t_steps, max_order=4, n_quad=10000, eps_s=1e-3):
    """diff-sampler's ``get_deis_coeff_list`` (tAB), in float64."""
    t_steps = torch.as_tensor(t_steps, dtype=torch.float64)
    smin, smax = t_steps[-1].item(), t_steps[0].item()
    beta_d = 2 * (np.log(smin**2 + 1) / eps_s - np.log(smax**2 + 1)) / (eps_s - 1)
    beta_min = np.log(smax**2 + 1) - 0.5 * beta_d
    ts = ((beta_min**2 + 2 * beta_d * (t_steps**2 + 1).log()).sqrt() - beta_min) / beta_d
    coeffs = []
    for i in range(len(ts) - 1):
        order = min(i + 1, max_order)
        if order == 1:
            coeffs.append([])
            continue
        taus = torch.linspace(float(ts[i]), float(ts[i + 1]), n_quad, dtype=torch.float64)
        dtau = (ts[i + 1] - ts[i]) / n_quad
        prev = ts[[i - k for k in range(order)]]
        alpha = torch.exp(-0.5 * taus**2 * beta_d - taus * beta_min)
        dlog = -(beta_d * taus + beta_min)
        integrand = -0.5 * dlog / torch.sqrt(alpha * (1 - alpha))
        row = []
        for j in range(order):
            poly = torch.ones_like(taus)
            for k in range(order):
                if k != j:
                    poly = poly * (taus - prev[k]) / (prev[j] - prev[k])
            row.append(float(torch.sum(integrand * poly) * dtau))
        coeffs.append(row)
    return coeffs


def ds_deis(D, x, t_steps, afs=False, max_order=4):
    coeff = ds_deis_coeffs(t_steps, max_order)
    buf = []
    for i in range(len(t_steps) - 1):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        if afs and i == 0:
            d_cur = x / math.sqrt(1.0 + t_cur**2)
        else:
            d_cur = (x - D(x, torch.tensor(t_cur))) / t_cur
        order = min(max_order, i + 1)
        if order == 1:
            x = x + (t_next - t_cur) * d_cur
        else:
            hist = [d_cur] + buf[::-1]
            x = x + sum(c * dj for c, dj in zip(coeff[i], hist))
        buf = (buf + [d_cur])[-(max_order - 1) :]
    return x


def ds_peers(D) -> tuple:
    """diff-sampler's few-step samplers on the denoiser ``D``: ``(label, run(x, t_steps, afs))`` each."""
    return (("diff-sampler iPNDM", lambda x, t, a: ds_ipndm(D, x, t, afs=a)),
            ("diff-sampler iPNDM_v", lambda x, t, a: ds_ipndm(D, x, t, afs=a, variable=True)),
            ("diff-sampler DEIS-tAB3", lambda x, t, a: ds_deis(D, x, t, afs=a)))  # fmt: skip


def ds_gits_levels(D, x_warm, n_steps, teacher_points=61, coeff=1.15):
    """GITS (diff-sampler ``gits_utils.get_dp_list``, metric "l2"): teacher iPNDM on a polynomial rho = 7 grid of
    ``teacher_points`` points; the DP picks ``n_steps`` intervals."""
    ramp = np.linspace(0.0, 1.0, teacher_points)
    t = (SIGMA_MAX ** (1 / 7) + ramp * (SIGMA_MIN ** (1 / 7) - SIGMA_MAX ** (1 / 7))) ** 7
    traj, eps, buf, xc = [x_warm], [], [], x_warm
    for i in range(teacher_points - 1):  # the teacher iPNDM, keeping the trajectory and d
        d_cur = (xc - D(xc, torch.tensor(t[i]))) / t[i]
        eps.append(d_cur)
        order = min(4, i + 1)
        c = {1: [1.0], 2: [1.5, -0.5], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}[order]
        hist = [d_cur] + buf[::-1]
        xc = xc + (t[i + 1] - t[i]) * sum(cj * dj for cj, dj in zip(c, hist))
        buf = (buf + [d_cur])[-3:]
        traj.append(xc)
    m = teacher_points
    cost = np.zeros((m, m))
    for i in range(m - 1):
        for j in range(i + 1, m):
            xn = traj[i] + (t[j] - t[i]) * eps[i]
            cost[i, j] = float(torch.linalg.norm(xn - traj[j], dim=1).mean())
    big_k = n_steps
    value = np.full((m, big_k + 1), np.inf)
    for i in range(m):
        value[i, 1] = cost[i, -1]
    for k in range(2, big_k + 1):
        for j in range(m - 1):
            for i in range(j + 1, m - 1):
                value[j, k] = min(value[j, k], cost[j, i] + coeff * value[i, k - 1])
    phi, w = [0], 0
    for k in range(big_k, 1, -1):
        for j in range(w + 1, m):
            if value[w, k] == cost[w, j] + coeff * value[j, k - 1]:
                phi.append(j)
                w = j
                break
    phi.append(m - 1)
    return t[phi]


# ----------------------------------------------------------------------------------------------------------
# sdekit configurations
# ----------------------------------------------------------------------------------------------------------
def sdekit_ode_configs(sd: float) -> dict:
    """label -> solver instance (``AnalyticFirstStep`` gives the 1-NFE-per-step solvers diff-sampler's AFS)."""
    from sdekit.solvers import AnalyticFirstStep, get_solver

    specs = ["ipndm", "ipndm(afs=True)", "ipndm_v", "ipndm_v(afs=True)", "deis", "deis(afs=True)", "deis(order=4)",
             "deis(order=4, afs=True)", "deis(variant='logrho')", "deis(variant='rhoab', order=4)",
             "deis(variant='rhoab', order=4, afs=True)", "unipc(order=2)", "unipc", "unipc(variant='bh1')",
             "unipc(order=4)", "dpmpp_2m", "dpmpp_3m", "dpmpp_pc(order=2)", "dpmpp_pc(order=3)",
             f"dpmpp_pc(order=2, sigma_data={sd})", f"dpmpp_pc(order=3, sigma_data={sd})",
             f"dpmpp_pc(order=4, sigma_data={sd})", "sa_solver(tau=0.0)"]  # fmt: skip
    out = {spec: get_solver(spec) for spec in specs}
    for spec in ["unipc(order=2)", "unipc", "dpmpp_3m", f"dpmpp_pc(order=2, sigma_data={sd})",
                 f"dpmpp_pc(order=3, sigma_data={sd})", "sa_solver(tau=0.0)"]:  # fmt: skip
        out[f"AnalyticFirstStep({spec})"] = AnalyticFirstStep(spec)
    return out


def sdekit_steps(solver, sde, pf, budget, denoise):
    """``(steps, nfe)``: the most steps whose NFE plus the denoising fits ``budget``, and that NFE."""
    n = 0
    while solver.nfe(make_grid(sde, n + 1, "karras"), pf) + int(denoise) <= budget:
        n += 1
    return n, (solver.nfe(make_grid(sde, n, "karras"), pf) + int(denoise) if n else 0)


# ----------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------
def rms(x, ref):
    d = np.asarray(x) - np.asarray(ref)
    return float(np.sqrt(np.mean(np.sum(d.reshape(d.shape[0], -1) ** 2, axis=1))))


def run_ode(name, mix, nfes, n_test, n_warm, n_opt, log, holdout=1.0 / 3.0):
    sde = EDMSDE(SIGMA_MIN, SIGMA_MAX)
    score = mix.score(sde)
    pf = sde.probability_flow(score)
    sd = sigma_data(mix)
    d = mix.dim
    x_test = sde.prior_sample((n_test, d), seed=1)
    x_warm = sde.prior_sample((n_warm, d), seed=2)
    t0 = time.perf_counter()
    ref = solve(pf, x_test, sde.T, SIGMA_MIN, "dopri5", rtol=1e-10, atol=1e-10).x
    ref_zero = ref + SIGMA_MIN**2 * score(ref, np.full(n_test, SIGMA_MIN))
    ref_w = solve(pf, x_warm, sde.T, SIGMA_MIN, "dopri5", rtol=1e-10, atol=1e-10).x
    log(f"\n## {name}: d = {d}, {describe(mix)}, sigma_data = {sd}; {n_test} test / {n_warm} warm-up "
        f"trajectories; |ref at 0 - ref at sigma_min| = {rms(ref_zero, ref):.1e} "
        f"(reference {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    kd = load_k_diffusion()
    D = Denoiser(score)
    xt = torch.from_numpy(x_test)
    rows = []  # (nfe, side, label, nfe_used, error)

    def add(budget, side, label, used, err):
        rows.append((budget, side, label, used, err))

    for budget in nfes:
        tb = time.perf_counter()
        # ---- peers ------------------------------------------------------------------------------------
        for g in GRID_NAMES:
            for zero in (True, False):
                end = "->0" if zero else ""
                target = ref_zero if zero else ref
                # 1-NFE-per-step methods: budget steps; the step to 0 is one of them
                lv1 = np.r_[grid_levels(sde, g, budget - 1), 0.0] if zero else grid_levels(sde, g, budget)
                if kd is not None:
                    for label, run in kd_peers(kd).items():
                        two = label in ("kd heun", "kd dpm_2", "kd dpmpp_2s(eta=0)")
                        if two:  # 2 NFE per step; a last step to 0 costs 1
                            n = (budget + 1) // 2 if zero else budget // 2
                            if n < 1:
                                continue
                            lv = np.r_[grid_levels(sde, g, n - 1), 0.0] if zero else grid_levels(sde, g, n)
                            if zero and n == 1:
                                continue
                        else:
                            lv = lv1
                        D.calls = 0
                        out = run(D, xt.clone(), torch.from_numpy(lv))
                        add(budget, "peer", f"{label} [{g}{end}]", D.calls, rms(out.numpy(), target))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for label, (make, kind, takes_zero) in diffusers_peers().items():
                        if zero and not takes_zero:
                            continue
                        D.calls = 0
                        try:
                            out = drive_diffusers(make(zero), kind, D, xt.clone(), lv1)
                            err = rms(out.numpy(), target)
                        except (RuntimeError, ValueError, IndexError) as exc:  # a scheduler refusing a grid
                            log(f"  ({label} [{g}{end}] failed: {exc})")
                            continue
                        add(budget, "peer", f"{label} [{g}{end}]", D.calls, err if math.isfinite(err) else math.inf)
                if not zero:
                    for label, fn in ds_peers(D):
                        for afs in (False, True):
                            lv = grid_levels(sde, g, budget + int(afs))
                            D.calls = 0
                            out = fn(xt.clone(), [float(v) for v in lv], afs)
                            add(budget, "peer", f"{label}{' afs' if afs else ''} [{g}]", D.calls, rms(out.numpy(), ref))
        if kd is not None:
            D.calls = 0
            out = kd.sample_dpm_fast(D, xt.clone(), SIGMA_MIN, SIGMA_MAX, budget, disable=True)
            add(budget, "peer", "kd dpm_fast [its log-SNR grid]", D.calls, rms(out.numpy(), ref))
        for afs in (False, True):
            lv = ds_gits_levels(D, torch.from_numpy(x_warm), budget + int(afs))
            D.calls = 0
            out = ds_ipndm(D, xt.clone(), [float(v) for v in lv], afs=afs)
            add(budget, "peer", f"diff-sampler iPNDM{' afs' if afs else ''} [GITS]", D.calls, rms(out.numpy(), ref))
        # ---- sdekit on the same grids ---------------------------------------------------------------------
        warm_scores = {}
        configs = sdekit_ode_configs(sd)
        for spec, solver in configs.items():
            for denoise in (False, True):
                n, used = sdekit_steps(solver, sde, pf, budget, denoise)
                if n < 1:
                    continue
                for g in GRID_NAMES:
                    grid = grid_levels(sde, g, n)
                    tag = f"sdekit {spec}{' +denoise' if denoise else ''} [{g}]"
                    rz = ref_zero if denoise else ref
                    err = grid_error(pf, solver, x_test, grid, rz, denoise=denoise)
                    add(budget, "sdekit", tag, used, err)
                    # the same on the warm-up points, to choose what to optimise without looking at the test points
                    rw = ref_w + (SIGMA_MIN**2 * score(ref_w, np.full(n_warm, SIGMA_MIN)) if denoise else 0.0)
                    ew = grid_error(pf, solver, x_warm, grid, rw, denoise=denoise)
                    key = (spec, denoise)
                    warm_scores[key] = min(warm_scores.get(key, math.inf), ew)
        # ---- sdekit optimised grids, for the configurations best on the warm-up points ---------------------
        for spec, denoise in sorted(warm_scores, key=warm_scores.get)[:n_opt]:
            to = time.perf_counter()
            solver = configs[spec]
            n, used = sdekit_steps(solver, sde, pf, budget, denoise)
            inits = [grid_levels(sde, g, n) for g in GRID_NAMES]
            og = optimize(
                sde, score, solver, budget, x_T=x_warm, init=inits, denoise=denoise, restarts=2, holdout=holdout
            )
            rz = ref_zero if denoise else ref
            err = grid_error(pf, solver, x_test, og, rz, denoise=denoise)
            add(budget, "sdekit", f"sdekit {spec}{' +denoise' if denoise else ''} [optimized]", used, err)
            levels = np.array2string(og, precision=4, max_line_width=200)
            log(f"  optimized {spec}{' +denoise' if denoise else ''} at NFE {budget}: test error {err:.2e} "
                f"({time.perf_counter() - to:.0f} s); levels {levels}")  # fmt: skip
        log(f"  NFE {budget}: {time.perf_counter() - tb:.0f} s")
    return rows


# ----------------------------------------------------------------------------------------------------------
# stochastic samplers
# ----------------------------------------------------------------------------------------------------------
def kd_sde_peers(kd):
    """name -> (run(D, x, sigmas, seed) -> x, NFE per step)."""

    def iid(x):  # one normalised Brownian increment per step on disjoint intervals: i.i.d. normals, same law
        return lambda sigma, sigma_next: torch.randn_like(x)

    def seeded(fn):
        def run(m, x, s, seed):
            torch.manual_seed(seed)
            return fn(m, x, s)

        return run

    out = {"kd euler_ancestral": (seeded(lambda m, x, s: kd.sample_euler_ancestral(m, x, s, disable=True)), 1)}
    for eta in (1.0, 0.5):
        out[f"kd dpmpp_2m_sde(eta={eta})"] = (seeded(lambda m, x, s, eta=eta: kd.sample_dpmpp_2m_sde(
            m, x, s, eta=eta, noise_sampler=iid(x), disable=True)), 1)  # fmt: skip
        out[f"kd dpmpp_3m_sde(eta={eta})"] = (seeded(lambda m, x, s, eta=eta: kd.sample_dpmpp_3m_sde(
            m, x, s, eta=eta, noise_sampler=iid(x), disable=True)), 1)  # fmt: skip
    out["kd dpmpp_sde"] = (seeded(lambda m, x, s: kd.sample_dpmpp_sde(m, x, s, disable=True)), 2)
    out["kd heun(churn=40)"] = (seeded(lambda m, x, s: kd.sample_heun(m, x, s, s_churn=40.0, s_tmin=0.05, s_tmax=50.0,
                                                                     disable=True)), 2)  # fmt: skip
    return out


def diffusers_sde_peers():
    """name -> (make(final_zero) -> scheduler, kind, supports_zero_end, step kwargs factory(seed))."""
    import diffusers as dfs

    def gen(seed):
        return {"generator": torch.Generator().manual_seed(seed)}

    out = {}
    for p in (2, 3):
        for tau in (1.0, 0.5):
            out[f"diffusers SA-Solver-{p} tau={tau}"] = (
                lambda z, p=p, tau=tau: dfs.SASolverScheduler(predictor_order=p, corrector_order=p,
                                                              tau_func=lambda t: tau), "vp", False, gen)  # fmt: skip
    out["diffusers SDE-DPM++ 2M"] = (
        lambda z: dfs.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=2,
                                                  final_sigmas_type=_final(z)), "vp", True, gen)  # fmt: skip
    out["diffusers EDM SDE-DPM++ 2M"] = (
        lambda z: dfs.EDMDPMSolverMultistepScheduler(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, solver_order=2,
                                                     algorithm_type="sde-dpmsolver++", final_sigmas_type=_final(z)),
        "edm", True, gen)  # fmt: skip
    out["diffusers EDM-Euler churn=40"] = (
        lambda z: dfs.EDMEulerScheduler(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, final_sigmas_type=_final(z)),
        "edm", True, lambda seed: {**gen(seed), "s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0})  # fmt: skip
    return out


def sdekit_sde_configs(sd: float) -> list:
    return ["sa_solver", "sa_solver(tau=0.5)", "sa_solver(tau=0.25)",
            "sa_solver(predictor_order=2, corrector_order=2)",
            "sa_solver(predictor_order=2, corrector_order=3, tau=0.5)", "dpmpp_sde_pc(order=2)",
            "dpmpp_sde_pc(order=3)",
            f"dpmpp_sde_pc(order=2, sigma_data={sd})", f"dpmpp_sde_pc(order=3, sigma_data={sd})", "dpmpp_2m_sde",
            "dpmpp_3m_sde", "edm(S_churn=10.0)", "edm", "restart", "restart(restart_interval=(0.05, 1.0))",
            "restart(restart_steps=1)", "ancestral"]  # fmt: skip


def run_sde(name, mix, nfes, n_sde, log):
    sde = EDMSDE(SIGMA_MIN, SIGMA_MAX)
    score = mix.score(sde)
    sd = sigma_data(mix)
    d = mix.dim
    x_T = sde.prior_sample((n_sde, d), seed=3)

    def metric(x):
        return mmd_to_mixture(np.asarray(x), mix)  # unbiased MMD^2 to the data law, kernel at the finest scale

    floor = noise_floor(metric, lambda size, s: mix.sample(size, seed=s), n_sde, repeats=5, seed=500, reference=())
    log(f"\n## {name} (stochastic): {n_sde} samples; MMD^2 floor (exact samples) {floor}")
    kd = load_k_diffusion()
    D = Denoiser(score)
    xt = torch.from_numpy(x_T)
    rows = []
    for budget in nfes:
        tb = time.perf_counter()
        for g in GRID_NAMES:
            for zero in (True, False):
                end = "->0" if zero else ""
                if kd is not None:
                    for label, (run, per) in kd_sde_peers(kd).items():
                        n = (budget + 1) // 2 if (per == 2 and zero) else budget // per
                        if n < 1 or (zero and per == 2 and n == 1):
                            continue
                        lv = np.r_[grid_levels(sde, g, n - 1), 0.0] if zero else grid_levels(sde, g, n)
                        D.calls = 0
                        out = run(D, xt.clone(), torch.from_numpy(lv), 7)
                        rows.append((budget, "peer", f"{label} [{g}{end}]", D.calls, metric(out.numpy())))
                lv1 = np.r_[grid_levels(sde, g, budget - 1), 0.0] if zero else grid_levels(sde, g, budget)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for label, (make, kind, takes_zero, kwargs) in diffusers_sde_peers().items():
                        if zero and not takes_zero:
                            continue
                        D.calls = 0
                        try:
                            out = drive_diffusers(make(zero), kind, D, xt.clone(), lv1, **kwargs(7))
                        except (RuntimeError, ValueError, IndexError) as exc:
                            log(f"  ({label} [{g}{end}] failed: {exc})")
                            continue
                        val = metric(out.numpy()) if torch.isfinite(out).all() else math.inf
                        rows.append((budget, "peer", f"{label} [{g}{end}]", D.calls, val))
        for spec in sdekit_sde_configs(sd):
            from sdekit.solvers import get_solver

            solver = get_solver(spec)
            for denoise in (False, True):
                for g in GRID_NAMES:
                    n = 0
                    while solver.nfe(grid_levels(sde, g, n + 1), sde.reverse(score)) + int(denoise) <= budget:
                        n += 1
                    if n < 1:
                        continue
                    grid = grid_levels(sde, g, n)
                    used = solver.nfe(grid, sde.reverse(score)) + int(denoise)
                    try:
                        sol = sample(sde, score, x_T=x_T, solver=solver, grid=grid, denoise=denoise, seed=7,
                                     process="sde")  # fmt: skip
                        val = metric(sol.x)
                    except (FloatingPointError, ValueError):
                        val = math.inf
                    rows.append((budget, "sdekit", f"sdekit {spec}{' +denoise' if denoise else ''} [{g}]", used, val))
        log(f"  NFE {budget}: {time.perf_counter() - tb:.0f} s")
    return rows, floor


def summary(name, rows, log, what="ODE endpoint error", resolution=None):
    """Best sdekit row against best peer row per budget. ``resolution``: for a metric with a Monte Carlo floor, the
    value below which an error is not distinguished from exact samples; ratios are then only printed when the best
    peer is above it."""
    log(f"\n| {name} ({what}) | NFE | best sdekit | error | best peer | error | sdekit / peer |")
    log("| --- | --- | --- | --- | --- | --- | --- |")
    ratios = {}
    for budget in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == budget and r[1] == "sdekit" and r[3] <= budget]
        peer = [r for r in rows if r[0] == budget and r[1] == "peer" and r[3] <= budget]
        bm, bp = min(mine, key=lambda r: r[4]), min(peer, key=lambda r: r[4])
        if resolution is not None and bp[4] <= resolution:
            ratios[budget] = float("nan")
            cell = "both within the floor"
        else:
            ratios[budget] = max(bm[4], 0.0) / bp[4]
            at_floor = resolution is not None and bm[4] <= resolution
            cell = f"{ratios[budget]:.2f}" + (" (sdekit within the floor)" if at_floor else "")
        log(f"| {name} | {budget} | {bm[2]} | {bm[4]:.2e} | {bp[2]} | {bp[4]:.2e} | {cell} |")
    return ratios


def default_grids(log):
    """The named grids for the few-step solvers' defaults: probability-flow endpoint error (RMS over 100 start
    points against dopri5 at 1e-10) on two mixtures, and the exact W2 of the stochastic samplers' output law on
    Gaussian data, under VP and EDM."""
    from sdekit import VPSDE, Gaussian
    from sdekit.bench import exact_law
    from sdekit.metrics import gaussian_w2
    from sdekit.solvers import get_solver

    names = ("karras", "log_snr", "time_uniform")
    probs = problems()
    sdes = (("edm", EDMSDE(SIGMA_MIN, SIGMA_MAX), SIGMA_MIN), ("vp", VPSDE(), 1e-3))
    log("\n| SDE | problem | solver | steps | " + " | ".join(names) + " |")
    log("| --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    for sde_name, sde, t_end in sdes:
        for pname in ("mix2d", "skew16d"):
            mix = probs[pname]
            pf = sde.probability_flow(mix.score(sde))
            x = sde.prior_sample((100, mix.dim), seed=1)
            ref = solve(pf, x, sde.T, t_end, "dopri5", rtol=1e-10, atol=1e-10).x
            for spec in ("unipc", "ipndm", "deis", "sa_solver(tau=0.0)"):
                for n in (6, 10):
                    errs = [grid_error(pf, get_solver(spec), x, make_grid(sde, n, g, t_end), ref) for g in names]
                    log(f"| {sde_name} | {pname} | {spec} | {n} | " + " | ".join(f"{e:.2e}" for e in errs) + " |")
    log("\n| SDE | Gaussian | solver | steps | " + " | ".join(f"W2 {g}" for g in names) + " |")
    log("| --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    gaussians = (Gaussian([0.5, -0.5], [0.3, 0.05]), Gaussian([1.0, 0.0, 0.0, 2.0], [1.0, 0.01, 0.1, 0.5]))
    for sde_name, sde, t_end in sdes:
        for data in gaussians:
            target = data.mean_cov(t_end, sde)
            for spec in ("sa_solver", "restart", "dpmpp_3m_sde"):
                for n in (5, 10, 20):
                    w2 = [
                        gaussian_w2(*exact_law(spec, sde, data, make_grid(sde, n, g, t_end), process="sde"), *target)
                        for g in names
                    ]
                    log(f"| {sde_name} | {data.dim}-D | {spec} | {n} | " + " | ".join(f"{e:.1e}" for e in w2) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--default-grids", action="store_true", help="only the named-grid table behind the defaults")
    ap.add_argument("--quick", action="store_true", help="fewer points, NFE 5 and 10, mix2d and skew1d only")
    ap.add_argument("--problems", nargs="*", default=None)
    ap.add_argument("--nfe", nargs="*", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--n-warm", type=int, default=192, help="warm-up points of optimize (a third held out)")
    ap.add_argument("--n-opt", type=int, default=4, help="configurations whose grid is optimised, per budget")
    ap.add_argument("--all-rows", action="store_true", help="print every row, not only the summaries")
    ap.add_argument("--n-sde", type=int, default=2000, help="samples per stochastic run")
    ap.add_argument("--no-sde", action="store_true", help="skip the stochastic samplers")
    ap.add_argument("--no-ode", action="store_true", help="skip the ODE samplers")
    ap.add_argument("--n-learned", type=int, default=64, help="test and warm-up points of the digits problem")
    ap.add_argument("--n-opt-learned", type=int, default=1, help="configurations optimised on the digits problem")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    if args.default_grids:
        default_grids(functools.partial(print, flush=True))
        return
    probs = problems()
    names = args.problems or (["mix2d", "skew1d"] if args.quick else [*probs, "digits"])
    if "digits" in names:
        probs["digits"] = LearnedDigits()
    nfes = args.nfe or ([5, 10] if args.quick else list(NFES))
    n_test = 100 if args.quick else args.n_test
    n_opt = 2 if args.quick else args.n_opt

    def log(msg):
        print(msg, flush=True)

    start = time.perf_counter()
    table, table_sde = {}, {}
    for name in names:
        learned = isinstance(probs[name], LearnedDigits)
        if not args.no_ode:
            # a network call costs ~100x an analytic score: fewer points, one optimised configuration (--n-opt-learned)
            nt, nw, no = (
                (args.n_learned, args.n_learned, args.n_opt_learned) if learned else (n_test, args.n_warm, n_opt)
            )
            rows = run_ode(name, probs[name], nfes, nt, nw, no, log)
            if args.all_rows:
                for r in sorted(rows, key=lambda r: (r[0], r[4])):
                    log(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3e} |")
            table[name] = summary(name, rows, log)
        if not (args.no_sde or args.quick or learned):  # no closed-form law for the learned model
            rows, floor = run_sde(name, probs[name], nfes, args.n_sde, log)
            if args.all_rows:
                for r in sorted(rows, key=lambda r: (r[0], r[4])):
                    log(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3e} |")
            what = f"stochastic, MMD^2, floor {floor.mean:.1e} +- {floor.std:.1e}"
            table_sde[name] = (summary(name, rows, log, what, floor.resolution), floor)
    for title, tab in (("ODE endpoint error", table), ("stochastic samplers, MMD^2", table_sde)):
        if not tab:
            continue
        log(f"\n| sdekit / best peer ({title}) | " + " | ".join(f"NFE {b}" for b in nfes) + " |")
        log("| --- | " + " | ".join("---" for _ in nfes) + " |")
        for name, ratios in tab.items():
            ratios = ratios[0] if isinstance(ratios, tuple) else ratios
            log(f"| {name} | " + " | ".join(f"{ratios[b]:.2f}" for b in nfes) + " |")
    log(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
