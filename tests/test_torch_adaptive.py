"""The torch adaptive loop with device-side accept/reject (sdekit.backends.torch_adaptive)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _torch_syncs import count_syncs  # noqa: E402
from sdekit import EDMSDE, VPSDE, Gaussian, GaussianMixture, NonFiniteError, sample, solve  # noqa: E402
from sdekit.backends import torch_adaptive  # noqa: E402
from sdekit.backends.torch_ import torch_options  # noqa: E402
from sdekit.controllers import PIController  # noqa: E402

DATA = Gaussian(mean=[0.5, -1.0, 2.0], cov=[[0.3, 0.1, 0.0], [0.1, 0.5, -0.2], [0.0, -0.2, 0.4]])
MIX = GaussianMixture([0.6, 0.4], [[1.0, 0.0], [-1.5, 0.5]], [[0.2, 0.1], [0.3, 0.05]])
CASES = [
    ("adaptive", "sde", {"noise": "counter", "rtol": 0.2, "atol": 0.02}),
    ("adaptive", "sde", {"noise": "bridge", "rtol": 0.2, "atol": 0.02}),
    ("dopri5", "ode", {"rtol": 1e-4}),
]


def host_loop(monkeypatch):
    """Route torch adaptive solves to the per-attempt host loop (the reference)."""
    monkeypatch.setattr(torch_adaptive, "supports", lambda job, sync_every=None: False)


def _solve_pair(monkeypatch, sde, density, solver, process, kw, n=60, **extra):
    score = density.score(sde)
    common = dict(n=n, solver=solver, process=process, seed=5, dtype=torch.float64, **kw, **extra)
    with torch_options(sync_every=torch_adaptive.DEFAULT_SYNC_EVERY):  # bridge noise: the device loop on CPU too
        dev = sample(sde, score, **common)
    with monkeypatch.context() as m:
        host_loop(m)
        host = sample(sde, score, **common)
    return dev, host


@pytest.mark.parametrize("sde", [VPSDE(), EDMSDE()], ids=["vp", "edm"])
@pytest.mark.parametrize("density", [DATA, MIX], ids=["gaussian", "mixture"])
@pytest.mark.parametrize("solver, process, kw", CASES)
def test_device_loop_makes_the_host_loops_decisions(monkeypatch, sde, density, solver, process, kw):
    dev, host = _solve_pair(monkeypatch, sde, density, solver, process, kw, save_at=[0.5 * sde.T, 0.1 * sde.T])
    assert "host_reads" in dev.stats and "host_reads" not in host.stats
    for key in ("accepted", "rejected", "nfe_mean", "nfe_max"):
        assert dev.stats[key] == host.stats[key], key
    scale = max(1.0, float(host.x.abs().max()))
    np.testing.assert_allclose(dev.x.numpy(), host.x.numpy(), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(dev.xs.numpy(), host.xs.numpy(), rtol=0, atol=1e-12 * float(host.xs.abs().max()))
    np.testing.assert_array_equal(dev.ts, host.ts)
    # and numpy's loop on the same noise: round-off apart, the same decisions
    ref = sample(sde, density.score(sde), n=60, solver=solver, process=process, seed=5, backend="numpy",
                 save_at=[0.5 * sde.T, 0.1 * sde.T], **kw)  # fmt: skip
    assert dev.stats["accepted"] == ref.stats["accepted"] and dev.nfe == ref.nfe
    np.testing.assert_allclose(dev.x.numpy(), ref.x, rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("solver, process, kw", CASES)
def test_results_do_not_depend_on_sync_every_or_the_batch(solver, process, kw):
    sde = VPSDE()
    score = DATA.score(sde)
    proc = sde.reverse(score) if process == "sde" else sde.probability_flow(score)
    x_T = torch.as_tensor(sde.prior_sample((90, 3), seed=1))
    runs = {}
    for k in (1, 3, 8, 50):
        with torch_options(sync_every=k):
            runs[k] = solve(proc, x_T, 1.0, 1e-3, solver, seed=2, **kw)
        assert runs[k].stats["sync_every"] == k
    for k in (3, 8, 50):
        assert runs[k].stats["accepted"] == runs[1].stats["accepted"]
        np.testing.assert_allclose(runs[k].x.numpy(), runs[1].x.numpy(), rtol=0, atol=1e-13)
    # fewer reads with larger k (at least attempts / k)
    attempts = runs[1].stats["host_reads"]
    assert math.ceil(attempts / 8) <= runs[8].stats["host_reads"] < attempts
    for i in (0, 41, 89):  # one sample alone, with its id, follows the same path
        one = solve(proc, x_T[i : i + 1], 1.0, 1e-3, solver, seed=2, sample_ids=[i], **kw)
        np.testing.assert_allclose(one.x[0].numpy(), runs[8].x[i].numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("solver, process, kw", CASES)
def test_host_reads_are_once_every_k_attempts(monkeypatch, solver, process, kw):
    sde = VPSDE()
    score = DATA.score(sde)
    proc = sde.reverse(score) if process == "sde" else sde.probability_flow(score)
    x_T = torch.as_tensor(sde.prior_sample((16, 3), seed=1))
    syncs, reads = {}, {}
    for k in (1, 10):
        with monkeypatch.context() as m:
            count = count_syncs(m)
            with torch_options(sync_every=k):
                sol = solve(proc, x_T, 1.0, 1e-3, solver, seed=2, check_finite=True, **kw)
            syncs[k] = count["n"]
        reads[k] = sol.stats["host_reads"]
    # with k = 1 there is a read per attempt of the slowest sample; with k = 10 at least a tenth of them, more
    # at the start and in the tail (attempts_to_next_read)
    assert reads[1] > 5 and math.ceil(reads[1] / 10) <= reads[10] < reads[1]
    # each read is two transfers (times, failure flags); validation and the final counts add a constant
    assert syncs[1] - syncs[10] == 2 * (reads[1] - reads[10])


def test_errors_raise_at_the_next_read():
    sde = VPSDE()

    def nan_score(x, t):  # non-finite below t = 0.3: no step gets past it
        return torch.where((t < 0.3)[:, None], torch.nan, -x)

    x_T = torch.as_tensor(sde.prior_sample((8, 2), seed=0))
    with pytest.raises(NonFiniteError, match="step size underflow at t = 0.3"):
        solve(sde.probability_flow(nan_score), x_T, 1.0, 1e-3, "dopri5", check_finite=True)
    with pytest.raises(NonFiniteError, match="max_steps=5"):
        from sdekit.solvers.adaptive import Dopri5

        solve(sde.probability_flow(DATA.score(sde)), torch.as_tensor(sde.prior_sample((8, 3), seed=0)), 1.0, 1e-3,
              Dopri5(max_steps=5))  # fmt: skip
    for bad in (0, -2, 1.5, "8", True):
        with pytest.raises((TypeError, ValueError), match="sync_every"):
            with torch_options(sync_every=bad):
                pass


def test_attempts_to_next_read_bounds_the_idle_work():
    assert torch_adaptive.attempts_to_next_read(np.full(100, 50.0), 8) == 8  # the bulk: k
    assert torch_adaptive.attempts_to_next_read(np.full(100, 1.2), 8) == 1  # all about to finish: read next
    rng = np.random.default_rng(0)
    for _ in range(200):
        ahead = rng.exponential(rng.uniform(0.5, 20.0), size=int(rng.integers(1, 300)))
        k = int(rng.integers(1, 33))
        c = torch_adaptive.attempts_to_next_read(ahead, k)
        assert 1 <= c <= k
        if c > 1:  # within the idle budget, and c + 1 would not be (unless c = k)
            assert np.mean(np.maximum(c - ahead, 0)) <= torch_adaptive.IDLE_BUDGET * c
        if c < k:
            assert np.mean(np.maximum(c + 1 - ahead, 0)) > torch_adaptive.IDLE_BUDGET * (c + 1)


def test_controller_on_tensors_equals_numpy():
    rng = np.random.default_rng(0)
    h = rng.uniform(1e-4, 0.1, 500)
    err = np.concatenate([rng.uniform(0, 3, 495), [0.0, 1.0, np.inf, np.nan, 1e-9]])
    prev = rng.uniform(1e-6, 1.0, 500)
    for ctrl in (PIController(beta1=0.9, min_factor=0.0, max_factor=math.inf), PIController(beta1=0.17, beta2=0.04)):
        acc, hn = ctrl.propose(h, err, prev)
        acc_t, hn_t = ctrl.propose(*(torch.as_tensor(v) for v in (h, err, prev)))
        np.testing.assert_array_equal(acc_t.numpy(), acc)
        np.testing.assert_allclose(hn_t.numpy(), hn, rtol=1e-15, atol=0)


def test_fallbacks_callback_and_tree_noise_run_the_host_loop():
    sde = VPSDE()
    score = DATA.score(sde)
    seen = []
    sol = sample(sde, score, n=10, solver="adaptive", seed=1, dtype=torch.float64, noise="counter",
                 callback=lambda info: seen.append(info["step"]))  # fmt: skip
    assert seen and "host_reads" not in sol.stats
    tree = sample(sde, score, n=10, solver="adaptive", seed=1, dtype=torch.float64, noise="tree")
    assert "host_reads" not in tree.stats and torch.isfinite(tree.x).all()
    # the default bridge noise: the host loop for CPU tensors, unless sync_every asks for device-side control
    default = sample(sde, score, n=10, solver="adaptive", seed=1, dtype=torch.float64)
    assert "host_reads" not in default.stats and "bridge_merges" in default.stats
    with torch_options(sync_every=4):
        on_device = sample(sde, score, n=10, solver="adaptive", seed=1, dtype=torch.float64)
    assert "host_reads" in on_device.stats and on_device.stats["accepted"] == default.stats["accepted"]
    np.testing.assert_allclose(on_device.x.numpy(), default.x.numpy(), rtol=0, atol=1e-12)


def test_torch_bridge_stacks_equal_numpy_under_selection():
    # drive both stacks with the same steps and data-dependent rejections (what biases fresh noise), on a
    # shallow depth so that overflow merges happen too: the same increments, stacks and counters
    from sdekit.backends.torch_bridge import TorchBridge
    from sdekit.backends.torch_noise import TorchNormals
    from sdekit.bridge_noise import BridgeNoise

    n, size, depth = 40, 3, 3
    ids = np.arange(100, 100 + n)
    ref = BridgeNoise(7, ids, size, depth=depth)
    dev = TorchBridge(n, size, "cpu", depth=depth)
    dev.reserve(depth)
    normals = TorchNormals(7, ids, "cpu", torch.float64)
    h = np.full(n, 2.0**-4)
    for _ in range(60):
        active = np.ones(n, dtype=bool)
        d_ref = ref.increment(np.arange(n), h)
        d_dev = dev.increment(torch.as_tensor(active), torch.as_tensor(h), normals)
        np.testing.assert_allclose(d_dev.numpy(), d_ref, rtol=0, atol=1e-14)
        accept = np.abs(d_ref[:, 0]) < 0.8 * np.sqrt(h)
        ref.accept(np.flatnonzero(accept))
        ref.reject(np.flatnonzero(~accept))
        dev.settle(torch.as_tensor(accept))
        h = np.where(accept, np.minimum(2.0 * h, 2.0**-2), 0.5 * h)
        for a, b in ((dev.k, ref.k), (dev.count, ref.count), (dev.merges, ref.merges)):
            np.testing.assert_array_equal(a.numpy(), b)
    assert ref.merges.sum() > 0 and ref.count.min() > 10


def test_float32_and_conditioning():
    sde = VPSDE()
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)

    def class_score(x, t, label):
        alpha, sigma = sde.marginal(t)
        a, s2 = alpha[:, None], (sigma**2)[:, None]
        return -(x - a * means[label].to(x.dtype)) / (a * a * 0.1 + s2)

    labels = torch.as_tensor(np.random.default_rng(0).integers(0, 2, size=40))
    for dtype in (torch.float32, torch.float64):
        sol = sample(sde, class_score, n=40, shape=(2,), solver="dopri5", seed=2, dtype=dtype, cond={"label": labels})
        assert sol.x.dtype == dtype and "host_reads" in sol.stats
        nearest = torch.argmin(((sol.x.double()[:, None, :] - means[None]) ** 2).sum(-1), dim=1)
        assert torch.equal(nearest, labels)


def test_differentiable_solves_give_the_host_loops_gradients(monkeypatch):
    # torch_options(differentiable=True): gradients flow through the masks and the saved states; the control
    # (errors, step sizes) carries none, as in the host loop
    sde = VPSDE()
    mu = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)

    def score(x, t):
        a, s = sde.marginal(t)
        return -(x - a[:, None] * mu) / (a[:, None] ** 2 * 0.3 + (s**2)[:, None])

    x_T = torch.as_tensor(sde.prior_sample((16, 2), seed=0))
    cases = (("dopri5", sde.probability_flow(score), {}), ("adaptive", sde.reverse(score), {"noise": "counter"}))
    grads = {}
    for route in ("device", "host"):
        with monkeypatch.context() as m:
            if route == "host":
                host_loop(m)
            for solver, proc, kw in cases:
                with torch_options(differentiable=True):
                    sol = solve(proc, x_T, 1.0, 1e-3, solver, seed=0, save_at=[0.5], **kw)
                assert ("host_reads" in sol.stats) == (route == "device")
                (sol.x.sum() + sol.xs.sum()).backward()
                grads[route, solver] = mu.grad.clone()
                mu.grad = None
    for solver, _, _ in cases:
        assert torch.isfinite(grads["device", solver]).all() and grads["device", solver].abs().sum() > 0
        np.testing.assert_allclose(grads["device", solver].numpy(), grads["host", solver].numpy(), rtol=1e-10)
