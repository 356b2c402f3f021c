"""Writing 2-D results (fused images, maps) to image and array files."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from fusevis.errors import InputError
from fusevis.io.readers import suffix_of

WRITABLE_SUFFIXES = (".png", ".npy", ".npz", ".nii.gz", ".nii", ".tif", ".tiff")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Map an image in [0, 1] (grey or (H, W, 3) RGB) to uint8 with rounding and clipping."""
    return np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)


def save_image(
    image: np.ndarray,
    path: str | PathLike[str],
    spacing: tuple[float, float] | None = None,
    **arrays: np.ndarray,
) -> Path:
    """Write a 2-D image (values in [0, 1] for image formats) to ``path``.

    The format follows the suffix: ``.png`` and ``.tif`` (8-bit, values clipped to [0, 1]),
    ``.npy`` (float32), ``.npz`` (key ``fused`` plus any extra ``arrays``), ``.nii.gz`` /
    ``.nii`` (float32, one slice, with ``spacing`` in mm if given). The parent folder is
    created. Returns the path written.
    """
    target = Path(path)
    suffix = suffix_of(target)
    if suffix not in WRITABLE_SUFFIXES:
        raise InputError(
            target,
            f"cannot write {suffix or 'files without suffix'!s}; use one of "
            + ", ".join(WRITABLE_SUFFIXES),
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(image, dtype=np.float32)
    if suffix in (".png", ".tif", ".tiff"):
        from PIL import Image as PILImage

        PILImage.fromarray(to_uint8(data)).save(target)
    elif suffix == ".npy":
        np.save(target, data)
    elif suffix == ".npz":
        np.savez_compressed(target, fused=data, **arrays)
    else:
        import nibabel as nib

        affine = np.eye(4)
        if spacing is not None:
            affine[0, 0], affine[1, 1] = spacing
        nib.save(nib.Nifti1Image(data[:, :, None], affine), str(target))
    return target
