"""Property-based fuzzing of the newest entry points (hypothesis, the deterministic profile of ``conftest.py``).

``SdekitScheduler`` (set_timesteps and a whole run of step calls), ``k_diffusion_sampler``, ``distributed.sample``
(on an in-process Dask client: few, small examples) and ``grids.optimize``. Every example either succeeds with
finite values of the right shape, or raises a contract exception: ``ValueError`` / ``TypeError`` whose message names
an argument (or ``sdekit.NonFiniteError`` for a solve that diverged). Anything else -- a raw ``RuntimeError`` or
``IndexError`` from deep inside, a message that names nothing, a hang -- fails.
"""

from __future__ import annotations

import re
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sdekit
from _alarm import Alarm
from sdekit import EDMSDE, VPSDE, Gaussian, GaussianMixture, NonFiniteError

SECONDS = 30  # per example: a hang is a failure
JUNK = [None, True, -1, 0, 2.5, 2.0, float("nan"), "abc", np.int64(3), (1, 2), [3]]
HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]


def _one_junk(names):
    """``(name, value)``: ``name`` one of ``names`` (or ``None``, half of the time: every argument valid) and a junk
    value to put there, so that most examples get past the checks and run and each check is reached alone."""
    return st.tuples(st.sampled_from([None] * len(names) + list(names)), st.sampled_from(JUNK))


def _apply(kwargs: dict, junk) -> dict:
    name, value = junk
    return kwargs if name is None else {**kwargs, name: value}


def _outcome(call, names):
    """``call()``'s result, or ``None`` after a contract exception whose message names one of ``names``."""
    try:
        with Alarm(SECONDS):
            result = call()
        event("ran")
        return result
    except NonFiniteError:
        event("NonFiniteError")
        return None
    except (ValueError, TypeError) as exc:
        message = str(exc)
        event(f"{type(exc).__name__}: {message[:40]}")
        named = any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) for name in names)
        assert named, f"{type(exc).__name__} names no argument: {message!r}"
        return None


# -- diffusers: SdekitScheduler ------------------------------------------------------------------------------
SCHEDULER_NAMES = [
    "solver", "num_inference_steps", "timestep", "timesteps", "timestep_spacing", "final_sigmas_type",
    "prediction_type", "seed", "process", "option", "S_churn", "set_timesteps", "sample", "model_output",
    "steps_offset", "beta_schedule", "num_train_timesteps",
]  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=HEALTH)
@given(
    solver=st.sampled_from(
        [
            "dpmpp_2m",
            "euler",
            "heun",
            "dpmpp_3m_pc",
            "euler_maruyama",
            "ancestral",
            "unipc",
            "edm(S_churn=0)",
            "deis",
            "sa_solver",
        ]
        * 2
        + ["edm", "dopri5", "nope"]
    ),  # fmt: skip
    steps=st.integers(1, 6),
    spacing=st.sampled_from(["linspace", "leading", "trailing", "karras", "log_snr"] * 2 + ["cosine"]),
    final=st.sampled_from(["zero", "zero", "sigma_min"]),
    prediction=st.sampled_from(["epsilon", "epsilon", "v_prediction", "sample"]),
    seed=st.sampled_from([None, None, 0, 7]),
    offset=st.sampled_from([0, 0, 1]),
    dtype=st.sampled_from(["float32", "float32", "float64", "float16"]),
    skew=st.sampled_from([None] * 6 + ["timestep", "extra_step"]),  # "shape": the test below
    junk=_one_junk(["num_inference_steps", "seed", "solver", "prediction_type", "steps_offset"]),
)
def test_sdekit_scheduler_runs_or_names_the_argument(solver, steps, spacing, final, prediction, seed, offset, dtype,
                                                     skew, junk):  # fmt: skip
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from sdekit.interop import SdekitScheduler

    dt = getattr(torch, dtype)
    options = _apply(dict(solver=solver, timestep_spacing=spacing, final_sigmas_type=final, prediction_type=prediction,
                          seed=seed, steps_offset=offset), junk)  # fmt: skip
    n_steps = junk[1] if junk[0] == "num_inference_steps" else steps
    options.pop("num_inference_steps", None)
    sched = _outcome(lambda: SdekitScheduler(**options), SCHEDULER_NAMES)
    if sched is None:
        return
    if _outcome(lambda: sched.set_timesteps(n_steps) or True, SCHEDULER_NAMES) is None:
        return
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=gen).to(dt)

    def run():
        latents = x
        timesteps = list(sched.timesteps)
        for i, t in enumerate(timesteps):
            out = 0.5 * latents  # a linear "network": a fixed contraction of its input
            if skew == "timestep" and i == 1:
                t = t + 17
            latents = sched.step(out, t, latents, generator=gen).prev_sample
        if skew == "extra_step":
            sched.step(0.5 * latents, timesteps[-1], latents)
        return latents

    result = _outcome(run, SCHEDULER_NAMES)
    if result is not None:
        assert result.shape == x.shape and result.dtype == dt
        assert torch.isfinite(result.float()).all()


def test_sdekit_scheduler_batch_change_mid_run_names_the_sample():
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from sdekit.interop import SdekitScheduler

    sched = SdekitScheduler(solver="dpmpp_2m")
    sched.set_timesteps(4)
    x = torch.randn(4, 3, 4, 4)
    x = sched.step(0.5 * x, sched.timesteps[0], x).prev_sample
    with pytest.raises((ValueError, TypeError), match="sample"):
        sched.step(0.5 * x[:2], sched.timesteps[1], x[:2])


def test_sdekit_scheduler_model_output_of_another_shape_names_model_output():
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from sdekit.interop import SdekitScheduler

    sched = SdekitScheduler(solver="dpmpp_2m")
    sched.set_timesteps(4)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises((ValueError, TypeError), match="model_output"):
        sched.step(0.5 * x[:, :2], sched.timesteps[0], x)


# -- k-diffusion: k_diffusion_sampler -------------------------------------------------------------------------
KD_NAMES = ["solver", "process", "seed", "check_finite", "model", "x", "sigmas", "extra_args", "callback", "option",
            "S_churn", "S_tmin", "S_tmax", "S_noise", "lower_order_final", "order"]  # fmt: skip
MIX = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [0.2, 0.1])


@settings(max_examples=60, deadline=None, suppress_health_check=HEALTH)
@given(
    solver=st.sampled_from(
        [
            "euler",
            "heun",
            "dpmpp_2m",
            "dpmpp_3m_pc",
            "edm",
            "ancestral",
            "dpmpp_2m_sde",
            "rk4",
            "euler_maruyama",
            "restart",
            "sa_solver",
            "unipc",
        ]
        * 2
        + ["dopri5", "bogus"]
    ),  # fmt: skip
    options=st.sampled_from([{}] * 6 + [{"S_churn": 5.0}, {"S_churn": -1}, {"S_tmax": "x"}, {"nope": 1}]),
    process=st.sampled_from(["auto"] * 4 + ["sde", "ode", "both"]),
    seed=st.integers(0, 2**63 - 1),
    x_kind=st.sampled_from(["tensor"] * 4 + ["tensor32", "numpy", "long", "scalar", "list", "empty"]),
    sigmas_kind=st.sampled_from(
        ["karras"] * 6 + ["no_zero", "no_zero", "numpy", "increasing", "negative", "nan", "2d", "one", "list"]
    ),  # fmt: skip
    n_sigmas=st.integers(2, 8),
    extra=st.sampled_from([None] * 4 + ["per_sample", "constant", "wrong_rows", "list", "bad_key"]),
    callback=st.sampled_from([None, None, "list", 3]),
    junk=_one_junk(["seed", "check_finite"]),
)
def test_k_diffusion_sampler_runs_or_names_the_argument(solver, options, process, seed, x_kind, sigmas_kind,
                                                        n_sigmas, extra, callback, junk):  # fmt: skip
    torch = pytest.importorskip("torch")
    from sdekit.interop import k_diffusion_sampler, load_k_diffusion_sampling

    try:
        kd = load_k_diffusion_sampling()
    except ImportError:
        pytest.skip("k-diffusion is not installed")
    edm = EDMSDE()
    score = MIX.score(edm)

    def model(x, sigma, label=None, scale=1.0):
        s = sigma.to(x.dtype) if hasattr(sigma, "to") else sigma
        return scale * (x + (s * s)[:, None] * score(x, s))

    base = torch.as_tensor(edm.prior_sample((5, 2), seed=1))
    x = {"tensor": base, "tensor32": base.float(), "numpy": base.numpy(), "long": base.long(),
         "scalar": torch.tensor(1.0), "list": base.tolist(), "empty": base[:0]}[x_kind]  # fmt: skip
    sig = kd.get_sigmas_karras(n_sigmas - 1, 0.002, 80.0).double()
    sigmas = {"karras": sig, "no_zero": sig[:-1], "increasing": sig.flip(0), "negative": sig - 1.0,
              "nan": torch.full_like(sig, float("nan")), "2d": sig[None], "one": sig[:1], "list": sig.tolist(),
              "numpy": sig.numpy()}[sigmas_kind]  # fmt: skip
    if x_kind == "numpy" and sigmas_kind == "karras":
        sigmas = sig.numpy()  # a numpy run end to end (a tensor schedule with a numpy x is refused, by design)
    extra_args = {None: None, "per_sample": {"label": torch.arange(5)}, "wrong_rows": {"label": torch.arange(3)},
                  "constant": {"scale": 1.0}, "list": [1], "bad_key": {1: 2}}[extra]  # fmt: skip
    cb = {None: None, "list": [].append, 3: 3}[callback]
    kwargs = _apply(dict(process=process, seed=seed, check_finite=True, **options), junk)
    sampler = _outcome(lambda: k_diffusion_sampler(solver, **kwargs), KD_NAMES)
    if sampler is None:
        return
    out = _outcome(lambda: sampler(model, x, sigmas, extra_args=extra_args, callback=cb), KD_NAMES)
    if out is not None:
        assert tuple(out.shape) == tuple(x.shape)
        assert np.isfinite(np.asarray(out.detach().cpu() if hasattr(out, "detach") else out, dtype=float)).all()


# -- Dask: distributed.sample ---------------------------------------------------------------------------------
DIST_NAMES = ["sde", "score", "n", "shard_size", "client", "store", "seed", "retries", "solver", "steps", "grid",
              "t_end", "denoise", "process", "backend", "shape", "option", "x_T", "sample_ids", "save_at",
              "callback", "cond", "noise", "event shape"]  # fmt: skip


@pytest.fixture(scope="module")
def in_process_client():
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        yield client


@settings(max_examples=20, deadline=None, suppress_health_check=HEALTH)
@given(
    n=st.integers(1, 6),
    shard_size=st.integers(1, 4),
    seed=st.integers(0, 2**32),
    solver=st.sampled_from(["euler_maruyama", "dpmpp_2m", "heun", "ancestral"]),
    steps=st.integers(1, 3),
    score_kind=st.sampled_from(["analytic", "analytic", "plain with shape=", "plain"]),
    with_store=st.sampled_from([False, False, True]),
    refused=st.sampled_from([None] * 8 + ["x_T", "sample_ids", "callback", "save_at"]),
    junk=_one_junk(["n", "shard_size", "seed", "steps", "retries", "t_end", "denoise", "solver"]),
)
def test_distributed_sample_runs_or_names_the_argument(in_process_client, n, shard_size, seed, solver, steps,
                                                       score_kind, with_store, refused, junk):  # fmt: skip
    from sdekit import distributed as sd

    sde = VPSDE()
    exact = Gaussian([0.3, -0.4], [0.5, 0.2]).score(sde)
    score = exact if score_kind == "analytic" else (lambda x, t: exact(x, t))  # a plain function: no event_shape
    kwargs = _apply(dict(n=n, shard_size=shard_size, seed=seed, solver=solver, steps=steps, retries=0,
                         backend="numpy", client=in_process_client), junk)  # fmt: skip
    if score_kind == "plain with shape=":
        kwargs["shape"] = (2,)
    if refused is not None:
        kwargs[refused] = {"x_T": np.zeros((2, 2)), "sample_ids": np.arange(2), "callback": print,
                           "save_at": True}[refused]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if with_store:
            kwargs["store"] = f"{tmp}/store"
        sol = _outcome(lambda: sd.sample(sde, score, **kwargs), DIST_NAMES)
        if sol is not None:
            x = np.asarray(sol.x)
            assert x.shape == (kwargs["n"], 2) and np.isfinite(x).all()


# -- grids.optimize -------------------------------------------------------------------------------------------
OPT_NAMES = ["sde", "score", "solver", "nfe", "method", "x_T", "n", "shape", "seed", "init", "t_end", "denoise",
             "density", "teacher_tol", "teacher_steps", "coeff", "maxiter", "restarts", "degree", "trim", "holdout",
             "option", "budget", "event shape", "grid"]  # fmt: skip


@settings(max_examples=50, deadline=None, suppress_health_check=HEALTH)
@given(
    sde=st.sampled_from([VPSDE(), EDMSDE()]),
    solver=st.sampled_from(["euler", "dpmpp_2m", "ipndm", "heun", "deis", "unipc", "dpmpp_3m", "euler_maruyama"]),
    nfe=st.integers(1, 8),
    method=st.sampled_from(["error", "dp"]),
    n=st.integers(1, 6),
    init=st.sampled_from(["time_uniform", ("karras", "log_snr"), "karras"]),
    t_end=st.sampled_from([None, 1e-3]),
    maxiter=st.integers(1, 6),
    restarts=st.integers(1, 2),
    degree=st.sampled_from([None, None, 1, 2]),
    trim=st.sampled_from([0.0, 0.0, 0.2]),
    holdout=st.sampled_from([0.0, 0.0, 0.3]),
    denoise=st.booleans(),
    teacher_steps=st.integers(2, 12),
    exact=st.booleans(),
    junk=_one_junk(
        [
            "nfe",
            "n",
            "init",
            "t_end",
            "maxiter",
            "restarts",
            "degree",
            "trim",
            "holdout",
            "denoise",
            "teacher_steps",
            "coeff",
            "teacher_tol",
            "seed",
        ]
    ),  # fmt: skip
)
def test_grids_optimize_runs_or_names_the_argument(sde, solver, nfe, method, n, init, t_end, maxiter, restarts,
                                                   degree, trim, holdout, denoise, teacher_steps, exact,
                                                   junk):  # fmt: skip
    data = Gaussian([0.3, -0.4], [0.5, 0.2])
    kwargs = _apply(dict(nfe=nfe, method=method, n=n, init=init, t_end=t_end, maxiter=maxiter, restarts=restarts,
                         degree=degree, trim=trim, holdout=holdout, denoise=denoise, teacher_steps=teacher_steps,
                         teacher_tol=1e-5, density=data if exact else None), junk)  # fmt: skip
    solver = kwargs.pop("solver", solver)
    grid = _outcome(lambda: sdekit.grids.optimize(sde, data.score(sde), solver, **kwargs), OPT_NAMES)
    if grid is not None:
        grid = np.asarray(grid)
        assert grid.ndim == 1 and grid.dtype == np.float64 and np.isfinite(grid).all()
        assert grid[0] == sde.T and np.all(np.diff(grid) < 0)
