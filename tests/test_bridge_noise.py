"""Bridge noise (``noise="bridge"``, :mod:`sdekit.bridge_noise`): exact Brownian increments under any rule of
accepting and rejecting, the exact law of the reverse SDE where fresh noise per attempt is biased, per-sample
results independent of the batch, the fused numba kernel equal to the numpy loop, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from sdekit import VPSDE, Gaussian, GaussianMixture, sample, solve
from sdekit.bridge_noise import BRIDGE_DEPTH, BRIDGE_STEP, BridgeNoise
from sdekit.integrate import Job
from sdekit.loop import adaptive as adaptive_loop
from sdekit.noise import PRIOR_STEP, normals_numpy
from sdekit.solvers import get_solver
from sdekit.tree_law import TREE_STEP

DATA = Gaussian(np.array([1.0, -0.5]), np.array([[0.6, 0.2], [0.2, 1.5]]))
STOPS = (0.3, 0.5, 1.0)


def _drive(n, noise, size=2, seed=3, depth=BRIDGE_DEPTH):
    """Walk ``n`` samples from 0 to 1 (landing on ``STOPS``) with a rule that selects on the noise: an attempt is
    rejected when its first component's increment exceeds 1.5 standard deviations (unless the step is below
    1e-3), the step halves after a rejection and grows 1.5x after an acceptance. Returns the accepted path at the
    stops ``(len(STOPS), n, size)`` and the bridge stacks."""
    bn = BridgeNoise(seed, np.arange(n), size, depth=depth)
    t = np.zeros(n)
    h = np.full(n, 0.17)
    nxt = np.zeros(n, dtype=np.int64)
    w = np.zeros((n, size))
    out = np.zeros((len(STOPS), n, size))
    stops = np.asarray(STOPS)
    attempts = np.zeros(n, dtype=np.int64)
    while True:
        idx = np.flatnonzero(nxt < len(stops))
        if idx.size == 0:
            return out, bn
        target = stops[nxt[idx]]
        rem = target - t[idx]
        hh = np.minimum(h[idx], rem)
        last = hh >= rem * (1 - 1e-12)
        t_next = np.where(last, target, t[idx] + hh)
        hh = t_next - t[idx]
        if noise == "bridge":
            dw = bn.increment(idx, hh)
        else:  # fresh normals per attempt
            dw = np.sqrt(hh)[:, None] * normals_numpy(seed, idx, attempts[idx], size)
        attempts[idx] += 1
        ok = (np.abs(dw[:, 0]) < 1.5 * np.sqrt(hh)) | (hh < 1e-3)
        if noise == "bridge":
            bn.accept(idx[ok])
            bn.reject(idx[~ok])
        acc = idx[ok]
        w[acc] += dw[ok]
        t[acc] = t_next[ok]
        h[idx] = np.where(ok, 1.5 * hh, 0.5 * hh)
        landed = acc[last[ok]]
        for i in range(len(stops)):
            rows = landed[nxt[landed] == i]
            out[i, rows] = w[rows]
        nxt[landed] += 1


def _windows(out):
    return [out[0], out[1] - out[0], out[2] - out[1]], [0.3, 0.2, 0.5]


def test_increments_are_exact_under_selection():
    # the accepted path's increments over the windows [0, .3], [.3, .5], [.5, 1] are N(0, duration) and
    # uncorrelated, although the accept rule selects on the increments: within 4.5 standard errors
    n = 6000
    out, bn = _drive(n, "bridge")
    assert bn.merges.sum() == 0 and bn.count.max() > 0
    ws, durs = _windows(out)
    for w, dur in zip(ws, durs, strict=True):
        np.testing.assert_allclose(w.mean(0) / np.sqrt(dur), 0.0, atol=4.5 / np.sqrt(n))
        np.testing.assert_allclose(w.var(0) / dur, 1.0, atol=4.5 * np.sqrt(2.0 / n))
    for a, b, da, db in ((ws[0], ws[1], 0.3, 0.2), (ws[1], ws[2], 0.2, 0.5)):
        for j in range(2):
            assert abs(np.mean(a[:, j] * b[:, j]) / np.sqrt(da * db)) < 4.5 / np.sqrt(n)
    # the same rule with fresh noise per attempt: the selection shows (variance far below the duration)
    out_c, _ = _drive(n, "counter")
    ws_c, _ = _windows(out_c)
    assert np.all(ws_c[2][:, 0].var() / 0.5 < 0.8), ws_c[2][:, 0].var() / 0.5


def test_stack_keeps_every_drawn_increment():
    # rejections keep the pieces: a retry over the same interval sees the same increment, a shorter one its
    # bridge; accepting removes what was used; the pieces sum to what was drawn
    bn = BridgeNoise(1, np.array([7]), 3)
    r = np.array([0])
    a = bn.increment(r, np.array([0.5]))
    np.testing.assert_allclose(a, np.sqrt(0.5) * normals_numpy(1, np.array([7]), BRIDGE_STEP, 3))
    bn.reject(r)
    np.testing.assert_array_equal(bn.increment(r, np.array([0.5])), a)  # covered by the stack: no draw
    assert bn.count[0] == 1
    bn.reject(r)
    b = bn.increment(r, np.array([0.2]))  # a bridge split of the piece
    assert bn.count[0] == 2 and bn.k[0] == 2
    np.testing.assert_allclose(bn.dw[0, 0] + bn.dw[0, 1], a[0], rtol=1e-14, atol=1e-15)
    bn.accept(r)
    assert bn.k[0] == 1 and bn.tau[0, 0] == pytest.approx(0.3)
    c = bn.increment(r, np.array([0.6]))  # the rest of the piece and a new piece beyond it
    assert bn.k[0] == 2 and bn.count[0] == 3
    np.testing.assert_allclose(b + c - bn.dw[0, 0], a, rtol=1e-13, atol=1e-14)  # [0, .5] kept: b + (c - new)
    bn.accept(r)
    assert bn.k[0] == 0
    # a full stack merges its two bottom pieces first (their durations and increments add)
    small = BridgeNoise(1, np.array([0]), 1, depth=2)
    small.increment(r, np.array([1.0]))
    small.reject(r)
    small.increment(r, np.array([0.5]))
    small.reject(r)
    total = small.dw[0, :2].sum()
    small.increment(r, np.array([0.25]))
    assert small.merges[0] == 1 and small.k[0] == 2
    np.testing.assert_allclose(small.tau[0, :2].sum(), 1.0)
    np.testing.assert_allclose(small.dw[0, :2].sum(), total)
    with pytest.raises(ValueError, match="depth"):
        BridgeNoise(0, np.arange(2), 1, depth=1)


def test_reserved_counter_steps_are_distinct():
    assert TREE_STEP + 2**41 < BRIDGE_STEP < PRIOR_STEP


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_reverse_sde_law_with_bridge_noise(backend):
    # adaptive on a 2-D Gaussian under VP: the exact marginal's mean and variances within 4 standard errors
    # (2000 samples: 0.03 on the variance ratios, 0.022 sd on the means); fresh noise per attempt inflates the
    # variance (1.4--2.6x at these tolerances) and fails the same check
    pytest.importorskip(backend)
    sde = VPSDE()
    score = DATA.score(sde)
    m, c = DATA.mean_cov(sde.eps, sde)
    n = 2000
    kw = dict(n=n, solver="adaptive", rtol=2e-2, atol=2e-3, denoise=False, seed=2, backend=backend)
    sol = sample(sde, score, noise="bridge", **kw)
    assert sol.stats["bridge_merges"] == 0.0
    np.testing.assert_allclose((sol.x.mean(0) - m) / np.sqrt(np.diag(c)), 0.0, atol=4 / np.sqrt(n))
    np.testing.assert_allclose(sol.x.var(0) / np.diag(c), 1.0, atol=4 * np.sqrt(2 / n))
    cov = np.cov(sol.x, rowvar=False)
    assert abs(cov[0, 1] - c[0, 1]) < 4 * np.sqrt((c[0, 0] * c[1, 1] + c[0, 1] ** 2) / n)
    counter = sample(sde, score, noise="counter", **kw)
    assert np.all(counter.x.var(0) / np.diag(c) > 1.0 + 4 * np.sqrt(2 / n))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_per_sample_results_independent_of_batch(backend):
    pytest.importorskip(backend)
    sde = VPSDE()
    score = DATA.score(sde)
    x_T = sde.prior_sample((700, 2), seed=4)
    kw = dict(rtol=2e-2, atol=2e-3, seed=4, backend=backend, noise="bridge")
    full = solve(sde.reverse(score), x_T, sde.T, sde.eps, "adaptive", **kw)
    ids = np.array([3, 250, 699, 5])
    part = solve(sde.reverse(score), x_T[ids], sde.T, sde.eps, "adaptive", sample_ids=ids, **kw)
    np.testing.assert_array_equal(part.x, full.x[ids])
    assert full.stats["nfe_max"] > full.stats["nfe_mean"]


def _cov(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.2 * np.eye(d)


GAUSS3 = Gaussian([0.5, -1.0, 2.0], _cov(3, 0))
MIX3 = GaussianMixture([0.6, 0.4], [[2.0, 0.0, 0.0], [-2.0, 1.0, 0.5]], np.stack([_cov(3, 1), _cov(3, 2)]))


@pytest.mark.parametrize("density", [GAUSS3, MIX3], ids=["gaussian", "mixture"])
def test_fused_kernel_matches_numpy(density):
    # the fused kernel's stacks (per lane, moved with the sample when lanes are packed) give the numpy loop's
    # increments: the same accept/reject decisions and the same samples to round-off
    pytest.importorskip("numba")
    sde = VPSDE()
    x_T = sde.prior_sample((300, 3), seed=3)
    proc = sde.reverse(density.score(sde))
    kw = dict(rtol=2e-2, atol=2e-3, seed=3, noise="bridge", save_at=[0.5])
    a, b = (solve(proc, x_T, sde.T, sde.eps, "adaptive", backend=be, **kw) for be in ("numpy", "numba"))
    assert b.stats["kernel"] == "fused adaptive_sde"
    for key in ("accepted", "rejected", "nfe_mean", "nfe_max", "bridge_merges"):
        assert a.stats[key] == b.stats[key], (key, a.stats[key], b.stats[key])
    assert np.max(np.abs(a.x - b.x)) <= 1e-10 * max(1.0, float(np.max(np.abs(a.x))))
    np.testing.assert_allclose(b.xs, a.xs, rtol=1e-10, atol=1e-10)
    auto = sample(sde, density.score(sde), n=8, solver="adaptive", rtol=5e-2, seed=1, noise="bridge")
    # compiled in this process by the solve above, so auto runs it (issue 23)
    assert auto.stats["backend"] == "numba" and auto.stats["kernel"] == "fused adaptive_sde"


def test_torch_runs_the_same_loop():
    torch = pytest.importorskip("torch")
    sde = VPSDE()
    x_T = sde.prior_sample((8, 2), seed=1)
    outs = []
    for x0 in (x_T, torch.as_tensor(x_T)):
        job = Job(process=sde.reverse(DATA.score(sde)), solver=get_solver("adaptive", rtol=1e-2, atol=1e-3),
                  x0=x0, grid=np.array([sde.T, sde.eps]), seed=1, sample_ids=np.arange(8), save_index=None,
                  progress=False, check_finite=True, stochastic=True, noise="bridge")  # fmt: skip
        outs.append(adaptive_loop.run(job))
    assert isinstance(outs[1][0], torch.Tensor)
    np.testing.assert_allclose(outs[1][0].numpy(), outs[0][0], rtol=1e-8, atol=1e-8)
    assert outs[1][3]["rejected"] == outs[0][3]["rejected"]


def test_errors():
    sde = VPSDE()
    score = DATA.score(sde)
    x = sde.prior_sample((4, 2), seed=0)
    with pytest.raises(ValueError, match="noise='bridge' is defined for adaptive solvers.*'euler_maruyama'"):
        solve(sde.reverse(score), x, sde.T, sde.eps, "euler_maruyama", steps=10, noise="bridge")
    with pytest.raises(ValueError, match="noise='bridge' is defined for adaptive solvers"):
        sample(sde, score, n=4, solver="heun", process="sde", steps=10, noise="bridge")
    with pytest.raises(ValueError, match=r"unknown noise 'brige'.*'bridge'"):
        solve(sde.reverse(score), x, sde.T, sde.eps, "adaptive", noise="brige")
    # an ODE draws no noise: 'bridge' (like 'tree') is refused there rather than silently ignored (issue 24)
    ode = sde.probability_flow(score)
    with pytest.raises(ValueError, match="noise='bridge' applies to SDEs"):
        solve(ode, x, sde.T, sde.eps, "dopri5", noise="bridge")
    with pytest.raises(ValueError, match="noise='bridge' applies to SDEs"):
        sample(sde, score, n=4, solver="heun", steps=10, noise="bridge")
