"""Format-specific readers returning raw arrays (no colour conversion, no scaling).

A raster reader returns an (H, W) grey or (H, W, 3) RGB array; a volume reader returns an
(X, Y, Z) array whose third axis is the natural slice axis of the format. Every failure is
raised as :class:`fusevis.errors.InputError` naming the file.

Every reader opens only regular files and checks the size the header claims against the
pixel limit (:mod:`fusevis.io.limits`) before it decodes any pixel data.
"""

from __future__ import annotations

import lzma
import math
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusevis.errors import InputError
from fusevis.io.limits import HOW_TO_RAISE, check_pixels, max_pixels_from, require_regular_file

RASTER_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
SUPPORTED = RASTER_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES

PILLOW_FORMATS = ("PNG", "GIF", "JPEG", "BMP")
"""The only decoders Pillow may pick (by content): never EPS (Ghostscript), PSD, ICNS, ..."""

SMALL_SEGMENT = 1 << 20
"""A TIFF strip or tile may hold this many pixels even when its image is smaller."""

NIFTI_EXTENSION_BYTES = 64 << 20
"""The most a NIfTI header's extensions may take (nibabel reads them whole)."""

DICOM_DEFER = 1 << 16
"""DICOM values longer than this (bytes) are read only when used (pixel data)."""

SeriesChoice = int | str | None
"""A DICOM series: its 1-based index in the listing, its UID or a unique end of it."""


@dataclass
class RawArray:
    """Pixels as stored in the file, with the spacing the file states (if any)."""

    pixels: np.ndarray
    spacing: tuple[float, ...] | None = None
    rotate_slices: bool = False
    """Whether 2-D slices need a 90° turn to show the usual way up (NIfTI's RAS+ axes)."""
    affine: np.ndarray | None = None
    """For NIfTI, the 4×4 affine of ``pixels`` as returned (reoriented to RAS+: nibabel's
    ``as_closest_canonical``): voxel indices to world coordinates."""
    header: object | None = None
    """For NIfTI, the reoriented image's header (units, pixdim, qform/sform codes)."""


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


def read_raster(path: Path, max_pixels: int | None = None) -> RawArray:
    """Read a 2-D PNG, GIF, JPEG, TIFF or BMP file.

    Palette images are expanded to RGB; images whose three channels are equal are returned
    as grey; an alpha channel is dropped. An image of more than ``max_pixels`` pixels (see
    :func:`fusevis.io.limits.max_pixels_from`) is refused from its header.
    """
    limit = max_pixels_from(max_pixels)
    require_regular_file(path)
    suffix = suffix_of(path)
    if suffix not in RASTER_SUFFIXES:
        raise InputError(path, f"unsupported image format {suffix!r}")
    try:
        if suffix in (".tif", ".tiff"):
            pixels = _read_tiff(path, limit)
        else:
            pixels = _read_with_pillow(path, limit)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - every reader failure becomes one line
        raise InputError(
            path, f"cannot read {suffix[1:].upper()} file ({_first_line(error)})"
        ) from None
    return RawArray(_to_grey_or_rgb(pixels, path))


_PILLOW_CHECK = threading.Lock()


def _read_with_pillow(path: Path, limit: int) -> np.ndarray:
    from PIL import Image as PILImage

    # Our limit replaces Pillow's bomb check (PIL.Image.MAX_IMAGE_PIXELS) for this read: it
    # would warn on stderr or refuse with its own message, whatever limit the caller chose.
    # The size is checked right after Image.open has parsed the header, before decoding.
    with _PILLOW_CHECK:
        pillow_limit = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = None
        try:
            with PILImage.open(path, formats=PILLOW_FORMATS) as handle:
                check_pixels(path, handle.size, limit)
                handle.load()
                if handle.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
                    handle = handle.convert("L" if handle.mode in ("LA", "1") else "RGB")
                return np.asarray(handle)
        finally:
            PILImage.MAX_IMAGE_PIXELS = pillow_limit


def _read_tiff(path: Path, limit: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(path, "TIFF file holds no image")
        series = tif.series[0]
        dims = [int(n) for n, axis in zip(series.shape, series.axes, strict=True) if axis != "S"]
        check_pixels(path, dims[:-2] + dims[-1:] + dims[-2:-1], limit)
        _check_tiff_segments(tif, series, path, math.prod(dims))
        return np.asarray(series.asarray())


_INFLATERS: dict[int, Callable[[], object]] = {
    8: zlib.decompressobj,
    32946: zlib.decompressobj,
    50013: zlib.decompressobj,
    34925: lzma.LZMADecompressor,
}
"""TIFF compressions that tifffile inflates without a size bound (no imagecodecs)."""


def _check_tiff_segments(tif, series, path: Path, pixels: int) -> None:  # noqa: ANN001
    """Refuse strips or tiles larger than their image, or that inflate beyond their size.

    A TIFF's tiles may be far larger than the image they tile, and a deflate stream may
    inflate to any size: tifffile decodes each segment whole before cutting it to shape.
    """
    key = series.keyframe
    chunk = [int(n) for n in key.chunks]
    samples = max(1, int(getattr(key, "samplesperpixel", 1) or 1))
    chunk_pixels = math.prod(chunk) // samples
    if chunk_pixels > max(pixels, SMALL_SEGMENT):
        shown = "x".join(str(n) for n in chunk)
        raise InputError(path, f"TIFF tile or strip of {shown} pixels is larger than its image")
    inflater = _INFLATERS.get(int(key.compression))
    if inflater is None or key.dtype is None:
        return
    size = math.prod(chunk) * np.dtype(key.dtype).itemsize
    handle = tif.filehandle
    for page in series.pages:
        if page is None:
            continue
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if not count:
                continue
            handle.seek(offset)
            stream = inflater()
            try:
                inflated = stream.decompress(handle.read(count), size + 1)  # type: ignore[attr-defined]
            except (zlib.error, lzma.LZMAError):
                return  # tifffile reports the corrupt stream
            if len(inflated) > size:
                raise InputError(path, f"a TIFF strip or tile inflates beyond its {size} bytes")


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


def read_volume(path: Path, max_pixels: int | None = None, series: SeriesChoice = None) -> RawArray:
    """Read a NIfTI file, a DICOM file or a DICOM series folder as an (X, Y, Z) volume.

    A volume of more than ``max_pixels`` voxels is refused from its header; ``series``
    chooses one series of a DICOM folder that holds several.
    """
    limit = max_pixels_from(max_pixels)
    require_exists(path)
    if path.is_dir():
        return read_dicom_series(path, limit, series)
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti(path, limit)
    if suffix in DICOM_SUFFIXES:
        return read_dicom_file(path, limit)
    require_regular_file(path)
    raise InputError(path, f"unsupported volume format {suffix!r}")


def read_nifti(path: Path, max_pixels: int | None = None) -> RawArray:
    """Read a NIfTI volume, reoriented to RAS+ (nibabel's closest canonical orientation).

    The header's shape is checked against the limit, and its extensions against
    :data:`NIFTI_EXTENSION_BYTES`, before nibabel reads anything past the header; the
    voxels are read once in their stored type and scaled in float32 (no float64 copy).
    """
    import nibabel as nib

    limit = max_pixels_from(max_pixels)
    require_regular_file(path)
    _check_nifti_header(path, limit)
    try:
        image = nib.load(str(path))
        shape = tuple(int(n) for n in image.shape)
    except Exception as error:  # noqa: BLE001
        raise InputError(path, f"cannot read NIfTI file ({_first_line(error)})") from None
    check_pixels(path, shape, limit, "volume")
    try:
        volume = _nifti_float32(image)
        image = nib.as_closest_canonical(image.__class__(volume, image.affine, image.header))
        volume = np.asarray(image.dataobj)
    except Exception as error:  # noqa: BLE001
        raise InputError(path, f"cannot read NIfTI file ({_first_line(error)})") from None
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    while volume.ndim > 3 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim == 2:
        volume = volume[..., None]
    if volume.ndim != 3:
        raise InputError(path, f"expected a 3-D volume, got shape {volume.shape}")
    header = image.header.copy()
    header.set_data_shape(volume.shape)
    affine = np.asarray(image.affine, np.float64)
    return RawArray(volume, zooms, rotate_slices=True, affine=affine, header=header)


def _check_nifti_header(path: Path, limit: int) -> None:
    """Check the shape and the extensions a NIfTI header announces, from its first bytes.

    nibabel reads a header's extensions whole when it loads a file, up to the data offset
    (or to the end of the file when the offset leaves no room), so a gzip stream of zeros
    there is a bomb the shape does not show.
    """
    import gzip

    import nibabel as nib

    opener = gzip.open if suffix_of(path) == ".nii.gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read(548)
    except (OSError, EOFError, zlib.error) as error:
        raise InputError(path, f"cannot read NIfTI file ({_first_line(error)})") from None
    size = int.from_bytes(raw[:4], "little")
    if size not in (348, 540):
        size = int.from_bytes(raw[:4], "big")
    if size not in (348, 540) or len(raw) < size:
        return  # not a NIfTI header: nibabel says what is wrong
    klass = nib.Nifti1Header if size == 348 else nib.Nifti2Header
    try:
        header = klass(raw[:size], check=False)
        shape = header.get_data_shape()
        offset = float(header["vox_offset"])
    except Exception:  # noqa: BLE001 - nibabel says what is wrong
        return
    check_pixels(path, shape, limit, "volume")
    if len(raw) > size and raw[size] != 0:
        room = offset - size - 4
        if not 0 <= room <= NIFTI_EXTENSION_BYTES:
            raise InputError(
                path,
                f"NIfTI header extensions up to offset {offset:.0f} exceed the "
                f"{NIFTI_EXTENSION_BYTES} bytes allowed",
            )


def _nifti_float32(image) -> np.ndarray:  # noqa: ANN001 - a nibabel image
    """The scaled voxels as float32, as ``get_fdata(dtype=float32)`` gives them.

    nibabel scales a whole volume in float64 before casting it; here the stored values are
    read once and scaled in float64 one slab at a time into a float32 array.
    """
    proxy = image.dataobj
    if not hasattr(proxy, "get_unscaled"):
        return np.asarray(image.get_fdata(dtype=np.float32))
    raw = np.asanyarray(proxy.get_unscaled())
    if raw.dtype.kind not in "uifb":
        return np.asarray(image.get_fdata(dtype=np.float32))
    slope, inter = float(proxy.slope), float(proxy.inter)
    if (slope, inter) == (1.0, 0.0):
        return raw.astype(np.float32, copy=False)
    volume = np.empty(raw.shape, np.float32)
    for index in range(raw.shape[0]):
        volume[index] = raw[index].astype(np.float64) * slope + inter
    return volume


def read_dicom_file(path: Path, max_pixels: int | None = None) -> RawArray:
    """Read one DICOM file (single- or multi-frame) as an (rows, cols, frames) volume."""
    limit = max_pixels_from(max_pixels)
    dataset = _dcmread(path, limit)
    header = _DicomHeader.of(dataset, path)
    if header.frames > 1:
        check_pixels(path, (header.rows, header.cols, header.frames), limit, "volume")
    else:
        check_pixels(path, (header.cols, header.rows), limit)
    pixels = _dicom_pixels(dataset, path)
    volume = pixels[..., None] if pixels.ndim == 2 else np.moveaxis(pixels, 0, -1)
    return RawArray(volume, _dicom_spacing(dataset))


@dataclass
class _DicomHeader:
    """What one DICOM file's header says, kept instead of the file's whole dataset."""

    path: Path
    series_uid: str
    modality: str
    description: str
    number: int | None
    rows: int
    cols: int
    frames: int
    position: float

    @classmethod
    def of(cls, dataset, path: Path) -> _DicomHeader:  # noqa: ANN001
        try:
            number = dataset.get("SeriesNumber")
            return cls(
                path,
                str(dataset.get("SeriesInstanceUID", "") or ""),
                str(dataset.get("Modality", "") or ""),
                str(dataset.get("SeriesDescription", "") or ""),
                None if number in (None, "") else int(number),
                int(dataset.get("Rows", 0) or 0),
                int(dataset.get("Columns", 0) or 0),
                int(dataset.get("NumberOfFrames", 1) or 1),
                _slice_position(dataset),
            )
        except Exception as error:  # noqa: BLE001
            raise InputError(path, f"cannot read DICOM header ({_first_line(error)})") from None

    @property
    def series_key(self) -> tuple[str, str]:
        return (self.series_uid, self.modality)


def read_dicom_series(
    folder: Path, max_pixels: int | None = None, series: SeriesChoice = None
) -> RawArray:
    """Read a folder of single-frame DICOM files as one volume, ordered along the normal.

    Only the folder's regular files are read (hidden ones skipped). A folder holding several
    series (by SeriesInstanceUID and Modality) is refused with the series listed, unless
    ``series`` chooses one. The chosen files' Rows × Columns, summed, are checked against
    the limit before any pixel data is decoded.
    """
    limit = max_pixels_from(max_pixels)
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and _is_regular(p))
    if not files:
        raise InputError(folder, "folder holds no DICOM files")
    headers = [_DicomHeader.of(_dcmread(p, limit, stop_before_pixels=True), p) for p in files]
    chosen = _choose_series(folder, headers, series)
    chosen.sort(key=lambda header: header.position)
    shapes = sorted({(h.rows, h.cols) for h in chosen})
    if len(shapes) != 1 or any(h.frames != 1 for h in chosen):
        raise InputError(folder, f"DICOM series has slices of differing shapes {shapes}")
    rows, cols = shapes[0]
    check_pixels(folder, (rows, cols, len(chosen)), limit, "volume")
    volume = np.empty((rows, cols, len(chosen)), np.float32)
    first = None
    for index, header in enumerate(chosen):
        dataset = _dcmread(header.path, limit)
        pixels = _dicom_pixels(dataset, header.path)
        if pixels.shape != (rows, cols):
            raise InputError(
                header.path, f"pixel data of shape {pixels.shape} differs from {rows}x{cols}"
            )
        volume[..., index] = pixels
        first = dataset if first is None else first
    spacing = _dicom_spacing(first)
    if len(chosen) > 1 and spacing is not None:
        step = abs(chosen[1].position - chosen[0].position)
        spacing = (spacing[0], spacing[1], float(step) or spacing[2])
    return RawArray(volume, spacing)


def _is_regular(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _choose_series(
    folder: Path, headers: list[_DicomHeader], series: SeriesChoice
) -> list[_DicomHeader]:
    groups: dict[tuple[str, str], list[_DicomHeader]] = {}
    for header in headers:
        groups.setdefault(header.series_key, []).append(header)
    ordered = sorted(
        groups.values(),
        key=lambda g: (g[0].number is None, g[0].number or 0, g[0].series_uid, g[0].modality),
    )
    if series is None:
        if len(ordered) == 1:
            return ordered[0]
        raise InputError(
            folder,
            f"folder holds {len(ordered)} DICOM series; choose one with --series: "
            + _list_series(ordered),
        )
    text = str(series).strip()
    if text.isdigit() and 1 <= int(text) <= len(ordered):
        return ordered[int(text) - 1]
    matches = [g for g in ordered if g[0].series_uid == text]
    if not matches and text:
        matches = [g for g in ordered if g[0].series_uid.endswith(text)]
    if len(matches) == 1:
        return matches[0]
    problem = "matches several" if matches else "matches none"
    raise InputError(
        folder, f"--series {text!r} {problem} of its DICOM series: " + _list_series(ordered)
    )


def _list_series(groups: Sequence[list[_DicomHeader]], shown: int = 8) -> str:
    parts = []
    for index, group in enumerate(groups[:shown], start=1):
        head = group[0]
        uid = head.series_uid or "(no UID)"
        uid = uid if len(uid) <= 16 else "..." + uid[-13:]
        description = f' "{head.description}"' if head.description else ""
        modality = head.modality or "?"
        parts.append(f"{index}) {uid} {modality}{description}, {len(group)} files")
    more = f"; and {len(groups) - shown} more" if len(groups) > shown else ""
    return "; ".join(parts) + more


def _dcmread(path: Path, limit: int, stop_before_pixels: bool = False):  # noqa: ANN202
    import pydicom

    require_regular_file(path)
    _check_deflated(path, limit)
    try:
        return pydicom.dcmread(path, defer_size=DICOM_DEFER, stop_before_pixels=stop_before_pixels)
    except Exception as error:  # noqa: BLE001
        raise InputError(path, f"cannot read DICOM file ({_first_line(error)})") from None


def _check_deflated(path: Path, limit: int) -> None:
    """Bound a deflated DICOM data set before pydicom inflates it whole.

    With the Deflated Explicit VR Little Endian transfer syntax everything after the file
    meta information (pixel data included) is one deflate stream, which pydicom inflates
    in memory before reading a single element.
    """
    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    try:
        meta = read_file_meta_info(path)
        deflated = meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
        start = 132 + 12 + int(meta.FileMetaInformationGroupLength)
    except Exception:  # noqa: BLE001 - not DICOM, or no group length: dcmread decides
        return
    if not deflated:
        return
    budget = limit * 8 + (1 << 20)
    stream = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with open(path, "rb") as handle:
        handle.seek(start)
        while chunk := handle.read(1 << 16):
            try:
                total += len(stream.decompress(chunk, budget + 1 - total))
            except zlib.error:
                return
            if total > budget:
                raise InputError(
                    path,
                    f"deflated DICOM data inflate beyond {budget} bytes, more than the "
                    f"limit of {limit} pixels allows ({HOW_TO_RAISE})",
                )


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
