"""The numba counter-based normals: same numbers as numpy, sound statistics, no dependence on threads."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from sdekit.backends.numba.noise import (  # noqa: E402
    mix64,
    normals_numba,
    sample_keys,
    stream_key,
)
from sdekit.backends.numba.vecmath import exp_nonpos, log_unit, sincos_theta  # noqa: E402
from sdekit.noise import PRIOR_STEP, TWO_PI, mix64_numpy, normals_numpy, stream_keys_numpy  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")


@njit(cache=True)
def _mix_all(z):
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        out[i] = mix64(z[i])
    return out


@njit(cache=True)
def _stream_keys(keys, step):
    out = np.empty_like(keys)
    for i in range(keys.shape[0]):
        out[i] = stream_key(keys[i], step)
    return out


@njit(cache=True)
def _logs(u):
    out = np.empty_like(u)
    for i in range(u.shape[0]):
        out[i] = log_unit(u[i])
    return out


@njit(cache=True)
def _sincos(theta):
    c = np.empty_like(theta)
    s = np.empty_like(theta)
    for i in range(theta.shape[0]):
        c[i], s[i] = sincos_theta(theta[i])
    return c, s


def test_hash_is_bit_identical_to_numpy():
    z = np.random.default_rng(0).integers(0, 2**63, size=10_000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    np.testing.assert_array_equal(_mix_all(z), mix64_numpy(z))
    ids = np.array([0, 1, 7, 123456789, 2**40 + 3], dtype=np.int64)
    for step in (0, 1, 999, PRIOR_STEP):
        got = _stream_keys(sample_keys(2024, ids), np.uint64(step))
        np.testing.assert_array_equal(got, stream_keys_numpy(2024, ids, step))


@njit(cache=True)
def _exps(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = exp_nonpos(x[i])
    return out


def test_exp_within_one_ulp():
    x = -np.concatenate([np.random.default_rng(2).exponential(5.0, size=200_000), [0.0, 1e-300, 700.0, 708.0]])
    assert _ulps(_exps(x), np.exp(x)).max() <= 1.0
    np.testing.assert_array_equal(_exps(np.array([-709.0, -1e5, -np.inf])), 0.0)


def _ulps(a, b):
    return np.abs(a - b) / np.spacing(np.maximum(np.abs(b), np.finfo(float).tiny))


def test_log_and_sincos_within_one_ulp():
    rng = np.random.default_rng(1)
    # uniforms as the generator makes them, including the extremes 2**-54 and 1 - 2**-54
    m = np.concatenate([rng.integers(0, 2**53, size=200_000), [0, 1, 2**52, 2**53 - 1]])
    u = (m.astype(np.float64) + 0.5) * 2.0**-53
    assert _ulps(_logs(u), np.log(u)).max() <= 1.0
    theta = TWO_PI * u
    c, s = _sincos(theta)
    # near the zeros of cos and sin the comparison is absolute (the reduction keeps 66 bits of pi/2)
    np.testing.assert_allclose(c, np.cos(theta), rtol=2.3e-16, atol=1e-17)
    np.testing.assert_allclose(s, np.sin(theta), rtol=2.3e-16, atol=1e-17)


@pytest.mark.parametrize("size", [1, 2, 5, 64])
@pytest.mark.parametrize("step", [0, 17, PRIOR_STEP])
def test_normals_match_numpy(size, step):
    ids = np.array([0, 3, 4, 1000, 2**33 + 5, 77], dtype=np.int64)
    a = normals_numba(99, ids, step, size)
    b = normals_numpy(99, ids, step, size)
    assert a.shape == b.shape == (ids.size, size)
    np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-15)


def test_rows_depend_only_on_sample_id():
    ids = np.arange(50, 450)
    full = normals_numba(5, ids, 3, 7)
    part = normals_numba(5, ids[123:130], 3, 7)
    np.testing.assert_array_equal(full[123:130], part)


N = 1_000_000


@pytest.fixture(scope="module")
def draws():
    """10**6 normals: 250 000 samples x 4 components at step 11, plus the next step."""
    ids = np.arange(N // 4)
    return normals_numba(7, ids, 11, 4), normals_numba(7, ids, 12, 4)


def test_kolmogorov_smirnov_and_moments(draws):
    z = draws[0].ravel()
    assert z.size == N
    assert stats.kstest(z, "norm").pvalue > 1e-3
    se = 1.0 / math.sqrt(N)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0) * se
    assert abs(stats.skew(z)) < 5 * math.sqrt(6.0) * se
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24.0) * se
    # tails: P(|z| > 3) = 0.0027
    p3 = np.mean(np.abs(z) > 3.0)
    assert abs(p3 - 2 * stats.norm.sf(3.0)) < 5 * math.sqrt(0.0027 / N)


def test_no_correlation_between_neighbours(draws):
    z, z_next = draws
    n = z.shape[0]
    bound = 5.0 / math.sqrt(n)
    pairs = {
        "neighbouring samples": (z[:-1, 0], z[1:, 0]),
        "neighbouring steps": (z[:, 0], z_next[:, 0]),
        "components of one pair": (z[:, 0], z[:, 1]),
        "neighbouring pairs": (z[:, 1], z[:, 2]),
        "squares of a pair (Box-Muller radius)": (z[:, 0] ** 2, z[:, 1] ** 2),
    }
    for what, (a, b) in pairs.items():
        r = np.corrcoef(a, b)[0, 1]
        assert abs(r) < bound, f"correlation {r:.4g} between {what}"


_THREADS_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, numba, sdekit
    from sdekit.backends.numba.noise import normals_numba
    assert numba.get_num_threads() == int(sys.argv[1])
    z = normals_numba(3, np.arange(1000), 4, 3)
    g = sdekit.GaussianMixture([0.4, 0.6], [[1.0, 0.0], [-1.0, 0.5]], [0.2, 0.5])
    sol = sdekit.sample(sdekit.VPSDE(), g.score(sdekit.VPSDE()), n=1000, steps=20, backend="numba", seed=1)
    assert sol.stats["kernel"].startswith("fused")
    sys.stdout.write((z.tobytes() + sol.x.tobytes()).hex())
    """
)


def test_results_do_not_depend_on_thread_count():
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, PYTHONPATH=SRC)
        res = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT, threads], env=env, capture_output=True, text=True, timeout=300
        )
        assert res.returncode == 0, res.stderr
        outs.append(res.stdout)
    assert outs[0] == outs[1]
