"""Per-sample conditioning (``cond=``) and step callbacks (``callback=``) through every loop."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit import VPSDE, Gaussian, sample, solve

SDE = VPSDE()
MEANS = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]])


def class_score(x, t, label):
    """The exact score of N(MEANS[label], 0.1 I) under VP: each sample's own class."""
    alpha, sigma = SDE.marginal(t)
    a, s2 = alpha[:, None], (sigma**2)[:, None]
    var = a * a * 0.1 + s2
    mu = MEANS[np.asarray(label)]
    return -(x - a * mu) / var


def _labels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 3, size=n)


@pytest.mark.parametrize("solver", ["euler_maruyama", "dpmpp_2m", "heun", "dopri5", "adaptive"])
def test_each_sample_sees_its_own_label(solver):
    labels = _labels(60)
    kw = dict(shape=(2,), solver=solver, seed=3, cond={"label": labels})
    if not sdekit.get_solver(solver).adaptive:
        kw["steps"] = 40
    x = sample(SDE, class_score, n=60, **kw).x
    # every sample lands at its own class mean (classes are 4 apart, spread sqrt(0.1))
    nearest = np.argmin(((x[:, None, :] - MEANS[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest, labels)


@pytest.mark.parametrize("solver", ["dopri5", "adaptive"])
def test_adaptive_subsets_keep_labels_aligned_and_chunks_agree(solver):
    # adaptive loops evaluate subsets of rows: sample i must see label i, and a chunk with its ids equals the batch
    labels = _labels(12, seed=1)
    x_T = SDE.prior_sample((12, 2), seed=4)
    whole = solve(SDE.reverse(class_score) if solver == "adaptive" else SDE.probability_flow(class_score),
                  x_T, 1.0, 1e-3, solver, cond={"label": labels}, seed=2).x  # fmt: skip
    for i in (0, 5, 11):  # one sample at a time, with its id, is the same path (per-sample step sizes)
        proc = SDE.reverse(class_score) if solver == "adaptive" else SDE.probability_flow(class_score)
        one = solve(proc, x_T[i : i + 1], 1.0, 1e-3, solver, cond={"label": labels[i : i + 1]}, seed=2,
                    sample_ids=[i]).x  # fmt: skip
        np.testing.assert_allclose(one[0], whole[i], rtol=1e-10, atol=1e-10)


def test_cond_on_torch_and_numba_fallback():
    torch = pytest.importorskip("torch")
    labels = _labels(20, seed=2)
    ref = sample(SDE, class_score, n=20, shape=(2,), steps=20, seed=1, cond={"label": labels}).x
    nb = sample(SDE, class_score, n=20, shape=(2,), steps=20, seed=1, cond={"label": labels}, backend="numba").x
    np.testing.assert_allclose(nb, ref, rtol=1e-12, atol=1e-12)
    means_t = torch.as_tensor(MEANS)

    def torch_score(x, t, label):
        alpha, sigma = SDE.marginal(t)
        a, s2 = alpha[:, None], (sigma**2)[:, None]
        return -(x - a * means_t[label]) / (a * a * 0.1 + s2)

    tt = sample(SDE, torch_score, n=20, shape=(2,), steps=20, seed=1, cond={"label": torch.as_tensor(labels)},
                backend="torch", dtype=torch.float64).x  # fmt: skip
    np.testing.assert_allclose(tt.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_bad_cond_names_the_key():
    with pytest.raises(ValueError, match=r"cond\['label'\].*leading dimension n = 5"):
        sample(SDE, class_score, n=5, shape=(2,), steps=3, cond={"label": np.zeros(4, dtype=int)})
    with pytest.raises(TypeError, match="cond must be a dict"):
        sample(SDE, class_score, n=5, shape=(2,), steps=3, cond=[1, 2])
    with pytest.raises(ValueError, match="has none"):
        solve(SDE, np.ones((5, 2)), 0.0, 1.0, steps=3, cond={"label": np.zeros(5)})


@pytest.mark.parametrize("solver, has_denoised", [("euler_maruyama", False), ("dpmpp_2m", True), ("edm", True),
                                                  ("ancestral", True), ("dpmpp_pc", True)])  # fmt: skip
def test_callback_sees_every_step(solver, has_denoised):
    data = Gaussian([0.5, -0.5], 0.3)
    seen = []
    sol = sample(SDE, data.score(SDE), n=4, solver=solver, steps=6, seed=0, callback=seen.append, backend="numpy")
    grid = sdekit.grids.make_grid(SDE, 6, sdekit.get_solver(solver).default_grid)
    assert [info["step"] for info in seen] == list(range(6))
    # t: every sample's time after the step, a (n,) float64 array on fixed grids as in the adaptive loops
    assert all(info["t"].shape == (4,) and info["t"].dtype == np.float64 for info in seen)
    np.testing.assert_allclose([info["t"] for info in seen], np.repeat(grid[1:, None], 4, axis=1))
    assert all((info["denoised"] is not None) == has_denoised for info in seen)
    if has_denoised:
        assert seen[-1]["denoised"].shape == (4, 2)
    # the callback's last state is the solve's state before the final denoising; numba runs per step with it
    nb = []
    sample(SDE, data.score(SDE), n=4, solver=solver, steps=6, seed=0, callback=nb.append, backend="numba")
    np.testing.assert_allclose(nb[-1]["x"], seen[-1]["x"], rtol=1e-12)
    assert sol.x.shape == (4, 2)


def test_callback_on_adaptive_and_bad_callbacks():
    data = Gaussian([0.5, -0.5], 0.3)
    seen = []
    solve(SDE.probability_flow(data.score(SDE)), SDE.prior_sample((3, 2)), 1.0, 1e-3, "dopri5", callback=seen.append)
    assert seen and seen[-1]["t"].shape == (3,) and np.allclose(seen[-1]["t"], 1e-3)
    with pytest.raises(TypeError, match="callback"):
        sample(SDE, data.score(SDE), n=2, steps=2, callback=3)


@pytest.mark.parametrize("solver", ["dpmpp_2m", "euler_maruyama", "dopri5"])
def test_callback_info_cannot_change_the_run(solver):
    # info["x"] and info["denoised"] are read-only views of numpy states: an in-place edit raises instead of
    # silently steering the solve; a callback that only reads leaves the result bit-identical
    data = Gaussian([0.5, -0.5], 0.3)
    steps = None if solver == "dopri5" else 5
    plain = sample(SDE, data.score(SDE), n=3, solver=solver, steps=steps, seed=0, backend="numpy").x
    seen = []
    same = sample(SDE, data.score(SDE), n=3, solver=solver, steps=steps, seed=0, backend="numpy",
                  callback=seen.append).x  # fmt: skip
    np.testing.assert_array_equal(same, plain)
    assert all(not info["x"].flags.writeable for info in seen)

    def edit(info):
        info["x"] *= 2.0

    with pytest.raises(ValueError, match="read-only"):
        sample(SDE, data.score(SDE), n=3, solver=solver, steps=steps, seed=0, backend="numpy", callback=edit)
    if solver == "dpmpp_2m":
        with pytest.raises(ValueError, match="read-only"):
            sample(SDE, data.score(SDE), n=3, solver=solver, steps=steps, seed=0, backend="numpy",
                   callback=lambda info: info["denoised"].fill(0.0))  # fmt: skip


def test_callback_torch_info_is_a_copy_and_t_is_per_sample():
    torch = pytest.importorskip("torch")
    data = Gaussian([0.5, -0.5], 0.3)
    x_T = torch.as_tensor(SDE.prior_sample((3, 2), seed=1))
    plain = sample(SDE, data.score(SDE), x_T=x_T, solver="dpmpp_2m", steps=5).x
    seen = []

    def edit(info):
        seen.append(info["t"])
        info["x"].mul_(2.0)
        info["denoised"].zero_()

    edited = sample(SDE, data.score(SDE), x_T=x_T, solver="dpmpp_2m", steps=5, callback=edit).x
    assert torch.equal(edited, plain)
    assert all(isinstance(t, np.ndarray) and t.shape == (3,) and t.dtype == np.float64 for t in seen)
