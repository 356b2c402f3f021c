"""Benchmarks on the demo volume pair (MNI152 T1 + simulated FDG-PET, 98×116×94, 2 mm).

Parts (``--part``; default: all of them):

``dask``
    Whole-volume guidance maps (``fusevis guidance --all-slices``) of a network over the
    demo volume with 1 and with 2 Dask worker processes, each run from an empty slice store;
    prints each wall time and the speed-up of 2 workers over 1 (each worker gets
    cores / workers torch threads, so both runs use the whole machine). ``--slices N``
    limits the run to the N central axial slices, for quick runs.

    python benchmarks/volumes.py --part dask [--slices 8] [--network DeepFuse]

Timings are only valid on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


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


PARTS: dict[str, Callable[[argparse.Namespace], None]] = {"dask": part_dask}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--slices", type=int, default=None, help="N central slices only")
    parser.add_argument("--network", default="DeepFuse")
    parser.add_argument("--influence", action="store_true")
    args = parser.parse_args()
    for name, part in PARTS.items():
        if args.part in (name, "all"):
            part(args)


if __name__ == "__main__":
    main()
