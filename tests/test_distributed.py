"""sdekit.distributed on a real LocalCluster of worker processes (no mocks): sharded sampling equals one process,
a store resumes after a failure and refuses another configuration, a worker killed inside the score changes
nothing, a distributed comparison equals the serial one, bad arguments are named."""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
import time

import numpy as np
import pytest

import sdekit
from sdekit import bench

distributed = pytest.importorskip("distributed")
pytest.importorskip("zarr")
cloudpickle = pytest.importorskip("cloudpickle")

import sdekit.distributed as sd  # noqa: E402

# the helper scores below are defined here: the workers get them by value, not by importing this module
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SDE = sdekit.VPSDE()
DENSITY = bench.make_density("ring8")
SCORE = DENSITY.score(SDE)
KW = dict(solver="euler_maruyama", steps=12, backend="numpy", seed=7)
N = 50


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes that import this checkout's sdekit."""
    with sd.connect("local:2") as c:
        files = set(c.run(lambda: __import__("sdekit").__file__).values())
        assert files == {sdekit.__file__}
        yield c


@pytest.fixture(scope="module")
def reference():
    return sdekit.sample(SDE, SCORE, n=N, **KW).x


class FailsOnLastShard:
    """The exact score, raising while ``flag`` exists on the shard of ``size`` samples (the last one), once another
    shard has finished (its marker is in ``store``), or after 20 s."""

    def __init__(self, flag, size, store):
        self.flag, self.size, self.store = str(flag), size, str(store)
        self.event_shape = SCORE.event_shape

    def __call__(self, x, t):
        if x.shape[0] == self.size and os.path.exists(self.flag):
            deadline = time.monotonic() + 20
            while not glob.glob(os.path.join(self.store, "shards", "0*.json")) and time.monotonic() < deadline:
                time.sleep(0.01)
            raise RuntimeError("score failed on purpose")
        return SCORE(x, t)


class DiesOnce:
    """The exact score; the first call anywhere after ``flag`` was created kills its worker process."""

    def __init__(self, flag):
        self.flag = str(flag)
        self.event_shape = SCORE.event_shape

    def __call__(self, x, t):
        try:
            os.remove(self.flag)  # only one caller can remove it
        except FileNotFoundError:
            return SCORE(x, t)
        os._exit(1)


# ------------------------------------------------------------------------------------------------------------
def test_sharded_equals_one_process(client, reference):
    for shard_size in (7, 32):
        sol = sd.sample(SDE, SCORE, n=N, shard_size=shard_size, client=client, **KW)
        assert isinstance(sol.x, np.ndarray)
        np.testing.assert_array_equal(sol.x, reference)  # bit for bit
        st = sol.stats
        assert st["shards"] == st["shards_run"] == -(-N // shard_size)
        assert st["shards_skipped"] == 0 and st["shards_retried"] == 0 and st["workers"] == 2
        assert sol.nfe == KW["steps"] + 1
        m = st["moments"]
        assert m["count"] == N
        np.testing.assert_allclose(m["mean"], reference.mean(0), rtol=0, atol=1e-14)
        np.testing.assert_allclose(m["var"], reference.var(0), rtol=1e-13)


def shifted_score(x, t, shift):
    """A conditional score: the exact score moved by a per-sample shift (picklable, module level)."""
    return SCORE(x, t) + shift


def test_sharded_cond_follows_the_shards(client):
    # cond has one row per sample of the whole job; each shard sees its own rows
    shift = np.linspace(-1.0, 1.0, N)[:, None] * np.ones((1, 2))
    kw = {k: v for k, v in KW.items() if k != "solver"} | {"solver": "euler_maruyama"}
    ref = sdekit.sample(SDE, shifted_score, n=N, shape=(2,), cond={"shift": shift}, **kw).x
    got = sd.sample(SDE, shifted_score, n=N, shape=(2,), shard_size=13, client=client, cond={"shift": shift}, **kw)
    np.testing.assert_array_equal(got.x, ref)
    with pytest.raises(ValueError, match=r"cond\['shift'\]"):
        sd.sample(SDE, shifted_score, n=N, shape=(2,), shard_size=13, client=client, cond={"shift": shift[:5]}, **kw)


def test_own_local_cluster_and_fused_backend(reference):
    # client="local:1": a cluster started and closed by the call; the numba backend's fused kernels, sharded
    ref = sdekit.sample(SDE, SCORE, n=N, **{**KW, "backend": "numba"}).x
    np.testing.assert_allclose(ref, reference, rtol=0, atol=1e-12)
    sol = sd.sample(SDE, SCORE, n=N, shard_size=20, client="local:1", **{**KW, "backend": "numba"})
    np.testing.assert_array_equal(sol.x, ref)
    assert sol.stats["workers"] == 1 and sol.stats["backend"] == "numba"


def test_failure_then_resume_equals_uninterrupted(client, reference, tmp_path):
    store = tmp_path / "samples"
    flag = tmp_path / "fail"
    flag.touch()
    score = FailsOnLastShard(flag, N % 16, store)  # shards of 16, 16, 16, 2
    with pytest.raises(RuntimeError, match="failed on purpose"):
        sd.sample(SDE, score, n=N, shard_size=16, client=client, store=store, **KW)
    done = sd.open_store(store).finished()
    assert 3 not in done and len(done) >= 1  # the shards finished before the failure are kept
    flag.unlink()
    sol = sd.sample(SDE, score, n=N, shard_size=16, client=client, store=store, progress=True, **KW)
    assert sol.stats["shards_skipped"] >= len(done) and sol.stats["shards_run"] >= 1
    assert sol.stats["shards_skipped"] + sol.stats["shards_run"] == 4
    np.testing.assert_array_equal(np.asarray(sol.x), reference)  # a dask array backed by the store
    assert sol.x.chunks[0] == (16, 16, 16, 2)
    np.testing.assert_allclose(sol.stats["moments"]["mean"], reference.mean(0), rtol=0, atol=1e-14)
    assert sd.open_store(store).verify() == []
    # a third run finds everything done and starts no cluster (client=None would start one of 2 workers)
    again = sd.sample(SDE, score, n=N, shard_size=16, client=None, store=store, **KW)
    assert again.stats["shards_run"] == 0 and again.stats["shards_skipped"] == 4 and again.stats["workers"] == 0
    np.testing.assert_array_equal(np.asarray(again.x), reference)


def test_half_written_shard_is_not_done(client, reference, tmp_path):
    store = tmp_path / "s"
    sd.sample(SDE, SCORE, n=N, shard_size=25, client=client, store=store, **KW)
    # a worker killed between the chunk and its marker: chunk 1 garbage, marker gone (a leftover temp file too)
    (store / "shards" / "00000001.json").rename(store / "shards" / ".00000001.json.123.tmp")
    chunk = next(p for p in (store / "x" / "c").glob("1/*"))
    chunk.write_bytes(b"half")
    sol = sd.sample(SDE, SCORE, n=N, shard_size=25, client=client, store=store, **KW)
    assert (sol.stats["shards_skipped"], sol.stats["shards_run"]) == (1, 1)
    np.testing.assert_array_equal(np.asarray(sol.x), reference)


def test_mismatched_store_is_refused(client, tmp_path):
    store = tmp_path / "s"
    sd.sample(SDE, SCORE, n=20, shard_size=10, client=client, store=store, **KW)
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    other_score = bench.make_density("blobs3").score(SDE)
    cases = [
        (dict(seed=8), "seed"),
        (dict(steps=13), "steps"),
        (dict(solver="ancestral"), "solver"),
        (dict(shard_size=5), "shard_size"),
        (dict(n=21), "n"),
        (dict(score=other_score), "score"),
        (dict(sde=sdekit.VPSDE(beta_max=19.0)), "sde"),
    ]
    for change, word in cases:
        args = dict(sde=SDE, score=SCORE, n=20, shard_size=10, **KW)
        args.update(change)
        sde, score = args.pop("sde"), args.pop("score")
        with pytest.raises(sd.StoreMismatchError, match=rf"another configuration.*{word}"):
            sd.sample(sde, score, client=client, store=store, **args)
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before  # nothing touched
    cfg = json.loads((store / "sdekit.json").read_text())
    assert cfg["job"]["seed"] == 7 and cfg["job"]["sdekit_version"] == sdekit.__version__
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("mine")
    with pytest.raises(sd.StoreMismatchError, match="not a sample store"):
        sd.sample(SDE, SCORE, n=20, shard_size=10, client=client, store=foreign, **KW)


def test_worker_killed_inside_the_score(client, reference, tmp_path):
    flag = tmp_path / "die"
    flag.touch()
    sol = sd.sample(SDE, DiesOnce(flag), n=N, shard_size=10, client=client, **KW)
    assert not flag.exists()  # a worker did die
    np.testing.assert_array_equal(sol.x, reference)
    assert sol.stats["shards_retried"] >= 1
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_distributed_compare_equals_serial(client):
    opts = dict(solvers=["euler_maruyama", "heun", "rk4"], nfe=[8, 16], n=300, n_ode=50)
    serial = bench.compare("ring8", "vp", **opts)
    dist = bench.compare("ring8", "vp", client=client, **opts)

    assert len(serial.rows) == 8
    assert_same_rows(serial.rows, dist.rows)
    assert serial.orders == dist.orders
    assert {k for k in serial.info if serial.info[k] != dist.info[k]} == {"wall_time"}
    opts = dict(solvers=["heun", "ancestral"], nfe=[8], n=100)
    results = bench.study(("gaussian", "blobs3"), ("vp",), ("uniform",), client=client, **opts)
    serial_study = bench.study(("gaussian", "blobs3"), ("vp",), ("uniform",), **opts)
    for a, b in zip(results, serial_study):
        assert_same_rows(a.rows, b.rows)


def assert_same_rows(rows_a, rows_b):
    """Equal rows but for wall_time (NaN equal to NaN)."""
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k != "wall_time":
                assert ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]), (k, ra, rb)


def test_cli_compare_dask(client, tmp_path, capsys):
    from sdekit.cli import main

    args = ["compare", "--density", "gaussian", "--solvers", "heun,euler", "--nfe", "8", "16", "--n", "100",
            "--png", ""]  # fmt: skip
    assert main(args + ["--csv", str(tmp_path / "serial.csv")]) == 0
    assert main(args + ["--csv", str(tmp_path / "dask.csv"), "--dask", client.scheduler.address]) == 0

    def rows(name):
        with open(tmp_path / name) as f:
            return [{k: v for k, v in r.items() if k != "wall_time"} for r in csv.DictReader(f)]

    assert rows("serial.csv") == rows("dask.csv")


def test_cli_dask_without_dask_installed(monkeypatch, capsys):
    from sdekit.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # "import distributed" now raises ImportError
    code = main(["compare", "--density", "gaussian", "--solvers", "euler", "--nfe", "8", "--png", "", "--csv", "",
                 "--dask", "local:1"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install 'sdekit[distributed]'" in err


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(n=0), ValueError, "n must be a positive integer"),
        (dict(n=2.5), TypeError, "n must be"),
        (dict(shard_size=0), ValueError, "shard_size must be a positive integer"),
        (dict(shard_size=None), TypeError, "shard_size"),
        (dict(x_T=np.zeros((4, 2))), ValueError, "does not take x_T"),
        (dict(sample_ids=np.arange(4)), ValueError, "does not take sample_ids"),
        (dict(save_at=True), ValueError, "does not take save_at"),
        (dict(callback=print), ValueError, "does not take callback"),
        (dict(snr=0.1), ValueError, "unknown option"),
        (dict(retries=-1), ValueError, "retries"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(client="local:x"), ValueError, "local:N"),
        (dict(client=3), TypeError, "client must be"),
    ],
)
def test_bad_arguments_are_named(change, exc, words):
    args = dict(n=4, shard_size=2, steps=2, backend="numpy")
    args.update(change)
    with pytest.raises(exc, match=words):
        sd.sample(SDE, SCORE, **args)


def test_fingerprints_and_pickling():
    import pickle

    fp = sd.fingerprint
    assert fp(SCORE) == fp(bench.make_density("ring8").score(sdekit.VPSDE()))
    assert fp(SCORE) != fp(bench.make_density("blobs3").score(SDE))
    SCORE(np.zeros((2, 2)), np.ones(2))  # caches filled: same fingerprint
    assert fp(SCORE) == fp(bench.make_density("ring8").score(sdekit.VPSDE()))
    w = np.eye(2)

    def make(scale):
        def score(x, t):
            return -scale * x @ w

        return score

    assert fp(make(1.0)) == fp(make(1.0)) != fp(make(2.0))
    for name in bench.DENSITIES:  # analytic scores survive a round trip through pickle and cloudpickle
        s = bench.make_density(name).score(SDE)
        x = np.random.default_rng(0).normal(size=(3, s.density.dim))
        for dumps in (pickle.dumps, cloudpickle.dumps):
            s2 = pickle.loads(dumps(s))
            np.testing.assert_array_equal(s2(x, np.full(3, 0.4)), s(x, np.full(3, 0.4)))
            assert fp(s2) == fp(s)


def test_fingerprint_ignores_sharing_and_sees_weights():
    fp = sd.fingerprint
    shared = set()
    assert fp({"a": set(), "b": set()}) == fp({"a": shared, "b": shared})
    cyclic = []
    cyclic.append(cyclic)
    assert fp(cyclic) == fp(cyclic)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 2)
    before = fp(net)
    with torch.no_grad():
        net.weight[0, 0] += 1e-6
    assert fp(net) != before


def test_torch_score_resumes_from_its_store(client, tmp_path):
    # a torch module score: pickled to the workers, samples in float32, and the same fingerprint after the run
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    eps = _eps_net(torch.nn.Linear(2, 2))
    score = sdekit.score_from_eps(eps, SDE)
    kw = dict(shape=(2,), steps=5, backend="torch", seed=1)
    # bit for bit against one process that runs the same batches (ids 0-9, 10-19, 20-29): a float32 nn.Linear may
    # round a batch of 30 differently from three of 10 (BLAS picks kernels by shape; seen on Intel, not on AMD)
    ref = np.concatenate(
        [sdekit.sample(SDE, score, n=10, sample_ids=np.arange(k, k + 10), **kw).x.numpy() for k in (0, 10, 20)]
    )
    whole = sdekit.sample(SDE, score, n=30, **kw).x.numpy()
    np.testing.assert_allclose(ref, whole, rtol=1e-5, atol=1e-6)  # one batch of 30: equal to float32 round-off
    store = tmp_path / "t"
    sol = sd.sample(SDE, score, n=30, shard_size=10, client=client, store=store, **kw)
    np.testing.assert_array_equal(np.asarray(sol.x), ref)
    assert np.asarray(sol.x).dtype == np.float32
    again = sd.sample(SDE, score, n=30, shard_size=10, client=client, store=store, **kw)
    assert again.stats["shards_skipped"] == 3
    with torch.no_grad():
        eps.net.weight[0, 0] += 1e-3
    with pytest.raises(sd.StoreMismatchError, match="score.fingerprint"):
        sd.sample(SDE, score, n=30, shard_size=10, client=client, store=store, **kw)


def _eps_net(net):
    """An eps-prediction torch module (a class defined in this module: the workers get it by value)."""
    import torch

    class EpsNet(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            return self.net(x) * t[:, None]

    return EpsNet(net)
