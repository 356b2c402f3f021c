"""Whole-volume results as NIfTI files on their inputs' grid.

A volume is read reoriented to RAS+ (:func:`fusevis.io.readers.read_nifti`), so its
results are arrays in that orientation; they are written with the reoriented image's affine
(nibabel's ``as_closest_canonical`` of the input) and the input's units and qform/sform
codes, so that voxel (i, j, k) of a result lies at the same world coordinate as voxel
(i, j, k) of the input as FuseVis read it, and a viewer overlays the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from fusevis.errors import InputError
from fusevis.io.readers import NIFTI_SUFFIXES, RawArray, suffix_of

AFFINE_TOLERANCE_MM = 1e-3
"""Largest difference (mm, per affine entry) between inputs that share one grid."""


def nifti_base(output: str | PathLike[str]) -> tuple[Path, str]:
    """Split ``out.nii.gz`` into ``(folder/out, ".nii.gz")``; refuse other suffixes."""
    path = Path(output)
    suffix = suffix_of(path)
    if suffix not in NIFTI_SUFFIXES:
        raise InputError(path, "a whole-volume output must be .nii.gz or .nii")
    return path.with_name(path.name[: -len(suffix)]), suffix


def volume_output_paths(
    output: str | PathLike[str], count: int, maps: bool, shares: bool
) -> dict[str, Path]:
    """The files one ``-o out.nii.gz`` names, keyed as the results are.

    ``fused`` → ``out.nii.gz``; with ``maps``, input k's guidance (k = 1 … ``count``, as
    the viewer's G1, G2) → ``out_guidance-k.nii.gz``; with ``shares`` its influence share
    → ``out_share-k.nii.gz``.
    """
    base, suffix = nifti_base(output)
    paths = {"fused": base.with_name(base.name + suffix)}
    for k in range(count):
        if maps:
            paths[f"guidance_{k}"] = base.with_name(f"{base.name}_guidance-{k + 1}{suffix}")
        if shares:
            paths[f"share_{k}"] = base.with_name(f"{base.name}_share-{k + 1}{suffix}")
    return paths


def scaled_volumes(
    volumes: Sequence[RawArray], sources: Sequence[Path], mode: str = "minmax"
) -> list[np.ndarray]:
    """Each volume scaled whole by ``mode`` (float32, C order), as a 3-D network takes it."""
    from fusevis.io.normalize import normalize

    return [
        np.ascontiguousarray(
            normalize(v.pixels.astype(np.float32), str(s), mode),  # type: ignore[arg-type]
            np.float32,
        )
        for v, s in zip(volumes, sources, strict=True)
    ]


def check_same_grid(volumes: Sequence[RawArray], sources: Sequence[Path]) -> None:
    """Refuse NIfTI volumes that do not share one voxel grid (shape and affine).

    Raises
    ------
    InputError
        Naming the first volume that differs from the first one, and how.
    """
    first, name = volumes[0], sources[0]
    for volume, source in zip(volumes[1:], sources[1:], strict=True):
        if volume.pixels.shape != first.pixels.shape:
            shape = "x".join(str(n) for n in volume.pixels.shape)
            other = "x".join(str(n) for n in first.pixels.shape)
            raise InputError(source, f"volume of {shape} voxels differs from {name} ({other})")
        if volume.affine is None or first.affine is None:
            raise InputError(source, "has no affine (a NIfTI volume is needed)")
        if not np.allclose(volume.affine, first.affine, rtol=0.0, atol=AFFINE_TOLERANCE_MM):
            worst = float(np.abs(volume.affine - first.affine).max())
            raise InputError(
                source, f"affine differs from {name}'s by up to {worst:.3g} mm (not on one grid)"
            )


def save_volume(array: np.ndarray, path: str | PathLike[str], like: RawArray) -> Path:
    """Write an (X, Y, Z) result as float32 NIfTI-1 on the grid of the volume ``like``.

    The affine is ``like.affine`` (the RAS+ one the arrays are in), set as sform and qform
    with ``like``'s codes (``scanner`` where it had none); pixdim follows from it, and the
    spatial and time units (``xyzt_units``) are ``like``'s. Written atomically.
    """
    import nibabel as nib

    from fusevis.io.writers import atomic_output

    if like.affine is None:
        raise InputError(path, "no affine to write the volume with")
    data = np.asarray(array, np.float32)
    if data.shape != like.pixels.shape:
        raise InputError(path, f"volume of shape {data.shape} is not on its inputs' grid")
    image = nib.Nifti1Image(data, like.affine)
    header = like.header
    codes = (1, 1)
    if header is not None:
        image.header.set_xyzt_units(*header.get_xyzt_units())  # type: ignore[attr-defined]
        codes = tuple(  # type: ignore[assignment]
            int(header[key]) or 1  # type: ignore[index]
            for key in ("qform_code", "sform_code")
        )
    image.set_qform(like.affine, code=codes[0])
    image.set_sform(like.affine, code=codes[1])
    with atomic_output(path) as temporary:
        nib.save(image, str(temporary))
    return Path(path)
