"""Benchmark: the zoo of today's fusion idioms, ours and the reference side by side in one run.

For each network of :data:`ZOO` at one size (256² by default):

1. per pixel: ``PixelJacobian.attribute`` (rows of all inputs) after one ``prepare`` (timed
   apart: for a low-rank network it holds the decomposition's passes) against the reference,
   one full-image forward kept in memory (timed apart) and one ``autograd.grad`` per pixel;
   "way" is the strategy chosen. Medians over random pixels;
2. guidance maps of the pair: ``guidance_maps`` (exact; the field analysis and its float64
   verification included) against the per-pixel loop
   (forward + H·W × the reference's median per pixel, extrapolated). For a network without
   low-rank structure on a CPU the exact maps are that loop (batching does not pay on a
   CPU), and the estimate (``estimate=True``) is timed instead.

Targets (issue 13, 2-core CPU, 256²): local networks ≤ 5 ms per pixel; low-rank non-local
≤ 50 ms per pixel after preparation and guidance maps ≤ 5 min; the general non-local case
≤ 1.2 × one backward pass per pixel. On a GPU (``--device cuda``) the exact guidance maps of
every network are timed (target: under 60 s each), with the card named.

    python benchmarks/zoo.py [--size 256] [--networks ChannelAttention ...] [--pixels 10]
                             [--device cpu|cuda] [--no-guidance] [--markdown FILE]
    python benchmarks/zoo.py --smoke        # a tiny run that only checks the script works
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/

from tests.saliency import zoo_nonlocal, zoo_today  # noqa: E402

from fusevis.saliency import PixelJacobian, guidance_maps  # noqa: E402

# (name, builder): every builder returns a float32 network with random weights. Local zoo
# networks belong in this list too.
ZOO: list[tuple[str, Callable[[], nn.Module]]] = [
    ("MaxFusion", zoo_today.MaxFusion),  # local: reflect padding, .repeat, max over inputs
    ("L1NormFusion", zoo_today.L1NormFusion),  # local: encoder, l1-norm rule, decoder
    ("PoolShuffleUNet", zoo_today.PoolShuffleUNet),  # local: pooling, pixel shuffle
    ("DenseBlockNet", zoo_today.DenseBlockNet),  # local: depthwise, GELU, LayerNorm2d
    ("ChannelAttention", lambda: zoo_nonlocal.ChannelAttentionNet(32)),
    ("TransposedAttention", lambda: zoo_nonlocal.TransposedAttentionNet(24, heads=4)),
    ("MinMax", lambda: zoo_nonlocal.MinMaxNet(32)),
    ("ShiftedWindow", lambda: zoo_nonlocal.ShiftedWindowNet(32, window=8, heads=4)),
    ("GlobalAttention", lambda: zoo_nonlocal.GlobalAttentionNet(32, patch=4)),
]


def input_count(model: nn.Module) -> int:
    """How many images ``model.forward`` takes (two for ``forward(*inputs)``)."""
    parameters = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 2
    return sum(p.default is inspect.Parameter.empty for p in parameters)


def build(builder: Callable[[], nn.Module], device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = builder().float().eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def inputs(model: nn.Module, size: int, device: torch.device) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    count = input_count(model)
    return [torch.rand(1, 1, size, size, generator=generator).to(device) for _ in range(count)]


def pixel_list(size: int, count: int, seed: int = 1) -> list[tuple[int, int]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            int(torch.randint(size, (1,), generator=generator)),
            int(torch.randint(size, (1,), generator=generator)),
        )
        for _ in range(count)
    ]


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_ours(
    model: nn.Module, xs: list[torch.Tensor], pixels: list, device: torch.device
) -> tuple[float, float, str]:
    """Median per pixel, the one-time ``prepare`` (s) and the strategy used."""
    jacobian = PixelJacobian(model)
    jacobian.locality(xs)  # the field analysis (verified), once per model and size, not timed
    start = clock(device)
    jacobian.prepare(xs)
    prepare = clock(device) - start
    way = jacobian.explain(xs, pixels[0]).strategy  # warm-up: tracing, picking the way
    times = []
    for pixel in pixels:
        start = clock(device)
        jacobian.attribute(xs, pixel=pixel)
        times.append(clock(device) - start)
    return statistics.median(times), prepare, way


def time_reference(
    model: nn.Module, xs: list[torch.Tensor], pixels: list, device: torch.device
) -> tuple[float, float]:
    """One kept full-image forward, one ``autograd.grad`` per pixel: median and forward (s)."""
    leaves = [x.clone().requires_grad_(True) for x in xs]
    start = clock(device)
    output = model(*leaves)
    forward = clock(device) - start
    times = []
    for row, col in pixels:
        start = clock(device)
        torch.autograd.grad(output[0, 0, row, col], leaves, retain_graph=True)
        times.append(clock(device) - start)
    return statistics.median(times), forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--networks", nargs="+", default=[name for name, _ in ZOO])
    parser.add_argument("--pixels", type=int, default=10, help="pixels timed (ours)")
    parser.add_argument("--reference-pixels", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-guidance", action="store_true")
    parser.add_argument("--no-per-pixel", action="store_true", help="guidance maps only")
    parser.add_argument(
        "--exact-way",
        choices=["auto", "vmap", "replicate"],
        default="auto",
        help="how exact maps without structure batch their backward passes (batched.exact_maps)",
    )
    parser.add_argument("--smoke", action="store_true", help="32², 2 pixels: checks the script")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.pixels, args.reference_pixels = 32, 2, 1
    device = torch.device(args.device)
    if args.exact_way != "auto":
        from fusevis.saliency import batched

        batched.exact_maps = functools.partial(batched.exact_maps, way=args.exact_way)
    builders = dict(ZOO)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU core(s), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device} ({card})",
        "",
        f"### Per-pixel Jacobians (all inputs) at {args.size}², median per pixel",
        "",
        "| network | way | ours (ms) | reference (ms) | ours / reference | "
        "ours: prepare (s) | reference: forward (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    per_pixel: dict[str, tuple[float, float, str]] = {}
    for name in [] if args.no_per_pixel else args.networks:
        model = build(builders[name], device)
        xs = inputs(model, args.size, device)
        ours, prepare, way = time_ours(model, xs, pixel_list(args.size, args.pixels), device)
        reference, forward = time_reference(
            model, xs, pixel_list(args.size, args.reference_pixels), device
        )
        per_pixel[name] = (reference, forward, way)
        row = (
            f"| {name} | {way} | {ours * 1e3:.2f} | {reference * 1e3:.1f} | "
            f"{ours / reference:.2f} | {prepare:.2f} | {forward:.2f} |"
        )
        lines.append(row)
        print(row, flush=True)
    if not args.no_guidance:
        header = [
            "",
            f"### Guidance maps at {args.size}²",
            "",
            "| network | way | ours (s) | per-pixel loop (s, extrapolated) | speed-up | note |",
            "|---|---|---|---|---|---|",
        ]
        lines += header
        print("\n".join(header), flush=True)
        for name in args.networks:
            model = build(builders[name], device)
            xs = inputs(model, args.size, device)
            reference, forward, way = per_pixel.get(name) or (
                *time_reference(model, xs, pixel_list(args.size, args.reference_pixels), device),
                "?",
            )
            loop = forward + reference * args.size * args.size
            # On a CPU, estimate=True: exact and unchanged for local and low-rank networks,
            # an estimate where the exact maps would be the per-pixel loop.
            start = clock(device)
            maps = guidance_maps(model, xs, estimate=device.type == "cpu")
            ours = clock(device) - start
            note = maps.method.split(";")[0]
            if maps.estimate:
                check = maps.extra["estimate"]
                note = (
                    f"ESTIMATE ({check['probes']} probes, bound held at {check['checked']} "
                    f"checked pixels: {check['held']}); exact maps on a CPU are the per-pixel "
                    "loop"
                )
            row = f"| {name} | {way} | {ours:.1f} | {loop:.0f} | {loop / ours:.0f}× | {note} |"
            lines.append(row)
            print(row, flush=True)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
