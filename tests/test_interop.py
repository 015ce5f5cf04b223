"""torchsde interop: the wrapped process has the right drift and diffusion in torchsde time, and torchsde's Euler
agrees with sdekit's Euler--Maruyama path by path (shared increments) and in distribution (own increments)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchsde = pytest.importorskip("torchsde")

from torchsde import BaseBrownian, BrownianInterval  # noqa: E402

from sdekit import VESDE, VPSDE, Gaussian, solve  # noqa: E402
from sdekit.backends.torch_ import prior_sample  # noqa: E402
from sdekit.backends.torch_noise import TorchNormals  # noqa: E402
from sdekit.interop import to_torchsde  # noqa: E402

DATA = Gaussian(mean=[1.0, -2.0], cov=[0.3, 0.8])


class CounterBrownian(BaseBrownian):
    """Increments ``sqrt(h) z_k`` from sdekit's generator on a uniform torchsde grid ``s_k = s0 + k h``."""

    def __init__(self, seed, n, d, s0, h):
        self.gen, self.n, self.d, self.s0, self.h = TorchNormals(seed, np.arange(n), "cpu", torch.float64), n, d, s0, h

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        k = int(round((float(ta) - self.s0) / self.h))
        return float(tb - ta) ** 0.5 * self.gen.normals(k, self.d)

    def __repr__(self):
        return "CounterBrownian()"

    dtype = property(lambda self: torch.float64)
    device = property(lambda self: torch.device("cpu"))
    shape = property(lambda self: (self.n, self.d))
    levy_area_approximation = property(lambda self: "none")


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=repr)
def test_drift_and_diffusion_in_reversed_time(sde):
    rev = sde.reverse(DATA.score(sde))
    proc = to_torchsde(rev)
    y = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = torch.tensor(0.3, dtype=torch.float64)
    t = sde.T - 0.3
    np.testing.assert_allclose(proc.f(s, y).numpy(), -rev.drift(y.numpy(), t), rtol=1e-12)
    np.testing.assert_allclose(proc.g(s, y).numpy(), np.broadcast_to(rev.diffusion(y.numpy(), t), (5, 2)), rtol=1e-12)
    np.testing.assert_allclose(proc.ts([sde.T, 0.25]).numpy(), [0.0, sde.T - 0.25])
    fwd = to_torchsde(sde)
    np.testing.assert_allclose(fwd.f(s, y).numpy(), sde.drift(y.numpy(), 0.3), rtol=1e-12)
    ode = to_torchsde(sde.probability_flow(DATA.score(sde)), reverse=False)
    assert float(ode.g(s, y).abs().max()) == 0.0 and not ode.reverse


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=repr)
def test_torchsde_euler_equals_sdekit_euler_maruyama_path_by_path(sde):
    # t_end and the step are binary fractions, so torchsde's accumulated times hit the grid exactly
    n, d, steps, t_end = 6, 2, 32, 0.25
    h = (sde.T - t_end) / steps
    rev = sde.reverse(DATA.score(sde))
    x_T = prior_sample(sde, (n, d), seed=1, dtype=torch.float64)
    ours = solve(rev, x_T, sde.T, t_end, "euler_maruyama", steps=steps, seed=7).x
    proc = to_torchsde(rev)
    bm = CounterBrownian(7, n, d, 0.0, h)
    theirs = torchsde.sdeint(proc, x_T, proc.ts([sde.T, t_end]), bm=bm, method="euler", dt=h)[-1]
    np.testing.assert_allclose(theirs.numpy(), ours.numpy(), rtol=1e-10, atol=1e-10)


def test_torchsde_euler_agrees_in_distribution():
    sde = VPSDE()
    n, d, steps, t_end = 8000, 2, 50, 1e-3
    rev = sde.reverse(DATA.score(sde))
    x_T = prior_sample(sde, (n, d), seed=3, dtype=torch.float64)
    ours = solve(rev, x_T, sde.T, t_end, "euler_maruyama", steps=steps, seed=4).x
    proc = to_torchsde(rev)
    ts = proc.ts([sde.T, t_end])
    bm = BrownianInterval(t0=ts[0], t1=ts[-1], size=(n, d), dtype=torch.float64, entropy=5)
    theirs = torchsde.sdeint(proc, x_T, ts, bm=bm, method="euler", dt=float(ts[-1]) / steps)[-1]
    # same scheme, same steps, independent noise: equal laws. Two-sample z-tests on means and variances.
    a, b = ours, theirs
    se_mean = torch.sqrt((a.var(0) + b.var(0)) / n)
    assert torch.all((a.mean(0) - b.mean(0)).abs() < 5 * se_mean)
    ca, cb = a - a.mean(0), b - b.mean(0)
    se_var = torch.sqrt(((ca**2).var(0) + (cb**2).var(0)) / n)
    assert torch.all((a.var(0) - b.var(0)).abs() < 5 * se_var)
    # and both are close to the data law (50 Euler steps: discretisation error well below 0.1)
    np.testing.assert_allclose(theirs.mean(0).numpy(), [1.0, -2.0], atol=0.1)
    np.testing.assert_allclose(theirs.var(0).numpy(), [0.3, 0.8], atol=0.1)


def test_event_shapes_are_flattened():
    sde = VPSDE()

    def score(x, t):
        assert x.shape[1:] == (2, 3) and t.shape == (x.shape[0],)
        return -x

    proc = to_torchsde(sde.reverse(score), event_shape=(2, 3))
    y = torch.ones(4, 6, dtype=torch.float64)
    assert proc.f(torch.tensor(0.1, dtype=torch.float64), y).shape == (4, 6)
    assert proc.g(0.1, y).shape == (4, 6)


def test_module_scores_are_registered_for_the_adjoint():
    net = torch.nn.Linear(2, 2)
    proc = to_torchsde(VPSDE().reverse(lambda x, t: net(x)))
    assert list(proc.parameters()) == []
    proc = to_torchsde(VPSDE().probability_flow(net))
    assert len(list(proc.parameters())) == 2


def test_bad_input():
    sde = VPSDE()
    with pytest.raises(TypeError, match="process"):
        to_torchsde(lambda x, t: x)
    with pytest.raises(ValueError, match="reverse"):
        to_torchsde(sde.reverse(DATA.score(sde)), reverse=False)
    with pytest.raises(TypeError, match="reverse"):
        to_torchsde(sde.probability_flow(DATA.score(sde)), reverse="yes")
    with pytest.raises(ValueError, match="event_shape"):
        to_torchsde(sde, event_shape=(0,))
