"""GPU check and timing: guidance maps on CUDA, exact against a float64 reference.

1. Check: for every paper network (shipped weights) and weighted averaging, guidance maps on
   the GPU in float64 at 24×24 equal the diagonal of ``torch.autograd.functional.jacobian``
   computed on the CPU in float64 (max abs and relative error printed, must be ≤ 1e-9).
2. Timing: guidance maps (and influence maps) on the GPU in float32 at 256² (and 512²),
   median of repeats after a warm-up, beside the per-pixel reference loop (one full-image
   backward per pixel over a kept forward) timed on a sample of pixels and extrapolated.

Run on a machine with CUDA (the project itself needs none):

    PYTHONPATH=src python benchmarks/gpu.py [--sizes 256 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fusevis.models import get_entry, get_model
from fusevis.saliency import guidance_maps, influence_maps

NETWORKS = ["FunFuseAn", "MaskNet", "DeepFuse", "DeepPedestrian", "WeightedAverage"]


def network(name: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    weights = "DEFAULT" if get_entry(name).default_weights is not None else None
    model = get_model(name, weights=weights).to(device=device, dtype=dtype)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def pair(size: int, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.rand(1, 1, size, size, generator=generator, dtype=torch.float64).to(device, dtype)
        for _ in range(2)
    ]


def check(name: str, device: torch.device, size: int = 24) -> float:
    """Largest relative error of GPU float64 guidance against the CPU Jacobian's diagonal."""
    cpu_model = network(name, torch.device("cpu"), torch.float64)
    xs = pair(size, torch.device("cpu"), torch.float64)
    full = torch.autograd.functional.jacobian(lambda a, b: cpu_model(a, b)[0, 0], tuple(xs))
    maps = guidance_maps(network(name, device, torch.float64), [x.to(device) for x in xs])
    worst = 0.0
    for k, jac in enumerate(full):
        diagonal = jac.reshape(size * size, size * size).diagonal().reshape(size, size)
        ours = torch.as_tensor(maps.guidance_2d(k), dtype=torch.float64)
        scale = diagonal.abs().max().clamp_min(1e-12)
        worst = max(worst, float((ours - diagonal).abs().max() / scale))
    return worst


def synchronised(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_maps(name: str, size: int, device: torch.device, repeats: int, influence: bool) -> float:
    model = network(name, device, torch.float32)
    xs = pair(size, device, torch.float32)
    compute = influence_maps if influence else guidance_maps
    compute(model, xs)  # warm-up: field analysis, kernels
    times = []
    for _ in range(repeats):
        start = synchronised(device)
        compute(model, xs)
        times.append(synchronised(device) - start)
    return statistics.median(times)


def time_reference_per_pixel(name: str, size: int, device: torch.device, pixels: int) -> float:
    """One full-image backward per pixel over a kept forward (the original tool's way)."""
    model = network(name, device, torch.float32)
    xs = [x.requires_grad_(True) for x in pair(size, device, torch.float32)]
    fused = model(*xs)
    generator = torch.Generator().manual_seed(1)
    times = []
    for _ in range(pixels):
        r, c = (int(v) for v in torch.randint(size, (2,), generator=generator))
        start = synchronised(device)
        torch.autograd.grad(fused[0, 0, r, c], xs, retain_graph=True)
        times.append(synchronised(device) - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--networks", nargs="+", default=NETWORKS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pixels", type=int, default=30)
    options = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    device = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print("\n## Check: GPU float64 guidance vs CPU float64 jacobian diagonal (24×24)")
    for name in options.networks:
        error = check(name, device)
        print(f"{name:16s} max relative error {error:.2e} {'ok' if error <= 1e-9 else 'FAIL'}")
    print("\n## Timing: float32 on the GPU (median of repeats after a warm-up)")
    print("| network | size | guidance s | influence s | reference loop s (extrapolated) | ratio |")
    print("|---|---|---|---|---|---|")
    for size in options.sizes:
        for name in options.networks:
            guidance = time_maps(name, size, device, options.repeats, influence=False)
            influence = time_maps(name, size, device, options.repeats, influence=True)
            per_pixel = time_reference_per_pixel(name, size, device, options.pixels)
            loop = per_pixel * size * size
            print(
                f"| {name} | {size}² | {guidance:.2f} | {influence:.2f} | {loop:.0f} "
                f"({per_pixel * 1e3:.2f} ms × {size * size}) | {loop / guidance:.0f}× |",
                flush=True,
            )


if __name__ == "__main__":
    main()
