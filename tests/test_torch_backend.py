"""torch backend: equal to numpy in float64 for every solver, finite in float32, sync-free, on modules and devices."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import sdekit  # noqa: E402
from _torch_syncs import count_syncs  # noqa: E402
from sdekit import (  # noqa: E402
    EDMSDE,
    SOLVERS,
    VESDE,
    VPSDE,
    Gaussian,
    NonFiniteError,
    SubVPSDE,
    get_solver,
    sample,
    score_from_denoiser,
    score_from_eps,
    score_from_v,
    score_from_x0,
    solve,
)
from sdekit.backends import torch_  # noqa: E402
from sdekit.backends.torch_ import torch_options  # noqa: E402
from sdekit.backends.torch_noise import normals_torch  # noqa: E402
from sdekit.noise import PRIOR_STEP, normals_numpy  # noqa: E402

# a full covariance: the score mixes components (a matmul), so the test sees more than elementwise code
DATA = Gaussian(mean=[0.5, -1.0, 2.0], cov=[[0.3, 0.1, 0.0], [0.1, 0.5, -0.2], [0.0, -0.2, 0.4]])
DIAG = Gaussian(mean=[1.0, -0.5], cov=[0.2, 0.6])
SDES = {"vp": VPSDE(), "ve": VESDE()}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cases():
    """(solver name, process) for every registered solver and every process it integrates."""
    out = []
    for name in sorted(SOLVERS):
        s = get_solver(name)
        out += [(name, p) for p, ok in (("sde", s.is_sde), ("ode", s.is_ode)) if ok]
    return out


CASES = _cases()


def _tensor(x, dtype=torch.float64, device="cpu"):
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


# -- the generator -------------------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**64 - 1),
    step=st.one_of(st.integers(0, 10**6), st.just(PRIOR_STEP)),
    size=st.integers(1, 9),
    ids=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=5),
)
def test_torch_generator_equals_numpy_in_float64(seed, step, size, ids):
    ids = np.array(ids, dtype=np.int64)
    expected = normals_numpy(seed, ids, step, size)
    got = normals_torch(seed, ids, step, size).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)
    # float32 uses the same integers: close to the float64 numbers, not a different stream
    got32 = normals_torch(seed, ids, step, size, dtype=torch.float32)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_torch_generator_moments():
    z = normals_torch(11, np.arange(4000), 3, 50).numpy().ravel()
    se = 1.0 / np.sqrt(z.size)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2.0) * se
    assert abs(np.mean(z**4) - 3.0) < 5 * np.sqrt(96.0) * se


# -- equality with numpy -------------------------------------------------------------------------------


@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("solver, process", CASES)
def test_torch_float64_equals_numpy_for_every_solver(solver, process, sde_name):
    if get_solver(solver).adaptive:
        pytest.skip(
            "adaptive step control accepts or rejects on the host; last-bit differences between numpy and "
            "torch libm may flip a decision, so the paths are not comparable to 1e-10"
        )
    sde = SDES[sde_name]
    score = DATA.score(sde)
    for seed in (0, 2**63 + 5):
        ref = sample(sde, score, n=6, solver=solver, process=process, steps=40, seed=seed)
        got = sample(sde, score, n=6, solver=solver, process=process, steps=40, seed=seed, dtype=torch.float64)
        assert isinstance(got.x, torch.Tensor) and got.x.dtype == torch.float64
        assert got.stats["backend"] == "torch" and got.nfe == ref.nfe
        np.testing.assert_allclose(got.x.numpy(), ref.x, rtol=0, atol=1e-10 * max(1.0, np.abs(ref.x).max()))


@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("solver, process", CASES)
def test_float32_stays_finite_down_to_t_end(solver, process, sde_name):
    sde = SDES[sde_name]
    score = DATA.score(sde)
    steps = None if get_solver(solver).adaptive else 60  # adaptive solvers refuse steps (they choose their own)
    got = sample(sde, score, n=8, solver=solver, process=process, steps=steps, seed=1, dtype=torch.float32)
    ref = sample(sde, score, n=8, solver=solver, process=process, steps=steps, seed=1, dtype=torch.float64)
    assert got.x.dtype == torch.float32 and torch.isfinite(got.x).all()
    assert got.t == pytest.approx(sde.eps)
    if get_solver(solver).adaptive:
        # accept/reject decisions differ between float32 and float64, so the two runs discretise the path on
        # different step sequences and agree only to about the tolerance: compare laws, not paths
        np.testing.assert_allclose(got.x.double().mean(0).numpy(), ref.x.mean(0).numpy(), atol=0.5)
        return
    # same noise, same path: float32 only adds round-off
    np.testing.assert_allclose(got.x.double().numpy(), ref.x.numpy(), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_and_stays_near_the_data_law(dtype):
    sde = VPSDE()
    data = Gaussian(mean=[0.5, -1.0], cov=[0.3, 0.5])
    sol = sample(sde, data.score(sde), n=512, steps=50, solver="heun", dtype=dtype)
    assert sol.x.dtype == dtype and torch.isfinite(sol.x).all()
    mean, var = sol.x.double().mean(0).numpy(), sol.x.double().var(0).numpy()
    np.testing.assert_allclose(mean, [0.5, -1.0], atol=0.15)  # 5 standard errors
    np.testing.assert_allclose(var, [0.3, 0.5], atol=0.15)


def test_prior_draw_and_saved_states_equal_numpy():
    sde = VPSDE()
    score = DATA.score(sde)
    ref = sample(sde, score, n=5, steps=10, save_at=True, seed=4)
    got = sample(sde, score, n=5, steps=10, save_at=True, seed=4, backend="torch", dtype=torch.float64)
    np.testing.assert_allclose(got.xs.numpy(), ref.xs, atol=1e-12)
    np.testing.assert_allclose(got.ts, ref.ts)
    prior = torch_.prior_sample(VESDE(), (7, 3), seed=9, dtype=torch.float64)
    np.testing.assert_allclose(prior.numpy(), VESDE().prior_sample((7, 3), seed=9), atol=1e-12)


def test_forward_sde_solve_equals_numpy():
    sde = SubVPSDE()
    x0 = DATA.sample(4, seed=2)
    ref = solve(sde, x0, 0.0, 1.0, steps=25, seed=5)
    got = solve(sde, _tensor(x0), 0.0, 1.0, steps=25, seed=5)
    np.testing.assert_allclose(got.x.numpy(), ref.x, atol=1e-12)


# -- batch independence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("solver", ["euler_maruyama", "heun"])
def test_sample_i_does_not_depend_on_the_batch(solver, dtype):
    sde = VPSDE()
    score = DIAG.score(sde)  # elementwise score: results are bitwise independent of the batch
    small = sample(sde, score, n=3, solver=solver, process="sde", steps=30, seed=3, dtype=dtype)
    large = sample(sde, score, n=50, solver=solver, process="sde", steps=30, seed=3, dtype=dtype)
    torch.testing.assert_close(small.x, large.x[:3], rtol=0, atol=0)
    x = torch_.prior_sample(sde, (12, 2), seed=1, dtype=dtype)
    whole = solve(sde.reverse(score), x, 1.0, 0.01, steps=10, seed=2).x
    ids = np.arange(6, 12)
    part = solve(sde.reverse(score), x[6:], 1.0, 0.01, steps=10, seed=2, sample_ids=ids).x
    torch.testing.assert_close(part, whole[6:], rtol=0, atol=0)


# -- neural scores ---------------------------------------------------------------------------------------


class TinyScore(torch.nn.Module):
    """A small MLP score ``s(x, t)`` with a time input (random weights are enough here)."""

    def __init__(self, d=2, width=16, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(d + 1, width), torch.nn.SiLU(), torch.nn.Linear(width, d)).to(
            dtype
        )
        self.event_shape = (d,)

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], dim=1)) - x


def test_module_score_draws_x_T_on_its_device_and_dtype():
    model = TinyScore()
    sol = sample(VPSDE(), model, n=16, steps=20, seed=0)  # backend "auto" sees the module
    assert isinstance(sol.x, torch.Tensor) and sol.x.dtype == torch.float32 and sol.x.device.type == "cpu"
    assert sol.stats["backend"] == "torch" and torch.isfinite(sol.x).all()
    assert not sol.x.requires_grad  # torch.no_grad() by default, final denoising included
    adapted = score_from_eps(TinyScore(dtype=torch.float64), VPSDE())
    sol = sample(VPSDE(), adapted, n=4, steps=5)
    assert sol.x.dtype == torch.float64


def test_module_score_equals_numpy_backend_through_a_wrapper():
    model = TinyScore(dtype=torch.float64)

    def numpy_score(x, t):
        with torch.no_grad():
            return model(torch.from_numpy(x), torch.from_numpy(t)).numpy()

    sde = VPSDE()
    ref = sample(sde, numpy_score, n=9, shape=(2,), solver="heun", process="sde", steps=30, seed=6)
    got = sample(sde, model, n=9, solver="heun", process="sde", steps=30, seed=6)
    np.testing.assert_allclose(got.x.numpy(), ref.x, atol=1e-10)
    # batch independence with a matmul inside: equal to round-off
    part = sample(sde, model, n=3, solver="heun", process="sde", steps=30, seed=6)
    torch.testing.assert_close(part.x, got.x[:3], rtol=0, atol=1e-12)


def test_differentiable_sampling_gives_the_finite_difference_gradient():
    sde = VPSDE()
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)

    def score_at(m):
        def score(x, t):
            alpha, sigma = sde.marginal(t)
            a, s = alpha[:, None], sigma[:, None]
            return -(x - a * m) / (a * a * 0.5 + s * s)

        return score

    def run(m):
        return sample(sde, score_at(m), n=4, shape=(2,), steps=20, seed=2, dtype=torch.float64).x

    plain = run(mu)
    assert not plain.requires_grad
    with torch_options(differentiable=True):
        out = run(mu)
    assert out.requires_grad
    (grad,) = torch.autograd.grad(out.sum(), mu)
    h = 1e-6
    with torch.no_grad():
        fd = torch.stack([(run(mu + h * e).sum() - run(mu - h * e).sum()) / (2 * h) for e in torch.eye(2)])
    torch.testing.assert_close(grad, fd.to(grad.dtype), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out.detach(), plain, rtol=0, atol=0)


# -- adapters on tensors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(), EDMSDE()], ids=repr)
def test_adapters_on_tensors_equal_numpy(sde):
    exact = DATA.score(sde)

    def eps_fn(x, t):
        return -sde.marginal(t)[1][:, None] * exact(x, t)

    def x0_fn(x, t):
        alpha, sigma = sde.marginal(t)
        return (x + sigma[:, None] ** 2 * exact(x, t)) / alpha[:, None]

    def v_fn(x, t):
        alpha, sigma = sde.marginal(t)
        return alpha[:, None] * eps_fn(x, t) - sigma[:, None] * x0_fn(x, t)

    def denoiser(x_hat, sigma_hat):
        # invert sigma / alpha = exp(-lambda) to a time, then x = alpha x_hat
        t = sde.t_from_log_snr(-(sigma_hat.log() if isinstance(sigma_hat, torch.Tensor) else np.log(sigma_hat)))
        alpha = sde.marginal(t)[0][:, None]
        return x0_fn(alpha * x_hat, t)

    x = DATA.sample(5, seed=1) * 1.3
    t = np.linspace(0.2, 0.9, 5) * sde.T
    for adapter, fn in (
        (score_from_eps, eps_fn),
        (score_from_x0, x0_fn),
        (score_from_v, v_fn),
        (score_from_denoiser, denoiser),
    ):
        score = adapter(fn, sde)
        ref = score(x, t)
        got = score(_tensor(x), _tensor(t))
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ref, exact(x, t), rtol=1e-7, atol=1e-7)


# -- no host synchronisation, finiteness ------------------------------------------------------------------


@pytest.mark.parametrize("solver, process", CASES)
def test_host_reads_do_not_grow_with_the_number_of_steps(solver, process, monkeypatch):
    if get_solver(solver).adaptive:
        pytest.skip("adaptive step control decides on the host, by design")
    sde = VPSDE()
    score = DATA.score(sde)
    proc = sde.reverse(score) if process == "sde" else sde.probability_flow(score)
    x = torch_.prior_sample(sde, (4, 3), seed=0, dtype=torch.float64)
    counts = {}
    for steps in (3, 40):
        for check in (True, False):
            c = count_syncs(monkeypatch)
            solve(proc, x, 1.0, 0.01, solver, steps=steps, check_finite=check)
            counts[steps, check] = c["n"]
            monkeypatch.undo()
    # validation of x0 at the entry and one read of the finiteness record after the loop; none per step
    assert counts[3, True] == counts[40, True] <= counts[3, False] + 1
    assert counts[3, False] == counts[40, False]


def test_nonfinite_state_raises_at_the_same_step_and_time_as_numpy():
    sde = VPSDE()

    def score(x, t):
        lib = torch if isinstance(x, torch.Tensor) else np
        return x * lib.where(t < 0.55, np.inf, 1.0)[:, None]

    x = sde.prior_sample((3, 2), seed=0)
    with pytest.raises(NonFiniteError) as ref:
        solve(sde.reverse(score), x, 1.0, 0.01, steps=20)
    with pytest.raises(NonFiniteError) as got:
        solve(sde.reverse(score), _tensor(x), 1.0, 0.01, steps=20)
    assert (got.value.step, got.value.t) == (ref.value.step, ref.value.t)
    assert "step" in str(got.value)
    out = solve(sde.reverse(score), _tensor(x), 1.0, 0.01, steps=20, check_finite=False)
    assert not torch.isfinite(out.x).all()


# -- bad input -------------------------------------------------------------------------------------------


def test_bad_torch_input_names_the_argument():
    sde = VPSDE()
    score = DATA.score(sde)
    with pytest.raises(TypeError, match="dtype"):
        sample(sde, score, n=2, dtype=torch.int32)
    with pytest.raises(ValueError, match="device"):
        sample(sde, score, n=2, device="not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            sample(sde, score, n=2, device="cuda")
    with pytest.raises(ValueError, match="x_T was given"):
        sample(sde, score, x_T=torch.zeros(2, 3), dtype=torch.float64)
    with pytest.raises(ValueError, match="backend='numpy'"):
        sample(sde, score, n=2, backend="numpy", dtype=torch.float64)
    with pytest.raises(TypeError, match="torch module"):
        solve(sde.reverse(TinyScore(d=3)), np.zeros((2, 3)), 1.0, 0.1, steps=2)
    with pytest.raises(TypeError, match="torch module"):
        sample(sde, TinyScore(d=3), n=2, steps=2, backend="numpy")
    with pytest.raises(ValueError, match="cuda_graph"):
        with torch_options(capture="xla"):
            pass
    with pytest.raises(TypeError, match="differentiable"):
        with torch_options(differentiable="yes"):
            pass
    with pytest.raises(ValueError, match="differentiable"):
        with torch_options(differentiable=True, capture="cuda_graph"):
            pass
    with torch_options(capture="cuda_graph"):
        with pytest.raises(ValueError, match="device 'cpu'"):
            sample(sde, score, n=2, steps=3, backend="torch")
    assert sdekit.backends.BACKENDS["torch"] is not None


# -- capture bookkeeping, with CUDA graphs emulated on the CPU --------------------------------------------


class EmulatedGraphs:
    """CPU stand-in for the CUDA-graph operations: recording runs the body once and keeps it; a replay runs it
    again on the (updated) static inputs and writes the results into the recorded outputs, as a graph would."""

    def __init__(self):
        self.records = self.replays = 0

    def check_device(self, device):
        pass

    def side_stream(self, device):
        import contextlib

        return contextlib.nullcontext()

    def record(self, body):
        self.records += 1
        x_out, saved = body()

        def replay():
            self.replays += 1
            x_new, saved_new = body()
            x_out.copy_(x_new)
            if saved is not None:  # the preallocated trajectory (n_saved, *x.shape)
                saved.copy_(saved_new)

        return replay, (x_out, saved)


def test_capture_records_once_and_replays_new_inputs_and_seeds(monkeypatch):
    emu = EmulatedGraphs()
    monkeypatch.setattr(torch_, "_GRAPHS", emu)
    torch_.clear_capture_cache()
    sde = VPSDE()
    score = DATA.score(sde)
    kw = dict(n=5, solver="heun", process="sde", steps=12, dtype=torch.float64, save_at=True)
    eager = {s: sample(sde, score, seed=s, **kw) for s in (0, 1, 2)}
    with torch_options(capture="cuda_graph"):
        first = sample(sde, score, seed=0, **kw)
        replays = {s: sample(sde, score, seed=s, **kw) for s in (1, 2, 0)}
        assert (emu.records, emu.replays, len(torch_._CAPTURED)) == (1, 3, 1)
        sample(sde, score, seed=0, **{**kw, "steps": 13})  # another grid: another recording
        sample(sde, DIAG.score(sde), seed=0, **{**kw, "n": 5})  # another score: another recording
        assert (emu.records, len(torch_._CAPTURED)) == (3, 3)
    for got, seed in [(first, 0)] + [(replays[s], s) for s in (1, 2, 0)]:
        torch.testing.assert_close(got.x, eager[seed].x, rtol=0, atol=0)
        torch.testing.assert_close(got.xs, eager[seed].xs, rtol=0, atol=0)
    torch_.clear_capture_cache()
    assert not torch_._CAPTURED


def test_capture_cache_is_bounded_and_reports_nonfinite_states(monkeypatch):
    monkeypatch.setattr(torch_, "_GRAPHS", EmulatedGraphs())
    torch_.clear_capture_cache()
    sde = VPSDE()

    def bad_score(x, t):
        return x * torch.where(t < 0.55, np.inf, 1.0)[:, None]

    x = torch_.prior_sample(sde, (3, 2), seed=0, dtype=torch.float64)
    with pytest.raises(NonFiniteError) as eager:
        solve(sde.reverse(bad_score), x, 1.0, 0.01, steps=20)
    with torch_options(capture="cuda_graph"):
        for _ in range(2):  # the recording call, then a replay
            with pytest.raises(NonFiniteError) as got:
                solve(sde.reverse(bad_score), x, 1.0, 0.01, steps=20)
            assert (got.value.step, got.value.t) == (eager.value.step, eager.value.t)
        for steps in range(3, 10):
            solve(sde.reverse(DIAG.score(sde)), x, 1.0, 0.01, steps=steps)
    assert len(torch_._CAPTURED) == torch_._CACHE_SIZE
    torch_.clear_capture_cache()


# -- GPU -------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("solver, process", CASES)
def test_cuda_float64_equals_cpu(solver, process):
    if get_solver(solver).adaptive:
        pytest.skip("adaptive step control: accept/reject decisions may flip on last-bit differences")
    sde = VPSDE()
    score = DATA.score(sde)
    cpu = sample(sde, score, n=64, solver=solver, process=process, steps=40, seed=1, dtype=torch.float64)
    gpu = sample(sde, score, n=64, solver=solver, process=process, steps=40, seed=1, dtype=torch.float64, device="cuda")
    assert gpu.x.device.type == "cuda"
    np.testing.assert_allclose(gpu.x.cpu().numpy(), cpu.x.numpy(), atol=1e-9)


@pytest.mark.gpu
@cuda
def test_cuda_loop_never_synchronises(monkeypatch):
    original = torch_._loop

    def strict(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(torch_, "_loop", strict)
    sol = sample(VPSDE(), DATA.score(VPSDE()), n=256, solver="heun", process="sde", steps=20, device="cuda")
    assert torch.isfinite(sol.x).all()


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("solver", ["euler_maruyama", "heun", "rk4"])
def test_cuda_graph_capture_equals_eager(solver):
    sde = VPSDE()
    score = DATA.score(sde)
    torch_.clear_capture_cache()
    eager = [sample(sde, score, n=128, solver=solver, steps=30, seed=s, device="cuda") for s in (0, 1)]
    with torch_options(capture="cuda_graph"):
        first = sample(sde, score, n=128, solver=solver, steps=30, seed=0, device="cuda")  # records
        replay = [sample(sde, score, n=128, solver=solver, steps=30, seed=s, device="cuda") for s in (0, 1)]
    assert len(torch_._CAPTURED) == 1
    torch.testing.assert_close(first.x, eager[0].x)
    for a, b in zip(replay, eager):
        torch.testing.assert_close(a.x, b.x)
    torch_.clear_capture_cache()


def test_eps_network_example_wraps_a_diffusers_unet():
    pytest.importorskip("diffusers")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "eps_network.py"
    spec = importlib.util.spec_from_file_location("example_eps_network", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    sol = example.main(["--n", "2", "--steps", "3"])
    assert sol.x.shape == (2, 3, 16, 16) and sol.x.dtype == torch.float32
    assert sol.nfe == 4 and sol.stats["backend"] == "torch" and torch.isfinite(sol.x).all()
    # the example samples the DiscreteVPSDE of the scheduler the network was trained with (score_from_diffusers):
    # the UNet at the real-valued timestep sde.timestep(t), its eps divided by -sigma(t)
    from diffusers import DDPMScheduler

    from sdekit import DiscreteVPSDE
    from sdekit.interop import score_from_diffusers

    unet, config = example.load()
    sde, score = score_from_diffusers(unet, config)
    assert isinstance(sde, DiscreteVPSDE) and sde.num_timesteps == 1000
    np.testing.assert_allclose(sde.alphas_cumprod, DDPMScheduler().alphas_cumprod.numpy(), rtol=1e-6)
    ref = sample(sde, score, n=2, shape=(3, 16, 16), steps=3, seed=0)
    torch.testing.assert_close(sol.x, ref.x, rtol=0, atol=0)  # the example's run is this one
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0.5, 0.9])
    with torch.no_grad():
        got = score(x, t)
        want = -unet(x, sde.timestep(t)).sample / sde.marginal(t)[1][:, None, None, None]
    torch.testing.assert_close(got, want)
    # score_sde's VP wrapper keeps the continuous-time convention (labels = 999 t)
    vp = VPSDE()
    with torch.no_grad():
        got = example.score_sde_vp_score(lambda x, labels: unet(x, labels).sample, vp)(x, t)
        want = -unet(x, t * 999).sample / vp.marginal(t)[1][:, None, None, None]
    torch.testing.assert_close(got, want)
