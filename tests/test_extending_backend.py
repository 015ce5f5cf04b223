"""The "Adding a backend" recipe of docs/architecture.md, proven from outside the package: a backend on another
array type (``tests/_strict32_backend.py``: float32 arrays that refuse promotion) registered with one
``register_backend`` call runs every fixed-step solver, ``adaptive`` and ``dopri5`` with noise, ``save_at``, ``cond``
and a callback, and gives the numpy backend's float32 numbers."""

from __future__ import annotations

import numpy as np
import pytest

import sdekit
from sdekit.analytic import Gaussian
from sdekit.backends.registry import BACKENDS, Backend, register_backend

_strict = pytest.importorskip("_strict32_backend")

FIXED = [name for name in sdekit.SOLVERS if not sdekit.get_solver(name).adaptive]
DENSITY = Gaussian(np.array([0.5, -0.3]), np.array([[0.6, 0.1], [0.1, 0.4]]))


@pytest.fixture(scope="module")
def backend():
    entry = register_backend(Backend(_strict.NAME, "_strict32_backend", requires="numpy", array_library="numpy",
                                     adaptive=True, tree_noise=True, bridge_noise=True, dtypes=("float32",),
                                     description="float32 arrays that refuse promotion (tests)"))  # fmt: skip
    yield entry
    BACKENDS.pop(entry.name)


def _pair(sde, solver, process, **kw):
    x_T = sde.prior_sample((10, 2), seed=4).astype(np.float32)
    score = DENSITY.score(sde)
    ours = sdekit.sample(sde, score, x_T=x_T, solver=solver, process=process, backend=_strict.NAME, seed=7, **kw)
    ref = sdekit.sample(sde, score, x_T=x_T, solver=solver, process=process, backend="numpy", seed=7, **kw)
    return ours, ref


def _same(ours, ref):
    assert isinstance(ours.x, _strict.Strict32) and ours.x.dtype == np.float32
    np.testing.assert_allclose(np.asarray(ours.x), ref.x, rtol=1e-6, atol=1e-6)
    assert ours.nfe == ref.nfe
    if ref.xs is not None:
        assert ours.xs.dtype == np.float32
        np.testing.assert_allclose(np.asarray(ours.xs), ref.xs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("solver", FIXED)
def test_every_fixed_step_solver_with_noise_and_saves(backend, solver):
    s = sdekit.get_solver(solver)
    for process in [p for p in ("sde", "ode") if getattr(s, f"is_{p}")]:
        ours, ref = _pair(sdekit.VPSDE(), solver, process, steps=6, save_at=True)
        _same(ours, ref)
        assert ours.stats["backend"] == _strict.NAME


@pytest.mark.parametrize("noise", ["counter", "tree", "bridge"])
def test_adaptive_with_noise_and_save_at(backend, noise):
    ours, ref = _pair(sdekit.VPSDE(), "adaptive", "sde", noise=noise, rtol=1e-2, atol=1e-2, save_at=[0.5])
    _same(ours, ref)
    assert ours.stats["accepted"] == ref.stats["accepted"] and ours.stats["rejected"] == ref.stats["rejected"]


def test_dopri5_and_tree_noise_on_a_grid(backend):
    _same(*_pair(sdekit.EDMSDE(), "dopri5", "ode", rtol=1e-4, atol=1e-4, save_at=[0.5]))
    _same(*_pair(sdekit.VPSDE(), "euler_maruyama", "sde", steps=8, noise="tree"))


def test_cond_and_callback(backend):
    labels = np.arange(10) % 2

    def score(x, t, label):
        shift = np.where(label[:, None] == 1, 0.5, -0.5).astype(x.dtype)
        return -(x - shift)

    x_T = sdekit.VPSDE().prior_sample((10, 2), seed=1).astype(np.float32)
    out = {}
    for name in (_strict.NAME, "numpy"):
        seen = []
        sol = sdekit.sample(sdekit.VPSDE(), score, x_T=x_T, solver="dpmpp_2m_sde", steps=5, backend=name,
                            cond={"label": labels}, callback=lambda info, s=seen: s.append(info["t"]))  # fmt: skip
        out[name] = (sol, seen)
    (ours, seen_ours), (ref, seen_ref) = out[_strict.NAME], out["numpy"]
    _same(ours, ref)
    assert len(seen_ours) == len(seen_ref) == 5
    np.testing.assert_array_equal(np.array(seen_ours, dtype=np.float64), np.array(seen_ref, dtype=np.float64))


def test_promotion_is_refused():
    x = _strict.as_state(np.ones((2, 2)))
    with pytest.raises(TypeError, match="promoted"):
        x * np.ones(2, dtype=np.float64)
