"""The 3-D engine on the GPU (issue 15): exactness against the CPU and time for volumes.

Run on the device machine with the demo volume pair saved as .npy (``--data`` folder holding
``mri.npy`` and ``pet.npy``, from :func:`fusevis.io.demo.demo_volume_arrays`; the machine has
no nilearn). Prints, for the shipped 3-D network Fuse3D:

- rows at sampled voxels on the GPU against whole-volume float64 autograd on the GPU
  (``VoxelJacobian.verify``), and guidance / influence volumes of a 24³ crop on the GPU
  against the CPU's;
- the time of one voxel's row, one whole-volume backward pass, and the guidance and
  influence volumes of the whole demo volume (median of ``--repeats``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from fusevis.models.registry import get_model
from fusevis.saliency.volumetric import VoxelJacobian, as_volume_tuple, volume_maps


def _timed(run, repeats: int) -> tuple[float, object]:  # noqa: ANN001 - any callable
    times, result = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    """Run the checks and timings and print them as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(".devicedata"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    volumes = [np.load(args.data / f"{name}.npy") for name in ("mri", "pet")]
    model = get_model("Fuse3D").eval()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"# Fuse3D on {name}, demo volume {volumes[0].shape}, torch {torch.__version__}\n")

    on_device = [torch.from_numpy(v).to(device) for v in volumes]
    jacobian = VoxelJacobian(model.to(device), on_device)
    error = jacobian.verify()
    print(f"- rows vs whole-volume float64 autograd on {args.device}: max error {error:.2e}")

    centre = tuple(n // 2 for n in volumes[0].shape)
    crop = [v[tuple(slice(max(0, c - 12), c + 12) for c in centre)] for v in volumes]
    cpu = volume_maps(model.cpu(), [torch.from_numpy(c) for c in crop], influence=True)
    gpu = volume_maps(
        model.to(device), [torch.from_numpy(c).to(device) for c in crop], influence=True
    )
    for label, ours, reference in (("guidance", gpu.guidance, cpu.guidance),
                                   ("influence", gpu.influence, cpu.influence)):  # fmt: skip
        worst = max(float(np.abs(a - b).max() / (np.abs(b).max() or 1))
                    for a, b in zip(ours, reference, strict=True))  # fmt: skip
        print(f"- {label} volumes of a 24³ crop, {args.device} vs CPU: max relative {worst:.2e}")

    row_s, _ = _timed(lambda: jacobian.row_in_box(centre), max(args.repeats, 10))
    whole = [v.clone().requires_grad_(True) for v in as_volume_tuple(on_device)]

    def backward() -> None:
        out = model(*whole)
        out[(0, 0, *centre)].backward()

    full_s, _ = _timed(backward, args.repeats)
    print(f"- one voxel's row {row_s * 1e3:.2f} ms; one whole-volume backward {full_s * 1e3:.1f} ms"
          f" ({full_s / row_s:.0f}x)")  # fmt: skip
    guidance_s, maps = _timed(lambda: volume_maps(model, on_device), args.repeats)
    print(f"- guidance volumes, whole demo volume: {guidance_s:.2f} s ({maps.method})")
    influence_s, _ = _timed(lambda: volume_maps(model, on_device, influence=True), args.repeats)
    print(f"- guidance + influence volumes, whole demo volume: {influence_s:.2f} s")


if __name__ == "__main__":
    main()
