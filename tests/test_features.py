"""Features a new user found failing (issue 24, item 3): each case fails on the code before the fix."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit import EDMSDE, Gaussian

DATA = Gaussian([0.5, -0.3], [0.5, 0.2])


def _torch_score(sde):
    """A torch-module score (the analytic one behind a parameter) that refuses numpy input, as a network does."""
    torch = pytest.importorskip("torch")
    exact = DATA.score(sde)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.one = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

        def forward(self, x, t):
            return torch.mul(exact(x, t), self.one)  # TypeError on a numpy x

    return Net()


@pytest.mark.parametrize("method", ["dp", "error"])
def test_grids_optimize_runs_a_torch_score(method):
    torch = pytest.importorskip("torch")
    sde = EDMSDE()
    net = _torch_score(sde)
    kw = (
        dict(method=method, n=8, shape=(2,), maxiter=5, restarts=1)
        if method == "error"
        else dict(method=method, n=8, shape=(2,), teacher_steps=12)
    )
    drawn = sdekit.grids.optimize(sde, net, "euler", 6, **kw)  # x_T drawn in torch
    x_T = sde.prior_sample((8, 2), seed=1234)
    given = sdekit.grids.optimize(
        sde, net, "euler", 6, x_T=torch.from_numpy(x_T), **{k: v for k, v in kw.items() if k not in ("n", "shape")}
    )
    plain = sdekit.grids.optimize(
        sde, DATA.score(sde), "euler", 6, x_T=x_T, **{k: v for k, v in kw.items() if k not in ("n", "shape")}
    )
    for g in (drawn, given):
        assert isinstance(g, np.ndarray) and g[0] == sde.T and np.all(np.diff(g) < 0)
    np.testing.assert_allclose(given, plain, rtol=1e-9)  # the same grid as the numpy run of the same score
    with pytest.raises(TypeError, match="pass x_T as a torch tensor"):
        sdekit.grids.optimize(sde, net, "euler", 6, x_T=x_T, method=method)
