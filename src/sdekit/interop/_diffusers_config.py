"""diffusers configs read as diffusers' schedulers read them: the training schedule, the class a config comes from,
and short summaries of long arrays for error messages (used by :mod:`sdekit.interop.diffusers`)."""

from __future__ import annotations

import inspect
import math

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar, rescale_zero_terminal_snr
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from .. import _xp
from ..grids import GRIDS, make_grid
from ..validation import integer_at_least
from ._diffusers_flow import FLOW_CLASSES, flow_levels
from ._driver import Stepper, plan_requests

__all__ = ["config_dict", "check_training_schedule", "training_betas", "alphas_cumprod_of", "is_scheduler_class",
           "class_of_config", "keys_of", "summary", "BETA_SCHEDULES", "threshold",
           "SIGMA_STATE_CLASSES", "schedule_points", "Draws", "GeneratorNoise", "SPACINGS",
           "announced_timesteps", "takes_zero_step", "check_thresholding", "check_step_options",
           "accepts", "source_points", "source_defaults", "EDM_CLASSES", "announce_tail",
           "register_other_entries", "posterior_variance", "check_first_evaluation", "finite_levels",
           "check_finite_start", "check_final_step", "schedule_grid"]  # fmt: skip

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "exp")
#: diffusers' timestep spacings (the formulas of DPMSolverMultistepScheduler); sdekit's grid names are accepted too.
SPACINGS = ("linspace", "leading", "trailing")
#: the class name of sdekit's own scheduler (never a timestep source)
OWN_CLASS = "SdekitScheduler"


def summary(values, edge: int = 3) -> str:
    """``[a, b, c, ..., x, y, z] (n values)`` for a long array, the list itself for a short one (error messages)."""
    arr = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values).reshape(-1)
    items = [float(v) if not float(v).is_integer() else int(v) for v in arr.tolist()]
    if len(items) <= 2 * edge + 1:
        return str(items)
    return f"[{', '.join(map(str, items[:edge]))}, ..., {', '.join(map(str, items[-edge:]))}] ({len(items)} values)"


def config_dict(config, name: str) -> dict:
    if hasattr(config, "config") and not isinstance(config, dict):  # a scheduler (or pipeline component)
        config = config.config
    if not isinstance(config, dict):  # FrozenDict is a dict
        raise TypeError(f"{name} must be a diffusers scheduler config (a dict) or a scheduler, got {config!r}")
    return dict(config)


def check_training_schedule(config: dict, name: str, source=None) -> None:
    """``ValueError`` for a config without a DDPM training schedule, or of a flow-matching model (unless of a
    ``source`` class in ``FLOW_CLASSES`` with ``use_flow_sigmas``: :mod:`sdekit.interop._diffusers_flow`)."""
    flow = config.get("use_flow_sigmas") or config.get("prediction_type") == "flow_prediction"
    if flow and not (source in FLOW_CLASSES and config.get("use_flow_sigmas")):
        raise ValueError(
            f"{name} describes a flow-matching model, not a VP (DDPM) training schedule (sdekit reads flow-matching "
            f"levels from the configs of {list(FLOW_CLASSES)} with use_flow_sigmas=True)"
        )
    if config.get("trained_betas") is None and "beta_schedule" not in config:
        raise ValueError(
            f"{name} has no training schedule: it needs beta_schedule (with beta_start, beta_end and "
            f"num_train_timesteps) or trained_betas, as DDPM-family schedulers have; got keys {sorted(config)}"
        )


def training_betas(config: dict, name: str) -> torch.Tensor:
    """``betas`` of a diffusers config, computed as diffusers' schedulers do (float32), zero-SNR rescaled if asked."""
    check_training_schedule(config, name)
    n = integer_at_least(f"{name}['num_train_timesteps']", config.get("num_train_timesteps", 1000), 1)
    trained = config.get("trained_betas")
    schedule = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if trained is not None:
        betas = torch.tensor(np.asarray(trained), dtype=torch.float32)
    elif schedule == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float32)
    elif schedule == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float32) ** 2
    elif schedule == "squaredcos_cap_v2":
        betas = betas_for_alpha_bar(n)
    elif schedule == "exp":  # (HeunDiscreteScheduler's)
        betas = betas_for_alpha_bar(n, alpha_transform_type="exp")
    else:
        raise ValueError(f"{name}['beta_schedule'] must be one of {list(BETA_SCHEDULES)}, got {schedule!r}")
    if config.get("rescale_betas_zero_snr", False):
        betas = rescale_zero_terminal_snr(betas)
    return betas


def alphas_cumprod_of(betas: torch.Tensor, zero_snr: bool) -> torch.Tensor:
    """``cumprod(1 - betas)`` (float32); with zero terminal SNR the last value, exactly 0, becomes ``2**-24`` as
    diffusers' sigma-based schedulers (Euler, DPM-Solver, UniPC) set it: a finite first noise level. (The alternative,
    an SDE whose noise level is infinite at ``T``, has no finite log-SNR at the first step, which every exponential
    integrator divides by, and would not give diffusers' numbers.)"""
    ac = torch.cumprod(1.0 - betas, dim=0)
    if zero_snr:
        # diffusers' clamp; where the schedule's second-to-last value is already below it (the linear schedule),
        # diffusers' noise levels stop increasing at the end, which no SDE has: the last value continues the last
        # ratio of the schedule instead (a noise level about that much above the previous one)
        ac[-1] = 2.0**-24 if float(ac[-2]) > 2.0**-24 else float(ac[-2]) ** 2 / float(ac[-3])
    return ac


def finite_levels(alphas_cumprod: torch.Tensor):
    """``(table, first)``: the leading training timesteps ``0 .. first - 1`` whose ``alphas_cumprod`` is positive and
    decreasing (the table the scheduler's DiscreteVPSDE interpolates, continued above it along its last segment) and
    ``first``, the first timestep where it is not (``None``: none). Large betas (diffusers' tests use ``beta_end=2``)
    make ``cumprod(1 - betas)`` underflow in float32 (subnormal values that stop decreasing, then 0: an infinite noise
    level) or turn negative (betas above 1: no noise level); diffusers keeps such a schedule and steps at the
    timesteps below that, where its levels are finite. A
    one-entry table gets a second entry continuing its noise level ``s_0`` linearly in ``s`` (as the process continues
    it below timestep 0): ``s_1 = 2 s_0`` (one trained timestep: its only step is the final denoising one)."""
    ac = torch.as_tensor(alphas_cumprod).to(torch.float64)
    bad = torch.nonzero(~(ac > 0) | (torch.cat([ac[:1] * 0 + 2, ac[:-1]]) <= ac)).reshape(-1)
    first = int(bad[0]) if bad.numel() else None
    table = ac[:first] if first is not None else ac
    if table.numel() == 0:
        raise ValueError(
            f"the training schedule's first alphas_cumprod is {float(ac[0])!r} (betas[0] >= 1): no noise level is "
            "finite; beta_start (or trained_betas[0]) must be below 1"
        )
    if table.numel() == 1:
        table = torch.cat([table, 1.0 / (1.0 + 4.0 * (1.0 - table) / table)])
    return table, first


def check_finite_start(first, config, timestep) -> None:
    """``ValueError`` for a run that starts at a training ``timestep`` at or above ``first`` (see
    :func:`finite_levels`), where the noise level is infinite or undefined: diffusers' own step divides by
    ``sqrt(alphas_cumprod)`` there."""
    if first is not None and float(timestep) > first - 1:
        cfg = config
        given = "trained_betas" if cfg.trained_betas is not None else (
            f"beta_start={cfg.beta_start!r}, beta_end={cfg.beta_end!r}, beta_schedule={cfg.beta_schedule!r}, "
            f"num_train_timesteps={cfg.num_train_timesteps!r}"
        )  # fmt: skip
        raise ValueError(
            f"a run cannot start at timestep {float(timestep)}: the training schedule ({given}) has alphas_cumprod "
            f"no longer decreasing or 0 (float32 underflow) or negative (betas above 1) from timestep {first} on, an "
            f"infinite or undefined noise level; start below timestep {first} (set_begin_index, a pipeline's strength)"
        )


def is_scheduler_class(name) -> bool:
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    return isinstance(cls, type) and issubclass(cls, SchedulerMixin) and name != OWN_CLASS


def class_of_config(config: dict):
    """The diffusers scheduler class a config without ``_class_name`` comes from (a directly constructed scheduler's
    config has none): the one whose constructor takes exactly the config's keys (of several, such as DDPMScheduler
    and its twin DDPMParallelScheduler, the shortest name); ``None`` when none does; ``ValueError`` when several
    classes that are not twins do (LMS and KDPM2 take the same keys)."""
    keys = {k for k in config if not k.startswith("_")}
    if "solver" in keys:  # one of ours
        return None
    found = []
    for name in dir(diffusers):
        if name.endswith("Scheduler") and is_scheduler_class(name):
            params = set(inspect.signature(getattr(diffusers, name).__init__).parameters) - {"self", "kwargs"}
            if params == keys:
                found.append(name)
    scheduled = "beta_schedule" in keys or "trained_betas" in keys
    if len({name.replace("Parallel", "") for name in found}) > 1 and scheduled:
        # (twins aside) the keys do not tell the class; (without a training schedule the config is refused anyway)
        raise ValueError(
            f"the config's keys are those of several diffusers schedulers {sorted(found)}: pass the scheduler itself "
            "(SdekitScheduler.from_config(pipe.scheduler)) or a config with its '_class_name'"
        )
    return min(found, key=lambda name: (len(name), name)) if found else None


def source_defaults(source) -> dict:
    """The constructor defaults of diffusers scheduler class ``source`` (a name, or ``None``: no entries)."""
    if source is None or not is_scheduler_class(source):
        return {}
    params = inspect.signature(getattr(diffusers, source).__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty and p.name != "self"}


def keys_of(cls, config: dict) -> dict:
    """The entries of ``config`` that ``cls``'s constructor takes (no warnings about the others)."""
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    return {k: v for k, v in config.items() if k in params}


# -- the method of a diffusers scheduler class -------------------------------------------------------------

#: ``state_variable`` of diffusers' sigma-parameterized schedulers: the pipeline's latents are ``x / alpha`` (the
#: variable of k-diffusion and EDM), ``init_noise_sigma`` is about ``sigma_max``, and ``scale_model_input`` divides by
#: ``sqrt(sigma^2 + 1)``
SIGMA_STATE_CLASSES = (
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
)
#: two-evaluation classes that list each step's midpoint evaluation between its step points: timesteps
#: ``[t0, m0, t1, m1, .., t_last]``, sigmas ``[s0, s1, s1, .., 0, 0, 0]`` (DPM-Solver-2 in the noise level)
MIDPOINT_CLASSES = ("KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler")
#: diffusers' scheduler classes of EDM's preconditioned networks (no DDPM training schedule; see
#: :mod:`sdekit.interop._diffusers_edm`)
EDM_CLASSES = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")


FINAL_SIGMAS = ("zero", "sigma_min")
#: the last step to noise level 0 (``final_sigmas_type="zero"``): the final denoising step ``x <- E[x_0 | x]``, or the
#: solver's own step to level 0 (diffusers' LMS integrates its polynomial there)
FINAL_STEPS = ("denoise", "solver")
#: the pipeline's latents: the VP state ``x`` (DDPM, DDIM, DPM-Solver, UniPC, DEIS), ``x / alpha`` (Euler, Heun) or
#: an EDM source's ``x / alpha`` with its preconditioning
STATE_VARIABLES = ("vp", "sigma", "edm", "flow")
#: an image-to-image start at step ``k``: a fresh run of the remaining grid (``sdekit.sample`` on it), or one that
#: takes the orders of its last steps (and singlestep groups) from the whole schedule, as diffusers' schedulers do
LATER_STARTS = ("fresh", "schedule")


def check_schedule_options(final_sigmas_type, timestep_spacing, timestep_source, state_variable,
                           final_step="denoise", later_start="fresh") -> None:  # fmt: skip
    """The scheduler's schedule entries, each refused by name when it is not one that it knows."""
    if final_sigmas_type not in FINAL_SIGMAS:
        raise ValueError(f"final_sigmas_type must be one of {list(FINAL_SIGMAS)}, got {final_sigmas_type!r}")
    if final_step not in FINAL_STEPS:
        raise ValueError(f"final_step must be one of {list(FINAL_STEPS)}, got {final_step!r}")
    if timestep_spacing not in SPACINGS and timestep_spacing not in GRIDS:
        raise ValueError(
            f"timestep_spacing must be one of {list(SPACINGS)} (diffusers) or an sdekit grid {sorted(GRIDS)}, "
            f"got {timestep_spacing!r}"
        )
    if timestep_source is not None and not is_scheduler_class(timestep_source):
        raise ValueError(f"timestep_source must name a diffusers scheduler class, got {timestep_source!r}")
    if state_variable not in STATE_VARIABLES:
        raise ValueError(f"state_variable must be one of {list(STATE_VARIABLES)}, got {state_variable!r}")
    if later_start not in LATER_STARTS:
        raise ValueError(f"later_start must be one of {list(LATER_STARTS)}, got {later_start!r}")


def check_thresholding(thresholding, clip_sample, dynamic_thresholding_ratio, sample_max_value,
                       clip_sample_range) -> None:  # fmt: skip
    """``ValueError`` unless, with ``thresholding`` on, ``dynamic_thresholding_ratio`` is in ``(0, 1]`` and
    ``sample_max_value > 0``, and with ``clip_sample`` on, ``clip_sample_range > 0`` (the options of :func:`threshold`,
    as a scheduler's config gives them; options of a mode that is off are kept as they are, as diffusers keeps them).
    A ``sample_max_value`` below 1 is diffusers' rule ``clamp(s, 1, max)`` taken literally: ``s = sample_max_value``."""
    if thresholding and not (0.0 <= float(dynamic_thresholding_ratio) <= 1.0 and float(sample_max_value) > 0.0):
        raise ValueError(
            "with thresholding=True, dynamic_thresholding_ratio must be in [0, 1] and sample_max_value > 0, got "
            f"{dynamic_thresholding_ratio!r}, {sample_max_value!r}"
        )
    if clip_sample and not float(clip_sample_range) > 0.0:
        raise ValueError(f"with clip_sample=True, clip_sample_range must be > 0, got {clip_sample_range!r}")


def check_step_options(solver, cfg, eta, use_clipped_model_output, variance_noise) -> None:
    """``ValueError`` for DDIM's step options that the solver's method does not take (see
    :meth:`SdekitScheduler.step`): ``eta`` other than 0 (or 1 for the posterior ``ancestral`` step), an unclipped
    model output while clipping, a given ``variance_noise``."""
    posterior = solver.name == "ancestral" and getattr(solver, "variance", None) == "posterior"
    if eta is not None and float(eta) != 0.0 and not (float(eta) == 1.0 and posterior):
        raise ValueError(
            f"step(eta={eta!r}): the method is the solver's ({solver.name!r}); eta=0 is DDIM's deterministic step "
            "(dpmpp_pc(order=1, corrector=False)), eta=1 its posterior step: from_config(config, solver='ancestral')"
        )
    if use_clipped_model_output is False and (cfg.thresholding or cfg.clip_sample):
        raise ValueError(
            "step(use_clipped_model_output=False): sdekit takes the noise prediction from the clipped data "
            "prediction (use_clipped_model_output=True)"
        )
    if variance_noise is not None:
        raise ValueError("step(variance_noise=...) is not supported: the noise comes from generator= or seed=")


def threshold(x0, *, thresholding: bool, ratio: float, max_value: float, clip: bool, clip_range: float):
    """The data prediction ``x0`` (``(n, ...)``) thresholded as diffusers' schedulers do: dynamic thresholding
    (Imagen, Saharia et al. 2022; DPM-Solver++): per sample ``s = quantile(|x0|, ratio)`` clamped to ``[1,
    max_value]``, then ``clamp(x0, -s, s) / s``; or clipping to ``[-clip_range, clip_range]``. Computed in float32 at
    least."""
    if thresholding:
        dtype = x0.dtype
        work = x0.float() if dtype in (torch.float16, torch.bfloat16) else x0
        flat = work.reshape(work.shape[0], -1)
        s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1.0, max=max_value).unsqueeze(1)
        return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(dtype)
    if clip:
        return x0.clamp(-clip_range, clip_range)
    return x0


# -- the schedule and the noise of a run ----------------------------------------------------------------


def schedule_points(cfg, sde, n, timesteps, sigmas):
    """``(taus (M,), levels (M+1,) or None)`` of an :class:`SdekitScheduler` config ``cfg`` on ``sde`` (its
    DiscreteVPSDE): the model timesteps of the step points and, when the schedule is given in noise levels, the EDM
    levels ``sqrt((1 - abar) / abar)`` of the points and the final level (0: the denoising step). Repeats are still
    in."""
    N = int(cfg.num_train_timesteps)
    zero = cfg.final_sigmas_type == "zero"
    if sigmas is not None and cfg.timestep_source in EDM_CLASSES:  # (EDMEuler reads them as its schedule's ramp)
        return source_points(cfg, sigmas=torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1).cpu())
    if sigmas is not None:
        levels = np.asarray(sigmas.detach().cpu() if _xp.is_torch(sigmas) else sigmas, dtype=np.float64)
        levels = levels.reshape(-1)
        if levels.size < 2 or not np.all(np.isfinite(levels)) or np.any(levels[:-1] <= 0) or levels[-1] < 0 \
                or np.any(np.diff(levels) > 0):  # fmt: skip
            raise ValueError(
                "sigmas must be non-increasing positive noise levels, the final one (0: the denoising step) "
                f"included, as diffusers' set_timesteps(sigmas=...) takes them; got {summary(levels)}"
            )
        if (cfg.timestep_source in SIGMA_STATE_CLASSES or cfg.state_variable == "flow") and accepts(
            cfg.timestep_source, "sigmas"
        ):
            # the source's own timesteps of these levels (the others take sigmas of flow matching only)
            return source_points(cfg, sigmas=levels)
        taus = np.asarray(sde.timestep(sde.t_from_log_snr(-np.log(levels[:-1]))), dtype=np.float64)
        return taus, levels
    if timesteps is not None:
        taus = np.asarray(timesteps.detach().cpu() if _xp.is_torch(timesteps) else timesteps, dtype=np.float64)
        taus = taus.reshape(-1)
        if taus.size < 1 or not np.all(np.isfinite(taus)) or np.any(np.diff(taus) > 0):
            raise ValueError(f"timesteps must decrease (repeats are removed), got {summary(taus)}")
        if cfg.timestep_source in EDM_CLASSES:
            raise ValueError(f"{cfg.timestep_source}'s schedule takes num_inference_steps or sigmas, not timesteps")
        if taus[0] > N - 1 or taus[-1] < 0:
            raise ValueError(f"timesteps must lie in [0, {N - 1}], got {summary(taus)}")
        integral = bool(np.all(taus == np.round(taus)))
        if accepts(cfg.timestep_source, "timesteps") and (integral or cfg.timestep_source in SIGMA_STATE_CLASSES):
            # the source's own noise levels of these timesteps (real-valued ones only where the source keeps them:
            # Euler and Heun; DDPM and DPM-Solver cast them to int)
            return source_points(cfg, timesteps=taus)
        return taus, None
    n = integer_at_least("num_inference_steps", n, 1)
    if cfg.timestep_source is not None:
        return source_points(cfg, n=n)
    spacing = cfg.timestep_spacing
    if spacing in GRIDS:
        if zero and n < 2:
            raise ValueError(f"num_inference_steps must be >= 2 with timestep_spacing={spacing!r}, got {n}")
        grid = make_grid(sde, n - 1 if zero else n, spacing)
        taus = np.asarray(sde.timestep(grid), dtype=np.float64)
        return taus[:n], None
    if spacing == "linspace":
        taus = np.linspace(0, N - 1, n + 1).round()[::-1][:-1].copy()
    elif spacing == "leading":
        ratio = N // (n + 1)
        taus = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy() + cfg.steps_offset
    else:  # trailing
        taus = np.arange(N, 0, -N / n).round().copy() - 1
    return taus.astype(np.float64), None


def schedule_grid(sde, taus, levels, final_sigmas_type: str, final_step: str = "denoise"):
    """``(taus, grid, final_denoise)``: the step points ``taus`` (and noise levels ``levels``, see
    :func:`schedule_points`) as sdekit times on ``sde`` (a DiscreteVPSDE), repeated points removed (zero-length steps),
    the last point's evaluation the final denoising step or a last step to the final level (of zero length where the
    last point is already there); with ``final_step="solver"`` the final denoising step is the solver's step to time 0
    (noise level 0) instead. ``ValueError`` unless the times decrease strictly."""
    if levels is not None and not np.all(np.isfinite(levels)):  # past the finite levels (see finite_levels)
        stand_in = np.append(np.asarray(sde.edm_sigma(sde.t_from_timestep(taus)), dtype=np.float64), 0.0)
        levels = np.where(np.isfinite(levels), levels, stand_in)  # (no run starts there)
    if levels is not None:
        keep = np.append(True, levels[1:-1] < levels[:-2])  # repeated levels: zero-length steps
        taus, points = taus[keep], levels[:-1][keep]
        grid = np.asarray(sde.t_from_log_snr(-np.log(points)), dtype=np.float64)
        final = float(levels[-1])
        final_denoise = final == 0.0
        if not final_denoise:  # a final level at the last point: a zero-length last step, taken by the solver
            end = grid[-1] if final >= points[-1] else float(sde.t_from_log_snr(-math.log(final)))
            grid = np.append(grid, end)
    else:
        keep = np.append(True, taus[1:] < np.minimum.accumulate(taus)[:-1])  # repeated timesteps
        taus = taus[keep]
        grid = np.asarray(sde.t_from_timestep(taus), dtype=np.float64)
        final_denoise = final_sigmas_type == "zero"
        if not final_denoise:  # timestep 0 already the last point: a zero-length last step
            grid = np.append(grid, grid[-1] if taus[-1] <= 0 else sde.eps)
    if final_denoise and final_step == "solver":
        grid, final_denoise = np.append(grid, 0.0), False
    if np.any(np.diff(grid)[:-1] >= 0) or np.any(np.diff(grid)[-1:] > 0):
        raise ValueError(f"the schedule's times must decrease strictly, got timesteps {summary(taus)}")
    return taus, grid, final_denoise


def accepts(source, keyword: str) -> bool:
    """Whether diffusers scheduler class ``source`` (a name, or ``None``) takes ``set_timesteps(keyword=...)``."""
    if source is None:
        return False
    return keyword in inspect.signature(getattr(diffusers, source).set_timesteps).parameters


def source_points(cfg, **schedule):
    """``(taus, levels or None)`` as :func:`schedule_points`, from the ``set_timesteps(**schedule)`` of the config's
    ``timestep_source`` class (its timesteps and, where it has them, its noise levels, the final one included)."""
    src_cls = getattr(diffusers, cfg.timestep_source)
    src = src_cls.from_config(keys_of(src_cls, dict(cfg)))
    if "n" in schedule:
        src.set_timesteps(schedule["n"])
    else:
        src.set_timesteps(**schedule)
    taus = src.timesteps.detach().cpu().double().numpy()
    sig = getattr(src, "sigmas", None)
    if _xp.is_torch(sig) and sig.ndim == 1:
        sig = sig.detach().cpu().double().numpy()
        # two-evaluation sources (Heun) list each inner point twice: timesteps [t0, t1, t1, ..], sigmas
        # [s0, s1, s1, .., 0]; the step points are every other entry
        if getattr(src, "order", 1) == 2 and taus.size > 1 and np.array_equal(taus[1:-1:2], taus[2::2]):
            taus, sig = taus[::2], np.append(sig[:-1:2], sig[-1])
        elif cfg.timestep_source in MIDPOINT_CLASSES and sig.size == taus.size + 3:  # (KDPM2: the midpoints left out)
            taus, sig = taus[::2], sig[::2]
        if sig.size == taus.size + 1:
            return taus, (flow_levels(sig) if cfg.state_variable == "flow" else sig)
    return taus, None


class Draws:
    """The pipeline's generator of the current ``step`` call (kept on the scheduler, so that it pickles)."""

    def __init__(self):
        self.generator = None


class GeneratorNoise:
    """``noise(step)``: ``n_noise`` standard normal fields drawn from the pipeline's generator, as diffusers'
    schedulers draw them (``randn_tensor`` of the state's shape), once per step."""

    def __init__(self, draws: Draws, x, n_noise: int):
        self.draws, self.n_noise = draws, n_noise
        self.shape, self.device, self.dtype = tuple(x.shape), x.device, x.dtype

    def __call__(self, step: int) -> list:
        gen = self.draws.generator
        return [randn_tensor(self.shape, generator=gen, device=self.device, dtype=self.dtype)
                for _ in range(self.n_noise)]  # fmt: skip


def announced_timesteps(sde, taus, grid, requests) -> list:
    """The timestep of every evaluation of ``requests``: the step points' own ``taus``, the others' real-valued
    timesteps (rounded when within 1e-6 of an integer)."""
    values = []
    for k, j, t, _ in requests:
        if j == 0 and k < len(taus) and abs(t - grid[k]) <= 1e-12 * abs(t):
            values.append(float(taus[k]))
        else:
            tau = float(sde.timestep(t))
            values.append(float(round(tau)) if abs(tau - round(tau)) < 1e-6 else tau)
    return values


def takes_zero_step(plan) -> bool:
    """Whether ``plan``'s solver takes its zero-length last step (a dry run on a 1-sample state stays finite): a
    predictor leaves the state as it is, a corrector (UniPC's) still corrects it, as diffusers' schedulers do there;
    a multistep formula of order > 1 divides by the step's length."""
    noise = None
    if plan.stochastic and plan.solver.n_noise:
        noise = lambda k: [np.zeros((1, 1)) for _ in range(plan.solver.n_noise)]  # noqa: E731
    try:
        with np.errstate(all="ignore"):
            st = Stepper(plan, np.full((1, 1), 0.7), noise)
            while not st.done:
                st.supply(-st.pending.x)
    except (ZeroDivisionError, FloatingPointError, OverflowError, ValueError):  # (ValueError: math.log(0))
        return False
    return bool(np.all(np.isfinite(st.x)))


def check_final_step(plan, final_step: str) -> None:
    """``ValueError`` when ``final_step="solver"`` asks ``plan``'s solver for a step to noise level 0 that it cannot
    take: a dry run (:func:`takes_zero_step`) is not finite (exponential integrators divide by the log-SNR), or a stage
    evaluates the network at level 0 (Heun's second stage: the network has no timestep there)."""
    if final_step != "solver" or float(plan.grid[-1]) != 0.0:
        return
    try:
        at_zero = any(t == 0.0 for _, _, t, _ in plan_requests(plan))
    except ValueError:  # (a stage time of level 0: math.log(0))
        at_zero = True
    if at_zero or not takes_zero_step(plan):
        raise ValueError(
            f"final_step='solver': solver {plan.solver.name!r} cannot step to noise level 0 (its formula is not finite "
            "or it evaluates the network "
            "there); use final_step='denoise' (the final denoising step)"
        )


def check_first_evaluation(solver_name: str, requests) -> None:
    """``ValueError`` unless a schedule's first network evaluation (``requests``, :func:`plan_requests`) is at the
    first step's own time and state: a pipeline evaluates its first timestep on its initial latents."""
    if requests and requests[0][3] and requests[0][0] == 0:
        return
    why = (
        "takes its first step without the network (an analytic first step: use afs=False)"
        if requests and requests[0][3]
        else "evaluates the network first at another state than the step's own (EDM's churn on the first step: use "
        "S_churn=0 or S_tmax below the first noise level; a learned solver's time offset: fit with offsets=False)"
    )
    raise ValueError(f"solver {solver_name!r} {why}; a pipeline evaluates its first timestep on its initial latents")


def announce_tail(timesteps, taus, solver_name, index, k, plan, requests) -> None:
    """A fresh run from step point ``k`` evaluates where the whole schedule's tail does, except for solvers that
    shape their steps by the number of steps (EDM's churn ``S_churn / n_steps``): their new stage timesteps are
    written into ``timesteps[index:]`` in place, so a pipeline's slice of it sees them."""
    if not requests[0][3]:
        raise ValueError(
            f"solver {solver_name!r} evaluates the network first at another state than the step's own "
            f"(EDM's churn) when it starts at step {k}: a pipeline evaluates its first timestep on its initial "
            "latents; use S_churn=0 or S_tmax below this noise level"
        )
    tail = timesteps[index:]
    values = announced_timesteps(plan.sde, taus[k:], plan.grid, requests)
    if len(values) != len(tail):
        raise ValueError(
            f"solver {solver_name!r} started at step {k} makes {len(values)} evaluations where the whole "
            f"schedule lists {len(tail)}; start at step 0, or use a solver whose evaluations do not depend on the "
            "number of steps"
        )
    new = torch.tensor(values, dtype=torch.float64)
    if not torch.equal(new, tail.to(torch.float64).cpu()):
        if not tail.is_floating_point() and not all(float(v).is_integer() for v in values):
            raise ValueError(
                f"solver {solver_name!r} started at step {k} evaluates at timesteps {summary(values)}, "
                f"not at the listed {summary(tail)}"
            )
        tail.copy_(new.to(tail.dtype))


def register_other_entries(model, config: dict, init_keys) -> None:
    """Register on ``model`` (an :class:`SdekitScheduler` just built from ``config``) the config's entries that its
    constructor does not take (saving and loading keeps them; its source class's as that class reads them, so that
    DPM-Solver's ``algorithm_type="deis"`` reads ``"dpmsolver++"``), and the source class's defaults for its other
    entries (``config.predictor_order`` reads as the source's own config reads it), the latter listed in
    ``_use_default_values`` so that another class's ``from_config`` leaves them out, as it leaves out the source's own
    defaults."""
    hidden = {k: v for k, v in config.items() if k not in init_keys and not k.startswith("_")}
    source = model.config.timestep_source
    if hidden and is_scheduler_class(source):  # as the source class reads them (DPM-Solver: algorithm_type "deis")
        src_cls = getattr(diffusers, source)
        own = src_cls.from_config(keys_of(src_cls, config)).config
        hidden = {k: own.get(k, v) for k, v in hidden.items()}
    carried = {k: v for k, v in source_defaults(model.config.timestep_source).items()
               if k not in init_keys and k not in hidden}  # fmt: skip
    if config.get("_class_name") == type(model).__name__:  # as diffusers' from_config keeps them
        hidden.update({k: config[k] for k in ("_class_name", "_diffusers_version") if k in config})
    if hidden or carried:
        model.register_to_config(**hidden, **carried)
    if carried:
        model.register_to_config(_use_default_values=sorted({*model.config.get("_use_default_values", ()), *carried}))


def posterior_variance(alphas_cumprod, timestep, prev_timestep, final_alpha: float, variance_type=None,
                       predicted_variance=None):  # fmt: skip
    """The variance of the DDPM posterior ``q(x_prev | x_t, x_0)`` between training timesteps ``timestep`` and
    ``prev_timestep`` (``-1`` or below: the end, where ``abar = final_alpha``): ``(1 - abar_prev) / (1 - abar_t) * (1 -
    abar_t / abar_prev)``, as diffusers' DDPM (``variance_type="fixed_small"``) and DDIM (``eta = 1``) compute it from
    their float32 ``alphas_cumprod`` (here in float64; 0 where ``abar_t = abar_prev``). A float32 tensor (a scalar).
    ``ValueError`` for DDPM's other ``variance_type`` values or a ``predicted_variance`` (not sdekit's step)."""
    if predicted_variance is not None or variance_type not in (None, "fixed_small"):
        raise ValueError(
            "_get_variance gives the posterior variance (variance_type='fixed_small'), the one sdekit's ancestral step "
            f"uses; got variance_type={variance_type!r}"
            + (" and a predicted_variance" if predicted_variance is not None else "")
        )
    ac = torch.as_tensor(alphas_cumprod).to(torch.float64)
    n = ac.shape[0]
    points = []
    for name, value in (("timestep", timestep), ("prev_timestep", prev_timestep)):
        v = float(value)
        if not v.is_integer() or v > n - 1:
            raise ValueError(f"{name} must be an integer training timestep below {n} (or -1: the end), got {value!r}")
        points.append(ac[int(v)] if v >= 0 else torch.tensor(float(final_alpha), dtype=torch.float64))
    a_t, a_prev = points
    if float(a_t) == float(a_prev):
        return torch.tensor(0.0)
    return ((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)).to(torch.float32)
