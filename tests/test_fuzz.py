"""Property-based fuzzing of ``sample`` and ``solve`` arguments (hypothesis, deterministic profile).

Every combination either runs and returns finite values of the right shape and dtype, or raises
``ValueError``/``TypeError``/``NonFiniteError`` whose message names an argument; never another exception, never a
hang (each example runs under an alarm).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sdekit
from _alarm import Alarm
from sdekit import EDMSDE, VESDE, VPSDE, Gaussian, NonFiniteError, SubVPSDE, sample, solve

SDES = [VPSDE(), VESDE(), EDMSDE(), SubVPSDE()]
DATA = Gaussian([0.3, -0.4], [0.5, 0.2])
NAMES = [
    "sde", "score", "n", "x_T", "shape", "solver", "steps", "grid", "t_end", "denoise", "process", "seed", "backend",
    "progress", "save_at", "check_finite", "noise", "sample_ids", "x0", "t0", "t1", "rtol", "atol", "event shape",
    "option", "t_start", "beta", "sigma",
]  # fmt: skip
SECONDS = 20  # per example: a hang is a failure


def _junk():
    return st.sampled_from([None, True, -1, 0, 2.5, float("nan"), "abc", np.float64(3.0), np.int64(2), (1, 2), [3]])


def _mostly(valid):
    """``valid`` nine times in ten, a junk value otherwise (so most examples get past the checks and run)."""
    return st.integers(0, 9).flatmap(lambda k: _junk() if k == 0 else valid)


def _check_outcome(call, expect_shape, expect_dtype):
    try:
        with Alarm(SECONDS):
            sol = call()
    except NonFiniteError:
        return
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert any(name in message for name in NAMES), f"message names no argument: {message!r}"
        return
    x = sol.x.numpy() if hasattr(sol.x, "numpy") else sol.x
    assert x.shape == expect_shape
    assert x.dtype == expect_dtype
    assert np.isfinite(x).all()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    sde=st.sampled_from(SDES),
    solver=st.sampled_from(sorted(sdekit.SOLVERS) * 3 + ["nope"]),
    n=_mostly(st.integers(1, 5)),
    shape=_mostly(st.sampled_from([(2,), 2])),
    steps=_mostly(st.one_of(st.none(), st.integers(1, 6))),
    grid=_mostly(
        st.one_of(st.none(), st.none(), st.sampled_from(["uniform", "log_snr", "karras", "quadratic", "bogus"]))
    ),
    t_end=_mostly(st.one_of(st.none(), st.none(), st.floats(-0.1, 1.1))),
    process=st.sampled_from(["auto"] * 6 + ["sde", "ode", "both"]),
    seed=_mostly(st.integers(0, 2**64 - 1)),
    backend=st.sampled_from(["numpy", "numpy", "numba", "auto", "gpu"]),
    denoise=_mostly(st.booleans()),
    save_at=_mostly(st.sampled_from([None, None, True])),
    noise=st.sampled_from([None, None, None, "counter", "tree", "pink"]),
    analytic=st.booleans(),
    dtype=st.sampled_from([np.float64, np.float64, np.float32]),
)
def test_sample_runs_or_names_the_argument(
    sde, solver, n, shape, steps, grid, t_end, process, seed, backend, denoise, save_at, noise, analytic, dtype
):
    exact = DATA.score(sde)
    score = exact if analytic and dtype == np.float64 else (lambda x, t: exact(x, t).astype(x.dtype))
    use_x_T = dtype != np.float64
    kwargs = dict(solver=solver, steps=steps, grid=grid, t_end=t_end, process=process, seed=seed, backend=backend,
                  denoise=denoise, save_at=save_at, noise=noise)  # fmt: skip
    if use_x_T:
        kwargs["x_T"] = sde.prior_sample((3, 2), seed=0).astype(dtype)
        expect = (3, 2)
    else:
        kwargs.update(n=n, shape=shape)
        expect = (n if isinstance(n, int) else -1, 2)
    _check_outcome(lambda: sample(sde, score, **kwargs), expect, np.dtype(dtype))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    sde=st.sampled_from(SDES),
    solver=st.sampled_from(sorted(sdekit.SOLVERS)),
    kind=st.sampled_from(["forward", "reverse", "reverse", "ode", "ode"]),
    times=_mostly(st.sampled_from([(1.0, 1e-3), (0.0, 1.0), (0.7, 0.2), (1.0, 1.0), (2.0, 0.5), (1e-3, 1.0)])),
    steps=_mostly(st.one_of(st.none(), st.integers(1, 5))),
    grid=_mostly(st.one_of(st.none(), st.none(), st.just("karras"), st.just(np.array([1.0, 0.5, 1e-3])))),
    rtol=_mostly(st.one_of(st.none(), st.none(), st.floats(1e-3, 0.5))),
    sample_ids=_mostly(st.one_of(st.none(), st.just(np.arange(3)), st.just([5, 1, 9]))),
)
def test_solve_runs_or_names_the_argument(sde, solver, kind, times, steps, grid, rtol, sample_ids):
    score = DATA.score(sde)
    t0, t1 = times if isinstance(times, tuple) and len(times) == 2 else (times, 1e-3)
    if kind != "forward" and isinstance(t0, float) and t0 == 0.0:
        t0, t1 = t1, t0 + sde.T  # backwards from T for the reverse processes
    t0, t1 = (min(t0, sde.T) if isinstance(t0, float) else t0), (min(t1, sde.T) if isinstance(t1, float) else t1)
    process = {"forward": sde, "reverse": sde.reverse(score), "ode": sde.probability_flow(score)}[kind]
    x0 = sde.prior_sample((3, 2), seed=1)
    call = lambda: solve(process, x0, t0, t1, solver, steps=steps, grid=grid, rtol=rtol, sample_ids=sample_ids)  # noqa: E731
    _check_outcome(call, (3, 2), np.dtype(np.float64))


def test_the_fuzzer_sees_real_runs():
    # the strategies are not all rejections: a plain call in the space above runs
    sol = sample(VPSDE(), DATA.score(VPSDE()), n=3, steps=4, solver="heun")
    assert sol.x.shape == (3, 2)
    with pytest.raises(ValueError, match="steps"):
        sample(VPSDE(), DATA.score(VPSDE()), n=3, steps=0)
