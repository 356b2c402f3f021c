"""Format-specific readers returning raw arrays (no colour conversion, no scaling).

A raster reader returns an (H, W) grey or (H, W, 3) RGB array; a volume reader returns an
(X, Y, Z) array whose third axis is the natural slice axis of the format. Every failure is
raised as :class:`fusevis.errors.InputError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusevis.errors import InputError

RASTER_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
SUPPORTED = RASTER_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES


@dataclass
class RawArray:
    """Pixels as stored in the file, with the spacing the file states (if any)."""

    pixels: np.ndarray
    spacing: tuple[float, ...] | None = None
    rotate_slices: bool = False
    """Whether 2-D slices need a 90° turn to show the usual way up (NIfTI's RAS+ axes)."""


def suffix_of(path: Path) -> str:
    """Return the lower-case suffix of ``path``, treating ``.nii.gz`` as one suffix."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def is_volume(path: Path) -> bool:
    """Whether ``path`` names a 3-D volume (NIfTI, DICOM file or DICOM series folder)."""
    return path.is_dir() or suffix_of(path) in NIFTI_SUFFIXES + DICOM_SUFFIXES


def require_exists(path: Path) -> None:
    """Raise a one-line :class:`InputError` if ``path`` does not exist."""
    if not path.exists():
        raise InputError(path, "file not found")


def read_raster(path: Path) -> RawArray:
    """Read a 2-D PNG, GIF, JPEG, TIFF or BMP file.

    Palette images are expanded to RGB; images whose three channels are equal are returned
    as grey; an alpha channel is dropped.
    """
    require_exists(path)
    suffix = suffix_of(path)
    if suffix not in RASTER_SUFFIXES:
        raise InputError(path, f"unsupported image format {suffix!r}")
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            pixels = np.asarray(tifffile.imread(path))
        else:
            pixels = _read_with_pillow(path)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - every reader failure becomes one line
        raise InputError(
            path, f"cannot read {suffix[1:].upper()} file ({_first_line(error)})"
        ) from None
    return RawArray(_to_grey_or_rgb(pixels, path))


def _read_with_pillow(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(path) as handle:
        handle.load()
        if handle.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
            handle = handle.convert("L" if handle.mode in ("LA", "1") else "RGB")
        return np.asarray(handle)


def _to_grey_or_rgb(pixels: np.ndarray, path: Path) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3]
        if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(
            pixels[..., 0], pixels[..., 2]
        ):
            pixels = pixels[..., 0]
    elif pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 2 and not (pixels.ndim == 3 and pixels.shape[-1] == 3):
        raise InputError(path, f"expected a 2-D grey or RGB image, got shape {pixels.shape}")
    return pixels


def read_volume(path: Path) -> RawArray:
    """Read a NIfTI file, a DICOM file or a DICOM series folder as an (X, Y, Z) volume."""
    require_exists(path)
    if path.is_dir():
        return read_dicom_series(path)
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti(path)
    if suffix in DICOM_SUFFIXES:
        return read_dicom_file(path)
    raise InputError(path, f"unsupported volume format {suffix!r}")


def read_nifti(path: Path) -> RawArray:
    """Read a NIfTI volume, reoriented to RAS+ (nibabel's closest canonical orientation)."""
    import nibabel as nib

    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
        volume = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as error:  # noqa: BLE001
        raise InputError(path, f"cannot read NIfTI file ({_first_line(error)})") from None
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    while volume.ndim > 3 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim == 2:
        volume = volume[..., None]
    if volume.ndim != 3:
        raise InputError(path, f"expected a 3-D volume, got shape {volume.shape}")
    return RawArray(volume, zooms, rotate_slices=True)


def read_dicom_file(path: Path) -> RawArray:
    """Read one DICOM file (single- or multi-frame) as an (rows, cols, frames) volume."""
    dataset = _dcmread(path)
    pixels = _dicom_pixels(dataset, path)
    volume = pixels[..., None] if pixels.ndim == 2 else np.moveaxis(pixels, 0, -1)
    return RawArray(volume, _dicom_spacing(dataset))


def read_dicom_series(folder: Path) -> RawArray:
    """Read a folder of single-frame DICOM files as one volume, ordered along the normal."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(folder, "folder holds no DICOM files")
    datasets = [(_dcmread(p), p) for p in files]
    datasets.sort(key=lambda item: _slice_position(item[0]))
    slices = [_dicom_pixels(ds, p) for ds, p in datasets]
    shapes = {s.shape for s in slices}
    if len(shapes) != 1 or slices[0].ndim != 2:
        raise InputError(folder, f"DICOM series has slices of differing shapes {sorted(shapes)}")
    spacing = _dicom_spacing(datasets[0][0])
    if len(datasets) > 1 and spacing is not None:
        step = abs(_slice_position(datasets[1][0]) - _slice_position(datasets[0][0]))
        spacing = (spacing[0], spacing[1], float(step) or spacing[2])
    return RawArray(np.stack(slices, axis=-1), spacing)


def _dcmread(path: Path):  # noqa: ANN202 - pydicom Dataset
    import pydicom

    try:
        return pydicom.dcmread(path)
    except Exception as error:  # noqa: BLE001
        raise InputError(path, f"cannot read DICOM file ({_first_line(error)})") from None


def _dicom_pixels(dataset, path: Path) -> np.ndarray:  # noqa: ANN001
    try:
        pixels = np.asarray(dataset.pixel_array, dtype=np.float32)
    except Exception as error:  # noqa: BLE001
        raise InputError(
            path, f"DICOM file has no readable pixel data ({_first_line(error)})"
        ) from None
    slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)
    return pixels * slope + intercept


def _dicom_spacing(dataset) -> tuple[float, float, float] | None:  # noqa: ANN001
    spacing = getattr(dataset, "PixelSpacing", None)
    if spacing is None:
        return None
    thickness = float(getattr(dataset, "SliceThickness", 1.0) or 1.0)
    return (float(spacing[0]), float(spacing[1]), thickness)


def _slice_position(dataset) -> float:  # noqa: ANN001
    position = getattr(dataset, "ImagePositionPatient", None)
    orientation = getattr(dataset, "ImageOrientationPatient", None)
    if position is not None and orientation is not None:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
        return float(np.dot(normal, np.asarray(position, float)))
    return float(getattr(dataset, "InstanceNumber", 0) or 0)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
