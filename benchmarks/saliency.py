"""Benchmark: FuseVis's saliency engine against the reference way, side by side.

1. Per-pixel Jacobians of all inputs for each paper network at 256², 512², 1024²:
   ours (PixelJacobian: ``prepare`` once — one full-image forward, timed apart — then a
   backward sweep or a forward and backward over each pixel's cone) vs. the reference (one
   full-image forward kept in memory, then one ``autograd.grad`` per pixel, as the original
   tool did; its forward is also timed apart).
2. Guidance maps of a 256² pair: ours (probe colouring) vs. the per-pixel loop (one
   full-image backward per pixel); the loop is timed on a sample of pixels and
   extrapolated to all H·W pixels, as stated in the table.

Medians over repeated pixels; the machine is noisy, so read the ratios.

    python benchmarks/saliency.py [--sizes 256 512 1024] [--networks DeepFuse ...]
                                  [--pixels 20] [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from fusevis.models import get_entry, get_model
from fusevis.saliency import PixelJacobian, guidance_maps

NETWORKS = ["FunFuseAn", "MaskNet", "DeepFuse", "DeepPedestrian"]


def network(name: str) -> torch.nn.Module:
    weights = "DEFAULT" if get_entry(name).default_weights is not None else None
    model = get_model(name, weights=weights)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def inputs(size: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 1, size, size, generator=generator) for _ in range(2)]


def pixel_list(size: int, count: int, seed: int = 1) -> list[tuple[int, int]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            int(torch.randint(size, (1,), generator=generator)),
            int(torch.randint(size, (1,), generator=generator)),
        )
        for _ in range(count)
    ]


def time_ours(
    model: torch.nn.Module, xs: list[torch.Tensor], pixels: list
) -> tuple[float, float, str]:
    """Median per pixel, the one-time ``prepare`` (s) and the way the pixels were computed."""
    jacobian = PixelJacobian(model, verify=False)
    start = time.perf_counter()
    jacobian.prepare(xs)  # one full-image forward, as the reference's
    prepare = time.perf_counter() - start
    jacobian.attribute(xs, pixel=pixels[0])  # warm-up: tracing, allocator, picking the way
    times = []
    for pixel in pixels:
        start = time.perf_counter()
        jacobian.attribute(xs, pixel=pixel)
        times.append(time.perf_counter() - start)
    return statistics.median(times), prepare, jacobian.explain(xs, pixels[0]).strategy


def time_reference(
    model: torch.nn.Module, xs: list[torch.Tensor], pixels: list
) -> tuple[float, float]:
    leaves = [x.clone().requires_grad_(True) for x in xs]
    start = time.perf_counter()
    output = model(*leaves)
    forward = time.perf_counter() - start
    times = []
    for row, col in pixels:
        start = time.perf_counter()
        torch.autograd.grad(output[0, 0, row, col], leaves, retain_graph=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--networks", nargs="+", default=NETWORKS)
    parser.add_argument("--pixels", type=int, default=20, help="pixels timed (ours)")
    parser.add_argument("--reference-pixels", type=int, default=5)
    parser.add_argument(
        "--loop-pixels",
        type=int,
        default=20,
        help="pixels of the per-pixel guidance loop timed to extrapolate",
    )
    parser.add_argument("--no-guidance", action="store_true")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
        f"core(s), torch {torch.__version__}, {torch.get_num_threads()} threads",
        "",
        "### Per-pixel Jacobians (all inputs), median per pixel",
        "",
        "| network | size | ours (ms) | way | reference (ms/pixel) | speed-up | ours: "
        "prepare (s) | reference: forward (s) | ours at size / ours at 256 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name in args.networks:
        model = network(name)
        base = None
        for size in args.sizes:
            xs = inputs(size)
            ours, prepare, way = time_ours(model, xs, pixel_list(size, args.pixels))
            base = base or ours
            reference, forward = time_reference(model, xs, pixel_list(size, args.reference_pixels))
            row = (
                f"| {name} | {size}² | {ours * 1e3:.2f} | {way} | {reference * 1e3:.1f} | "
                f"{reference / ours:.0f}× | {prepare:.2f} | {forward:.2f} | {ours / base:.2f} |"
            )
            lines.append(row)
            print(row, flush=True)
    if not args.no_guidance:
        header = [
            "",
            "### Guidance maps of a 256² pair",
            "",
            "| network | ours (s) | per-pixel loop (s, extrapolated from "
            f"{args.loop_pixels} pixels) | speed-up |",
            "|---|---|---|---|",
        ]
        lines += header
        print("\n".join(header), flush=True)
        for name in args.networks:
            model = network(name)
            xs = inputs(256)
            start = time.perf_counter()
            guidance_maps(model, xs, verify=False)
            ours = time.perf_counter() - start
            per_pixel, forward = time_reference(model, xs, pixel_list(256, args.loop_pixels))
            loop = forward + per_pixel * 256 * 256
            row = f"| {name} | {ours:.1f} | {loop:.0f} | {loop / ours:.0f}× |"
            lines.append(row)
            print(row, flush=True)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
