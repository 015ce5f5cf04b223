"""Classifier-free guidance, conditioning through the adapters, chunks and the torch loops, and the step callback's
promise of no host synchronisation when it is None."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit import VPSDE, sample, solve
from sdekit.scores import classifier_free_guidance, score_from_denoiser, score_from_eps, score_from_v, score_from_x0

SDE = VPSDE()
MEANS = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0], [0.0, 0.0]])  # label 3: the "unconditional" class
VAR = 0.1


def x0_model(x, t, label):
    """The exact data prediction of N(MEANS[label], VAR I) under SDE (a conditional 'network')."""
    lib = np if isinstance(x, np.ndarray) else __import__("torch")
    alpha, sigma = SDE.marginal(t)
    a, s2 = alpha[:, None], (sigma**2)[:, None]
    mu = MEANS[np.asarray(label)] if lib is np else lib.as_tensor(MEANS, dtype=x.dtype)[label]
    return mu + a * VAR / (a * a * VAR + s2) * (x - a * mu)


def eps_model(x, t, label):
    alpha, sigma = SDE.marginal(t)
    return (x - alpha[:, None] * x0_model(x, t, label)) / sigma[:, None]


def v_model(x, t, label):
    alpha, sigma = SDE.marginal(t)
    return alpha[:, None] * eps_model(x, t, label) - sigma[:, None] * x0_model(x, t, label)


def denoiser(x_hat, sigma_hat, label):  # EDM variables: x_hat = x / alpha, sigma_hat = sigma / alpha
    t = SDE.t_from_log_snr(-np.log(sigma_hat))
    alpha = SDE.marginal(t)[0]
    return x0_model(alpha[:, None] * x_hat, t, label)


class Counting:
    def __init__(self, score):
        self.score, self.rows = score, []

    def __call__(self, x, t, **cond):
        self.rows.append(x.shape[0])
        return self.score(x, t, **cond)


def _batch(n=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)), rng.uniform(0.05, 0.95, n), rng.integers(0, 3, n)


def test_scale_one_is_conditional_zero_is_unconditional_in_one_call():
    x, t, labels = _batch()
    score = Counting(score_from_x0(x0_model, SDE))
    cond = score(x, t, label=labels)
    uncond = score(x, t, label=np.full(7, 3))
    score.rows.clear()
    for scale, want in ((1.0, cond), (0.0, uncond)):
        guided = classifier_free_guidance(score, scale, {"label": 3})
        np.testing.assert_allclose(guided(x, t, label=labels), want, rtol=1e-12, atol=1e-12)
    assert score.rows == [14, 14]  # one batched evaluation of the conditional and unconditional halves
    g = classifier_free_guidance(score, 3.0, {"label": 3})(x, t, label=labels)
    np.testing.assert_allclose(g, uncond + 3.0 * (cond - uncond), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("adapter, model", [(score_from_eps, eps_model), (score_from_x0, x0_model),
                                            (score_from_v, v_model), (score_from_denoiser, denoiser)])  # fmt: skip
def test_guidance_on_the_score_is_guidance_on_the_network_output(adapter, model):
    # every adapter is affine in the network output with weights summing to one: guiding the score = guiding eps/x0/v/D
    x, t, labels = _batch(seed=1)
    w = 2.5

    def guided_model(*args, label):
        c, u = model(*args, label=label), model(*args, label=np.full(len(label), 3))
        return u + w * (c - u)

    ours = classifier_free_guidance(adapter(model, SDE), w, {"label": 3})(x, t, label=labels)
    np.testing.assert_allclose(ours, adapter(guided_model, SDE)(x, t, label=labels), rtol=1e-10, atol=1e-10)


def test_guided_sampling_keeps_labels_aligned_in_chunks_and_adaptive_solvers():
    labels = np.random.default_rng(2).integers(0, 3, 12)
    guided = classifier_free_guidance(score_from_eps(eps_model, SDE), 1.5, {"label": 3})
    kw = dict(shape=(2,), seed=5)
    whole = sample(SDE, guided, n=12, solver="euler_maruyama", steps=30, cond={"label": labels}, **kw).x
    parts = [sample(SDE, guided, n=4, solver="euler_maruyama", steps=30, sample_ids=np.arange(i, i + 4),
                    cond={"label": labels[i : i + 4]}, **kw).x for i in (0, 4, 8)]  # fmt: skip
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-12, atol=1e-12)
    # dopri5 evaluates subsets of rows: each sample still lands at its own (guided) class
    x = sample(SDE, guided, n=12, solver="dopri5", cond={"label": labels}, **kw).x
    nearest = np.argmin(((x[:, None, :] - MEANS[None, :3]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest, labels)


def test_cond_on_torch_fixed_grid_and_adaptive_equals_numpy():
    torch = pytest.importorskip("torch")
    labels = np.random.default_rng(3).integers(0, 3, 10)
    score = classifier_free_guidance(score_from_x0(x0_model, SDE), 2.0, {"label": 3})
    x_T = SDE.prior_sample((10, 2), seed=1)
    for solver in ("dpmpp_2m", "dopri5", "adaptive"):
        proc = SDE.reverse(score) if solver == "adaptive" else SDE.probability_flow(score)
        kw = {} if sdekit.get_solver(solver).adaptive else {"steps": 12}
        ref = solve(proc, x_T, 1.0, 1e-3, solver, cond={"label": labels}, seed=2, **kw).x
        out = solve(
            proc, torch.as_tensor(x_T), 1.0, 1e-3, solver, cond={"label": torch.as_tensor(labels)}, seed=2, **kw
        )
        np.testing.assert_allclose(out.x.numpy(), ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match=r"cond\['label'\].*leading dimension n = 10"):
        solve(SDE.probability_flow(score), torch.as_tensor(x_T), 1.0, 1e-3, "euler", steps=3,
              cond={"label": torch.zeros(9, dtype=torch.long)})  # fmt: skip


def test_torch_module_behind_guidance_and_cond_sets_the_backend():
    torch = pytest.importorskip("torch")

    class Eps(torch.nn.Module):  # a conditional network eps(x, t, label)
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(3, 2).double()

        def forward(self, x, t, label):
            return self.net(torch.cat([x, label[:, None].to(x.dtype)], dim=1))

    # guidance of an adapter of the module, conditioned: sample finds the module and runs torch in its dtype
    guided = classifier_free_guidance(score_from_eps(Eps(), SDE), 2.0, {"label": 0})
    sol = sample(SDE, guided, n=5, shape=(2,), steps=4, cond={"label": torch.arange(5)})
    assert isinstance(sol.x, torch.Tensor) and sol.x.dtype == torch.float64 and sol.stats["backend"] == "torch"


def test_no_host_synchronisation_in_the_torch_loop():
    # host reads of tensors (item, bool, float, int, tolist, numpy) counted over solves of 4 and 16 steps: the count
    # does not grow with the steps, callback or not (what there is comes before and after the loop)
    torch = pytest.importorskip("torch")
    names = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy")
    counts = {"n": 0}
    originals = {name: getattr(torch.Tensor, name) for name in names}

    def counted(original):
        def method(self, *args, **kwargs):
            counts["n"] += 1
            return original(self, *args, **kwargs)

        return method

    def score(x, t, label):
        return -x * (1.0 + label[:, None])

    x_T = torch.ones(6, 2, dtype=torch.float64)
    cond = {"label": torch.arange(6, dtype=torch.float64)}
    seen = []
    results = {}
    try:
        for name in names:
            setattr(torch.Tensor, name, counted(originals[name]))
        for solver in ("euler_maruyama", "dpmpp_2m", "heun"):
            proc = SDE.probability_flow(score) if solver != "euler_maruyama" else SDE.reverse(score)
            for steps in (4, 16):
                for callback in (None, seen.append):
                    counts["n"] = 0
                    solve(proc, x_T, 1.0, 1e-3, solver, steps=steps, cond=cond, callback=callback)
                    results[solver, steps, callback is None] = counts["n"]
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    for solver in ("euler_maruyama", "dpmpp_2m", "heun"):
        for none in (True, False):
            assert results[solver, 4, none] == results[solver, 16, none], results
    assert len(seen) == 3 * (4 + 16)


def test_bad_guidance_arguments():
    score = score_from_x0(x0_model, SDE)
    x, t, labels = _batch()
    with pytest.raises(TypeError, match="null_cond must be a non-empty dict"):
        classifier_free_guidance(score, 2.0, 3)
    with pytest.raises(TypeError, match="scale must be a finite real number"):
        classifier_free_guidance(score, "2", {"label": 3})
    with pytest.raises(ValueError, match=r"called without them.*cond=\.\.\."):
        classifier_free_guidance(score, 2.0, {"label": 3})(x, t)
    with pytest.raises(ValueError, match=r"null_cond\['label'\] must have the shape of one row"):
        classifier_free_guidance(score, 2.0, {"label": [3, 3]})(x, t, label=labels)
