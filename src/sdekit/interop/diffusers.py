"""diffusers, both ways: sdekit's solvers as a diffusers scheduler, and a diffusers network as an sdekit score.

:class:`SdekitScheduler` is a real diffusers scheduler (``SchedulerMixin``, ``ConfigMixin``): a pipeline calls
``set_timesteps``, then for each of ``scheduler.timesteps`` the network once and ``step(model_output, t, sample)``.
Inside, the pipeline's training schedule is the :class:`sdekit.DiscreteVPSDE` of its ``alphas_cumprod``, the
timesteps are its grid, and the solver is any fixed-step sdekit solver run one network call at a time
(:mod:`sdekit.interop._driver`): a solver with several evaluations per step (``heun``, ``rk4``, ``edm``, ``pc``)
announces every stage's timestep in ``timesteps`` (``order`` evaluations per step, as diffusers'
``HeunDiscreteScheduler`` does), and ``step`` returns the state the next evaluation is at. With
``final_sigmas_type="zero"`` (the default) the last timestep's output is the final denoising step ``x <- E[x_0|x]``.

``SdekitScheduler.from_config(pipe.scheduler.config, solver=...)`` keeps the pipeline's scheduler: its training
schedule (as that class computes it, in float32) and its timestep spacing (that class's own ``set_timesteps`` gives
the timesteps and, where it has them, the noise levels), so swapping it in changes the solver only.

``SdekitScheduler("dpmpp_2m")`` reproduces ``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
solver_order=2)`` on the same timesteps to float32 round-off: diffusers keeps ``alphas_cumprod`` and its ``sigmas`` in
float32 (``np.float32`` after interpolation) and computes the update in float32 (``sample.to(torch.float32)``), while
sdekit computes the coefficients in float64 from the same float32 schedule; the difference is that of float32
arithmetic, about ``1e-6`` relative (``tests/test_interop_diffusers.py`` measures it).

:func:`score_from_diffusers` is the other direction: ``(sde, score)`` from a ``UNet2DModel``-style network
``unet(x, timestep, **cond)`` and its scheduler config, for ``prediction_type`` ``"epsilon"``, ``"v_prediction"`` or
``"sample"``; any sdekit solver then samples it.
"""

from __future__ import annotations

import inspect
import math
import warnings

import diffusers
import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar, rescale_zero_terminal_snr
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin, SchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from .. import _xp
from ..discrete_vp import DiscreteVPSDE
from ..grids import GRIDS, make_grid
from ..noise import check_seed
from ..solvers import get_solver
from ..validation import integer_at_least
from ._driver import GridPlan, Stepper, counter_noise, plan_requests

__all__ = ["SdekitScheduler", "score_from_diffusers", "sde_from_diffusers", "DiffusersScore", "PREDICTION_TYPES"]

#: The network outputs sdekit converts to a score (diffusers' names).
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
#: diffusers' timestep spacings (the formulas of DPMSolverMultistepScheduler); sdekit's grid names are accepted too.
SPACINGS = ("linspace", "leading", "trailing")
FINAL_SIGMAS = ("zero", "sigma_min")
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


# -- the training schedule ---------------------------------------------------------------------------------


def _config_dict(config, name: str) -> dict:
    if hasattr(config, "config") and not isinstance(config, dict):  # a scheduler (or pipeline component)
        config = config.config
    if not isinstance(config, dict):  # FrozenDict is a dict
        raise TypeError(f"{name} must be a diffusers scheduler config (a dict) or a scheduler, got {config!r}")
    return dict(config)


def _check_training_schedule(config: dict, name: str) -> None:
    if config.get("use_flow_sigmas") or config.get("prediction_type") == "flow_prediction":
        raise ValueError(f"{name} describes a flow-matching model, not a VP (DDPM) training schedule")
    if config.get("trained_betas") is None and "beta_schedule" not in config:
        raise ValueError(
            f"{name} has no training schedule: it needs beta_schedule (with beta_start, beta_end and "
            f"num_train_timesteps) or trained_betas, as DDPM-family schedulers have; got keys {sorted(config)}"
        )


def _alphas_cumprod(config: dict, name: str) -> torch.Tensor:
    """``alphas_cumprod`` of a diffusers config, computed as diffusers' schedulers do (float32)."""
    _check_training_schedule(config, name)
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
        raise ValueError(f"{name}['beta_schedule'] must be one of {list(_BETA_SCHEDULES)}, got {schedule!r}")
    rescale = bool(config.get("rescale_betas_zero_snr", False))
    if rescale:
        betas = rescale_zero_terminal_snr(betas)
    ac = torch.cumprod(1.0 - betas, dim=0)
    if rescale:
        ac[-1] = 2**-24  # as DPMSolverMultistep and Euler do: close to zero SNR with a finite first sigma
    return ac


def sde_from_diffusers(scheduler_config) -> DiscreteVPSDE:
    """The :class:`sdekit.DiscreteVPSDE` of a diffusers scheduler or scheduler config (its training schedule).

    A scheduler object's own ``alphas_cumprod`` is used when it has one; a config is read as diffusers' schedulers
    read it (``beta_schedule`` ``linear`` / ``scaled_linear`` / ``squaredcos_cap_v2`` or ``trained_betas``,
    ``rescale_betas_zero_snr``), in float32 like them.
    """
    ac = getattr(scheduler_config, "alphas_cumprod", None)
    if ac is None:
        ac = _alphas_cumprod(_config_dict(scheduler_config, "scheduler_config"), "scheduler_config")
    return DiscreteVPSDE(alphas_cumprod=ac)


def _check_prediction_type(value, name: str) -> str:
    if value not in PREDICTION_TYPES:
        raise ValueError(f"{name} must be one of {list(PREDICTION_TYPES)}, got {value!r}")
    return value


def score_of_output(prediction_type: str, out, x, alpha, sigma):
    """The score at ``x`` from a network output of ``prediction_type``; ``alpha``, ``sigma`` broadcast with ``x``."""
    if prediction_type == "epsilon":
        return -out / sigma
    if prediction_type == "sample":
        return (alpha * out - x) / (sigma * sigma)
    # v = alpha eps - sigma x0 (Salimans & Ho 2022): eps = (sigma x + alpha v) / (alpha^2 + sigma^2)
    return -(sigma * x + alpha * out) / (sigma * (alpha * alpha + sigma * sigma))


def _split_learned_variance(out, channels: int, variance_type):
    if variance_type in ("learned", "learned_range") and out.shape[1] == 2 * channels:
        return out[:, :channels]
    return out


# -- network -> score --------------------------------------------------------------------------------------


class DiffusersScore:
    """The score of a diffusers network (see :func:`score_from_diffusers`)."""

    def __init__(self, unet, sde: DiscreteVPSDE, prediction_type: str, variance_type=None):
        if not callable(unet):
            raise TypeError(f"unet must be a callable network unet(x, timestep, **cond), got {unet!r}")
        self.fn, self.sde, self.prediction_type, self.variance_type = unet, sde, prediction_type, variance_type
        cfg = getattr(unet, "config", None)
        size, channels = getattr(cfg, "sample_size", None), getattr(cfg, "in_channels", None)
        if size is not None and channels is not None:
            size = (size, size) if isinstance(size, int) else tuple(size)
            self.event_shape = (int(channels), *(int(s) for s in size))
        param = next(unet.parameters(), None) if isinstance(unet, torch.nn.Module) else None
        self._dtype = param.dtype if param is not None else None

    def __call__(self, x, t, **cond):
        if not _xp.is_torch(x):
            raise TypeError(
                "a diffusers network takes torch tensors; sample with backend='torch' (or pass x_T as a tensor)"
            )
        sde = self.sde
        timestep = sde.timestep(t).clamp(0.0, sde.num_timesteps - 1.0)  # the trained range (k-diffusion clamps too)
        dtype = self._dtype or x.dtype
        out = self.fn(x.to(dtype), timestep.to(dtype), **cond)
        out = out.sample if hasattr(out, "sample") else (out[0] if isinstance(out, tuple) else out)
        out = _split_learned_variance(out, x.shape[1], self.variance_type).to(x.dtype)
        alpha, sigma = sde.marginal(t)
        return score_of_output(self.prediction_type, out, x, _xp.per_sample(alpha, x), _xp.per_sample(sigma, x))

    def __repr__(self):
        return f"score_from_diffusers({type(self.fn).__name__}, {self.sde!r}, prediction_type={self.prediction_type!r})"


def score_from_diffusers(unet, scheduler_config):
    """``(sde, score)`` for a diffusers network trained on a DDPM schedule.

    Parameters
    ----------
    unet : callable ``unet(x, timestep, **cond)``
        A ``UNet2DModel`` / ``UNet2DConditionModel``-style network (output ``.sample`` or a tuple); ``cond``
        (``sample(..., cond={"class_labels": ...})``) is passed through.
    scheduler_config : dict or scheduler
        The config of the scheduler it was trained with (``pipe.scheduler.config``) or the scheduler itself: its
        training schedule gives the :class:`sdekit.DiscreteVPSDE`, its ``prediction_type`` (``"epsilon"``,
        ``"v_prediction"`` or ``"sample"``) the conversion.

    Notes
    -----
    The network is evaluated at ``timestep = sde.timestep(t)`` (real-valued, clamped to ``[0, N - 1]``; ``t = (tau +
    1) / N``), in its parameters' dtype, and its output is converted to ``grad log p_t``. Example::

        sde, score = score_from_diffusers(pipe.unet, pipe.scheduler.config)
        sol = sdekit.sample(sde, score, n=4, solver="dpmpp_3m_pc", steps=20)   # x_T on the unet's device and dtype
    """
    config = _config_dict(scheduler_config, "scheduler_config")
    sde = sde_from_diffusers(scheduler_config)
    prediction_type = _check_prediction_type(config.get("prediction_type", "epsilon"),
                                             "scheduler_config['prediction_type']")  # fmt: skip
    return sde, DiffusersScore(unet, sde, prediction_type, config.get("variance_type"))


# -- sdekit solvers as a scheduler -------------------------------------------------------------------------


class SdekitScheduler(SchedulerMixin, ConfigMixin):
    """Any fixed-step sdekit solver as a diffusers scheduler (see the module docstring).

    Parameters
    ----------
    solver : str
        A registered solver name or spec (``"heun"``, ``"dpmpp_pc(order=2)"``); ``solver_options`` / ``**options``
        go to its constructor (checked now). Adaptive solvers choose their own steps and are refused.
    num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr
        The training schedule, as in diffusers (defaults: DDPM's linear 1e-4 .. 0.02 over 1000 steps).
    prediction_type : {"epsilon", "v_prediction", "sample"}
    variance_type : None, "learned" or "learned_range"
        With a learned variance the network's output has twice the channels; the first half is used.
    timestep_spacing : {"linspace", "leading", "trailing"} or an sdekit grid name
        diffusers' spacings (DPMSolverMultistepScheduler's formulas) with ``steps_offset``, or a schedule of
        :mod:`sdekit.grids` (``"log_snr"``, ``"karras"``, ...) over the DiscreteVPSDE, ending at timestep 0
        (real-valued timesteps).
    final_sigmas_type : {"zero", "sigma_min"}
        ``"zero"``: the last timestep's evaluation is the final denoising step; ``"sigma_min"``: the last step ends at
        the smallest trained noise level (timestep 0) and returns that noisy state.
    timestep_source : str, optional
        The name of a diffusers scheduler class whose ``set_timesteps`` gives the timesteps (and noise levels);
        :meth:`from_config` sets it to the class the config came from.
    process : {"auto", "sde", "ode"}
        The reverse SDE or the probability-flow ODE (``"auto"``: the solver's own).
    seed : int, optional
        SDE solvers: ``None`` draws their normals from the pipeline's ``generator`` (as diffusers' schedulers do);
        an integer uses sdekit's counter-based noise, the numbers ``sdekit.sample`` would give sample ``i``.

    Notes
    -----
    The state is kept in float32 for half-precision latents (as diffusers upcasts) and ``prev_sample`` is returned in
    the dtype of ``model_output``.
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

    def __init__(
        self,
        solver: str = "dpmpp_2m",
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        rescale_betas_zero_snr: bool = False,
        prediction_type: str = "epsilon",
        variance_type=None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        final_sigmas_type: str = "zero",
        timestep_source: str | None = None,
        process: str = "auto",
        seed: int | None = None,
        solver_options: dict | None = None,
        **options,
    ):
        if not isinstance(solver, str):
            raise TypeError(
                f"solver must be a registered solver name or spec string (the config stores it), got {solver!r}"
            )
        if solver_options is not None and not isinstance(solver_options, dict):
            raise TypeError(f"solver_options must be a dict of solver constructor options, got {solver_options!r}")
        merged = {**(solver_options or {}), **options}
        self._solver = get_solver(solver, **merged)
        if self._solver.adaptive:
            raise ValueError(
                f"solver {self._solver.name!r} chooses its own (per-sample) steps and cannot run on a pipeline's "
                "timesteps, one network call at a time; use a fixed-step solver"
            )
        if process not in ("auto", "sde", "ode"):
            raise ValueError(f"process must be one of ['auto', 'sde', 'ode'], got {process!r}")
        kind = self._solver.default_process if process == "auto" else process
        if (kind == "sde" and not self._solver.is_sde) or (kind == "ode" and not self._solver.is_ode):
            what = "ODEs" if kind == "sde" else "SDEs"
            raise ValueError(f"solver {self._solver.name!r} integrates {what} only; it cannot run process={process!r}")
        self._kind = kind
        _check_prediction_type(prediction_type, "prediction_type")
        if final_sigmas_type not in FINAL_SIGMAS:
            raise ValueError(f"final_sigmas_type must be one of {list(FINAL_SIGMAS)}, got {final_sigmas_type!r}")
        if timestep_spacing not in SPACINGS and timestep_spacing not in GRIDS:
            raise ValueError(
                f"timestep_spacing must be one of {list(SPACINGS)} (diffusers) or an sdekit grid {sorted(GRIDS)}, "
                f"got {timestep_spacing!r}"
            )
        if timestep_source is not None and not _is_scheduler_class(timestep_source):
            raise ValueError(f"timestep_source must name a diffusers scheduler class, got {timestep_source!r}")
        steps_offset = integer_at_least("steps_offset", steps_offset, 0)
        seed = None if seed is None else check_seed(seed)
        schedule = {
            "num_train_timesteps": num_train_timesteps,
            "beta_start": beta_start,
            "beta_end": beta_end,
            "beta_schedule": beta_schedule,
            "trained_betas": None if trained_betas is None else [float(b) for b in np.asarray(trained_betas)],
            "rescale_betas_zero_snr": bool(rescale_betas_zero_snr),
        }
        self.alphas_cumprod = _alphas_cumprod(schedule, "config")
        self.register_to_config(
            solver=solver, **schedule, prediction_type=prediction_type, variance_type=variance_type,
            timestep_spacing=timestep_spacing, steps_offset=steps_offset, final_sigmas_type=final_sigmas_type,
            timestep_source=timestep_source, process=process, seed=seed, solver_options=merged or None,
        )  # fmt: skip
        #: the training schedule as an sdekit process
        self.sde = DiscreteVPSDE(alphas_cumprod=self.alphas_cumprod)
        self.init_noise_sigma = 1.0  # the VP prior N(0, I)
        self.order = self._solver.nfe_per_step
        self.num_inference_steps = None
        self.timesteps = torch.arange(self.sde.num_timesteps - 1, -1, -1, dtype=torch.int64)
        self.sigmas = None
        self._plan = self._requests = self._stepper = None
        self._step_index = self._begin_index = None
        self._generator = None

    # -- config ----------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """A scheduler from another scheduler's config (or the scheduler itself), keeping its training schedule and
        timestep spacing; ``solver=...`` and solver options as keywords (``from_config(cfg, solver="heun")``).

        A config of another diffusers class is read through that class (its defaults fill what the config leaves
        out) and the class becomes the ``timestep_source``; its other entries stay in this config (so that saving and
        loading keeps them). A config without a training schedule is a ``ValueError``.
        """
        if config is None:
            raise ValueError("from_config needs a config: SdekitScheduler.from_config(pipe.scheduler.config, ...)")
        source = type(config).__name__ if isinstance(config, SchedulerMixin) else None
        config = _config_dict(config, "config")
        init_keys = [k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "options")]
        source = source or config.get("_class_name") or _class_of_config(config)
        resolved = config
        init = {}
        if isinstance(source, str) and source != cls.__name__ and _is_scheduler_class(source):
            src_cls = getattr(diffusers, source)
            _check_training_schedule(config, f"config (of {source})")
            src = src_cls.from_config(_keys_of(src_cls, config))
            if getattr(src, "alphas_cumprod", None) is None:
                raise ValueError(f"config (of {source}) has no training schedule (alphas_cumprod)")
            resolved = dict(src.config)
            init["timestep_source"] = source
        _check_training_schedule(resolved, "config")
        for key in init_keys:
            if key in resolved and key not in init:
                init[key] = resolved[key]
        solver = kwargs.pop("solver", None)
        options = {k: kwargs.pop(k) for k in list(kwargs) if k not in init_keys}
        init.update(kwargs)
        if solver is not None:
            if solver != init.get("solver"):
                init["solver_options"] = None  # options of another solver do not carry over
            init["solver"] = solver
        if options:
            init["solver_options"] = {**(init.get("solver_options") or {}), **options}
        model = cls(**init)
        hidden = {k: v for k, v in config.items() if k not in init_keys and not k.startswith("_")}
        if hidden:
            model.register_to_config(**hidden)
        return (model, {}) if return_unused_kwargs else model

    @property
    def solver(self):
        """The sdekit solver instance."""
        return self._solver

    @property
    def step_index(self):
        return self._step_index

    @property
    def begin_index(self):
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0):
        self._begin_index = integer_at_least("begin_index", begin_index, 0)

    # -- the schedule ----------------------------------------------------------------------------------------
    def _points(self, n, timesteps):
        """``(taus (M,), sigmas (M+1,), from_sigmas)``: the model timesteps of the step points, their EDM noise levels
        and the final level (0: the denoising step); ``from_sigmas``: the grid is read off ``sigmas``."""
        cfg, sde = self.config, self.sde
        N = sde.num_timesteps
        zero = cfg.final_sigmas_type == "zero"
        if timesteps is not None:
            taus = np.asarray(timesteps, dtype=np.float64).reshape(-1)
            if taus.size < 1 or not np.all(np.isfinite(taus)) or np.any(np.diff(taus) >= 0):
                raise ValueError(f"timesteps must decrease strictly, got {list(np.asarray(timesteps))}")
            if taus[0] > N - 1 or taus[-1] < 0:
                raise ValueError(f"timesteps must lie in [0, {N - 1}], got {list(np.asarray(timesteps))}")
            return taus, None, False
        n = integer_at_least("num_inference_steps", n, 1)
        source = cfg.timestep_source
        if source is not None:
            src_cls = getattr(diffusers, source)
            src = src_cls.from_config(_keys_of(src_cls, dict(cfg)))
            src.set_timesteps(n)
            taus = src.timesteps.detach().cpu().double().numpy()
            if np.all(np.diff(taus) < 0):
                sig = getattr(src, "sigmas", None)
                if _xp.is_torch(sig) and sig.ndim == 1 and sig.shape[0] == taus.size + 1:
                    return taus, sig.detach().cpu().double().numpy(), True
                return taus, None, False
            warnings.warn(
                f"timestep_source {source} repeats timesteps (a scheduler that evaluates several times per step); "
                f"using timestep_spacing={cfg.timestep_spacing!r} of DPMSolverMultistepScheduler instead",
                stacklevel=3,
            )
        spacing = cfg.timestep_spacing
        if spacing in GRIDS:
            if zero and n < 2:
                raise ValueError(f"num_inference_steps must be >= 2 with timestep_spacing={spacing!r}, got {n}")
            grid = make_grid(sde, n - 1 if zero else n, spacing)
            taus = np.asarray(sde.timestep(grid), dtype=np.float64)
            return taus[:n], None, False
        if spacing == "linspace":
            taus = np.linspace(0, N - 1, n + 1).round()[::-1][:-1].copy()
        elif spacing == "leading":
            ratio = N // (n + 1)
            taus = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy() + cfg.steps_offset
        else:  # trailing
            taus = np.arange(N, 0, -N / n).round().copy() - 1
        return taus.astype(np.float64), None, False

    def set_timesteps(self, num_inference_steps: int = None, device=None, timesteps=None):
        """The schedule of ``num_inference_steps`` step points (or the given decreasing ``timesteps``).

        ``self.timesteps`` then lists the timestep of every network evaluation: one per step point for one-evaluation
        solvers, ``order`` per step for the others (their stage times, real-valued), and the last point's evaluation
        is the final denoising step when ``final_sigmas_type="zero"``.
        """
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("give exactly one of num_inference_steps and timesteps")
        sde = self.sde
        taus, sigmas, from_sigmas = self._points(num_inference_steps, timesteps)
        zero = self.config.final_sigmas_type == "zero"
        if from_sigmas:
            levels = sigmas[:-1]
            if np.any(levels <= 0):
                raise ValueError(f"timestep_source {self.config.timestep_source} gives noise levels {sigmas!r}")
            grid = np.asarray(sde.t_from_log_snr(-np.log(levels)), dtype=np.float64)
            final_denoise = sigmas[-1] == 0.0
            if not final_denoise:
                grid = np.append(grid, float(sde.t_from_log_snr(-math.log(sigmas[-1]))))
        else:
            grid = np.asarray(sde.t_from_timestep(taus), dtype=np.float64)
            final_denoise = zero
            if not zero:
                if taus[-1] <= 0:
                    raise ValueError(
                        "final_sigmas_type='sigma_min' ends at timestep 0, but the last timestep is already 0; use "
                        "final_sigmas_type='zero' (the last evaluation denoises) or fewer steps"
                    )
                grid = np.append(grid, sde.eps)
        if np.any(np.diff(grid) >= 0):
            raise ValueError(f"the schedule's times must decrease strictly, got timesteps {taus!r}")
        plan = GridPlan(sde, self._solver, self._kind, grid, bool(final_denoise))
        self._solver.check_process(plan.process(lambda x, t: x))
        requests = plan_requests(plan)
        if not requests or not requests[0][3]:
            raise ValueError(
                f"solver {self._solver.name!r} evaluates the network first at another state than the step's own (EDM's "
                "churn on the first step): a pipeline evaluates its first timestep on its initial latents; use "
                "S_churn=0 or S_tmax below the first noise level"
            )
        values = []
        for k, j, t, _ in requests:
            if j == 0 and k < len(taus) and t == grid[k]:
                values.append(float(taus[k]))
            else:
                tau = float(sde.timestep(t))
                values.append(float(round(tau)) if abs(tau - round(tau)) < 1e-6 else tau)
        integral = all(float(v).is_integer() for v in values)
        dtype = torch.int64 if integral else torch.float32
        self.timesteps = torch.tensor(values, dtype=dtype, device=device)
        self.num_inference_steps = len(taus)
        per_step = [j + 1 for k, j, _, _ in requests if k < plan.n_solver_steps]
        self.order = max(per_step) if per_step else 1
        edm = np.exp(-np.asarray(sde.log_snr(grid), dtype=np.float64))
        self.sigmas = torch.tensor(np.append(edm, 0.0) if final_denoise else edm, dtype=torch.float32)
        self._plan, self._requests = plan, requests
        self._stepper = None
        self._step_index = self._begin_index = None

    def scale_model_input(self, sample, timestep=None, *args, **kwargs):
        """The identity: the state is the network's input (VP variables)."""
        return sample

    # -- stepping --------------------------------------------------------------------------------------------
    def _noise(self, x):
        plan = self._plan
        if not plan.stochastic or plan.solver.n_noise == 0:
            return None
        if self.config.seed is not None:
            return counter_noise(plan, x, self.config.seed)
        m = plan.solver.n_noise

        def draw(step):
            return [randn_tensor(tuple(x.shape), generator=self._generator, device=x.device, dtype=x.dtype)
                    for _ in range(m)]  # fmt: skip

        return draw

    def _start(self, timestep, sample):
        if self._begin_index is not None:
            index = self._begin_index
        else:
            hits = (self.timesteps.to(torch.float64).cpu() == float(timestep)).nonzero()
            if hits.numel() == 0:
                raise ValueError(f"timestep {float(timestep)} is not in scheduler.timesteps {self.timesteps.tolist()}")
            index = int(hits[0])
        if index >= len(self._requests):
            raise ValueError(f"begin index {index} is past the schedule's {len(self._requests)} evaluations")
        k, j, _, _ = self._requests[index]
        if j != 0:
            raise ValueError(f"the schedule cannot start inside a step (evaluation {index} is stage {j} of step {k})")
        work = sample.to(torch.float32) if sample.dtype in (torch.float16, torch.bfloat16) else sample
        self._stepper = Stepper(self._plan, work, self._noise(work), start_step=k)
        self._step_index = index

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True):
        """Take the network's output at ``timestep`` (evaluated at ``sample``); returns the state of the next
        evaluation, or the result after the last one."""
        if self._plan is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        self._generator = generator
        if self._stepper is None:
            self._start(timestep, sample)
        st = self._stepper
        if st.done or self._step_index >= len(self._requests):
            raise ValueError("the schedule is complete; call set_timesteps again to sample anew")
        expected = float(self.timesteps[self._step_index])
        if abs(float(timestep) - expected) > 1e-3 * max(1.0, abs(expected)):
            raise ValueError(
                f"step() got timestep {float(timestep)}, but evaluation {self._step_index} of the schedule is at "
                f"timestep {expected}: call the network at scheduler.timesteps in order"
            )
        work_dtype = st.x.dtype
        if self._requests[self._step_index][3]:  # the evaluation is at the step's own state: the pipeline's latents
            st.adopt(sample if sample.dtype == work_dtype else sample.to(work_dtype))
        out = _split_learned_variance(model_output, sample.shape[1], self.config.variance_type).to(work_dtype)
        t = self._requests[self._step_index][2]
        alpha, sigma = (float(c) for c in self.sde.marginal(t))
        st.supply(score_of_output(self.config.prediction_type, out, st.pending.x, alpha, sigma))
        self._step_index += 1
        prev = st.x if st.done else st.pending.x
        prev = prev.to(model_output.dtype)
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)

    def add_noise(self, original_samples, noise, timesteps):
        """``alpha x_0 + sigma noise`` at the (per-sample) ``timesteps``."""
        tau = torch.as_tensor(timesteps, device=original_samples.device).to(torch.float64).reshape(-1)
        alpha, sigma = self.sde.marginal(self.sde.t_from_timestep(tau))
        a = _xp.per_sample(alpha.to(original_samples.dtype), original_samples)
        s = _xp.per_sample(sigma.to(original_samples.dtype), original_samples)
        return a * original_samples + s * noise

    def __len__(self):
        return self.config.num_train_timesteps


def _is_scheduler_class(name) -> bool:
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    return isinstance(cls, type) and issubclass(cls, SchedulerMixin) and cls is not SdekitScheduler


def _class_of_config(config: dict):
    """The diffusers scheduler class a config without ``_class_name`` comes from (a directly constructed scheduler's
    config has none): the one whose constructor takes exactly the config's keys (of several, such as DDPMScheduler
    and its twin DDPMParallelScheduler, the shortest name); ``None`` when none does."""
    keys = {k for k in config if not k.startswith("_")}
    if "solver" in keys:  # one of ours
        return None
    found = []
    for name in dir(diffusers):
        if name.endswith("Scheduler") and _is_scheduler_class(name):
            params = set(inspect.signature(getattr(diffusers, name).__init__).parameters) - {"self", "kwargs"}
            if params == keys:
                found.append(name)
    return min(found, key=lambda name: (len(name), name)) if found else None


def _keys_of(cls, config: dict) -> dict:
    """The entries of ``config`` that ``cls``'s constructor takes (no warnings about the others)."""
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    return {k: v for k, v in config.items() if k in params}
