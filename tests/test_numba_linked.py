"""The shared helpers the fused kernels call through a symbol (sdekit.backends.numba.linked): the same numbers as a
direct call, bit for bit; symbols registered and stable; a clear typing error for other argument types; a kernel
read from numba's disk cache in a fresh process finds them; the compile-cost estimate counts them once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

import llvmlite.binding as llvm  # noqa: E402
from numba import njit  # noqa: E402
from numba.core.errors import TypingError  # noqa: E402

import sdekit  # noqa: E402
from sdekit.analytic import Gaussian, GaussianMixture  # noqa: E402
from sdekit.backends.numba import compile_cost  # noqa: E402
from sdekit.backends.numba.host_scores import analytic_coef, analytic_params, analytic_work_rows  # noqa: E402
from sdekit.backends.numba.linked import (  # noqa: E402
    ADAPTIVE,
    FIXED_GRID,
    NORMALS,
    SCORE_BLOCK,
    SCORE_LANES,
    SharedFunction,
    block_normals,
    link_all,
)
from sdekit.backends.numba.noise import fill_normals, sample_keys  # noqa: E402
from sdekit.backends.numba.registry import score_block, score_lanes  # noqa: E402
from sdekit.backends.numba.scores import analytic_block_score, analytic_lanes_score  # noqa: E402

SDE = sdekit.VPSDE()
B = 16
L = 11


def _cov(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.2 * np.eye(d)


DENSITIES = {
    "gaussian-scalar": Gaussian([0.5, -1.0, 2.0], 0.7),
    "gaussian-full": Gaussian([0.5, -1.0, 2.0], _cov(3, 0)),
    "mixture-diag": GaussianMixture(
        [0.2, 0.5, 0.3], [[0, 0, 1], [1, -1, 0], [2, 2, 2]], [[0.3, 0.3, 0.3], [0.2, 1.0, 0.5], [0.05, 0.1, 0.4]]
    ),
    "mixture-full": GaussianMixture([0.4, 0.6], [[0, 1, 0], [1, 0, -1]], np.stack([_cov(3, 1), _cov(3, 2)])),
}


@njit(error_model="numpy")
def _through_symbol(xb, L, t, coef, p0, p1, p2, p3, work, out):
    score_block(xb, L, t, coef, p0, p1, p2, p3, work, out)


@njit(error_model="numpy")
def _lanes_through_symbol(xb, L, tl, cl, p0, p1, p2, p3, work, out):
    score_lanes(xb, L, tl, cl, p0, p1, p2, p3, work, out)


@njit(error_model="numpy")
def _normals_through_symbol(keys, step, skeys, out):
    block_normals(keys, step, skeys, out)


@pytest.mark.parametrize("name", list(DENSITIES))
def test_shared_block_score_equals_the_direct_call_bit_for_bit(name):
    dens = DENSITIES[name]
    params = analytic_params(dens)
    xb = np.random.default_rng(1).normal(size=(3, B)) * 2
    coef = np.ascontiguousarray(analytic_coef(dens, SDE, np.array(0.41)))
    want, got = np.zeros((3, B)), np.zeros((3, B))
    analytic_block_score(xb, L, 0.41, coef, *params, np.empty((analytic_work_rows(params), B)), want)
    _through_symbol(xb, L, 0.41, coef, *params, np.empty((analytic_work_rows(params), B)), got)
    np.testing.assert_array_equal(got, want)
    assert np.all(got[:, L:] == 0.0)  # dead lanes are not written


@pytest.mark.parametrize("name", list(DENSITIES))
def test_shared_lane_score_equals_the_direct_call_bit_for_bit(name):
    dens = DENSITIES[name]
    params = analytic_params(dens)
    rng = np.random.default_rng(2)
    xb = rng.normal(size=(3, B))
    tl = rng.uniform(0.05, 1.0, size=B)
    cl = np.ascontiguousarray(analytic_coef(dens, SDE, tl).T)  # (m, B): a column of constants per lane
    want, got = np.zeros((3, B)), np.zeros((3, B))
    analytic_lanes_score(xb, L, tl, cl, *params, np.empty((analytic_work_rows(params), B)), want)
    _lanes_through_symbol(xb, L, tl, cl, *params, np.empty((analytic_work_rows(params), B)), got)
    np.testing.assert_array_equal(got, want)


def test_block_normals_equal_fill_normals_bit_for_bit():
    keys = sample_keys(7, np.arange(L))
    want, got = np.zeros((5, B)), np.zeros((5, B))
    fill_normals(keys, np.uint64(3), np.empty(B, dtype=np.uint64), want)
    _normals_through_symbol(keys, 3, np.empty(B, dtype=np.uint64), got)
    np.testing.assert_array_equal(got, want)
    assert np.all(np.isfinite(got[:, :L])) and np.all(got[:, L:] == 0.0)


def test_symbols_are_registered_and_stable():
    link_all()
    for fn in FIXED_GRID + ADAPTIVE:
        assert fn.linked()
        for argtypes in fn.signatures:
            sym = fn.symbol(argtypes)
            assert sym == SharedFunction(fn.name, fn.dispatcher, fn.signatures).symbol(argtypes)
            assert llvm.address_of_symbol(sym) == fn.link(argtypes) > 0
    assert len({SCORE_BLOCK.symbol(s) for s in SCORE_BLOCK.signatures} | {NORMALS.symbol(NORMALS.signatures[0])}) == 2
    assert SCORE_LANES.symbol(SCORE_LANES.signatures[0]) != SCORE_BLOCK.symbol(SCORE_BLOCK.signatures[0])


def test_other_argument_types_are_a_typing_error_naming_the_signature():
    params = [np.asarray(p, dtype=np.float32) for p in analytic_params(DENSITIES["mixture-diag"])]
    x32 = np.zeros((3, B), dtype=np.float32)
    with pytest.raises(TypingError, match="score_block takes arguments of types"):
        _through_symbol(x32, L, 0.5, np.zeros(5, dtype=np.float32), *params, np.zeros((20, B), np.float32), x32)


def _run(code, env):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=os.getcwd(),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_a_kernel_read_from_the_disk_cache_finds_the_shared_helpers(tmp_path):
    # first process: compiles the kernel and the helpers into an empty cache; second: loads both from it
    code = """
        import numpy as np, sdekit
        from sdekit.analytic import Gaussian
        from sdekit.backends.numba.compile_cost import compiled_in_process, disk_cached
        from sdekit.backends.numba.kernels import EULER_MARUYAMA
        from sdekit.backends.numba.scores import analytic_block_score
        cached = disk_cached(EULER_MARUYAMA.analytic()), disk_cached(analytic_block_score)
        sde = sdekit.VPSDE()
        sol = sdekit.sample(sde, Gaussian([0.0, 1.0], 0.5).score(sde), n=40, steps=5, backend="numba", seed=2)
        print(cached, sol.stats["kernel"], np.asarray(sol.x).tobytes().hex())
        """
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = _run(code, env)
    second = _run(code, env)
    assert first.startswith("(False, False) fused euler_maruyama")
    assert second.startswith("(True, True) fused euler_maruyama")
    assert first.split()[-1] == second.split()[-1]
    sde = sdekit.VPSDE()
    ref = sdekit.sample(sde, Gaussian([0.0, 1.0], 0.5).score(sde), n=40, steps=5, backend="numpy", seed=2)
    got = np.frombuffer(bytes.fromhex(first.split()[-1])).reshape(40, 2)
    np.testing.assert_allclose(got, ref.x, rtol=1e-12, atol=1e-12)


def test_compile_cost_counts_the_shared_helpers_until_they_are_linked_or_cached(monkeypatch):
    link_all()
    assert compile_cost.shared_seconds("euler_maruyama") == 0.0
    assert compile_cost.shared_seconds("adaptive_sde") == 0.0
    monkeypatch.setattr(SharedFunction, "linked", lambda self: False)
    monkeypatch.setattr(compile_cost, "disk_cached", lambda dispatcher: False)
    fixed, adaptive = compile_cost.SHARED_COMPILE_SECONDS["fixed_grid"], compile_cost.SHARED_COMPILE_SECONDS["adaptive"]
    assert compile_cost.shared_seconds("euler_maruyama") == fixed > 0
    assert compile_cost.shared_seconds("dopri5") == adaptive > 0
    assert compile_cost.shared_seconds("euler_maruyama", row_score=True) == 0.0

    @njit(cache=False)
    def never_called(x):
        return x

    ready = compile_cost.dispatcher_readiness("sra", never_called)
    assert ready.state == "cold" and ready.seconds == compile_cost.COMPILE_SECONDS["sra"] + fixed
