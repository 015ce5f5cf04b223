"""diffusers configs read as diffusers' schedulers read them: the training schedule, the class a config comes from,
and short summaries of long arrays for error messages (used by :mod:`sdekit.interop.diffusers`)."""

from __future__ import annotations

import inspect

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar, rescale_zero_terminal_snr
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..validation import integer_at_least

__all__ = ["config_dict", "check_training_schedule", "training_betas", "alphas_cumprod_of", "is_scheduler_class",
           "class_of_config", "keys_of", "summary", "BETA_SCHEDULES"]  # fmt: skip

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
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


def check_training_schedule(config: dict, name: str) -> None:
    if config.get("use_flow_sigmas") or config.get("prediction_type") == "flow_prediction":
        raise ValueError(f"{name} describes a flow-matching model, not a VP (DDPM) training schedule")
    if config.get("trained_betas") is None and "beta_schedule" not in config:
        raise ValueError(
            f"{name} has no training schedule: it needs beta_schedule (with beta_start, beta_end and "
            f"num_train_timesteps) or trained_betas, as DDPM-family schedulers have; got keys {sorted(config)}"
        )


def training_betas(config: dict, name: str) -> torch.Tensor:
    """``betas`` of a diffusers config, computed as diffusers' schedulers do (float32), zero-SNR rescaled if asked."""
    check_training_schedule(config, name)
    n = integer_at_least(f"{name}['num_train_timesteps']", config.get("num_train_timesteps", 1000), 2)
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
    else:
        raise ValueError(f"{name}['beta_schedule'] must be one of {list(BETA_SCHEDULES)}, got {schedule!r}")
    if config.get("rescale_betas_zero_snr", False):
        betas = rescale_zero_terminal_snr(betas)
    return betas


def alphas_cumprod_of(betas: torch.Tensor, zero_snr: bool) -> torch.Tensor:
    """``cumprod(1 - betas)`` (float32); with zero terminal SNR the last value, exactly 0, becomes ``2**-24`` as
    diffusers' sigma-based schedulers (Euler, DPM-Solver, UniPC) set it: a finite first noise level."""
    ac = torch.cumprod(1.0 - betas, dim=0)
    if zero_snr:
        ac[-1] = 2**-24
    return ac


def is_scheduler_class(name) -> bool:
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    return isinstance(cls, type) and issubclass(cls, SchedulerMixin) and name != OWN_CLASS


def class_of_config(config: dict):
    """The diffusers scheduler class a config without ``_class_name`` comes from (a directly constructed scheduler's
    config has none): the one whose constructor takes exactly the config's keys (of several, such as DDPMScheduler
    and its twin DDPMParallelScheduler, the shortest name); ``None`` when none does."""
    keys = {k for k in config if not k.startswith("_")}
    if "solver" in keys:  # one of ours
        return None
    found = []
    for name in dir(diffusers):
        if name.endswith("Scheduler") and is_scheduler_class(name):
            params = set(inspect.signature(getattr(diffusers, name).__init__).parameters) - {"self", "kwargs"}
            if params == keys:
                found.append(name)
    return min(found, key=lambda name: (len(name), name)) if found else None


def keys_of(cls, config: dict) -> dict:
    """The entries of ``config`` that ``cls``'s constructor takes (no warnings about the others)."""
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    return {k: v for k, v in config.items() if k in params}
