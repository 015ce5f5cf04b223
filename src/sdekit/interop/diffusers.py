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

import diffusers
import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin, SchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from .. import _xp
from ..discrete_vp import DiscreteVPSDE
from ..grids import GRIDS, make_grid
from ..noise import check_seed
from ..solvers import get_solver
from ..validation import integer_at_least
from ._diffusers_config import (
    check_training_schedule,
    class_of_config,
    config_dict,
    is_scheduler_class,
    keys_of,
    summary,
)
from ._diffusers_score import (
    PREDICTION_TYPES,
    DiffusersScore,
    alphas_cumprod,
    check_prediction_type,
    score_from_diffusers,
    score_of_output,
    sde_from_diffusers,
    split_learned_variance,
)
from ._driver import GridPlan, Stepper, counter_noise, plan_requests

__all__ = ["SdekitScheduler", "score_from_diffusers", "sde_from_diffusers", "DiffusersScore", "PREDICTION_TYPES"]

#: diffusers' timestep spacings (the formulas of DPMSolverMultistepScheduler); sdekit's grid names are accepted too.
SPACINGS = ("linspace", "leading", "trailing")
FINAL_SIGMAS = ("zero", "sigma_min")


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
        check_prediction_type(prediction_type, "prediction_type")
        if final_sigmas_type not in FINAL_SIGMAS:
            raise ValueError(f"final_sigmas_type must be one of {list(FINAL_SIGMAS)}, got {final_sigmas_type!r}")
        if timestep_spacing not in SPACINGS and timestep_spacing not in GRIDS:
            raise ValueError(
                f"timestep_spacing must be one of {list(SPACINGS)} (diffusers) or an sdekit grid {sorted(GRIDS)}, "
                f"got {timestep_spacing!r}"
            )
        if timestep_source is not None and not is_scheduler_class(timestep_source):
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
        self.alphas_cumprod = alphas_cumprod(schedule, "config")
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
        self._plan = self._requests = self._taus = self._run = self._stepper = None
        self._idle = False
        self._step_index = self._begin_index = None
        self._draws = _Draws()

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
        source = source or config.get("_class_name") or class_of_config(config)
        resolved = config
        init = {}
        if isinstance(source, str) and source != cls.__name__ and is_scheduler_class(source):
            src_cls = getattr(diffusers, source)
            check_training_schedule(config, f"config (of {source})")
            src = src_cls.from_config(keys_of(src_cls, config))
            if getattr(src, "alphas_cumprod", None) is None:
                raise ValueError(f"config (of {source}) has no training schedule (alphas_cumprod)")
            resolved = dict(src.config)
            init["timestep_source"] = source
        check_training_schedule(resolved, "config")
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
    def _points(self, n, timesteps, sigmas):
        """``(taus (M,), levels (M+1,) or None)``: the model timesteps of the step points and, when the schedule is
        given in noise levels, the EDM levels ``sqrt((1 - abar) / abar)`` of the points and the final level (0: the
        denoising step). Repeats are still in."""
        cfg, sde = self.config, self.sde
        N = sde.num_timesteps
        zero = cfg.final_sigmas_type == "zero"
        if sigmas is not None:
            levels = np.asarray(sigmas.detach().cpu() if _xp.is_torch(sigmas) else sigmas, dtype=np.float64)
            levels = levels.reshape(-1)
            if levels.size < 2 or not np.all(np.isfinite(levels)) or np.any(levels[:-1] <= 0) or levels[-1] < 0 \
                    or np.any(np.diff(levels) > 0):  # fmt: skip
                raise ValueError(
                    "sigmas must be non-increasing positive noise levels, the final one (0: the denoising step) "
                    f"included, as diffusers' set_timesteps(sigmas=...) takes them; got {summary(levels)}"
                )
            taus = np.asarray(sde.timestep(sde.t_from_log_snr(-np.log(levels[:-1]))), dtype=np.float64)
            return taus, levels
        if timesteps is not None:
            taus = np.asarray(timesteps.detach().cpu() if _xp.is_torch(timesteps) else timesteps, dtype=np.float64)
            taus = taus.reshape(-1)
            if taus.size < 1 or not np.all(np.isfinite(taus)) or np.any(np.diff(taus) > 0):
                raise ValueError(f"timesteps must decrease (repeats are removed), got {summary(taus)}")
            if taus[0] > N - 1 or taus[-1] < 0:
                raise ValueError(f"timesteps must lie in [0, {N - 1}], got {summary(taus)}")
            return taus, None
        n = integer_at_least("num_inference_steps", n, 1)
        source = cfg.timestep_source
        if source is not None:
            src_cls = getattr(diffusers, source)
            src = src_cls.from_config(keys_of(src_cls, dict(cfg)))
            src.set_timesteps(n)
            taus = src.timesteps.detach().cpu().double().numpy()
            sig = getattr(src, "sigmas", None)
            if _xp.is_torch(sig) and sig.ndim == 1:
                sig = sig.detach().cpu().double().numpy()
                # Heun-type sources list each inner point twice: timesteps [t0, t1, t1, ..], sigmas [s0, s1, s1, ..]
                if sig.size == 2 * taus.size and np.array_equal(taus[1:-1:2], taus[2::2]):
                    taus, sig = taus[::2], np.append(sig[:-1:2], sig[-1])
                if sig.size == taus.size + 1:
                    return taus, sig
            return taus, None
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
        sde = self.sde
        taus, levels = self._points(num_inference_steps, timesteps, sigmas)
        if levels is not None:
            keep = np.append(True, levels[1:-1] < levels[:-2])  # repeated levels: zero-length steps
            taus, points = taus[keep], levels[:-1][keep]
            grid = np.asarray(sde.t_from_log_snr(-np.log(points)), dtype=np.float64)
            final = float(levels[-1])
            final_denoise = final == 0.0
            idle = not final_denoise and final >= points[-1]
            if not final_denoise and not idle:
                grid = np.append(grid, float(sde.t_from_log_snr(-math.log(final))))
        else:
            keep = np.append(True, taus[1:] < np.minimum.accumulate(taus)[:-1])  # repeated timesteps
            taus = taus[keep]
            grid = np.asarray(sde.t_from_timestep(taus), dtype=np.float64)
            final_denoise = self.config.final_sigmas_type == "zero"
            idle = not final_denoise and taus[-1] <= 0
            if not final_denoise and not idle:
                grid = np.append(grid, sde.eps)
        if np.any(np.diff(grid) >= 0):
            raise ValueError(f"the schedule's times must decrease strictly, got timesteps {summary(taus)}")
        plan = GridPlan(sde, self._solver, self._kind, grid, bool(final_denoise), bool(idle))
        self._solver.check_process(plan.process(lambda x, t: x))
        requests = plan_requests(plan)
        if idle:  # the zero-length final step: one more evaluation, its output unused
            requests.append((plan.n_solver_steps, 0, float(grid[-1]), True))
        if not requests or not requests[0][3]:
            raise ValueError(
                f"solver {self._solver.name!r} evaluates the network first at another state than the step's own (EDM's "
                "churn on the first step): a pipeline evaluates its first timestep on its initial latents; use "
                "S_churn=0 or S_tmax below the first noise level"
            )
        values = _announced(sde, taus, grid, requests)
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
        edm = np.append(edm, 0.0) if final_denoise else (np.append(edm, edm[-1]) if idle else edm)
        self.sigmas = torch.tensor(edm, dtype=torch.float32)
        self._plan, self._requests, self._taus, self._idle = plan, requests, taus, idle
        self._run = self._stepper = None
        self._step_index = self._begin_index = None

    def scale_model_input(self, sample, timestep=None, *args, **kwargs):
        """The identity: the state is the network's input (VP variables)."""
        return sample

    # -- stepping --------------------------------------------------------------------------------------------
    def _noise(self, plan, x):
        if not plan.stochastic or plan.solver.n_noise == 0:
            return None
        if self.config.seed is not None:
            return counter_noise(plan, x, self.config.seed)
        return _GeneratorNoise(self._draws, x, plan.solver.n_noise)

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
        remaining points (its multistep history built from there, as ``sdekit.sample`` on that grid builds it)."""
        index = self._start_index(timestep)
        if index >= len(self._requests):
            raise ValueError(f"begin_index {index} is past the schedule's {len(self._requests)} evaluations")
        k, j, _, _ = self._requests[index]
        if j != 0:
            raise ValueError(
                f"begin_index {index} is stage {j} of step {k}: a run starts at a step point (the first evaluation of "
                f"a step, index {index - j}); img2img pipelines pass t_start * scheduler.order"
            )
        plan, requests = self._plan, self._requests
        if k > 0:
            plan = GridPlan(plan.sde, plan.solver, plan.kind, plan.grid[k:], plan.final_denoise, plan.idle_final)
            requests = plan_requests(plan)
            if self._idle:
                requests.append((plan.n_solver_steps, 0, float(plan.grid[-1]), True))
            self._announce_tail(index, k, plan, requests)
        work = sample.to(torch.float32) if sample.dtype in (torch.float16, torch.bfloat16) else sample
        self._run = (plan, requests, index)
        self._stepper = Stepper(plan, work, self._noise(plan, work))
        self._step_index = index

    def _announce_tail(self, index, k, plan, requests):
        """A fresh run from step point ``k`` evaluates where the whole schedule's tail does, except for solvers that
        shape their steps by the number of steps (EDM's churn ``S_churn / n_steps``): their new stage timesteps are
        written into ``self.timesteps[index:]`` in place, so a pipeline's slice of it sees them."""
        if not requests[0][3]:
            raise ValueError(
                f"solver {self._solver.name!r} evaluates the network first at another state than the step's own "
                f"(EDM's churn) when it starts at step {k}: a pipeline evaluates its first timestep on its initial "
                "latents; use S_churn=0 or S_tmax below this noise level"
            )
        tail = self.timesteps[index:]
        values = _announced(plan.sde, self._taus[k:], plan.grid, requests)
        if len(values) != len(tail):
            raise ValueError(
                f"solver {self._solver.name!r} started at step {k} makes {len(values)} evaluations where the whole "
                f"schedule lists {len(tail)}; start at step 0, or use a solver whose evaluations do not depend on the "
                "number of steps"
            )
        new = torch.tensor(values, dtype=torch.float64)
        if not torch.equal(new, tail.to(torch.float64).cpu()):
            if not tail.is_floating_point() and not all(float(v).is_integer() for v in values):
                raise ValueError(
                    f"solver {self._solver.name!r} started at step {k} evaluates at timesteps {summary(values)}, "
                    f"not at the listed {summary(tail)}"
                )
            tail.copy_(new.to(tail.dtype))

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True):
        """Take the network's output at ``timestep`` (evaluated at ``sample``); returns the state of the next
        evaluation, or the result after the last one.

        The first call starts the run at ``begin_index`` (:meth:`set_begin_index`) or, without one, at the step
        point ``timestep``: a later start (image-to-image) is a fresh run of the solver from there."""
        if self._plan is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
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
        if at_state:  # the evaluation is at the step's own state: the pipeline's latents
            st.adopt(sample if sample.dtype == work_dtype else sample.to(work_dtype))
        out = split_learned_variance(model_output, sample.shape[1], self.config.variance_type, "model_output")
        out = out.to(work_dtype)
        alpha, sigma = (float(c) for c in self.sde.marginal(t))
        if not st.done:  # else: the zero-length final step, which leaves the state as it is
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


class _Draws:
    """The pipeline's generator of the current ``step`` call (kept on the scheduler, so that it pickles)."""

    def __init__(self):
        self.generator = None


class _GeneratorNoise:
    """``noise(step)``: ``n_noise`` standard normal fields drawn from the pipeline's generator, as diffusers'
    schedulers draw them (``randn_tensor`` of the state's shape), once per step."""

    def __init__(self, draws: _Draws, x, n_noise: int):
        self.draws, self.n_noise = draws, n_noise
        self.shape, self.device, self.dtype = tuple(x.shape), x.device, x.dtype

    def __call__(self, step: int) -> list:
        gen = self.draws.generator
        return [randn_tensor(self.shape, generator=gen, device=self.device, dtype=self.dtype)
                for _ in range(self.n_noise)]  # fmt: skip


def _announced(sde, taus, grid, requests) -> list:
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
