"""diffusers, both ways: sdekit's solvers as a diffusers scheduler, and a diffusers network as an sdekit score.

:class:`SdekitScheduler` is a real diffusers scheduler (``SchedulerMixin``, ``ConfigMixin``): a pipeline calls
``set_timesteps``, then for each of ``scheduler.timesteps`` the network once and ``step(model_output, t, sample)``.
Inside, the pipeline's training schedule is the :class:`sdekit.DiscreteVPSDE` of its ``alphas_cumprod``, the
timesteps are its grid, and the solver is any fixed-step sdekit solver run one network call at a time
(:mod:`sdekit.interop._driver`): a solver with several evaluations per step (``heun``, ``rk4``, ``edm``, ``pc``)
announces every stage's timestep in ``timesteps`` (``order`` evaluations per step, as diffusers'
``HeunDiscreteScheduler`` does), and ``step`` returns the state the next evaluation is at. With
``final_sigmas_type="zero"`` (the default) the last timestep's output is the final denoising step ``x <- E[x_0|x]``.

``SdekitScheduler.from_config(pipe.scheduler.config)`` keeps the pipeline's scheduler: its training schedule (as that
class computes it, in float32), its timestep spacing (that class's own ``set_timesteps`` gives the timesteps and, where
it has them, the noise levels), its conventions (the latents' variable, ``init_noise_sigma``, ``scale_model_input``,
``final_sigmas_type``, ``lower_order_final``, thresholding) and, with no ``solver=`` named, its method
(:mod:`sdekit.interop._diffusers_methods`: the same numbers to float32 round-off, a class without an sdekit method
refused); ``solver=...`` then changes the method and nothing else. The differences from diffusers are float32 round-off
(diffusers computes in float32, sdekit its coefficients in float64 from the same float32 schedule;
``tests/test_interop_diffusers.py`` measures them).

:func:`score_from_diffusers` is the other direction: ``(sde, score)`` from a ``UNet2DModel``-style network
``unet(x, timestep, **cond)`` and its scheduler config, for ``prediction_type`` ``"epsilon"``, ``"v_prediction"`` or
``"sample"``; any sdekit solver then samples it.
"""

from __future__ import annotations

import inspect

import diffusers
import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin, SchedulerOutput

from .. import _xp
from ..discrete_vp import DiscreteVPSDE
from ..noise import check_seed
from ..solvers import SOLVERS, parse_solver_spec
from ..solvers.base import solver_options as options_of
from ..validation import integer_at_least
from ._diffusers_config import (
    EDM_CLASSES,
    Draws,
    GeneratorNoise,
    alphas_cumprod_of,
    announce_tail,
    announced_timesteps,
    check_final_step,
    check_finite_start,
    check_first_evaluation,
    check_schedule_options,
    check_step_options,
    check_thresholding,
    check_training_schedule,
    class_of_config,
    config_dict,
    finite_levels,
    is_scheduler_class,
    keys_of,
    posterior_variance,
    register_other_entries,
    schedule_grid,
    schedule_points,
    summary,
    takes_zero_step,
    threshold,
    training_betas,
)
from ._diffusers_edm import edm_alphas_cumprod, edm_denoised, edm_input_scale, edm_source, edm_training_points
from ._diffusers_flow import FLOW_PREDICTION, check_flow_prediction, flow_alphas_cumprod, flow_x0, uses_flow_sigmas
from ._diffusers_learned import check_fitted_for, own_grid_points, solver_from_spec
from ._diffusers_methods import method_init
from ._diffusers_score import (
    PREDICTION_TYPES,
    DiffusersScore,
    check_prediction_type,
    score_from_diffusers,
    score_of_output,
    sde_from_diffusers,
    split_learned_variance,
)
from ._driver import GridPlan, Stepper, counter_noise, plan_requests

__all__ = ["SdekitScheduler", "score_from_diffusers", "sde_from_diffusers", "DiffusersScore", "PREDICTION_TYPES"]

DEFAULT_SOLVER = "dpmpp_2m"


# -- sdekit solvers as a scheduler -------------------------------------------------------------------------


class SdekitScheduler(SchedulerMixin, ConfigMixin):
    """Any fixed-step sdekit solver as a diffusers scheduler (see the module docstring).

    Parameters
    ----------
    solver : str
        A registered solver name or spec (``"heun"``, ``"dpmpp_pc(order=2)"``; ``solver_options`` / ``**options`` go to
        its constructor, checked now; adaptive solvers are refused), or a learned solver's saved file (``"fit.json"``,
        fitted on ``scheduler.sde``, run on its own grid: :mod:`sdekit.interop._diffusers_learned`).
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
        ``"zero"``: the last evaluation is the final denoising step (``final_step="denoise"``) or the solver's step to
        level 0 (``"solver"``: LMS); ``"sigma_min"``: the last step ends at timestep 0 and returns that noisy state.
    timestep_source : str, optional
        The name of a diffusers scheduler class whose ``set_timesteps`` gives the timesteps (and noise levels);
        :meth:`from_config` sets it to the class the config came from.
    process : {"auto", "sde", "ode"}
        The reverse SDE or the probability-flow ODE (``"auto"``: the solver's own).
    seed : int, optional
        SDE solvers: ``None`` draws their normals from the pipeline's ``generator`` (as diffusers' schedulers do);
        an integer uses sdekit's counter-based noise, the numbers ``sdekit.sample`` would give sample ``i``.
    state_variable : {"vp", "sigma", "edm", "flow"}
        The pipeline's latents: the VP state ``x`` (``init_noise_sigma = 1``, ``scale_model_input`` the identity: DDPM,
        DDIM, DPM-Solver, UniPC, DEIS) or ``x / alpha`` (diffusers' Euler and Heun: ``init_noise_sigma`` about
        ``sigma_max``, ``scale_model_input`` divides by ``sqrt(sigma^2 + 1)``); ``"edm"``: ``x / alpha`` with EDM's
        preconditioning (an EDM ``timestep_source``, :mod:`sdekit.interop._diffusers_edm`); ``"flow"``: flow matching's
        ``x / (alpha + sigma)`` (:mod:`sdekit.interop._diffusers_flow`); the solver runs on ``x``.
    lower_order_final : bool, optional
        Given to any solver that has this option (and is not given it otherwise): the source scheduler's convention.
    later_start : {"fresh", "schedule"}
        A later start (image-to-image: :meth:`set_begin_index`) runs the solver afresh, as ``sdekit.sample`` on the
        remaining grid; ``"schedule"`` (:meth:`from_config`, no ``solver=``) takes the last steps' orders
        (``lower_order_final``, singlestep groups) from the whole schedule, as diffusers.
    thresholding, dynamic_thresholding_ratio, sample_max_value, clip_sample, clip_sample_range
        diffusers' dynamic thresholding (Imagen; per sample ``s = quantile(|x0|, ratio)`` in ``[1, sample_max_value]``,
        ``x0 <- clamp(x0, -s, s) / s``) or clipping of the data prediction ``x0`` of every network output, before it
        becomes the score ``(alpha x0 - x) / sigma^2``.

    Notes
    -----
    :meth:`from_config` of a diffusers scheduler's config without ``solver=`` runs that scheduler's own method (see
    ``docs/models.md``, "Swap the scheduler of your pipeline"). The state is kept in float32 for half-precision latents
    (as diffusers upcasts) and ``prev_sample`` is returned in the dtype of ``model_output``."""

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    ignore_for_config = ["options"]
    order = 1

    @register_to_config
    def __init__(
        self,
        solver: str = DEFAULT_SOLVER,
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
        state_variable: str = "vp",
        lower_order_final: bool | None = None,
        later_start: str = "fresh",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        final_step: str = "denoise",
        **options,
    ):
        if not isinstance(solver, str):
            raise TypeError(
                f"solver must be a registered solver name or spec string (the config stores it), got {solver!r}"
            )
        if solver_options is not None and not isinstance(solver_options, dict):
            raise TypeError(f"solver_options must be a dict of solver constructor options, got {solver_options!r}")
        given = merged = {**(solver_options or {}), **options}
        if lower_order_final is not None and "lower_order_final" not in merged:  # the convention, for any solver
            name, fixed = parse_solver_spec(solver)
            if name in SOLVERS and "lower_order_final" in options_of(name) and "lower_order_final" not in fixed:
                merged = {**merged, "lower_order_final": bool(lower_order_final)}
        self._solver = solver_from_spec(solver, merged)  # (adaptive solvers refused)
        if process not in ("auto", "sde", "ode"):
            raise ValueError(f"process must be one of ['auto', 'sde', 'ode'], got {process!r}")
        kind = self._solver.default_process if process == "auto" else process
        if (kind == "sde" and not self._solver.is_sde) or (kind == "ode" and not self._solver.is_ode):
            what = "ODEs" if kind == "sde" else "SDEs"
            raise ValueError(f"solver {self._solver.name!r} integrates {what} only; it cannot run process={process!r}")
        self._kind = kind
        if not check_flow_prediction(prediction_type, state_variable):
            check_prediction_type(prediction_type, "prediction_type")
        check_schedule_options(final_sigmas_type, timestep_spacing, timestep_source, state_variable, final_step,
                               later_start)  # fmt: skip
        check_thresholding(thresholding, clip_sample, dynamic_thresholding_ratio, sample_max_value, clip_sample_range)
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
        #: the training schedule as diffusers computes it (float32; ``alphas_cumprod[-1]`` clamped for zero SNR)
        self.betas = training_betas(schedule, "config")
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = alphas_cumprod_of(self.betas, bool(rescale_betas_zero_snr))
        self.register_to_config(
            solver=solver, **schedule, prediction_type=prediction_type, variance_type=variance_type,
            timestep_spacing=timestep_spacing, steps_offset=steps_offset, final_sigmas_type=final_sigmas_type,
            timestep_source=timestep_source, process=process, seed=seed, solver_options=given or None,
        )  # fmt: skip
        # diffusers' decorator counts positional arguments and keyword solver options as defaults
        set_here = {"solver"} | ({"solver_options"} if given else set())
        if "_use_default_values" in self.config:
            used = sorted(k for k in self.config["_use_default_values"] if k not in set_here)
            self.register_to_config(_use_default_values=used)
        #: the training schedule as an sdekit process
        table, self._first_infinite = finite_levels(self.alphas_cumprod)  # (where it is finite: see finite_levels)
        if state_variable == "flow":  # a flow model's levels (see _diffusers_flow)
            table, self._first_infinite = flow_alphas_cumprod(len(self.alphas_cumprod)), None
        self.sde = DiscreteVPSDE(alphas_cumprod=table)
        check_fitted_for(self._solver, self.sde)
        self.order = self._solver.nfe_per_step
        self.num_inference_steps = None
        self.timesteps = torch.arange(len(self.alphas_cumprod) - 1, -1, -1, dtype=torch.int64)
        self.sigmas = None
        self._plan = self._requests = self._taus = self._run = self._stepper = None
        self._idle = False
        self._step_index = self._begin_index = None
        self._draws = Draws()
        self._edm = None
        if timestep_source in EDM_CLASSES:
            self._edm_process()
        elif state_variable == "edm":
            raise ValueError(f"state_variable='edm' needs an EDM timestep_source {list(EDM_CLASSES)}")

    def _edm_process(self):
        """An EDM source's training noise levels ``s`` as the process (``abar = 1 / (1 + s^2)``) and its timesteps
        (``c_noise``), from the config's entries for that class (:mod:`sdekit.interop._diffusers_edm`)."""
        self._edm = edm_source(self.config.timestep_source, self.config)
        self.alphas_cumprod = ac = edm_alphas_cumprod(self._edm)
        self.alphas = ac / torch.cat([ac.new_ones(1), ac[:-1]])
        self.betas = 1.0 - self.alphas
        self.sde = DiscreteVPSDE(alphas_cumprod=ac)
        self.timesteps = self._edm.timesteps.clone()

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
        config = config_dict(config, "config")
        init_keys = [k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "options")]
        if "solver" in config:  # an SdekitScheduler config (possibly passed through another class): ours
            source = None
        else:
            source = source or config.get("_class_name") or class_of_config(config)
        # entries the config's own class left at its defaults are not carried over (as diffusers' from_config does)
        defaults = set(config.get("_use_default_values", ()))
        config = {k: v for k, v in config.items() if k not in defaults}
        resolved = config
        init = {}
        if isinstance(source, str) and source != cls.__name__ and is_scheduler_class(source):
            src_cls = getattr(diffusers, source)
            if config.get("use_flow_sigmas") or config.get("prediction_type") == "flow_prediction":
                if not uses_flow_sigmas(source, config):  # (refused: flow matching without a class's flow sigmas)
                    check_training_schedule(config, f"config (of {source})", source)
            src = src_cls.from_config(keys_of(src_cls, config))
            if getattr(src, "alphas_cumprod", None) is None and source not in EDM_CLASSES:
                raise ValueError(f"config (of {source}) has no training schedule (alphas_cumprod)")
            resolved = dict(src.config)
            init["timestep_source"] = source
        if "solver" not in config and source not in EDM_CLASSES:  # (ours has its own defaults for what it leaves out)
            check_training_schedule(resolved, "config", source)
        named = "solver" in kwargs
        if "timestep_source" in init:  # the source's own method, unless a solver is named, and its conventions
            init.update(method_init(source, resolved, named, DEFAULT_SOLVER))
        for key in init_keys:
            if key in resolved and key not in init:
                init[key] = resolved[key]
        solver = kwargs.pop("solver", None)
        options = {k: kwargs.pop(k) for k in list(kwargs) if k not in init_keys}
        init.update(kwargs)
        if solver is not None:
            if solver != init.get("solver") or "timestep_source" in init:
                init["solver_options"] = None  # options of another solver do not carry over
            init["solver"] = solver
        if options:
            init["solver_options"] = {**(init.get("solver_options") or {}), **options}
        model = cls(**init)
        register_other_entries(model, config, init_keys)
        if model.config.timestep_source in EDM_CLASSES:  # (with the config's entries for that class)
            cls._edm_process(model)
        return (model, {}) if return_unused_kwargs else model

    solver = property(lambda self: self._solver, doc="The sdekit solver instance.")
    step_index = property(lambda self: self._step_index, doc="The index of the next evaluation in ``timesteps``.")
    begin_index = property(lambda self: self._begin_index, doc="The evaluation a run starts at (image-to-image).")

    def previous_timestep(self, timestep):
        """The step point after step point ``timestep`` (``-1`` after the last; a tensor), as diffusers' DDPM has it."""
        if self._plan is None:
            self._training_schedule()
        points = [
            float(self.timesteps[i]) for i, (k, j, _, _) in enumerate(self._requests) if j == 0 and k < len(self._taus)
        ]
        if float(timestep) not in points:
            raise ValueError(f"timestep {float(timestep)} is not a step point of {summary(self.timesteps)}")
        i = points.index(float(timestep)) + 1
        return torch.tensor(points[i] if i < len(points) else -1, dtype=self.timesteps.dtype)

    def _get_variance(self, timestep, prev_timestep=None, *, predicted_variance=None, variance_type=None):
        """diffusers' contract (DDPM's ``_get_variance(t)``, DDIM's ``_get_variance(t, prev)``: private names its code
        and tests call), the same value: the posterior variance from ``timestep`` to ``prev_timestep`` (default: the
        next step point), that of sdekit's ``ancestral`` step (``_diffusers_config.posterior_variance``)."""
        prev = self.previous_timestep(timestep) if prev_timestep is None else prev_timestep
        final = 1.0 if self.config.final_sigmas_type == "zero" else float(self.alphas_cumprod[0])
        kind = variance_type or self.config.variance_type
        return posterior_variance(self.alphas_cumprod, timestep, prev, final, kind, predicted_variance)

    def set_begin_index(self, begin_index: int = 0):
        self._begin_index = integer_at_least("begin_index", begin_index, 0)

    # -- the schedule ----------------------------------------------------------------------------------------
    def set_timesteps(self, num_inference_steps: int = None, device=None, timesteps=None, sigmas=None):
        """The schedule of ``num_inference_steps`` step points, or of the given decreasing ``timesteps``, or of the
        given EDM noise levels ``sigmas`` (``sqrt((1 - abar) / abar)``, the final level included: 0 for the denoising
        step, as diffusers' ``set_timesteps(sigmas=...)`` takes them).

        ``self.timesteps`` then lists the timestep of every network evaluation: one per step point for one-evaluation
        solvers, ``order`` per step for the others (their stage times, real-valued), and the last point's evaluation
        is the final denoising step when the final level is 0 (``final_sigmas_type="zero"``). Repeated step points
        (rounding: 1000 steps on 1000 trained timesteps) are removed; a final step of zero length (the last point
        already at the final level: Karras sigmas with ``final_sigmas_type="sigma_min"``) is an evaluation whose
        output is not used, the step diffusers' schedulers take there (it leaves the state as it is).
        """
        if sum(v is not None for v in (num_inference_steps, timesteps, sigmas)) != 1:
            raise ValueError("give exactly one of num_inference_steps, timesteps and sigmas")
        own = own_grid_points(self._solver, self.config, self.sde, num_inference_steps, timesteps, sigmas)
        taus, levels = own or schedule_points(self.config, self.sde, num_inference_steps, timesteps, sigmas)
        self._set_schedule(taus, levels, device)

    def _training_schedule(self):
        """The schedule before any :meth:`set_timesteps`: every training timestep (as in diffusers' DDPM, Euler)."""
        if self._edm is not None:
            return self._set_schedule(*edm_training_points(self._edm), None)
        self._set_schedule(np.arange(len(self.alphas_cumprod) - 1, -1, -1, dtype=np.float64), None, None)

    def _set_schedule(self, taus, levels, device):
        """The plan of step points ``taus`` (and noise levels ``levels``, see :func:`schedule_points`)."""
        sde, cfg = self.sde, self.config
        taus, grid, final_denoise = schedule_grid(sde, taus, levels, cfg.final_sigmas_type, cfg.final_step)
        plan = GridPlan(sde, self._solver, self._kind, grid, bool(final_denoise))
        self._solver.check_process(plan.process(lambda x, t: x))
        check_final_step(plan, cfg.final_step)
        idle = len(grid) > 1 and grid[-1] == grid[-2] and not takes_zero_step(plan)
        if idle:  # the solver divides by the step's length: the limit, the state as it is, without the step
            plan = GridPlan(sde, self._solver, self._kind, grid[:-1], False)
        requests = plan_requests(plan)
        if idle:  # the zero-length step's evaluation, its output unused
            requests.append((plan.n_solver_steps, 0, float(grid[-1]), True))
        check_first_evaluation(self._solver.name, requests)
        values = announced_timesteps(sde, taus, grid, requests)
        integral = all(float(v).is_integer() for v in values)
        dtype = torch.int64 if integral else torch.float32
        self.timesteps = torch.tensor(values, dtype=dtype, device=device)
        self.num_inference_steps = len(taus)
        # evaluations per step, as pipelines use it (t_start * order): the count of most steps (restart's restart
        # step makes more; a start after it is then at an earlier step point than t_start)
        counts = np.bincount([k for k, _, _, _ in requests if k < plan.n_solver_steps], minlength=1)
        counts = counts[counts > 0]
        self.order = int(np.bincount(counts).argmax()) if counts.size else 1
        edm = np.exp(-np.asarray(sde.log_snr(grid), dtype=np.float64))
        edm = np.append(edm, 0.0) if final_denoise else edm
        self.sigmas = torch.tensor(edm, dtype=torch.float32)
        self._plan, self._requests, self._taus, self._idle = plan, requests, taus, idle
        self._run = self._stepper = None
        self._step_index = self._begin_index = None

    @property
    def init_noise_sigma(self):
        """The scale of the initial latents: 1 for the VP state; for ``state_variable="sigma"`` the largest noise
        level ``sigma_max`` with "linspace" / "trailing" spacing, else ``sqrt(sigma_max^2 + 1)`` (diffusers' Euler and
        Heun rule)."""
        if self.config.state_variable in ("vp", "flow"):
            return 1.0
        if self._edm is not None:  # (EDM's own: sqrt(sigma_max^2 + 1))
            return self._edm.init_noise_sigma
        if self.sigmas is not None:
            top = self.sigmas.max()
        else:
            ac = self.alphas_cumprod[-1]
            top = ((1 - ac) / ac) ** 0.5
        return top if self.config.timestep_spacing in ("linspace", "trailing") else (top**2 + 1) ** 0.5

    def _request_time(self, index: int) -> float:
        """The sdekit time of evaluation ``index`` (of the running start's plan once it has started)."""
        if self._run is not None and index >= self._run[2]:
            plan, requests, offset = self._run
            if index - offset < len(requests):
                return float(requests[index - offset][2])
        return float(self._requests[min(index, len(self._requests) - 1)][2])

    def _alpha(self, t) -> float:
        """The VP state per latent at time ``t``: ``alpha`` (``x / alpha`` latents), ``alpha + sigma`` (flow's: see
        :mod:`sdekit.interop._diffusers_flow`)."""
        alpha, sigma = (float(c) for c in self.sde.marginal(t))
        return alpha + sigma if self.config.state_variable == "flow" else alpha

    def scale_model_input(self, sample, timestep=None, *args, **kwargs):
        """The network's input: the VP state. The identity for ``state_variable="vp"``; for ``"sigma"`` the latents
        ``x / alpha`` times ``alpha = 1 / sqrt(sigma^2 + 1)`` of the evaluation (diffusers' Euler and Heun)."""
        if self.config.state_variable in ("vp", "flow"):
            return sample
        if self._plan is None:  # the training schedule (diffusers' Euler and Heun before set_timesteps)
            self._training_schedule()
        index = self._step_index if self._step_index is not None else self._start_index(timestep)
        t = self._request_time(index)
        if self.config.state_variable == "edm":  # c_in x_s
            alpha, sigma = (float(c) for c in self.sde.marginal(t))
            return sample * edm_input_scale(sigma / alpha, float(self._edm.config.sigma_data))
        return sample * self._alpha(t)

    # -- stepping --------------------------------------------------------------------------------------------
    def _noise(self, plan, x):
        if not plan.stochastic or plan.solver.n_noise == 0:
            return None
        if self.config.seed is not None:
            return counter_noise(plan, x, self.config.seed)
        return GeneratorNoise(self._draws, x, plan.solver.n_noise)

    def _start_index(self, timestep) -> int:
        if self._begin_index is not None:
            return self._begin_index
        # the first evaluation at this timestep that begins a step (Heun-type schedules list a point twice: as the
        # last stage of one step and the first of the next; a later start is the latter, as in diffusers)
        value = float(timestep)
        for index, (_, j, _, _) in enumerate(self._requests):
            if j == 0 and float(self.timesteps[index]) == value:
                return index
        raise ValueError(
            f"timestep {value} is not a step point of scheduler.timesteps {summary(self.timesteps)}: start at one "
            "of them (or call set_begin_index)"
        )

    def _start(self, timestep, sample):
        """Begin at the evaluation of ``timestep`` (or ``begin_index``): a fresh run of the solver on the schedule's
        remaining points (its multistep history built from there; its last orders counted as ``later_start`` says)."""
        index = self._start_index(timestep)
        if index >= len(self._requests):
            raise ValueError(f"begin_index {index} is past the schedule's {len(self._requests)} evaluations")
        k, j, _, _ = self._requests[index]
        check_finite_start(self._first_infinite, self.config, self.timesteps[index])
        if j != 0:
            raise ValueError(
                f"begin_index {index} is stage {j} of step {k}: a run starts at a step point (the first evaluation of "
                f"a step, index {index - j}); img2img pipelines pass t_start * scheduler.order"
            )
        plan, requests = self._plan, self._requests
        if k > 0:
            plan = plan.tail(k, self.config.later_start == "schedule")
            requests = plan_requests(plan)
            if self._idle:
                requests.append((plan.n_solver_steps, 0, float(plan.grid[-1]), True))
            announce_tail(self.timesteps, self._taus, self._solver.name, index, k, plan, requests)
        work = sample.to(torch.float32) if sample.dtype in (torch.float16, torch.bfloat16) else sample
        self._run = (plan, requests, index)
        self._stepper = Stepper(plan, work, self._noise(plan, work))
        self._step_index = index

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True, eta: float = 0.0,
             use_clipped_model_output=None, variance_noise=None):  # fmt: skip
        """Take the network's output at ``timestep`` (evaluated at ``sample``); returns the state of the next
        evaluation, or the result after the last one.

        The first call starts the run at ``begin_index`` (:meth:`set_begin_index`) or, without one, at the step
        point ``timestep``: a later start (image-to-image) is a fresh run from there (see ``later_start``). Before any
        :meth:`set_timesteps` the schedule is every training timestep (diffusers' DDPM and Euler rule). ``eta``,
        ``use_clipped_model_output``, ``variance_noise``: DDIM's options, checked by
        :func:`~sdekit.interop._diffusers_config.check_step_options` (``eta`` 0, the pipelines' default, or 1 for
        ``solver="ancestral"``); a number as ``generator`` is DDIM's positional ``eta``."""
        if isinstance(generator, (int, float)) and not isinstance(generator, bool):  # DDIM's step(out, t, x, eta)
            generator, eta = None, generator
        check_step_options(self._solver, self.config, eta, use_clipped_model_output, variance_noise)
        if self._plan is None:
            self._training_schedule()
        self._draws.generator = generator
        if self._stepper is None:
            self._start(timestep, sample)
        st = self._stepper
        plan, requests, offset = self._run
        if self._step_index >= offset + len(requests):
            raise ValueError("the schedule is complete; call set_timesteps again to sample anew")
        if tuple(sample.shape) != tuple(st.x.shape) or tuple(model_output.shape[:1]) != tuple(sample.shape[:1]):
            raise ValueError(
                f"step() got sample of shape {tuple(sample.shape)} and model_output of shape "
                f"{tuple(model_output.shape)}, but this run's state has shape {tuple(st.x.shape)}: the batch cannot "
                "change during a run (call set_timesteps to start anew with another batch)"
            )
        expected = float(self.timesteps[self._step_index])
        if abs(float(timestep) - expected) > 1e-3 * max(1.0, abs(expected)):
            raise ValueError(
                f"step() got timestep {float(timestep)}, but evaluation {self._step_index} of the schedule is at "
                f"timestep {expected}: call the network at scheduler.timesteps in order"
            )
        _, _, t, at_state = requests[self._step_index - offset]
        work_dtype = st.x.dtype
        alpha, sigma = (float(c) for c in self.sde.marginal(t))
        sigma_state = self.config.state_variable != "vp"
        if at_state:  # the evaluation is at the step's own state: the pipeline's latents
            x = sample if sample.dtype == work_dtype else sample.to(work_dtype)
            st.adopt(x * self._alpha(t) if sigma_state else x)
        out = model_output
        if tuple(model_output.shape) != tuple(sample.shape):  # (DDPM's step: the mean's channels only, or both)
            out = split_learned_variance(model_output, sample.shape[1], self.config.variance_type, "model_output")
        if tuple(out.shape) != tuple(sample.shape):
            raise ValueError(
                f"step() got model_output of shape {tuple(model_output.shape)} for sample of shape "
                f"{tuple(sample.shape)}: the network's prediction must have the sample's shape"
            )
        out = out.to(work_dtype)
        if not st.done:  # else: the zero-length last step of a solver that cannot take it (the state stays)
            st.supply(self._score(out, st.pending.x, alpha, sigma))
        self._step_index += 1
        prev = st.x if st.done else st.pending.x
        if sigma_state and not (st.done and plan.final_denoise):
            prev = prev / self._alpha(float(plan.grid[-1]) if st.done else self._request_time(self._step_index))
        prev = prev.to(model_output.dtype)
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)

    def _score(self, out, x, alpha: float, sigma: float):
        """The score from a network output, its data prediction thresholded or clipped first if asked."""
        cfg = self.config
        if self._edm is not None:  # EDM's preconditioning: D = c_skip x_s + c_out F
            x0 = edm_denoised(cfg.prediction_type, out, x / alpha, sigma / alpha, float(self._edm.config.sigma_data))
            if not (cfg.thresholding or cfg.clip_sample):
                return score_of_output("sample", x0, x, alpha, sigma)
        elif cfg.prediction_type == FLOW_PREDICTION:  # (a flow source: see _diffusers_flow)
            x0 = flow_x0(out, x, alpha, sigma)
            if not (cfg.thresholding or cfg.clip_sample):
                return score_of_output("sample", x0, x, alpha, sigma)
        elif not (cfg.thresholding or cfg.clip_sample):
            return score_of_output(cfg.prediction_type, out, x, alpha, sigma)
        else:
            x0 = (x + (sigma * sigma) * score_of_output(cfg.prediction_type, out, x, alpha, sigma)) / alpha
        x0 = threshold(x0, thresholding=cfg.thresholding, ratio=cfg.dynamic_thresholding_ratio,
                       max_value=cfg.sample_max_value, clip=cfg.clip_sample,
                       clip_range=cfg.clip_sample_range)  # fmt: skip
        return score_of_output("sample", x0, x, alpha, sigma)

    def add_noise(self, original_samples, noise, timesteps):
        """``alpha x_0 + sigma noise`` at the (per-sample) ``timesteps`` (``x_0 + (sigma / alpha) noise`` for
        ``state_variable="sigma"``); a timestep of the schedule is at its step point's noise level."""
        if self._edm is not None and self._plan is None:  # (its timesteps are c_noise: the training schedule's)
            self._training_schedule()
        tau = torch.as_tensor(timesteps).to(torch.float64).reshape(-1).cpu().numpy()
        t = np.asarray(self.sde.t_from_timestep(tau), dtype=np.float64).reshape(-1)
        if self._plan is not None:  # the schedule's own levels (a source's real-valued sigmas)
            listed = self.timesteps.to(torch.float64).cpu().numpy()
            points = {}
            for j, (_, stage, t_j, _) in enumerate(self._requests):
                if stage == 0:
                    points.setdefault(float(listed[j]), t_j)
            t = np.array([points.get(float(value), t_i) for value, t_i in zip(tau, t)], dtype=np.float64)
        alpha, sigma = (np.asarray(v, dtype=np.float64).reshape(-1) for v in self.sde.marginal(t))
        if self.config.state_variable != "vp":  # (x / alpha, or flow's x / (alpha + sigma))
            scale = alpha + sigma if self.config.state_variable == "flow" else alpha
            alpha, sigma = alpha / scale, sigma / scale
        like = original_samples
        a = _xp.per_sample(torch.as_tensor(alpha, dtype=like.dtype, device=like.device), like)
        s = _xp.per_sample(torch.as_tensor(sigma, dtype=like.dtype, device=like.device), like)
        return a * original_samples + s * noise

    def __len__(self):
        return self.config.num_train_timesteps
