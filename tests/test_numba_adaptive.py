"""Fused numba kernels of the adaptive solvers: the numpy loop's samples, steps and NFE to round-off, per-sample
results independent of the batch and the chunking, the tree's Brownian path, RowScores, and clear errors."""

from __future__ import annotations

import signal

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

import sdekit  # noqa: E402
from _user_scores import LAM, MU, user_row  # noqa: E402
from sdekit import EDMSDE, VESDE, VPSDE, Gaussian, GaussianMixture, NonFiniteError, SubVPSDE, solve  # noqa: E402
from sdekit.backends.numba import RowScore  # noqa: E402


def _cov(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.2 * np.eye(d)


GAUSS = Gaussian([0.5, -1.0, 2.0], _cov(3, 0))
MIX = GaussianMixture([0.6, 0.4], [[2.0, 0.0, 0.0], [-2.0, 1.0, 0.5]], np.stack([_cov(3, 1), _cov(3, 2)]))


def _pair(sde, density, solver, n=40, seed=3, **kw):
    score = density.score(sde)
    x_T = sde.prior_sample((n, 3), seed=seed)
    proc = sde.reverse(score) if solver == "adaptive" else sde.probability_flow(score)
    out = [solve(proc, x_T, sde.T, sde.eps, solver, seed=seed, backend=b, **kw) for b in ("numpy", "numba")]
    return out


def _same(a, b, tol):
    scale = max(1.0, float(np.max(np.abs(a.x))))
    assert np.max(np.abs(a.x - b.x)) <= tol * scale, np.max(np.abs(a.x - b.x))
    # the same accept/reject decisions: identical step counts and NFE
    for key in ("accepted", "rejected", "nfe_mean", "nfe_max"):
        assert a.stats[key] == b.stats[key], (key, a.stats[key], b.stats[key])


@pytest.mark.parametrize("noise", ["tree", "counter"])
@pytest.mark.parametrize("density", [GAUSS, MIX], ids=["gaussian", "mixture"])
def test_fused_adaptive_sde_matches_numpy(density, noise):
    a, b = _pair(VPSDE(), density, "adaptive", rtol=2e-2, atol=2e-3, noise=noise)
    assert b.stats["kernel"] == "fused adaptive_sde" and a.stats.get("kernel") != b.stats["kernel"]
    _same(a, b, 1e-10)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()], ids=["vp", "subvp", "ve", "edm"])
def test_fused_dopri5_matches_numpy(sde):
    # time="t": the fused kernel steps in the process's own time (dopri5's default on EDM is the log-SNR since
    # issue 24, which the numba backend runs in the numpy loop)
    a, b = _pair(sde, MIX, "dopri5", rtol=1e-5, atol=1e-5, time="t")
    assert b.stats["kernel"] == "fused dopri5"
    _same(a, b, 1e-10)


def test_fused_adaptive_on_other_sdes_matches_numpy():
    for sde in (VESDE(), EDMSDE()):
        a, b = _pair(sde, GAUSS, "adaptive", n=16, rtol=5e-2, atol=5e-3, noise="counter")
        _same(a, b, 1e-9)


def test_auto_picks_the_fused_adaptive_kernels():
    # once compiled in the process (a small job would not pay for the compilation: issue 23)
    sde = VPSDE()
    for solver in ("adaptive", "dopri5"):
        sdekit.sample(sde, GAUSS.score(sde), n=8, solver=solver, rtol=5e-2, seed=1, backend="numba")
    sol = sdekit.sample(sde, GAUSS.score(sde), n=8, solver="adaptive", rtol=5e-2, seed=1)
    assert sol.stats["backend"] == "numba" and sol.stats["kernel"] == "fused adaptive_sde"
    sol = sdekit.sample(sde, GAUSS.score(sde), n=8, solver="dopri5", seed=1)
    assert sol.stats["backend"] == "numba" and sol.stats["kernel"] == "fused dopri5"


def test_per_sample_results_independent_of_batch_and_chunks():
    # lanes are refilled and packed, tasks and chunks cut the batch differently for every n: sample i's numbers
    # depend on (seed, sample_ids[i]) alone
    sde = VPSDE()
    score = MIX.score(sde)
    x_T = sde.prior_sample((700, 3), seed=4)
    kw = dict(rtol=2e-2, atol=2e-3, seed=4, backend="numba")
    full = solve(sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", **kw)
    ids = np.array([3, 250, 699, 5])
    part = solve(sde.reverse(score), x_T[ids], sde.T, sde.eps, "adaptive", sample_ids=ids, **kw)
    np.testing.assert_array_equal(part.x, full.x[ids])
    assert full.stats["nfe_max"] > full.stats["nfe_mean"]  # the samples took different numbers of steps


def test_tree_path_is_kept_pathwise():
    # the tree's promise: the adaptive steps discretise the same Brownian path as a fine fixed grid on it
    sde = VPSDE()
    score = GAUSS.score(sde)
    x_T = sde.prior_sample((40, 3), seed=6)
    ref = solve(sde.reverse(score), x_T, sde.T, sde.eps, "sra1", steps=2**11, noise="tree", seed=6).x
    errs = []
    for rtol in (1e-1, 1e-2):
        sol = solve(sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", rtol=rtol, atol=rtol / 10, seed=6,
                    noise="tree", backend="numba")  # fmt: skip
        errs.append(np.sqrt(np.mean((sol.x - ref) ** 2)))
        assert errs[-1] < 5 * (rtol + rtol / 10), (rtol, errs)
    assert errs[0] > 3 * errs[1], errs


def test_save_at_matches_numpy():
    sde = VPSDE()
    score = GAUSS.score(sde)
    kw = dict(n=20, solver="adaptive", rtol=5e-2, seed=2, save_at=[0.5, 0.2], denoise=False)
    a = sdekit.sample(sde, score, backend="numpy", **kw)
    b = sdekit.sample(sde, score, backend="numba", **kw)
    np.testing.assert_allclose(b.xs, a.xs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b.x, a.x, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_row_score_runs_the_fused_adaptive_kernels():
    # one solver: a RowScore's kernel is compiled per process (2-4 min here, not cached on disk: the cache could not
    # tell two user functions apart); dopri5 takes the same route (AdaptiveKernel.row)
    sde = VPSDE()
    row = RowScore(user_row, event_shape=2)
    kw = dict(n=30, solver="adaptive", rtol=3e-2, atol=3e-3, seed=8)
    a = sdekit.sample(sde, row, backend="numba", **kw)  # "auto" would not compile it for a small job (issue 23)
    assert a.stats["kernel"] == "fused adaptive_sde", a.stats
    b = sdekit.sample(sde, Gaussian(MU, LAM).score(sde), backend="numpy", **kw)
    _same(b, a, 1e-9)


@njit
def _two_args(x, t):
    return x


@njit
def _half_written(x, t, out):
    out[0] = -x[0]  # forgets out[1]


def test_row_score_of_the_wrong_signature_is_a_clear_error():
    with pytest.raises(TypeError, match=r"RowScore needs fn\(x_row, t, out_row\).*'_two_args'"):
        RowScore(_two_args, 2)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_row_score_that_leaves_out_unwritten_gives_nan_not_garbage(backend):
    row = RowScore(_half_written, 2)
    got = row(np.ones((4, 2)), 0.5)
    assert np.all(got[:, 0] == -1.0) and np.all(np.isnan(got[:, 1]))
    with pytest.raises(NonFiniteError):
        sdekit.sample(VPSDE(), row, n=4, steps=5, backend=backend, seed=0)


# -- progress and Ctrl-C --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend,unit", [("numpy", "time covered"), ("numba", "samples finished")])
def test_adaptive_runs_show_progress(backend, unit, capsys):
    sde = VPSDE()
    sdekit.sample(sde, GAUSS.score(sde), n=16, solver="adaptive", rtol=5e-2, backend=backend, progress=True)
    assert unit in capsys.readouterr().err


def _interrupt_after(seconds):
    import _thread
    import threading

    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


@pytest.mark.parametrize("solver", ["euler_maruyama", "adaptive"])
def test_long_fused_runs_stop_on_ctrl_c(solver):
    # the fused kernels return to python about every CALL_SECONDS: a KeyboardInterrupt lands within a few calls,
    # not at the end of the run (uninterrupted, these runs take minutes)
    import time

    sde = VPSDE()
    # uninterrupted: ~1e11 sample-steps either way (minutes); a first kernel call of the adaptive run is ~1 s
    kw = dict(n=20_000, steps=2_000_000) if solver == "euler_maruyama" else dict(n=200_000, rtol=1e-3, atol=1e-4)
    warm = dict(steps=2) if solver == "euler_maruyama" else dict(rtol=0.5)
    sdekit.sample(sde, GAUSS.score(sde), n=4, solver=solver, backend="numba", **warm)  # compiled before timing
    # Ctrl-C raises KeyboardInterrupt only where SIGINT has Python's handler: a process started in the background
    # by a non-interactive shell inherits SIGINT ignored, and then interrupt_main does nothing
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = _interrupt_after(0.5)
    tic = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            sdekit.sample(sde, GAUSS.score(sde), solver=solver, backend="numba", seed=1, **kw)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, handler)
    assert time.perf_counter() - tic < 20.0


def test_an_sde_the_kernels_do_not_know_runs_the_host_loop_and_says_so():
    # a subclass of VPSDE is not one of the kernels' SDE classes: the compiled score runs in the numpy host loop,
    # with a warning naming why (never silently slower), and gives the numpy backend's numbers
    class MyVP(VPSDE):
        pass

    sde = MyVP()
    data = Gaussian(np.array([0.3, -0.2]), np.array([[0.5, 0.1], [0.1, 0.4]]))
    x_T = sde.prior_sample((6, 2), seed=2)
    with pytest.warns(RuntimeWarning, match="MyVP in the numpy host loop"):
        ours = sdekit.sample(sde, data.score(sde), x_T=x_T, solver="dopri5", backend="numba", rtol=1e-4, atol=1e-4)
    ref = sdekit.sample(sde, data.score(sde), x_T=x_T, solver="dopri5", backend="numpy", rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ours.x, ref.x)
