"""Peers' samplers as rows of ``sdekit compare --peers``: k-diffusion's samplers and diffusers' schedulers.

Every peer integrates the same problem as sdekit's rows -- the same score, the same start points ``x_T``, the same
schedule, the same end -- and its NFE is counted by wrapping the denoiser it calls (one call is one evaluation per
sample). How each one is driven:

* **Coordinates.** Both packages work in EDM's variance-exploding coordinates ``x_ve = x / alpha(t)`` at the noise
  level ``s = sigma(t) / alpha(t)`` (``LinearSDE.edm_sigma``); the denoiser they call is
  ``D(x_ve, s) = (x + sigma^2 score(x, t)) / alpha`` at ``x = alpha x_ve``, ``t = t_from_log_snr(-log s)``: the
  identity for :class:`~sdekit.EDMSDE`, an exact change of variables for any other linear SDE.
* **k-diffusion** (``sample_euler``, ``sample_heun``, ``sample_dpm_2``, ``sample_lms``, ``sample_dpmpp_2m``,
  ``sample_euler_ancestral``, ``sample_dpmpp_2m_sde``, ``sample_dpmpp_3m_sde``) gets the noise levels of sdekit's own
  grid, ``edm_sigma(t_i)``, and a final 0 when the run ends at sigma = 0 (a model's samples): that last step is one
  evaluation ``D(x, s_min)``, the same one sdekit spends on its final denoising. Its SDE samplers draw i.i.d.
  normals per step from a seeded generator (their increments are on disjoint intervals, so this is the law of
  their default Brownian-tree noise); ``sample_euler_ancestral`` uses torch's global generator, seeded.
* **diffusers' VP schedulers** (``DPMSolverMultistepScheduler`` with ``dpmsolver++`` and ``sde-dpmsolver++``,
  ``DPMSolverSinglestepScheduler``, ``UniPCMultistepScheduler``, ``DEISMultistepScheduler``) are discrete-time: they
  take 1000 training ``betas``. They are given ``trained_betas`` whose noise levels are log-uniform between the
  problem's end and start levels, and ``use_karras_sigmas`` (sdekit grid ``karras``) or ``use_exponential_sigmas``
  (``log_snr``), so their schedule is the same family between the same ends as sdekit's; ``prediction_type="sample"``
  with ``D`` evaluated at the scheduler's own level of the step (``scheduler.sigmas[i]``), their sample being
  ``x_ve / sqrt(1 + s^2)``. Their ``alphas_cumprod`` are float32, so their levels differ from the float64 ones by
  a relative ~1e-3 near ``s_min = 0.002`` (``1 - alphas_cumprod`` is ~4e-6 there, float32's spacing at 1 is 6e-8)
  and their steps compute in float32 whatever the sample's dtype: their errors cannot go below ~1e-6.
* **diffusers' EDM schedulers** (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``) take ``sigma_min``,
  ``sigma_max``, the schedule (``karras`` / ``exponential``); their network output is preconditioned
  (``D = c_skip x + c_out F``), so ``F = (D - c_skip x) / c_out`` is passed.
* **Ends.** With ``final_sigmas_type="zero"`` (runs that end at sigma = 0) the last step is ``D(x, s_min)`` again.
  Schedulers that cannot reach sigma = 0 (``DEISMultistepScheduler`` has no ``final_sigmas_type``), and every
  scheduler on a run that ends at ``s_min > 0``, repeat their last level: the last ``step`` is a zero-length step
  from ``s_min`` to ``s_min`` that would cost one more evaluation and change nothing. It is not taken (the loop stops
  at ``s_min``); a run that must end at sigma = 0 then spends one counted evaluation on ``D(x, s_min)``.
* **Budgets.** For each NFE budget the largest number of the peer's steps whose evaluations (counted as above)
  fit is taken; the NFE shown is the counted one.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import math
from dataclasses import dataclass

import numpy as np

from ..grids import make_grid

__all__ = ["PEER_HINT", "PeerTask", "PeerRun", "peer_versions", "peer_runs", "run_peer"]

#: What to install for ``--peers``: the ``torch`` extra installs torch, ``bench`` diffusers (and torchsde, which
#: k-diffusion's sampling module imports); k-diffusion is in no extra: its declared dependencies pull a CUDA build of
#: torch and its training stack, and sdekit loads only its ``sampling`` module, so it is installed without them.
PEER_HINT = (
    "pip install 'sdekit[torch,bench]' (torch; diffusers, torchsde), then pip install --no-deps "
    "k-diffusion==0.1.1.post1 (k-diffusion without its training stack)"
)

#: Number of training levels of the diffusers VP schedulers' ``trained_betas``.
TRAIN_LEVELS = 1000


def peer_versions() -> dict:
    """``{"torch": ..., "k-diffusion": ..., "diffusers": ...}``; ``ImportError`` (one line, what to install)."""
    missing, out = [], {}
    for dist, module in (("torch", "torch"), ("k-diffusion", None), ("diffusers", "diffusers")):
        try:
            if module is None:
                from ..interop import load_k_diffusion_sampling

                load_k_diffusion_sampling()
            else:
                importlib.import_module(module)
            out[dist] = importlib.metadata.version(dist)
        except (ImportError, importlib.metadata.PackageNotFoundError):
            missing.append(dist)
    if missing:
        raise ImportError(f"--peers needs {', '.join(missing)}: {PEER_HINT}")
    return out


@dataclass
class PeerTask:
    """One problem for the peers: the sdekit side's score, start points, schedule and end.

    ``x_T`` is a torch tensor ``(n, *event)`` in sdekit's coordinates at ``sde.T``; ``torch_score``: the score takes
    torch tensors (else numpy float64, as the analytic scores); ``to_zero``: the run ends at sigma = 0 (a model's
    samples, with the final denoising evaluation), else at ``t_end`` itself (the analytic problems' laws at t_end).
    """

    sde: object
    score: object
    x_T: object
    t_end: float
    grid: str
    to_zero: bool
    seed: int
    torch_score: bool
    sigma_data: float = 0.5

    @property
    def s_max(self) -> float:
        return float(self.sde.edm_sigma(float(self.sde.T)))

    @property
    def s_min(self) -> float:
        return float(self.sde.edm_sigma(float(self.t_end)))


class CountedDenoiser:
    """``D(x_ve, s)`` of a :class:`PeerTask` (torch in, torch out), counting its calls."""

    def __init__(self, task: PeerTask):
        self.task, self.calls = task, 0

    def __call__(self, x, sigma, **kwargs):
        import torch

        self.calls += 1
        sde, n = self.task.sde, x.shape[0]
        s = np.broadcast_to(np.asarray(torch.as_tensor(sigma).detach().cpu(), dtype=np.float64).reshape(-1), (n,))
        t = np.asarray(sde.t_from_log_snr(-np.log(s)), dtype=np.float64)
        alpha, sig = (np.asarray(v, dtype=np.float64) for v in sde.marginal(t))
        shape = (n,) + (1,) * (x.ndim - 1)
        if self.task.torch_score:
            a = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).reshape(shape)
            sg = torch.as_tensor(sig, dtype=x.dtype, device=x.device).reshape(shape)
            xt = a * x
            with torch.no_grad():
                sc = self.task.score(xt, torch.as_tensor(t, dtype=x.dtype, device=x.device))
            return (xt + sg * sg * sc) / a
        xn = x.detach().cpu().numpy().astype(np.float64) * alpha.reshape(shape)
        d = (xn + (sig * sig).reshape(shape) * np.asarray(self.task.score(xn, t))) / alpha.reshape(shape)
        return torch.as_tensor(d, dtype=x.dtype, device=x.device)


@dataclass(frozen=True)
class PeerRun:
    """One peer row: ``label``, ``package``, ``process`` (``"ode"`` / ``"sde"``), and how it is driven."""

    label: str
    package: str
    process: str
    kind: str  # "kd" (k-diffusion sampler) or "vp" / "edm" (diffusers scheduler)
    target: str  # the k-diffusion function or the diffusers class
    options: tuple = ()


_KD = (
    ("euler", "ode", "sample_euler", ()),
    ("heun", "ode", "sample_heun", ()),
    ("dpm_2", "ode", "sample_dpm_2", ()),
    ("lms", "ode", "sample_lms", ()),
    ("dpmpp_2m", "ode", "sample_dpmpp_2m", ()),
    ("euler_ancestral", "sde", "sample_euler_ancestral", ()),
    ("dpmpp_2m_sde", "sde", "sample_dpmpp_2m_sde", ()),
    ("dpmpp_3m_sde", "sde", "sample_dpmpp_3m_sde", ()),
)
_DIFFUSERS = (
    ("EDMEuler", "ode", "edm", "EDMEulerScheduler", ()),
    ("EDMDPMSolver++ 2M", "ode", "edm", "EDMDPMSolverMultistepScheduler", (("solver_order", 2),)),
    ("DPMSolver++ 2M", "ode", "vp", "DPMSolverMultistepScheduler", (("solver_order", 2),)),
    ("DPMSolver++ 3M", "ode", "vp", "DPMSolverMultistepScheduler", (("solver_order", 3),)),
    ("DPMSolver++ 2S singlestep", "ode", "vp", "DPMSolverSinglestepScheduler", (("solver_order", 2),)),
    ("UniPC 2", "ode", "vp", "UniPCMultistepScheduler", (("solver_order", 2),)),
    ("DEIS 2", "ode", "vp", "DEISMultistepScheduler", (("solver_order", 2),)),
    (
        "SDE-DPMSolver++ 2M",
        "sde",
        "vp",
        "DPMSolverMultistepScheduler",
        (("solver_order", 2), ("algorithm_type", "sde-dpmsolver++")),
    ),  # fmt: skip
)


def peer_runs(grid: str) -> tuple[list, dict]:
    """``(runs, notes)``: the peer rows for an sdekit grid name, and why some are not run (diffusers' schedulers
    know only the ``karras`` and ``log_snr`` families)."""
    runs = [PeerRun(f"kd {name}", "k-diffusion", proc, "kd", fn, opts) for name, proc, fn, opts in _KD]
    notes = {}
    for name, proc, kind, cls, opts in _DIFFUSERS:
        label = f"diffusers {name}"
        if grid not in ("karras", "log_snr"):
            notes[label] = f"diffusers has no {grid!r} schedule (only karras and log_snr/exponential): not run"
            continue
        runs.append(PeerRun(label, "diffusers", proc, kind, cls, opts))
    return runs, notes


# ----------------------------------------------------------------------------------------------------------
# k-diffusion
# ----------------------------------------------------------------------------------------------------------
def _kd_cost(run: PeerRun, intervals: int, to_zero: bool) -> int:
    two = run.target in ("sample_heun", "sample_dpm_2")
    if not two:
        return intervals
    return 2 * intervals - 1 if to_zero else 2 * intervals


def _kd_levels(task: PeerTask, intervals: int) -> np.ndarray:
    steps = intervals - 1 if task.to_zero else intervals
    ts = make_grid(task.sde, steps, task.grid, task.t_end)
    levels = np.asarray(task.sde.edm_sigma(np.asarray(ts, dtype=np.float64)), dtype=np.float64)
    return np.r_[levels, 0.0] if task.to_zero else levels


def _run_kd(run: PeerRun, task: PeerTask, budget: int):
    import torch

    from ..interop import load_k_diffusion_sampling

    kd = load_k_diffusion_sampling()
    lo = 2 if task.to_zero else 1
    intervals = max((k for k in range(lo, budget + 1) if _kd_cost(run, k, task.to_zero) <= budget), default=0)
    if intervals == 0:
        return None, 0, f"budget {budget} below the sampler's smallest run"
    sigmas = torch.as_tensor(_kd_levels(task, intervals), dtype=torch.float64)
    x = task.x_T / float(task.sde.marginal(float(task.sde.T))[0])
    D = CountedDenoiser(task)
    kwargs = dict(disable=True)
    if run.process == "sde":
        gen = torch.Generator(device=x.device).manual_seed(task.seed)
        torch.manual_seed(task.seed)  # sample_euler_ancestral's default noise sampler uses the global generator
        if run.target != "sample_euler_ancestral":
            kwargs["noise_sampler"] = lambda s, s_next: torch.randn(
                x.shape, generator=gen, dtype=x.dtype, device=x.device
            )
    with torch.no_grad():
        out = getattr(kd, run.target)(D, x, sigmas, **kwargs)
    return _to_sdekit(task, out), D.calls, ""


def _to_sdekit(task: PeerTask, x_ve):
    if task.to_zero:
        return x_ve
    return x_ve * float(task.sde.marginal(float(task.t_end))[0])


# ----------------------------------------------------------------------------------------------------------
# diffusers
# ----------------------------------------------------------------------------------------------------------
def vp_trained_betas(s_min: float, s_max: float, levels: int = TRAIN_LEVELS) -> np.ndarray:
    """Betas of a discrete VP schedule whose noise levels ``sqrt((1 - abar) / abar)`` are log-uniform from ``s_min``
    (training step 0) to ``s_max`` (the last)."""
    s = np.exp(np.linspace(math.log(s_min), math.log(s_max), levels))
    abar = 1.0 / (1.0 + s * s)
    return 1.0 - abar / np.r_[1.0, abar[:-1]]


def make_scheduler(run: PeerRun, task: PeerTask):
    """A configured diffusers scheduler of ``run`` for ``task``."""
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its "call scale_model_input" warning: D is applied unscaled on purpose
    cls = getattr(diffusers, run.target)
    opts = dict(run.options)
    final = {"final_sigmas_type": "zero" if task.to_zero else "sigma_min"}
    schedule = "karras" if task.grid == "karras" else "exponential"
    if run.kind == "edm":
        return cls(sigma_min=task.s_min, sigma_max=task.s_max, sigma_data=task.sigma_data, sigma_schedule=schedule,
                   **final, **opts)  # fmt: skip
    betas = vp_trained_betas(task.s_min, task.s_max)
    kw = dict(trained_betas=betas.tolist(), prediction_type="sample", num_train_timesteps=TRAIN_LEVELS)
    kw["use_karras_sigmas" if schedule == "karras" else "use_exponential_sigmas"] = True
    if run.target != "DEISMultistepScheduler":  # DEIS has no final_sigmas_type: it cannot reach sigma = 0
        kw.update(final)
    else:
        kw["algorithm_type"] = "deis"
    return cls(**kw, **opts)


def _plan_scheduler(run: PeerRun, task: PeerTask, steps: int):
    """``(scheduler, levels float64, steps taken, final denoise?, cost)`` for ``steps`` inference steps."""
    sched = make_scheduler(run, task)
    sched.set_timesteps(steps)
    sig = sched.sigmas.detach().cpu().numpy().astype(np.float64)
    taken = len(sched.timesteps)
    # a repeated final level (equal to float32): the zero-length last step is not taken
    if taken >= 1 and math.isclose(sig[taken], sig[taken - 1], rel_tol=1e-6):
        taken -= 1
    end = sig[taken]
    denoise = bool(task.to_zero and end > 0)
    return sched, sig, taken, denoise, taken + int(denoise)


def _run_diffusers(run: PeerRun, task: PeerTask, budget: int):
    import torch

    plan = None
    for steps in range(budget + 2, 0, -1):  # a skipped repeated final level frees one evaluation
        cand = _plan_scheduler(run, task, steps)
        if 1 <= cand[4] <= budget and cand[2] >= 1:
            plan = cand
            break
    if plan is None:
        return None, 0, f"budget {budget} below the scheduler's smallest run"
    sched, sig, taken, denoise, _ = plan
    D = CountedDenoiser(task)
    x_ve = task.x_T / float(task.sde.marginal(float(task.sde.T))[0])
    dtype = x_ve.dtype
    gen = torch.Generator(device=x_ve.device).manual_seed(task.seed)
    sd = float(getattr(sched.config, "sigma_data", task.sigma_data) or task.sigma_data)
    step_kw = {"generator": gen} if "generator" in inspect.signature(sched.step).parameters else {}
    vp = run.kind == "vp"
    x = x_ve / math.sqrt(1.0 + sig[0] ** 2) if vp else x_ve
    with torch.no_grad():
        for i in range(taken):
            s = sig[i]
            t = sched.timesteps[i]
            xv = x * math.sqrt(1.0 + s * s) if vp else x
            den = D(xv.to(dtype), torch.full((x.shape[0],), s, dtype=torch.float64))
            if vp:
                model_output = den.to(x.dtype)
            else:  # invert the EDM output preconditioning: the scheduler's "denoised" is then exactly D
                c_skip = sd**2 / (s * s + sd**2)
                c_out = s * sd / math.sqrt(s * s + sd**2)
                model_output = (den - c_skip * x) / c_out
            x = sched.step(model_output, t, x, **step_kw).prev_sample
    end = sig[taken]
    x_ve = (x * math.sqrt(1.0 + end * end) if vp else x).to(dtype)
    if denoise:  # the scheduler stops at s_min > 0; the run ends at sigma = 0: one counted denoising evaluation
        x_ve = D(x_ve, torch.full((x.shape[0],), end, dtype=torch.float64))
        return x_ve, D.calls, ""
    if not task.to_zero:
        scale = float(task.sde.marginal(float(task.t_end))[0])
        return x_ve * scale, D.calls, "" if math.isclose(end, task.s_min, rel_tol=1e-2) else f"ends at sigma {end:.3g}"
    return x_ve, D.calls, ""


def run_peer(run: PeerRun, task: PeerTask, budget: int):
    """``(x in sdekit's coordinates at the end or None, counted NFE, note)`` of one peer at one NFE budget."""
    if run.kind == "kd":
        return _run_kd(run, task, budget)
    return _run_diffusers(run, task, budget)
