"""sdekit's solvers in k-diffusion's sampler interface, and k-diffusion's own samplers loaded for comparison.

:func:`k_diffusion_sampler` returns a function with the signature of k-diffusion's ``sample_*`` functions
(Crowson, ``k_diffusion/sampling.py``)::

    fn(model, x, sigmas, extra_args=None, callback=None, disable=None) -> x

* ``model(x, sigma, **extra_args)`` is a k-diffusion denoiser ``D(x; sigma) ~ E[x_0 | x]``, with ``x`` in
  k-diffusion's (EDM's) variable ``x = x_0 + sigma eps`` and ``sigma`` of shape ``(n,)``;
* the solver integrates exactly on ``sigmas`` (strictly decreasing; k-diffusion's ``get_sigmas_*`` append a final 0):
  the process is :class:`sdekit.EDMSDE`'s (time = noise level), whose score is ``(D(x, sigma) - x) / sigma^2``
  (:func:`sdekit.score_from_denoiser`). A final ``sigma = 0`` makes the last step the denoising evaluation
  ``x <- D(x, sigma_{N-1})``, which is what every k-diffusion sampler's last step computes; it counts as a step, as
  there (``lower_order_final``, EDM's churn ``S_churn / n_steps``);
* ``extra_args`` go to the model: arrays and tensors with a leading dimension are per-sample (they must have ``x``'s
  batch size; they follow the solver's rows, as ``cond=`` does), anything else (numbers, dicts, ``None``) is passed
  through unchanged;
* ``callback`` receives k-diffusion's dict ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` once per step:
  ``x`` the state at ``sigmas[i]`` the step started from, ``denoised`` the data prediction the step made there;
* ``disable`` is the progress bar's switch (shown only for ``disable=False``);
* ``x`` is a torch tensor, as in k-diffusion (the result is on its device, in its dtype); a numpy ``x`` is accepted
  for a model written for numpy arrays (``sigma`` is then a numpy array too), and refused with a ``TypeError`` naming
  ``x`` when the sigmas are a tensor or the model is a ``torch.nn.Module`` (or the model raises ``TypeError`` on it).

So any sdekit solver drops into code written for ``sample_euler`` and friends (ComfyUI-style custom samplers).
With the same float64 sigmas, ``euler``, ``heun`` and ``dpmpp_2m`` give k-diffusion's ``sample_euler``,
``sample_heun`` and ``sample_dpmpp_2m`` to round-off; ``ancestral`` and ``dpmpp_2m_sde`` its
``sample_euler_ancestral`` and ``sample_dpmpp_2m_sde`` when both draw the same normals
(``tests/test_interop_k_diffusion.py``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import random
import sys
import types
from pathlib import Path

import numpy as np

from .. import _xp
from ..backends.job import CheckedScore
from ..errors import NonFiniteError
from ..noise import check_seed
from ..scores import ConditionedScore, score_from_denoiser
from ..sdes import EDMSDE
from ..solvers import SOLVERS, get_solver, parse_solver_spec
from ..solvers.edm import EDMSampler
from ._driver import GridPlan, OuterStepContext, counter_noise, run

__all__ = ["k_diffusion_sampler", "load_k_diffusion_sampling", "KDiffusionSampler"]

_VENDOR = "_sdekit_k_diffusion"  # the private package name k-diffusion's sampling module is loaded under


@functools.cache
def load_k_diffusion_sampling():
    """k-diffusion's ``sampling`` module (``sample_euler``, ``get_sigmas_karras``, ...), loaded by file path.

    The ``k_diffusion`` package's ``__init__`` imports its training stack (clip, kornia, wandb, ...), which a sampler
    does not need; ``sampling.py`` itself needs torch, scipy, torchsde and tqdm, and ``k_diffusion.utils.append_dims``.
    This loads the installed ``sampling.py`` under a private package name with that one helper, and with a stand-in
    for ``torchdiffeq`` when it is missing (used only by ``sampling.log_likelihood``, which then raises). Nothing is
    added to ``sys.modules`` under k-diffusion's own names. ``ImportError`` when k-diffusion is not installed.
    """
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed (pip install --no-deps k-diffusion)")
    root = Path(list(spec.submodule_search_locations)[0])
    pkg = types.ModuleType(_VENDOR)
    pkg.__path__ = [str(root)]
    utils = types.ModuleType(f"{_VENDOR}.utils")

    def append_dims(x, target_dims):  # k_diffusion.utils.append_dims, the one helper sampling.py uses
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    pkg.utils = utils
    added = {_VENDOR: pkg, f"{_VENDOR}.utils": utils}
    if importlib.util.find_spec("torchdiffeq") is None:
        stub = types.ModuleType("torchdiffeq")

        def odeint(*args, **kwargs):
            raise ImportError("k-diffusion's log_likelihood needs torchdiffeq (pip install torchdiffeq)")

        stub.odeint = odeint
        added["torchdiffeq"] = stub
    saved = {name: sys.modules.get(name) for name in added}
    sys.modules.update(added)
    try:
        s = importlib.util.spec_from_file_location(f"{_VENDOR}.sampling", root / "sampling.py")
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return mod


def _sigmas(sigmas) -> np.ndarray:
    """``sigmas`` checked: 1-D, at least 2 finite values, strictly decreasing, positive except a final 0."""
    if _xp.is_torch(sigmas):
        arr = sigmas.detach().cpu().double().numpy()
    else:
        try:
            arr = np.asarray(sigmas, dtype=np.float64)
        except (TypeError, ValueError):
            what = type(sigmas).__name__
            raise TypeError(f"sigmas must be a 1-D tensor or array of noise levels, got {what}") from None
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"sigmas must be a 1-D array of at least 2 noise levels, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"sigmas must be finite, got {arr!r}")
    if not np.all(np.diff(arr) < 0):
        raise ValueError(f"sigmas must decrease strictly (from the highest noise level to the lowest), got {arr!r}")
    if not arr[-2] > 0 or arr[-1] < 0:
        raise ValueError(f"sigmas must be positive, except a final 0 (the denoising step), got {arr!r}")
    return arr


def _split_extra_args(extra_args, n: int):
    """``(per_sample, constants)``: arrays/tensors with a leading dimension (checked against ``n``), the rest."""
    if extra_args is None:
        return {}, {}
    if not isinstance(extra_args, dict):
        what = type(extra_args).__name__
        raise TypeError(f"extra_args must be a dict of keyword arguments for the model, got {what}")
    per_sample, constants = {}, {}
    for key, value in extra_args.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"extra_args keys must be keyword names, got {key!r}")
        shape = getattr(value, "shape", None)
        if (isinstance(value, np.ndarray) or _xp.is_torch(value)) and len(shape) >= 1:
            if shape[0] != n:
                raise ValueError(
                    f"extra_args[{key!r}] has leading dimension {shape[0]}, but x has batch size {n}: per-sample "
                    "extra_args need one row per sample (pass batch-wide values as numbers or 0-d tensors)"
                )
            per_sample[key] = value
        else:
            constants[key] = value
    return per_sample, constants


#: k-diffusion's ``sample_heun`` churns at every noise level (``s_tmin=0``, ``s_tmax=inf``); ``edm`` named in
#: :func:`k_diffusion_sampler` takes that window unless ``S_tmin`` / ``S_tmax`` are given (sdekit's own default is EDM's
#: ImageNet window, ``[0.05, 50]``).
K_DIFFUSION_HEUN_WINDOW = {"S_tmin": 0.0, "S_tmax": math.inf}


def _peer_defaults(solver, options: dict) -> dict:
    """``options`` with k-diffusion's defaults for the options of ``solver`` (a name or spec) that were not given."""
    if not isinstance(solver, str):
        return options  # an instance keeps its own settings
    try:
        name, spec_options = (solver, {}) if solver in SOLVERS else parse_solver_spec(solver)
    except ValueError:
        return options  # get_solver reports the bad spec
    if SOLVERS.get(name) is not EDMSampler:
        return options
    given = set(spec_options) | set(options)
    return {**{k: v for k, v in K_DIFFUSION_HEUN_WINDOW.items() if k not in given}, **options}


class KDiffusionSampler:
    """A k-diffusion-style sampler running an sdekit solver (see :func:`k_diffusion_sampler`)."""

    def __init__(self, solver, process="auto", seed=None, check_finite=True, **options):
        self.solver = get_solver(solver, **_peer_defaults(solver, options))
        if self.solver.adaptive:
            raise ValueError(
                f"solver {self.solver.name!r} chooses its own steps (per sample) and cannot run on the given sigmas; "
                "use a fixed-step solver (sdekit.SOLVERS lists them)"
            )
        if process not in ("auto", "sde", "ode"):
            raise ValueError(f"process must be one of ['auto', 'sde', 'ode'], got {process!r}")
        kind = self.solver.default_process if process == "auto" else process
        if kind == "sde" and not self.solver.is_sde:
            raise ValueError(f"solver {self.solver.name!r} integrates ODEs only; it cannot run process='sde'")
        if kind == "ode" and not self.solver.is_ode:
            raise ValueError(f"solver {self.solver.name!r} integrates SDEs only; it cannot run process='ode'")
        self.kind = kind
        self.seed = None if seed is None else check_seed(seed)
        self.check_finite = bool(check_finite)
        self.__name__ = f"sample_sdekit_{self.solver.name}"

    def __repr__(self):
        return f"k_diffusion_sampler({self.solver!r}, process={self.kind!r}, seed={self.seed!r})"

    def _seed(self, x):
        if self.seed is not None:
            return self.seed
        if _xp.is_torch(x):  # like k-diffusion's torch.randn_like: torch.manual_seed makes it reproducible
            torch = _xp.lib(x)
            return int(torch.randint(0, 2**62, (), generator=None))
        return random.getrandbits(62)

    def __call__(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        if not callable(model):
            raise TypeError(f"model must be a k-diffusion denoiser model(x, sigma, **extra_args), got {model!r}")
        if _xp.is_torch(x):
            floating = x.is_floating_point()
        else:
            floating = isinstance(x, np.ndarray) and x.dtype.kind == "f"
        if not floating:
            raise TypeError(f"x must be a floating-point tensor or array (n, *event), got {type(x).__name__}")
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(f"x must have shape (n, *event) with n >= 1, got {tuple(x.shape)}")
        if not _xp.is_torch(x) and (_xp.is_torch(sigmas) or _is_torch_module(model)):
            what = "sigmas are a torch tensor" if _xp.is_torch(sigmas) else "model is a torch module"
            raise TypeError(f"x must be a torch tensor when the {what} (k-diffusion's samplers work on tensors), got a "
                            f"numpy array: pass torch.as_tensor(x)")  # fmt: skip
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable callback(info) or None, got {callback!r}")
        sig = _sigmas(sigmas)
        n = x.shape[0]
        per_sample, constants = _split_extra_args(extra_args, n)
        final_denoise = sig[-1] == 0.0
        grid = sig[:-1] if final_denoise else sig
        # the EDM process on the noise levels: time = sigma, alpha = 1 (only its coefficients are read)
        sde = EDMSDE(sigma_min=float(grid[-1]) if len(grid) > 1 else float(grid[0]) / 2, sigma_max=float(grid[0]))
        denoiser = functools.partial(model, **constants) if constants else model
        if not _xp.is_torch(x):
            denoiser = _NumpyCall(denoiser)
        score = score_from_denoiser(denoiser, sde)
        if per_sample:
            score = ConditionedScore(score, per_sample, n)
        score = CheckedScore(score)
        churn_last = final_denoise and self.kind == "sde" and isinstance(self.solver, EDMSampler)
        plan_type = _ChurnedFinalPlan if churn_last else GridPlan
        grid = np.ascontiguousarray(grid)
        plan = plan_type(sde, self.solver, self.kind, grid, bool(final_denoise) and not churn_last)
        self.solver.check_process(plan.process(score))
        noise = counter_noise(plan, x, self._seed(x)) if plan.stochastic else None
        report = None
        if callback is not None:
            report = self._reporter(callback, sigmas, sig, plan)
        with _grad_context(x):
            x = run(plan, x, score, noise, callback=report, check_finite=self.check_finite,
                    progress=disable is False)  # fmt: skip
            if churn_last:
                x = self._churned_denoise(plan, x, score, noise, callback, sigmas, sig)
        return x

    def _churned_denoise(self, plan, x, score, noise, callback, sigmas, sig):
        """EDM's last step to ``sigma = 0`` as k-diffusion's ``sample_heun`` takes it: churn the state to ``s_hat``
        (when the churn window holds the last level), then the Euler step to 0, i.e. ``D(x_hat, s_hat)``."""
        k = plan.n_solver_steps
        t = float(plan.grid[-1])
        _, s_hat, t_hat, churn, _, _ = self.solver.levels(plan.sde, t, t, k + 1, True)
        x_hat = x + churn * noise(k)[0] if churn > 0.0 else x
        x0 = x_hat + (s_hat * s_hat) * score(x_hat, _xp.full_time(t_hat, x_hat))  # alpha = 1: D = x + s^2 score
        if callback is not None:  # x: the state the step started from, as for every other step
            level = sigmas[k] if _xp.is_torch(sigmas) else sig[k]
            hat = _xp.lib(level).as_tensor(s_hat, dtype=level.dtype) if _xp.is_torch(level) else s_hat
            callback({"x": x, "i": k, "sigma": level, "sigma_hat": hat, "denoised": x0})
        if self.check_finite and not _xp.isfinite_all(x0):
            raise NonFiniteError(k, 0.0, "non-finite values after the final denoising step")
        return x0

    def _reporter(self, callback, sigmas, sig, plan):
        """k-diffusion's callback dict from the driver's ``(k, x_k, denoised, ctx)``."""
        levels = sigmas if _xp.is_torch(sigmas) else sig
        solver = self.solver

        def report(k, x, denoised, ctx):
            sigma = levels[k]
            sigma_hat = sigma
            if isinstance(solver, EDMSampler) and ctx is not None:
                s_hat = solver.levels(plan.sde, float(sig[k]), float(plan.grid[k + 1]), ctx.n_steps,
                                      plan.stochastic)[1]  # fmt: skip
                sigma_hat = _xp.lib(sigma).as_tensor(s_hat, dtype=sigma.dtype) if _xp.is_torch(sigma) else s_hat
            callback({"x": x, "i": k, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})

        return report


class _ChurnedFinalPlan(GridPlan):
    """A plan whose schedule ends with a step to ``sigma = 0`` that :class:`KDiffusionSampler` takes itself (EDM's
    churned last step): the solver's steps see the schedule's full length (``n_steps`` counts that step)."""

    def context(self, k: int, memory: dict) -> OuterStepContext:
        return OuterStepContext(k, self.grid, memory, extra=1)


def _is_torch_module(model) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


class _NumpyCall:
    """A model called on numpy states: a ``TypeError`` it raises (a torch network given an array) names ``x``."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, sigma, **kwargs):
        try:
            return self.model(x, sigma, **kwargs)
        except TypeError as exc:
            raise TypeError(f"model(x, sigma) raised TypeError on a numpy x ({exc}); a torch model needs x as a torch "
                            "tensor: pass torch.as_tensor(x)") from exc  # fmt: skip


def _grad_context(x):
    if not _xp.is_torch(x):
        return contextlib.nullcontext()
    from ..backends.torch_ import grad_mode

    return grad_mode(x)


def k_diffusion_sampler(solver="euler", *, process="auto", seed=None, check_finite=True, **options):
    """An sdekit solver as a k-diffusion sampler ``fn(model, x, sigmas, extra_args=None, callback=None, disable=None)``.

    See the module docstring for the conventions. Parameters:

    solver : str or Solver
        Any fixed-step sdekit solver (``options`` go to its constructor, checked now). Adaptive solvers choose their
        own steps and are refused. ``"edm"`` named here churns in k-diffusion's ``sample_heun`` window
        (``S_tmin=0``, ``S_tmax=inf``) unless ``S_tmin`` / ``S_tmax`` are given, so ``k_diffusion_sampler("edm",
        S_churn=c)`` is ``sample_heun(..., s_churn=c)``; ``S_churn`` and ``S_noise`` keep sdekit's defaults (40, 1).
    process : {"auto", "sde", "ode"}
        The reverse SDE or the probability-flow ODE (``"auto"``: the solver's own, the ODE for a solver that does
        both: ``heun``, and ``sa_solver`` unless its stochasticity ``tau > 0`` or ``tau_interval`` is given).
        k-diffusion itself has no SA-Solver; ComfyUI's ``sample_sa_solver`` (its fork of k-diffusion's sampling
        module) is stochastic by default (``eta = 1`` between the noise levels at 20 % and 80 % of the model's
        schedule). Its counterpart here is ``k_diffusion_sampler("sa_solver", tau=1.0, tau_interval=(lo, hi))``
        with ``lo``, ``hi`` those two noise levels; plain ``"sa_solver"`` is deterministic (the ODE, ``tau = 0``).
    seed : int, optional
        Seed of the counter-based noise of SDE solvers (sample ``i`` sees the normals ``sdekit.sample`` would give it).
        ``None``: drawn from torch's global generator at each call, so ``torch.manual_seed`` controls it as it controls
        k-diffusion's ``torch.randn_like``.
    check_finite : bool
        Raise :class:`sdekit.NonFiniteError` (after the loop, one host read) when the state stops being finite.

    Example::

        sampler = k_diffusion_sampler("dpmpp_3m_pc")
        sigmas = load_k_diffusion_sampling().get_sigmas_karras(20, 0.002, 80.0)
        x = sampler(model, torch.randn(16, 3, 32, 32) * sigmas[0], sigmas, extra_args={"class_labels": labels})
    """
    return KDiffusionSampler(solver, process=process, seed=seed, check_finite=check_finite, **options)
