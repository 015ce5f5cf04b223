"""Parameterisation adapters: eps, x0, v and EDM-denoiser models give back the exact score."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdekit import (
    EDMSDE,
    VESDE,
    VPSDE,
    GaussianMixture,
    SubVPSDE,
    score_from_denoiser,
    score_from_eps,
    score_from_v,
    score_from_x0,
)

SDES = [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()]
MIX = GaussianMixture([0.4, 0.6], [[1.0, -1.0], [-0.5, 2.0]], [[0.3, 0.5], [1.0, 0.2]])


def models(sde):
    """Exact eps, x0, v and denoiser predictions built from the exact score (Tweedie)."""
    score = MIX.score(sde)

    def x0_fn(x, t):
        alpha, sigma = sde.marginal(t)
        return (x + sigma[:, None] ** 2 * score(x, t)) / alpha[:, None]

    def eps_fn(x, t):
        return -sde.marginal(t)[1][:, None] * score(x, t)

    def v_fn(x, t):
        alpha, sigma = sde.marginal(t)
        return alpha[:, None] * eps_fn(x, t) - sigma[:, None] * x0_fn(x, t)

    def denoiser(x_hat, sigma_hat):
        # D(x / alpha; sigma / alpha) = E[x0 | x_t = x]; recover t from the noise level
        t = sde.t_from_log_snr(-np.log(sigma_hat))
        alpha = sde.marginal(t)[0]
        return x0_fn(x_hat * alpha[:, None], t)

    return score, {"eps": eps_fn, "x0": x0_fn, "v": v_fn, "denoiser": denoiser}


ADAPTERS = {"eps": score_from_eps, "x0": score_from_x0, "v": score_from_v, "denoiser": score_from_denoiser}


@pytest.mark.parametrize("sde", SDES, ids=repr)
@given(u=st.floats(0.01, 0.95), seed=st.integers(0, 2**32), kind=st.sampled_from(sorted(ADAPTERS)))
def test_adapters_round_trip_to_the_exact_score(sde, u, seed, kind):
    t = np.full(6, sde.eps + u * (sde.T - sde.eps))
    x = MIX.sample(6, seed=seed, t=float(t[0]), sde=sde)
    score, fns = models(sde)
    expected = score(x, t)
    got = ADAPTERS[kind](fns[kind], sde)(x, t)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9 * np.abs(expected).max())


def test_adapters_reject_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        score_from_eps(3, VPSDE())
    with pytest.raises(TypeError, match="sde"):
        score_from_x0(lambda x, t: x, "vp")
