"""Denoising score matching: exact minimum at the true score of Gaussian data, and training recovers it."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdekit import VESDE, VPSDE, SubVPSDE  # noqa: E402
from sdekit.training import dsm_loss  # noqa: E402

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
VAR = torch.tensor([0.25, 0.6], dtype=torch.float64)


def exact_score(sde):
    """The score of p_t for data N(MEAN, diag(VAR)): -(x - alpha m) / (alpha^2 var + sigma^2)."""

    def score(x, t):
        alpha, sigma = sde.marginal(t)
        a, s = alpha[:, None], sigma[:, None]
        return -(x - a * MEAN) / (a * a * VAR + s * s)

    return score


def minimum(sde, t, weighting):
    """Known minimum at time t: lambda / sigma^2 * 1/2 sum_j Var(z_j | x_t), Var = a^2 v / (a^2 v + s^2)."""
    alpha, sigma = sde.marginal(t)
    a2v = alpha[:, None] ** 2 * VAR
    total = 0.5 * (a2v / (a2v + sigma[:, None] ** 2)).sum(dim=1)
    return total if weighting == "sigma2" else sde.g2(t) / sigma**2 * total


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MEAN + VAR.sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("weighting", ["sigma2", "likelihood"])
@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=repr)
def test_loss_at_the_exact_score_is_the_known_minimum(sde, weighting):
    n = 400000  # standard error ~0.3% of the loss
    x0 = data(n, 0)
    g = torch.Generator().manual_seed(1)
    t = torch.linspace(0.02, 1.0, n, dtype=torch.float64)
    per = dsm_loss(exact_score(sde), x0, sde, weighting, t=t, generator=g, reduction="none")
    # per-sample losses minus their exact conditional expectation: mean zero, standard error from the data
    resid = per - minimum(sde, t, weighting)
    se = resid.std() / np.sqrt(n)
    assert abs(resid.mean()) < 4 * se
    # a wrong score does worse, by far more than the noise (same t and z: a paired comparison)
    wrong = dsm_loss(
        lambda x, tt: 0.9 * exact_score(sde)(x, tt),
        x0,
        sde,
        weighting,
        t=t,
        generator=g.manual_seed(1),
        reduction="none",
    )
    excess = wrong - per
    assert excess.mean() > 10 * excess.std() / np.sqrt(n)


def test_random_times_average_the_minimum_over_eps_to_T():
    sde = VPSDE()
    n, eps = 100000, 1e-3
    per = dsm_loss(
        exact_score(sde), data(n, 2), sde, eps=eps, generator=torch.Generator().manual_seed(3), reduction="none"
    )
    tq = torch.linspace(eps, 1.0, 20001, dtype=torch.float64)
    m = minimum(sde, tq, "sigma2")
    expected = float(((m[1:] + m[:-1]) / 2).mean())  # trapezoid average over [eps, T]
    assert abs(float(per.mean()) - expected) < 4 * float(per.std()) / np.sqrt(n)


class GaussianScore(torch.nn.Module):
    """The exact score family of N(b, c I): training should find b = MEAN, c = VAR."""

    def __init__(self, sde):
        super().__init__()
        self.sde = sde
        self.b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.log_c = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def forward(self, x, t):
        alpha, sigma = self.sde.marginal(t)
        a, s = alpha[:, None], sigma[:, None]
        return -(x - a * self.b) / (a * a * self.log_c.exp() + s * s)


def test_training_decreases_the_loss_and_recovers_the_data_law():
    sde = VPSDE()
    model = GaussianScore(sde)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x_eval = data(4096, 10)

    def eval_loss():
        with torch.no_grad():
            return float(dsm_loss(model, x_eval, sde, eps=1e-3, generator=torch.Generator().manual_seed(11)))

    before = eval_loss()
    g = torch.Generator().manual_seed(12)
    for step in range(300):
        loss = dsm_loss(model, data(512, 100 + step), sde, eps=1e-3, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    best = float(dsm_loss(exact_score(sde), x_eval, sde, eps=1e-3, generator=torch.Generator().manual_seed(11)))
    assert after < before - 0.05
    assert after == pytest.approx(best, abs=5e-3)
    torch.testing.assert_close(model.b.detach(), MEAN, atol=0.1, rtol=0)
    torch.testing.assert_close(model.log_c.detach().exp(), VAR, atol=0.1, rtol=0)


def test_bad_input_names_the_argument():
    sde = VPSDE()
    x = data(4, 0)
    score = exact_score(sde)
    cases = [
        (dict(weighting="l2"), "sigma2"),
        (dict(eps=0.0), "eps"),
        (dict(eps=2.0), "eps"),
        (dict(reduction="sum"), "reduction"),
        (dict(t=torch.ones(3)), "t must"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            dsm_loss(score, x, sde, **kwargs)
    with pytest.raises(TypeError, match="x0"):
        dsm_loss(score, x.numpy(), sde)
    with pytest.raises(TypeError, match="LinearSDE"):
        dsm_loss(score, x, "vp")
    with pytest.raises(TypeError, match="score_model"):
        dsm_loss(None, x, sde)
    with pytest.raises(ValueError, match="shape"):
        dsm_loss(lambda x, t: x[:, :1], x, sde)


def _load_example(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_2d_example_runs_quickly(tmp_path):
    example = _load_example("train_2d")
    threads = torch.get_num_threads()
    try:
        out = example.main(["--quick", "--out", str(tmp_path / "samples.png")])
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "samples.png").stat().st_size > 0
    losses = out["losses"]
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    solvers = {(name, process) for name, process, *_ in out["rows"]}
    assert {("euler_maruyama", "sde"), ("heun", "ode"), ("rk4", "ode")} <= solvers
    for *_, w_learned, w_exact, nll in out["rows"]:
        assert np.isfinite([w_learned, w_exact, nll]).all() and w_learned > 0
