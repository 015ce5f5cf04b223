"""sdekit solvers in k-diffusion's sampler interface, against k-diffusion's own samplers (the real sampling module,
loaded by ``sdekit.interop.load_k_diffusion_sampling``) and against ``sdekit.sample``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import sdekit  # noqa: E402
from sdekit.backends.torch_noise import TorchNormals  # noqa: E402
from sdekit.interop import k_diffusion_sampler, load_k_diffusion_sampling  # noqa: E402

try:
    KD = load_k_diffusion_sampling()
except ImportError as exc:  # pragma: no cover - k-diffusion is in CI
    pytest.skip(f"k-diffusion is not installed: {exc}", allow_module_level=True)

MIX = sdekit.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [0.2, 0.1])
EDM = sdekit.EDMSDE()
SCORE = MIX.score(EDM)
N = 48


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks and small batches: one torch thread is fastest (and the machine may be shared)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def denoiser(x, sigma, **kwargs):
    """The exact k-diffusion denoiser of MIX: ``D = x + sigma^2 score(x, sigma)`` (EDM: alpha = 1, t = sigma)."""
    s = sigma.to(x.dtype)
    return x + (s * s)[:, None] * SCORE(x, s)


def x_T(seed=1, dtype=torch.float64):
    return torch.as_tensor(EDM.prior_sample((N, 2), seed=seed)).to(dtype)


def sigmas(n, dtype=torch.float64):
    return KD.get_sigmas_karras(n, 0.002, 80.0).to(dtype)


def max_rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("n", [5, 12, 20])
@pytest.mark.parametrize(
    "ours, options, theirs",
    [
        ("euler", {}, "sample_euler"),
        ("heun", {}, "sample_heun"),
        ("edm", {"S_churn": 0.0}, "sample_heun"),
        ("dpmpp_2m", {}, "sample_dpmpp_2m"),
        ("dpmpp_2m", {"lower_order_final": False}, "sample_dpmpp_2m"),
        ("dpm2", {}, "sample_dpm_2"),
        ("dpm2_ancestral", {"eta": 0.0}, "sample_dpm_2"),
    ],
)
def test_equals_k_diffusion_where_the_methods_coincide(n, ours, options, theirs):
    # float64 sigmas and states: round-off only (the 1e-14); the final step to sigma = 0 is the denoising
    # evaluation and counts as a step, so lower_order_final=True gives k-diffusion's numbers at any n
    ref = getattr(KD, theirs)(denoiser, x_T(), sigmas(n), disable=True)
    out = k_diffusion_sampler(ours, **options)(denoiser, x_T(), sigmas(n))
    assert out.dtype == torch.float64 and out.shape == (N, 2)
    assert max_rel(out, ref) < 1e-14 * 10


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("ancestral", "sample_euler_ancestral"),
        ("dpmpp_2m_sde", "sample_dpmpp_2m_sde"),
        ("dpm2_ancestral", "sample_dpm_2_ancestral"),
    ],
)
def test_stochastic_samplers_equal_k_diffusion_with_the_same_normals(ours, theirs):
    # k-diffusion takes a noise_sampler: give it sdekit's counter-based normals of step i (one call per step)
    for n in (6, 20):
        gen = TorchNormals(5, np.arange(N), "cpu", torch.float64)
        calls = []

        def noise_sampler(sigma, sigma_next, gen=gen, calls=calls):
            calls.append(1)
            return gen.normals(len(calls) - 1, 2).reshape(N, 2)

        ref = getattr(KD, theirs)(denoiser, x_T(), sigmas(n), disable=True, noise_sampler=noise_sampler)
        out = k_diffusion_sampler(ours, seed=5)(denoiser, x_T(), sigmas(n))
        assert len(calls) == n - 1
        assert max_rel(out, ref) < 1e-13


def test_dpm2_ancestral_eta_equals_k_diffusion_and_is_checked():
    # eta scales sigma_up (k-diffusion's get_ancestral_step): the move goes to sigma_down, then sigma_up z
    gen = TorchNormals(7, np.arange(N), "cpu", torch.float64)
    calls = []

    def noise_sampler(sigma, sigma_next):
        calls.append(1)
        return gen.normals(len(calls) - 1, 2).reshape(N, 2)

    ref = KD.sample_dpm_2_ancestral(denoiser, x_T(), sigmas(10), disable=True, eta=0.5, noise_sampler=noise_sampler)
    out = k_diffusion_sampler("dpm2_ancestral", eta=0.5, seed=7)(denoiser, x_T(), sigmas(10))
    assert max_rel(out, ref) < 1e-13
    with pytest.raises(ValueError, match="eta"):
        sdekit.get_solver("dpm2_ancestral", eta=-0.5)


SAME_GRID = ["euler", "heun", "dpmpp_2m", "rk4", "euler_maruyama", "ancestral", "dpmpp_2m_sde"]
SAME_GRID += ["dpm2", "dpm2_ancestral"]


@pytest.mark.parametrize("solver", SAME_GRID)
def test_equals_sdekit_sample_on_the_same_grid(solver):
    # 20 sigmas (19 solver steps, >= 15: lower_order_final changes nothing); SDE solvers draw sample's normals
    sig = sigmas(20)
    grid = sig[:-1].numpy()
    sde = sdekit.EDMSDE(float(grid[-1]), float(grid[0]))
    ref = sdekit.sample(sde, MIX.score(sde), x_T=x_T(), solver=solver, grid=grid, t_end=float(grid[-1]), seed=3).x
    out = k_diffusion_sampler(solver, seed=3)(denoiser, x_T(), sig)
    assert max_rel(out, ref) < 1e-14 * 10


def test_float32_agrees_with_k_diffusion_to_float32_round_off():
    sig = sigmas(15, torch.float32)
    ref = KD.sample_dpmpp_2m(denoiser, x_T(dtype=torch.float32), sig, disable=True)
    out = k_diffusion_sampler("dpmpp_2m")(denoiser, x_T(dtype=torch.float32), sig)
    assert out.dtype == torch.float32
    assert max_rel(out, ref) < 1e-5  # k-diffusion's coefficients are float32 tensors, sdekit's python floats


def test_callback_gets_k_diffusions_keys_and_values():
    sig = sigmas(6)
    ours, theirs = [], []
    KD.sample_dpmpp_2m(denoiser, x_T(), sig, callback=theirs.append, disable=True)
    k_diffusion_sampler("dpmpp_2m")(denoiser, x_T(), sig, callback=ours.append)
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs):
        assert set(a) == {"x", "i", "sigma", "sigma_hat", "denoised"} == set(b)
        assert a["i"] == b["i"] and float(a["sigma"]) == float(b["sigma"]) == float(a["sigma_hat"])
        assert max_rel(a["x"], b["x"]) < 1e-13 and max_rel(a["denoised"], b["denoised"]) < 1e-13
    # solvers that do not compute a data prediction report the one of the step's first evaluation (at its state)
    seen = []
    k_diffusion_sampler("heun")(denoiser, x_T(), sig, callback=seen.append)
    assert all(info["denoised"] is not None for info in seen)
    np.testing.assert_allclose(seen[2]["denoised"].numpy(), denoiser(seen[2]["x"], seen[2]["sigma"].repeat(N)).numpy(),
                               rtol=1e-12, atol=1e-12)  # fmt: skip


def test_extra_args_are_per_sample_conditioning():
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], dtype=torch.float64)

    def class_denoiser(x, sigma, label, scale=1.0):  # the exact denoiser of N(means[label], 0.1 I), times scale
        s2 = (sigma.to(x.dtype) ** 2)[:, None]
        return scale * (0.1 * x + s2 * means[label]) / (0.1 + s2)

    labels = torch.as_tensor(np.random.default_rng(0).integers(0, 3, N))
    sig = sigmas(20)
    out = k_diffusion_sampler("dpmpp_2m")(class_denoiser, x_T(), sig, extra_args={"label": labels, "scale": 1.0})
    nearest = torch.cdist(out, means).argmin(1)
    assert torch.equal(nearest, labels)
    # the same model through score_from_denoiser + cond in sdekit.sample gives the same numbers
    grid = sig[:-1].numpy()
    sde = sdekit.EDMSDE(float(grid[-1]), float(grid[0]))
    ref = sdekit.sample(sde, sdekit.score_from_denoiser(class_denoiser, sde), x_T=x_T(), solver="dpmpp_2m", grid=grid,
                        t_end=float(grid[-1]), cond={"label": labels}).x  # fmt: skip
    assert max_rel(out, ref) < 1e-13


def test_torch_generator_controls_the_noise_when_no_seed_is_given():
    sampler = k_diffusion_sampler("euler_maruyama")
    torch.manual_seed(0)
    a = sampler(denoiser, x_T(), sigmas(8))
    torch.manual_seed(0)
    b = sampler(denoiser, x_T(), sigmas(8))
    c = sampler(denoiser, x_T(), sigmas(8))
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_final_sigma_above_zero_ends_there_without_denoising():
    sig = sigmas(10)[:-1]  # ends at sigma_min = 0.002
    out = k_diffusion_sampler("euler")(denoiser, x_T(), sig)
    ref = KD.sample_euler(denoiser, x_T(), sig, disable=True)
    assert max_rel(out, ref) < 1e-13
    only_denoise = k_diffusion_sampler("euler")(denoiser, x_T(), torch.tensor([80.0, 0.0], dtype=torch.float64))
    assert max_rel(only_denoise, denoiser(x_T(), torch.full((N,), 80.0, dtype=torch.float64))) < 1e-15


def test_bad_input_names_the_argument():
    fn = k_diffusion_sampler("euler")
    with pytest.raises(ValueError, match="sigmas must decrease strictly"):
        fn(denoiser, x_T(), torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="sigmas must be positive"):
        fn(denoiser, x_T(), torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match="sigmas must be a 1-D"):
        fn(denoiser, x_T(), torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"extra_args\['label'\] has leading dimension 3.*batch size 48"):
        fn(denoiser, x_T(), sigmas(4), extra_args={"label": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(TypeError, match="extra_args must be a dict"):
        fn(denoiser, x_T(), sigmas(4), extra_args=[1])
    with pytest.raises(ValueError, match="chooses its own steps.*cannot run on the given sigmas"):
        k_diffusion_sampler("dopri5")
    with pytest.raises(ValueError, match="unknown option"):
        k_diffusion_sampler("euler", churn=1.0)
    with pytest.raises(ValueError, match="integrates ODEs only"):
        k_diffusion_sampler("dpmpp_2m", process="sde")
    with pytest.raises(TypeError, match="x must be a floating-point"):
        fn(denoiser, torch.zeros(4, 2, dtype=torch.long), sigmas(4))


@pytest.mark.parametrize("n", [6, 20])
def test_edm_with_churn_equals_sample_heun_with_churn(n, monkeypatch):
    # k_diffusion_sampler("edm", S_churn=c) churns in sample_heun's window (S_tmin=0, S_tmax=inf), the last level
    # before sigma = 0 included; sample_heun draws torch.randn_like(x) once per step: give it sdekit's normals of step i
    gen = TorchNormals(5, np.arange(N), "cpu", torch.float64)
    calls = []

    def randn_like(x, *args, **kwargs):
        calls.append(1)
        return gen.normals(len(calls) - 1, 2).reshape(N, 2)

    with monkeypatch.context() as patched:
        patched.setattr(torch, "randn_like", randn_like)
        ref = KD.sample_heun(denoiser, x_T(), sigmas(n), disable=True, s_churn=10.0)
    assert len(calls) == n
    ours, theirs = [], []
    out = k_diffusion_sampler("edm", S_churn=10.0, seed=5)(denoiser, x_T(), sigmas(n), callback=ours.append)
    assert max_rel(out, ref) < 1e-13
    # the callback reports the churned level and its data prediction at every step, the last one included ("x" is
    # the state the step started from, before the churn; k-diffusion reports the churned state)
    calls.clear()
    with monkeypatch.context() as patched:
        patched.setattr(torch, "randn_like", randn_like)
        KD.sample_heun(denoiser, x_T(), sigmas(n), disable=True, s_churn=10.0, callback=theirs.append)
    assert [a["i"] for a in ours] == [b["i"] for b in theirs] == list(range(n))
    for a, b in zip(ours, theirs):
        assert abs(float(a["sigma_hat"]) - float(b["sigma_hat"])) < 1e-12 * float(b["sigma_hat"])
        assert max_rel(a["denoised"], b["denoised"]) < 1e-13
    # options given explicitly win; EDM's own window leaves the last level (0.002 < S_tmin = 0.05) unchurned
    edm_window = k_diffusion_sampler("edm", S_churn=10.0, S_tmin=0.05, S_tmax=50.0, seed=5)
    assert edm_window.solver.S_tmin == 0.05 and k_diffusion_sampler("edm(S_tmax=3.0)").solver.S_tmax == 3.0
    assert k_diffusion_sampler("edm").solver.S_tmin == 0.0 and k_diffusion_sampler("edm").solver.S_tmax == float("inf")
    assert max_rel(edm_window(denoiser, x_T(), sigmas(n)), ref) > 1e-6


def test_numpy_x_with_a_torch_model_or_sigmas_names_x():
    net = torch.nn.Linear(2, 2).double()
    x = EDM.prior_sample((4, 2), seed=0)
    fn = k_diffusion_sampler("euler")
    with pytest.raises(TypeError, match="x must be a torch tensor when the sigmas are a torch tensor"):
        fn(lambda x, s: net(x), x, sigmas(4))
    with pytest.raises(TypeError, match="x must be a torch tensor when the model is a torch module"):
        fn(net, x, sigmas(4).numpy())
    with pytest.raises(TypeError, match=r"raised TypeError on a numpy x .*pass torch.as_tensor\(x\)"):
        fn(lambda x, s: net(x), x, sigmas(4).numpy())
    # a model written for numpy arrays still runs on numpy states
    out = fn(lambda x, s: x / (1.0 + s[:, None] ** 2), x, sigmas(4).numpy())
    assert isinstance(out, np.ndarray) and out.shape == (4, 2)
