"""Benchmark: ``fusevis analyze`` with 1 and with 2 Dask workers, same dataset, one run.

Each run starts from an empty store (nothing to skip). The dataset is made of crops of the
demo MRI/PET pair (or the first image sets of a folder given with --data). Reports the wall
time of each and the speed-up of 2 workers over 1 (each worker gets cores / workers torch
threads, so both runs use the whole machine).

    python benchmarks/analysis.py [--sets 8] [--size 96] [--networks DeepFuse MaskNet]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from fusevis.analysis.dataset_run import analyze
from fusevis.io import export_demo_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=8)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--networks", nargs="+", default=["DeepFuse", "MaskNet"])
    parser.add_argument("--influence", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = export_demo_dataset(Path(folder) / "data", args.sets, args.size)
        times = {}
        for workers in (1, 2):
            store = Path(folder) / f"out-{workers}.zarr"
            began = time.perf_counter()
            analyze(data, ["mri", "pet"], args.networks, store, workers=workers,
                    influence=args.influence)  # fmt: skip
            times[workers] = time.perf_counter() - began
    groups = args.sets * len(args.networks)
    print(f"# analyze: {args.sets} sets of {args.size}² × {', '.join(args.networks)} "
          f"({groups} groups{', with influence' if args.influence else ''})")  # fmt: skip
    print(f"# {platform.machine()}, {os.cpu_count()} cores, LocalCluster (processes)")
    print("| workers | wall s | s per group |")
    print("|---|---|---|")
    for workers, seconds in times.items():
        print(f"| {workers} | {seconds:.1f} | {seconds / groups:.2f} |")
    print(f"speed-up of 2 workers over 1: {times[1] / times[2]:.2f}×")


if __name__ == "__main__":
    main()
