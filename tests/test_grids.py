"""Time grids: endpoints, monotonicity, the defining property of each schedule, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdekit import EDMSDE, VESDE, VPSDE, SubVPSDE, grids

SDES = [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()]


@pytest.mark.parametrize("sde", SDES, ids=repr)
@given(name=st.sampled_from(sorted(grids.GRIDS)), steps=st.integers(1, 300), u=st.floats(0.0, 0.9))
def test_every_grid_decreases_from_T_to_t_end(sde, name, steps, u):
    t_end = sde.eps + u * (sde.T - sde.eps) * 0.5
    ts = grids.make_grid(sde, steps, name, t_end)
    assert ts.shape == (steps + 1,)
    assert ts[0] == sde.T and ts[-1] == t_end
    assert np.all(np.diff(ts) < 0)


def test_schedules_have_their_defining_property():
    sde = VPSDE()
    lam = sde.log_snr(grids.log_snr(sde, 10))
    np.testing.assert_allclose(np.diff(lam), np.full(10, np.diff(lam).mean()), rtol=1e-8)
    q = grids.quadratic(sde, 4, t_end=0.2)
    np.testing.assert_allclose(q, 0.2 + 0.8 * np.array([1, 9 / 16, 1 / 4, 1 / 16, 0]), rtol=1e-14)
    # Karras on EDM is the identity map in sigma: the EDM paper's formula with rho = 7
    edm = EDMSDE()
    k = grids.karras(edm, 18)
    i = np.arange(19)
    ref = (80 ** (1 / 7) + i / 18 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(k, ref, rtol=1e-12)
    # on VP, Karras is uniform in (sigma / alpha)^(1/rho)
    kv = grids.karras(sde, 12, rho=3.0)
    r = sde.edm_sigma(kv) ** (1 / 3)
    np.testing.assert_allclose(np.diff(r), np.full(12, np.diff(r).mean()), rtol=1e-8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"steps": 10, "t_end": 0.0}, "t_end"),
        ({"steps": 10, "t_end": 1.0}, "t_end"),
        ({"steps": 10, "grid": "cosine"}, "cosine"),
    ],
)
def test_bad_grid_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        grids.make_grid(VPSDE(), **kwargs)
