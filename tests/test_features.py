"""Features a new user found failing (issue 24, item 3): each case fails on the code before the fix."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import sdekit
from sdekit import EDMSDE, Gaussian

DATA = Gaussian([0.5, -0.3], [0.5, 0.2])
sys.path.insert(0, str(Path(__file__).parent))  # the user model factories of _user_model.py


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


# -- sdekit compare: a run that computes nothing fails ------------------------------------------------------------
def _compare(capsys, *args):
    from sdekit.cli import main

    code = main(["compare", "--nfe", "10", "--n", "64", "--n-ode", "16", "--csv", "", "--png", "", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_backend_torch_runs_its_rows(capsys):
    pytest.importorskip("torch")
    code, out, err = _compare(capsys, "--backend", "torch", "--solvers", "euler,heun")
    assert code == 0, err
    assert "not run" not in out
    code_np, out_np, _ = _compare(capsys, "--backend", "numpy", "--solvers", "euler,heun")
    row = [line for line in out.splitlines() if line.startswith("heun")]
    row_np = [line for line in out_np.splitlines() if line.startswith("heun")]
    assert row == row_np and len(row) == 2  # ODE and SDE rows: the numbers of numpy (float64, same noise)


def test_compare_that_computes_nothing_exits_nonzero(capsys):
    code, out, err = _compare(capsys, "--solvers", "adaptive")
    assert code == 1
    assert "nothing was computed" in err and "adaptive" in err and "tolerance-driven" in err
    assert "tolerance-driven" in out  # the report says why too


# -- compare --model module:factory with a vector event and the default --samples-png ------------------------------
def test_compare_model_with_a_vector_event_writes_its_samples_png(tmp_path, monkeypatch, capsys):
    from sdekit.cli import main

    monkeypatch.chdir(tmp_path)  # the default --samples-png (sdekit_samples.png) lands here
    code = main(["compare", "--model", "_user_model:factory", "--solvers", "heun", "--nfe", "5", "--n", "40",
                 "--n-ode", "8", "--csv", "", "--png", ""])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "wrote samples: sdekit_samples.png" in out
    png = tmp_path / "sdekit_samples.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


# -- distributed.sample: validate before the store is written; a store with no finished shard may be reconfigured ---
class _Broken:
    """A score that raises on every call (a job that fails before any shard finishes)."""

    event_shape = (2,)

    def __call__(self, x, t):
        raise RuntimeError("broken score")


def test_distributed_sample_validates_before_writing_its_store(tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    import sdekit.distributed as sd

    sde = sdekit.VPSDE()
    store = tmp_path / "s"
    plain = DATA.score(sde).__call__  # a plain function: no event_shape
    kw = dict(n=20, shard_size=10, store=store, steps=4, backend="numpy")
    with pytest.raises(ValueError, match="event shape is unknown"):
        sd.sample(sde, plain, client="local:1", **kw)  # raised before any cluster or store
    with pytest.raises(ValueError, match="integrates ODEs only"):
        sd.sample(sde, plain, shape=(2,), solver="euler", process="sde", client="local:1", **kw)
    assert not store.exists()


def test_distributed_store_without_a_finished_shard_is_reconfigured(tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    cloudpickle = pytest.importorskip("cloudpickle")
    import sdekit.distributed as sd

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    sde = sdekit.VPSDE()
    store = tmp_path / "s"
    kw = dict(n=20, shard_size=10, store=store, steps=4, backend="numpy", seed=3)
    with sd.connect("local:1") as client:
        with pytest.raises(RuntimeError, match="broken score"):
            sd.sample(sde, _Broken(), client=client, **kw)
        assert (store / "sdekit.json").exists() and not sd.open_store(store).finished()
        sol = sd.sample(sde, DATA.score(sde), client=client, **kw)  # another score, same store: reconfigured
        np.testing.assert_array_equal(np.asarray(sol.x), sdekit.sample(sde, DATA.score(sde), n=20, steps=4,
                                                                       backend="numpy", seed=3).x)  # fmt: skip
        with pytest.raises(sd.StoreMismatchError, match="another configuration"):  # a finished shard: refused
            sd.sample(sde, _Broken(), client=client, **kw)


# -- a torch x_T that requires grad gets gradients ---------------------------------------------------------------
@pytest.mark.parametrize("solver", ["heun", "euler_maruyama", "dopri5"])
def test_torch_start_that_requires_grad_gets_gradients(solver):
    torch = pytest.importorskip("torch")
    sde = sdekit.VPSDE()
    score = DATA.score(sde)
    x = torch.from_numpy(sde.prior_sample((4, 2), seed=1)).requires_grad_(True)
    kw = {} if solver == "dopri5" else dict(steps=6)
    out = sdekit.sample(sde, score, x_T=x, solver=solver, seed=2, **kw).x
    assert out.requires_grad
    out.sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad)) and torch.any(x.grad != 0)
    if solver == "heun":  # the ODE is linear in x for Gaussian data: d(sum x_out)/dx_T is its row sums, checked by
        eps = 1e-6  # central differences
        base = torch.from_numpy(sde.prior_sample((4, 2), seed=1))
        fd = torch.zeros_like(base)
        for j in range(2):
            e = torch.zeros_like(base)
            e[:, j] = eps
            hi = sdekit.sample(sde, score, x_T=base + e, solver=solver, seed=2, **kw).x.sum(1)
            lo = sdekit.sample(sde, score, x_T=base - e, solver=solver, seed=2, **kw).x.sum(1)
            fd[:, j] = (hi - lo) / (2 * eps)
        torch.testing.assert_close(x.grad, fd, rtol=1e-6, atol=1e-8)


def test_an_ordinary_torch_run_builds_no_graph():
    torch = pytest.importorskip("torch")
    from sdekit.backends.torch_ import torch_options

    sde = sdekit.VPSDE()
    net = _torch_score(sde)  # parameters that require grad, as a network's do
    out = sdekit.sample(sde, net, n=4, shape=(2,), solver="heun", steps=4).x
    assert not out.requires_grad
    x = torch.from_numpy(sde.prior_sample((4, 2), seed=1)).requires_grad_(True)
    with torch_options(differentiable=False):  # explicit: never a graph
        assert not sdekit.sample(sde, net, x_T=x, solver="heun", steps=4).x.requires_grad


# -- the --peers install message names what installs each peer ---------------------------------------------------
def test_peers_install_hint_names_what_installs_each_peer():
    import re
    import tomllib

    from sdekit.bench._peers import PEER_HINT

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]
    named = re.findall(r"sdekit\[([a-z,]+)\]", PEER_HINT)
    assert named, PEER_HINT
    installed = {re.split(r"[<>=\[ ]", req)[0].lower() for e in named[0].split(",") for req in extras[e]}
    assert {"torch", "diffusers"} <= installed, (PEER_HINT, installed)  # what the named extras really install
    assert "k-diffusion" not in installed and re.search(r"pip install --no-deps k-diffusion", PEER_HINT)


# -- compare --model: progress on a terminal, the cost stated first, a default that answers in minutes --------------
def test_compare_model_defaults_are_short_and_state_their_cost(tmp_path, monkeypatch, capsys):
    from sdekit.bench import MODEL_NFE, MODEL_SOLVERS
    from sdekit.cli import main

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a user at a terminal
    csv_path = tmp_path / "rows.csv"
    code = main(["compare", "--model", "_user_model:factory", "--n", "20", "--n-ode", "4", "--csv", str(csv_path),
                 "--png", "", "--samples-png", ""])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    # the cost, before the work: rows x budgets x samples
    assert "8 rows x NFE [8, 16, 32] x 20 samples" in err and "score evaluations" in err
    assert "compare --model _user_model:factory:" in err and "%|" in err  # the progress bar (tqdm)
    rows = list(__import__("csv").DictReader(open(csv_path)))
    assert {r["solver"] for r in rows} == set(MODEL_SOLVERS) and len(MODEL_SOLVERS) <= 8
    assert {int(r["nfe_budget"]) for r in rows} == set(MODEL_NFE) and max(MODEL_NFE) <= 32
    code = main(["compare", "--model", "_user_model:factory", "--n", "20", "--n-ode", "4", "--csv", "", "--png", "",
                 "--samples-png", "", "--no-progress"])  # fmt: skip
    assert code == 0 and "score evaluations" not in capsys.readouterr().err
