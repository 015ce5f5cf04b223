"""torch backend benchmarks.

    python benchmarks/bench_torch.py                 # CPU: per-step time of sdekit's torch loop vs torchsde
    python benchmarks/bench_torch.py --gpu           # + CUDA: samples/s at d = 3072, eager vs CUDA graph

CPU part: the reverse VP SDE of a diagonal Gaussian (a cheap analytic score, so the loop's own overhead is
what is measured), Euler--Maruyama with a fixed number of steps, for batches of ``n`` samples in dimension
``d``. sdekit runs ``solve(..., backend="torch")`` (counter-based noise, no host sync per step); torchsde runs
``sdeint(to_torchsde(process), method="euler")`` with its default ``BrownianInterval``. Both in float32 on
the same threads. One timed run each after a short warm-up; the ratio is torchsde / sdekit.

GPU part: samples per second for ``d = 3072`` (a 3x32x32 image) with the same analytic score, eager loop vs
``torch_options(capture="cuda_graph")`` (recorded once, then replayed; the recording call is not timed).
"""

from __future__ import annotations

import argparse
import time

import torch

import sdekit
from sdekit.backends.torch_ import clear_capture_cache, prior_sample, torch_options
from sdekit.backends.torch_noise import TorchNormals


def gaussian_score(sde, d, device, dtype):
    """Exact score of N(m, diag(v)) under a linear SDE, elementwise (no host reads)."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(d, generator=g).to(device, dtype)
    v = (0.1 + torch.rand(d, generator=g)).to(device, dtype)

    def score(x, t):
        alpha, sigma = sde.marginal(t)
        a, s = alpha[:, None], sigma[:, None]
        return -(x - a * m) / (a * a * v + s * s)

    return score


def _timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def _cpu_case(rev, sde, n, d, steps):
    """ms per step for sdekit, torchsde, the counter-based noise alone and torch.randn alone."""
    import torchsde

    from sdekit.interop import to_torchsde

    device, dtype = torch.device("cpu"), torch.float32
    x_T = prior_sample(sde, (n, d), seed=0, dtype=dtype)
    proc = to_torchsde(rev)
    ts = proc.ts([sde.T, sde.eps]).to(dtype)

    def ours(k=steps):
        return sdekit.solve(rev, x_T, sde.T, sde.eps, "euler_maruyama", steps=k, seed=1).x

    def theirs(k=steps):
        return torchsde.sdeint(proc, x_T, ts, method="euler", dt=float(ts[-1]) / k)[-1]

    gen = TorchNormals(0, torch.arange(n), device, dtype)
    ours(3), theirs(3)  # warm-up
    t_ours, x1 = _timed(ours, device)
    t_theirs, x2 = _timed(theirs, device)
    t_noise, _ = _timed(lambda: [gen.normals(k, d) for k in range(steps)], device)
    t_randn, _ = _timed(lambda: [torch.randn(n, d) for _ in range(steps)], device)
    if not (torch.isfinite(x1).all() and torch.isfinite(x2).all()):
        raise FloatingPointError("non-finite samples in the CPU benchmark")
    ms = 1e3 / steps
    return n, ms * t_ours, ms * t_theirs, t_theirs / t_ours, ms * t_noise, ms * t_randn


def bench_cpu(ns, d, steps):
    sde = sdekit.VPSDE()
    rev = sde.reverse(gaussian_score(sde, d, torch.device("cpu"), torch.float32))
    rows = [_cpu_case(rev, sde, n, d, steps) for n in ns]
    print(f"\nCPU, float32, d = {d}, {steps} Euler-Maruyama steps, torch threads = {torch.get_num_threads()}")
    print(
        "| n | sdekit torch (ms/step) | torchsde euler (ms/step) | ratio torchsde/sdekit | "
        "counter noise (ms/step) | torch.randn (ms/step) |"
    )
    print("|---|---|---|---|---|---|")
    for n, a, b, r, z, rz in rows:
        print(f"| {n:.0e} | {a:.3f} | {b:.3f} | {r:.2f} | {z:.3f} | {rz:.3f} |")
    return rows


def _gpu_case(sde, score, solver, n, d, steps, repeats):
    """Samples per second, eager and replayed from a CUDA graph, and the largest difference between them."""
    device = torch.device("cuda")

    def run(seed):
        kw = dict(n=n, shape=(d,), solver=solver, process="sde", steps=steps, device=device, dtype=torch.float32)
        return sdekit.sample(sde, score, seed=seed, **kw).x

    run(0)  # warm-up
    t_eager, x_eager = _timed(lambda: [run(s) for s in range(repeats)], device)
    clear_capture_cache()
    with torch_options(capture="cuda_graph"):
        run(0)  # records the graph
        t_graph, x_graph = _timed(lambda: [run(s) for s in range(repeats)], device)
    clear_capture_cache()
    diff = max(float((a - b).abs().max()) for a, b in zip(x_eager, x_graph))
    return solver, n * repeats / t_eager, n * repeats / t_graph, diff


def bench_gpu(n, d, steps, repeats):
    if not torch.cuda.is_available():
        print("\nGPU part skipped: no CUDA device")
        return None
    sde = sdekit.VPSDE()
    score = gaussian_score(sde, d, torch.device("cuda"), torch.float32)
    rows = [_gpu_case(sde, score, solver, n, d, steps, repeats) for solver in ("euler_maruyama", "heun")]
    print(f"\n{torch.cuda.get_device_name()}, float32, n = {n}, d = {d}, {steps} steps, {repeats} batches")
    print("| solver | eager (samples/s) | CUDA graph (samples/s) | speed-up | max abs(eager - graph) |")
    print("|---|---|---|---|---|")
    for solver, a, b, diff in rows:
        print(f"| {solver} | {a:.0f} | {b:.0f} | {b / a:.2f} | {diff:.1e} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=float, nargs="+", default=[1e4, 1e5])
    parser.add_argument("--d", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--gpu", action="store_true", help="also run the CUDA part")
    parser.add_argument("--gpu-n", type=int, default=1024)
    parser.add_argument("--gpu-steps", type=int, default=100)
    parser.add_argument("--gpu-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_cpu([int(n) for n in args.n], args.d, args.steps)
    if args.gpu:
        bench_gpu(args.gpu_n, 3072, args.gpu_steps, args.gpu_repeats)


if __name__ == "__main__":
    main()
