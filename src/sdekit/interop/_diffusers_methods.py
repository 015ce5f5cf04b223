"""The method of a diffusers scheduler class in sdekit: which solver, options and conventions
:meth:`SdekitScheduler.from_config <sdekit.interop.diffusers.SdekitScheduler.from_config>` runs for a config of that
class when no solver is named (the table of ``docs/models.md``, "Swap the scheduler of your pipeline")."""

from __future__ import annotations

import warnings

import numpy as np

from ._diffusers_config import SIGMA_STATE_CLASSES, alphas_cumprod_of, training_betas
from ._diffusers_flow import uses_flow_sigmas

__all__ = ["source_method", "method_init", "sa_solver_method", "edm_method", "singlestep_method"]


def source_method(name: str, config: dict):
    """``(solver, options, conventions, difference)``: the sdekit solver that runs diffusers scheduler class ``name``
    with ``config`` (its resolved config) and the conventions it keeps (``state_variable``, ``final_sigmas_type``,
    ``lower_order_final``); ``difference`` is ``None`` when the two agree to float32 round-off and otherwise says how
    they differ. ``None`` when sdekit has no such method."""
    first_order = ("dpmpp_pc", {"order": 1, "corrector": False})
    conv = {"state_variable": "sigma" if name in SIGMA_STATE_CLASSES else "vp"}
    if uses_flow_sigmas(name, config):  # flow-matching levels (UniPC, DPM-Solver): sdekit.interop._diffusers_flow
        conv["state_variable"] = "flow"
    order = int(config.get("solver_order", 2))
    lof = bool(config.get("lower_order_final", True))
    if name == "EulerDiscreteScheduler":  # Euler in sigma on x / alpha is DDIM: DPM-Solver(++) of order 1
        return (*first_order, conv, None)
    if name == "EulerAncestralDiscreteScheduler":  # eta = 1: the DDPM posterior step between the two levels
        return ("ancestral", {}, conv, None)
    if name == "HeunDiscreteScheduler":
        return ("edm", {"S_churn": 0.0}, conv, None)
    if name == "DDIMScheduler":  # eta = 0 (pipelines pass eta only to schedulers whose step takes it)
        conv["final_sigmas_type"] = "zero" if config.get("set_alpha_to_one", True) else "sigma_min"
        diff = None
        if config.get("clip_sample", True) or config.get("thresholding", False):
            diff = ("DDIM clips the data prediction but keeps the network's noise prediction in its update; sdekit "
                    "takes both from the clipped data prediction (as DPM-Solver++ and DDPM do)")  # fmt: skip
        return (*first_order, conv, diff)
    if name == "DDPMScheduler":
        variance = config.get("variance_type", "fixed_small")
        diff = None
        if variance not in ("fixed_small", None):
            diff = (f"DDPM with variance_type={variance!r}; sdekit's ancestral step uses the posterior variance "
                    "(variance_type='fixed_small')")  # fmt: skip
        return ("ancestral", {}, conv, diff)
    if name == "DPMSolverMultistepScheduler":
        algorithm = config.get("algorithm_type", "dpmsolver++")
        conv["lower_order_final"] = lof
        sde = algorithm.startswith("sde-")
        noise = {} if algorithm.endswith("++") else {"prediction": "noise"}  # DPM-Solver: the noise prediction
        diff = None
        if order == 2 and config.get("solver_type", "midpoint") != "midpoint":
            diff = f"solver_type={config.get('solver_type')!r}: sdekit's second-order step is the 'midpoint' one"
        if order == 1:
            if sde and noise:
                diff = "SDE-DPM-Solver of order 1 (noise prediction): sdekit runs SDE-DPM-Solver++(1)"
            return ("dpmpp_sde_pc" if sde else "dpmpp_pc", {"order": 1, "corrector": False}, conv, diff)
        if order == 2:
            return ("dpmpp_2m_sde" if sde else "dpmpp_2m", noise, conv, diff)
        if not sde:  # diffusers' weight of D2 (the reference codes'): the same numbers
            return ("dpmpp_3m", {"reference_d2": True, **noise}, conv, diff)
        diff = "solver_order=3 with an SDE: sdekit's third-order SDE multistep formula differs from diffusers'"
        return ("dpmpp_3m_sde", {}, conv, diff)
    if name == "DPMSolverSinglestepScheduler":
        return singlestep_method(config, conv, order, lof)
    if name == "UniPCMultistepScheduler":
        conv["lower_order_final"] = lof
        options = {"order": order, "variant": config.get("solver_type", "bh2"),
                   "prediction": "data" if config.get("predict_x0", True) else "noise",
                   "disable_corrector": list(config.get("disable_corrector") or ())}  # fmt: skip
        return ("unipc", options, conv, None)
    if name == "DEISMultistepScheduler":
        conv["lower_order_final"] = lof
        # (order 3: the same method; diffusers evaluates its closed-form coefficients in float32, where the difference
        # of two antiderivative values cancels: about 4e-5 relative at 25 steps, see docs/models.md)
        return ("deis", {"order": order, "variant": "logrho"}, conv, None)
    if name == "SASolverScheduler":
        return sa_solver_method(config, conv, lof)
    if name == "LMSDiscreteScheduler":  # k-diffusion's linear multistep: Adams-Bashforth in sigma, exact weights
        return ("deis", {"order": 4, "variant": "rhoab"}, {**conv, "final_step": "solver"}, None)
    if name == "KDPM2DiscreteScheduler":  # DPM-Solver-2 in sigma (k-diffusion's sample_dpm_2)
        return ("dpm2", {}, conv, None)
    if name == "KDPM2AncestralDiscreteScheduler":  # its ancestral form (sample_dpm_2_ancestral, eta = 1)
        return ("dpm2_ancestral", {}, conv, None)
    if name in ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"):
        return edm_method(name, config, order, lof)
    return None


def singlestep_method(config: dict, conv: dict, order: int, lof: bool):
    """``DPMSolverSinglestepScheduler``: ``dpmpp_single`` with its order, ``solver_type`` (the ``variant``) and
    algorithm (``"dpmsolver"``: the noise prediction). diffusers runs ``lower_order_final=True`` whenever
    ``final_sigmas_type="zero"`` (its ``set_timesteps`` rewrites the config); ``dpmpp_single`` never lowers the
    order of the final denoising step itself, its order list already ends first order there. ``"sde-dpmsolver++"``
    is ``stochastic=True`` (the reverse SDE)."""
    algorithm = config.get("algorithm_type", "dpmsolver++")
    if algorithm not in ("dpmsolver++", "dpmsolver", "sde-dpmsolver++"):
        return None
    conv["lower_order_final"] = lof or config.get("final_sigmas_type", "zero") == "zero"
    variant = config.get("solver_type", "midpoint")
    options = {"order": order, "variant": variant, "prediction": "noise" if algorithm == "dpmsolver" else "data"}
    diff = None
    if algorithm == "sde-dpmsolver++":  # the reverse SDE, the same generator draws
        options["stochastic"] = True
        if order == 3 and variant == "heun":
            diff = ("sde-dpmsolver++ of order 3 with solver_type='heun': sdekit weights D2 by its exact "
                    "(1 - e^{-2h} - 2h) / (2h)^2 + 1/2; diffusers writes - 1/2")  # fmt: skip
    return ("dpmpp_single", options, conv, diff)


def edm_method(name: str, config: dict, order: int, lof: bool):
    """diffusers' EDM schedulers (:mod:`sdekit.interop._diffusers_edm`): the EDM variable and preconditioning
    (``state_variable="edm"``); Euler in ``s`` is DDIM (``dpmpp_pc`` of order 1), the multistep one DPM-Solver++."""
    conv = {"state_variable": "edm"}
    if name == "EDMEulerScheduler":
        return ("dpmpp_pc", {"order": 1, "corrector": False}, conv, None)
    conv["lower_order_final"] = lof
    sde = config.get("algorithm_type", "dpmsolver++").startswith("sde-")
    diff = None
    if config.get("euler_at_final", False):
        diff = "euler_at_final=True: sdekit's last steps follow lower_order_final only"
    elif order == 2 and config.get("solver_type", "midpoint") != "midpoint":
        diff = f"solver_type={config.get('solver_type')!r}: sdekit's second-order step is the 'midpoint' one"
    if order == 1:
        return ("dpmpp_sde_pc" if sde else "dpmpp_pc", {"order": 1, "corrector": False}, conv, diff)
    if order == 2:
        return ("dpmpp_2m_sde" if sde else "dpmpp_2m", {}, conv, diff)
    if sde:
        diff = "solver_order=3 with an SDE: sdekit's third-order SDE multistep formula differs from diffusers'"
        return ("dpmpp_3m_sde", {}, conv, diff)
    return ("dpmpp_3m", {"reference_d2": True}, conv, diff)


def sa_solver_method(config: dict, conv: dict, lof: bool):
    """``SASolverScheduler``: ``sa_solver`` with its orders and, for its default ``tau_func`` (``tau = 1`` on the steps
    that start at training timesteps 200..800, 0 elsewhere), ``tau=1`` on the noise levels of those timesteps (of the
    config's own schedule; the bounds widened by ``1e-6`` relative, below the spacing of neighbouring timesteps' levels,
    so that the listed timesteps' float32 levels fall on the side diffusers' comparison of timesteps puts them)."""
    ac = alphas_cumprod_of(training_betas(config, "config"), bool(config.get("rescale_betas_zero_snr", False)))
    # (an infinite level where the float32 schedule underflows to 0: see _diffusers_config.finite_levels)
    level = lambda tau: float(np.sqrt((1.0 - float(ac[tau])) / float(ac[tau]))) if ac[tau] > 0 else np.inf  # noqa: E731
    n = len(ac)
    options = {
        "predictor_order": int(config.get("predictor_order", 2)),
        "corrector_order": int(config.get("corrector_order", 2)),
        "lower_order_final": lof,
        "tau": 1.0,
        "tau_interval": [level(min(200, n - 1)) * (1 - 1e-6), level(min(800, n - 1)) * (1 + 1e-6)],
    }
    conv["lower_order_final"] = lof
    diff = None
    if config.get("tau_func") is not None:
        diff = "a tau_func of your own: sdekit runs diffusers' default (tau = 1 for timesteps 200..800)"
    if config.get("algorithm_type", "data_prediction") != "data_prediction":
        diff = "algorithm_type='noise_prediction': sdekit's SA-Solver is the data-prediction one"
    return ("sa_solver", options, conv, diff)


def method_init(source: str, resolved: dict, named: bool, default_solver: str) -> dict:
    """The constructor entries :meth:`SdekitScheduler.from_config` takes from ``source``'s method
    (:func:`source_method` of its ``resolved`` config): its conventions and, unless a solver is ``named``, its solver
    and options (a ``UserWarning`` where they differ from diffusers'). ``ValueError`` for a class without an sdekit
    method when no solver is named."""
    method = source_method(source, resolved)
    if method is None:
        if not named:
            raise ValueError(
                f"sdekit has no equivalent of {source}'s method: SdekitScheduler.from_config(config, "
                f"solver=...) keeps its schedule with a solver you name (e.g. solver={default_solver!r}); "
                "see docs/models.md, 'Swap the scheduler of your pipeline'"
            )
        return {}
    solver, options, conventions, difference = method
    init = dict(conventions)
    if not named:
        init["solver"], init["solver_options"] = solver, options or None
        init["later_start"] = "schedule"  # (its image-to-image start: the orders of its whole schedule)
        if difference is not None:
            warnings.warn(f"{source} -> sdekit {solver!r}: {difference}", stacklevel=3)
    return init
