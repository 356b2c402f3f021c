"""Benchmarks on the demo volume pair (MNI152 T1 + simulated FDG-PET, 98×116×94, 2 mm).

Parts (``--part``; default: all of them):

``dask``
    Whole-volume guidance maps (``fusevis guidance --all-slices``) of a network over the
    demo volume with 1 and with 2 Dask worker processes, each run from an empty slice store;
    prints each wall time and the speed-up of 2 workers over 1 (each worker gets
    cores / workers torch threads, so both runs use the whole machine). ``--slices N``
    limits the run to the N central axial slices, for quick runs.

    python benchmarks/volumes.py --part dask [--slices 8] [--network DeepFuse]

``viewer``
    The time from a slice change in the viewer's page to the new fused slice painted, and
    to the first hover answer of that slice painted, in headless Debian Chromium driven by
    Playwright, for the paper networks (``--networks``, shipped weights) on the demo
    volumes resampled in-plane to ``--size``² axial slices (256). The page is hovered once,
    then moves ``--changes`` times: half are steps to the next slice (PageUp: the
    neighbour was prefetched while the page was idle ``--idle-s``), half are jumps across
    the volume with the slider (a slice never opened: its fused slice and prepared
    Jacobian are computed when asked for, unless the viewer fused it ahead while idle).
    With ``--ahead`` the changes begin once the viewer has fused the whole axis ahead
    (the table gives how long after the first hover that was). The page times each change
    (``window.fusevis.sliceTimes``: from sending the message to the animation frame after
    the images, and after the pixel answer); the table gives medians. Guidance maps of
    each slice are computed meanwhile, as in the viewer (``--no-maps``: off); ``--slices
    N`` keeps the N central axial slices. Target: ≤ 1 s to the fused slice and the first
    hover.

    python benchmarks/volumes.py --part viewer [--networks DeepFuse ...] [--changes 8] [--ahead]

``voxel``
    Per-voxel Jacobian rows of the shipped 3-D network ``Fuse3D`` on the demo volumes
    resampled to ``--edge``³ voxels (128): our way, :class:`~fusevis.saliency.volumetric.
    VoxelJacobian` (forward and backward on the voxel's receptive-field crop), timed over
    ``--voxels`` random voxels (20), as the crop's row and as full-size arrays; against the
    reference way, one backward pass over a kept whole-volume forward (``--full-repeats``,
    3). Prints medians and the ratio. Target: ≥ 30× faster.

    python benchmarks/volumes.py --part voxel [--edge 128] [--voxels 20]

Timings are only valid on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NETWORKS = ["FunFuseAn", "MaskNet", "DeepFuse", "DeepPedestrian"]


def central_slices(depth: int, count: int | None) -> list[int] | None:
    """The ``count`` central slice indices of ``depth`` (None: all of them)."""
    if count is None or count >= depth:
        return None
    start = (depth - count) // 2
    return list(range(start, start + count))


def part_dask(args: argparse.Namespace) -> None:
    """Whole-volume guidance with 1 and 2 Dask workers: wall times and their ratio."""
    from fusevis.analysis.volume_run import VolumeSettings, run_volume
    from fusevis.io.demo import demo_volume_arrays, export_demo_volumes
    from fusevis.models.specs import ModelSpec

    arrays, _ = demo_volume_arrays()
    shape = arrays["mri"].shape
    indices = central_slices(shape[2], args.slices)
    count = shape[2] if indices is None else len(indices)
    cores = os.cpu_count() or 1
    times: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        inputs = export_demo_volumes(folder)
        for workers in (1, 2):
            settings = VolumeSettings(
                ModelSpec(args.network),
                influence=args.influence,
                device="cpu",
                threads=max(1, cores // workers),
            )
            began = time.perf_counter()
            result = run_volume(
                inputs, Path(folder) / f"out-{workers}.nii.gz", settings, workers, indices=indices
            )
            times[workers] = time.perf_counter() - began
            computed = len(result.computed)
            print(f"# {workers} worker(s): {times[workers]:.1f} s", flush=True)
    print(
        f"# guidance --all-slices: {args.network} on the demo volume "
        f"({'x'.join(map(str, shape))}), {count} axial slices of {shape[0]}x{shape[1]} "
        f"({computed} with tissue){', with influence' if args.influence else ''}"
    )
    print(f"# {platform.machine()}, {cores} cores, LocalCluster (processes), device cpu")
    print("| workers | wall s | s per slice |")
    print("|---|---|---|")
    for workers, seconds in times.items():
        print(f"| {workers} | {seconds:.1f} | {seconds / max(1, computed):.2f} |")
    print(f"speed-up of 2 workers over 1: {times[1] / times[2]:.2f}x")


def resampled_demo_volume(size: int, count: int | None) -> Any:
    """The demo volumes resampled in-plane to ``size``² axial slices (a VolumeSet).

    Trilinear resampling of the (X, Y, Z) arrays to (size, size, Z), keeping the ``count``
    central axial slices (None: all).
    """
    import numpy as np
    import torch

    from fusevis.io.demo import demo_volume_arrays
    from fusevis.viewer.volume import VolumeSet

    arrays, _ = demo_volume_arrays()
    resampled = []
    for key in ("mri", "pet"):
        volume = torch.from_numpy(arrays[key])
        indices = central_slices(volume.shape[2], count)
        if indices is not None:
            volume = volume[..., indices[0] : indices[-1] + 1]
        grown = torch.nn.functional.interpolate(
            volume[None, None], size=(size, size, volume.shape[2]), mode="trilinear"
        )
        resampled.append(np.ascontiguousarray(grown[0, 0].numpy()))
    return VolumeSet.from_arrays(resampled, ["demo-mri", "demo-pet"])


def slice_changes(browser: Any, name: str, volume: Any, args: argparse.Namespace) -> dict:
    """Time ``args.changes`` slice changes of one network's viewer page (steps, jumps)."""
    from fusevis.viewer.data import build_viewer_data
    from fusevis.viewer.server import start_in_thread

    depth = volume.depths[2]
    start = (2, depth // 2)
    data = build_viewer_data(
        volume.image_set(start),
        [name],
        cache=tempfile.mkdtemp(prefix="fusevis-bench-"),
        compute_maps=args.maps,
        ask_above_s=math.inf,
        volume=volume,
        start=start,
    )
    viewer = start_in_thread(data)
    times: dict[str, list[float]] = {
        f"{kind} {what}": [] for kind in ("step", "jump") for what in ("images", "pixel")
    }
    try:
        page = browser.new_page(viewport={"width": 1300, "height": 1150})
        page.goto(viewer.url)
        page.wait_for_function("window.fusevis && window.fusevis.ready", timeout=120_000)
        box = page.locator("canvas[aria-label^='fused']").bounding_box()
        centre = (box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.45)
        page.mouse.move(*centre)
        page.wait_for_function("window.fusevis.painted > 0", timeout=60_000)
        began = time.monotonic()
        while args.ahead and not data.swept(start, [name]):
            if time.monotonic() - began > args.ahead_limit_s:
                raise SystemExit(f"{name}: the axis was not fused ahead in {args.ahead_limit_s} s")
            time.sleep(0.5)
        times["ahead s"] = [time.monotonic() - began] if args.ahead else []
        # jumps go to slices far from those opened so far, alternately down and up
        jumps = [int(depth * f) for f in (0.2, 0.8, 0.3, 0.7, 0.25, 0.75, 0.35, 0.65)]
        for index in range(args.changes):
            time.sleep(args.idle_s)  # the page idle: the neighbours are prefetched meanwhile
            count = len(page.evaluate("window.fusevis.sliceTimes"))
            current = page.evaluate("window.fusevis.store.state.volume.index")
            if index % 2 == 0 and current + 1 < depth:
                kind = "step"
                page.keyboard.press("PageUp")
            else:
                kind = "jump"
                page.locator("#slice").fill(str(jumps[(index // 2) % len(jumps)]))
                page.mouse.move(*centre)
            page.wait_for_function(f"window.fusevis.sliceTimes.length > {count}", timeout=120_000)
            found = page.evaluate("window.fusevis.sliceTimes")[-1]
            times[f"{kind} images"].append(found["images"])
            times[f"{kind} pixel"].append(found["pixel"])
        page.close()
    finally:
        viewer.stop()
    return times


def part_viewer(args: argparse.Namespace) -> None:
    """Slice change to fused slice painted and first hover answered, per network."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from viewer import headless_chromium

    volume = resampled_demo_volume(args.size, args.slices)
    x, y, z = volume.depths
    print(
        f"# viewer: slice change to painted, demo volumes resampled to {x}x{y}x{z} "
        f"(axial slices {args.size}²), {args.changes} changes per network, guidance maps "
        f"{'computed meanwhile' if args.maps else 'off'}, {args.idle_s} s idle before each"
    )
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), headless Chromium"
    )
    if args.ahead:
        print("# jumps after the viewer fused the whole axis ahead (the time it took is given)")
    print(
        "| network | step: fused painted ms | step: first hover ms | jump: fused painted ms "
        "| jump: first hover ms | all ≤ 1 s | axis fused ahead after (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    with headless_chromium() as browser:
        for name in args.networks:
            times = slice_changes(browser, name, volume, args)
            ahead = times.pop("ahead s")
            medians = {k: statistics.median(v) if v else math.nan for k, v in times.items()}
            worst = max(max(v) for v in times.values() if v)
            print(
                f"| {name} | {medians['step images']:.0f} | {medians['step pixel']:.0f} | "
                f"{medians['jump images']:.0f} | {medians['jump pixel']:.0f} | "
                f"{'yes' if worst <= 1000 else f'no (max {worst:.0f} ms)'} | "
                f"{f'{ahead[0]:.0f}' if ahead else '—'} |",
                flush=True,
            )


# -- part "voxel" ----------------------------------------------------------------------------
def demo_cube(edge: int) -> list[Any]:
    """The demo MRI and PET volumes resampled (trilinear) to ``edge``³ voxels."""
    import numpy as np
    import torch

    from fusevis.io.demo import demo_volume_arrays

    arrays, _ = demo_volume_arrays()
    cubes = []
    for key in ("mri", "pet"):
        volume = torch.from_numpy(arrays[key])[None, None]
        grown = torch.nn.functional.interpolate(
            volume, size=(edge,) * 3, mode="trilinear", align_corners=False
        )
        cubes.append(np.ascontiguousarray(grown[0, 0].numpy()))
    return cubes


def part_voxel(args: argparse.Namespace) -> None:
    """Per-voxel Jacobian rows of Fuse3D (our way) against a whole-volume backward pass."""
    import numpy as np
    import torch

    from fusevis.models import get_model
    from fusevis.saliency.volumetric import VoxelJacobian

    edge = args.edge
    model = get_model("Fuse3D")
    cubes = demo_cube(edge)
    jac = VoxelJacobian(model, cubes)
    generator = np.random.default_rng(0)
    voxels = [tuple(int(v) for v in generator.integers(0, edge, 3)) for _ in range(args.voxels)]
    jac.row_in_box(voxels[0])  # warm-up
    crop_ms, row_ms = [], []
    for voxel in voxels:
        start = time.perf_counter()
        jac.row_in_box(voxel)
        crop_ms.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        jac.row(voxel)
        row_ms.append(1000 * (time.perf_counter() - start))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    leaves = [torch.from_numpy(c)[None, None].requires_grad_(True) for c in cubes]
    start = time.perf_counter()
    with torch.enable_grad():
        output = model(*leaves)[0, 0]
    forward_ms = 1000 * (time.perf_counter() - start)
    full_ms = []
    for voxel in voxels[: args.full_repeats]:
        start = time.perf_counter()
        torch.autograd.grad(output[voxel], leaves, retain_graph=True)
        full_ms.append(1000 * (time.perf_counter() - start))
    crop, row, full = (statistics.median(t) for t in (crop_ms, row_ms, full_ms))
    size = "x".join(str(s) for s in jac.field.size)
    print(
        f"Fuse3D at {edge}^3, field {size}, {torch.get_num_threads()} torch thread(s), "
        f"{platform.machine()}, {os.cpu_count()} cores",
        flush=True,
    )
    print("| way | median ms | runs |")
    print("| --- | --- | --- |")
    print(f"| ours: row on its crop (VoxelJacobian.row_in_box) | {crop:.2f} | {len(crop_ms)} |")
    print(f"| ours: row as {edge}^3 arrays (VoxelJacobian.row) | {row:.2f} | {len(row_ms)} |")
    print(f"| reference: one whole-volume backward pass | {full:.1f} | {len(full_ms)} |")
    print(f"| (reference forward, once) | {forward_ms:.1f} | 1 |")
    print(
        f"ratio {full / crop:.0f}x on the crop, {full / row:.0f}x as full arrays "
        f"(target >= 30x): {'met' if full / row >= 30 else 'MISSED'}",
        flush=True,
    )


PARTS: dict[str, Callable[[argparse.Namespace], None]] = {
    "dask": part_dask,
    "viewer": part_viewer,
    "voxel": part_voxel,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--slices", type=int, default=None, help="N central slices only")
    parser.add_argument("--network", default="DeepFuse")
    parser.add_argument("--influence", action="store_true")
    parser.add_argument("--networks", nargs="+", default=NETWORKS, help="viewer: networks")
    parser.add_argument("--changes", type=int, default=8, help="viewer: slice changes each")
    parser.add_argument("--size", type=int, default=256, help="viewer: axial slice size")
    parser.add_argument("--no-maps", dest="maps", action="store_false", help="viewer: no maps")
    parser.add_argument("--idle-s", type=float, default=1.5, help="viewer: idle before a change")
    parser.add_argument(
        "--ahead", action="store_true", help="viewer: first wait until the axis is fused ahead"
    )
    parser.add_argument("--ahead-limit-s", type=float, default=900.0, help="viewer: wait at most")
    parser.add_argument("--edge", type=int, default=128, help="voxel: volume edge (voxels)")
    parser.add_argument("--voxels", type=int, default=20, help="voxel: rows timed")
    parser.add_argument("--full-repeats", type=int, default=3, help="voxel: reference passes")
    args = parser.parse_args()
    for name, part in PARTS.items():
        if args.part in (name, "all"):
            part(args)


if __name__ == "__main__":
    main()
