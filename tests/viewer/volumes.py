"""Tiny NIfTI volume pairs for the viewer's slice tests (written with nibabel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_pair(
    folder: Path, shape: tuple[int, int, int] = (12, 10, 6), seed: int = 3
) -> list[Path]:
    """Two random (X, Y, Z) float32 volumes as ``a.nii.gz`` and ``b.nii.gz``.

    Axial slice 0 of the second volume is constant (zero: background), so that the viewer
    has a blank slice to refuse.
    """
    import nibabel as nib

    generator = np.random.default_rng(seed)
    paths = []
    for k, name in enumerate(("a", "b")):
        volume = generator.random(shape).astype(np.float32) + k
        if k == 1:
            volume[:, :, 0] = 0.0
        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 3.0, 1.0])), str(path))
        paths.append(path)
    return paths
