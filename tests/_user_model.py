"""User model factories for ``sdekit compare --model _user_model:NAME`` in the tests (an analytic score as a model)."""

import numpy as np

from sdekit import EDMSDE, GaussianMixture

MIX = GaussianMixture(weights=[0.5, 0.5], means=[[-1.0, 0.0], [1.0, 0.5]], covs=[np.eye(2) * 0.1, np.eye(2) * 0.2])


def factory():
    sde = EDMSDE()
    return sde, MIX.score(sde), (2,)


def with_metric():
    sde = EDMSDE()

    def mean_error(x):
        return float(np.linalg.norm(np.asarray(x).reshape(-1, 2).mean(0) - MIX.mean_cov(0.0)[0]))

    return sde, MIX.score(sde), (2,), mean_error, 0.0


def not_a_tuple():
    return 3


def bad_sde():
    return "vp", MIX.score(EDMSDE()), (2,)
