"""Loading images and volume slices as normalised :class:`~fusevis.io.Image` objects."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np

from fusevis.errors import InputError
from fusevis.io.color import luminance, rgb_to_ycbcr
from fusevis.io.image import Image
from fusevis.io.normalize import NormalizeMode, check_finite, normalize
from fusevis.io.readers import RawArray, SeriesChoice, is_volume, read_raster, read_volume

ColorMode = Literal["gray", "ycbcr"]
PathLike_ = str | PathLike[str]


@dataclass
class ImageSet:
    """N ≥ 1 registered images of one scene, all of the same (H, W) shape.

    Attributes
    ----------
    images : list of Image
        The inputs in order (input 1 first).
    name : str
        A short name for the set (for example the shared file name in a dataset).
    """

    images: list[Image]
    name: str = ""

    def __post_init__(self) -> None:
        if not self.images:
            raise InputError(None, "an image set needs at least one image")
        first = self.images[0]
        for image in self.images[1:]:
            if image.shape != first.shape:
                raise InputError(
                    image.source,
                    f"shape {image.shape[0]}x{image.shape[1]} differs from "
                    f"{first.source} ({first.shape[0]}x{first.shape[1]})",
                )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Image:
        return self.images[index]

    def __iter__(self) -> Iterator[Image]:
        return iter(self.images)

    @property
    def shape(self) -> tuple[int, int]:
        """The common (H, W) shape."""
        return self.images[0].shape

    def stack(self) -> np.ndarray:
        """Return the images as one float32 array of shape (N, H, W)."""
        return np.stack([image.data for image in self.images]).astype(np.float32)

    @property
    def color_image(self) -> Image | None:
        """The first input that carries colour, if any (used for YCbCr recolouring)."""
        return next((image for image in self.images if image.is_color), None)


def image_from_array(
    pixels: np.ndarray,
    source: str,
    color: ColorMode = "gray",
    normalize_mode: NormalizeMode = "minmax",
    percentiles: tuple[float, float] = (1.0, 99.0),
    spacing: tuple[float, float] | None = None,
) -> Image:
    """Turn a raw grey (H, W) or RGB (H, W, 3) array into a normalised :class:`Image`.

    In ``"gray"`` mode colour is reduced to the paper's luminance. In ``"ycbcr"`` mode the
    image's Y channel is kept for fusion and its Cb/Cr planes are stored for recolouring;
    grey images have no chroma either way.
    """
    if color not in ("gray", "ycbcr"):
        raise InputError(source, f"unknown colour mode {color!r} (use gray or ycbcr)")
    raw = np.asarray(pixels)
    if raw.dtype.kind not in "uifb":
        raise InputError(source, f"unsupported pixel type {raw.dtype}")
    chroma = None
    if raw.ndim == 3:
        check_finite(raw, source)
        if color == "ycbcr":
            ycc = rgb_to_ycbcr(_unit_rgb(raw))
            grey, chroma = ycc[0], ycc[1:].astype(np.float32)
        else:
            grey = luminance(raw)
    elif raw.ndim == 2:
        grey = raw.astype(np.float64)
        if color == "ycbcr" and raw.dtype.kind in "ui":
            grey = grey / float(np.iinfo(raw.dtype).max)
    else:
        raise InputError(source, f"expected a 2-D grey or RGB image, got shape {raw.shape}")
    check_finite(grey, source)
    value_range = (float(grey.min()), float(grey.max()))
    data = normalize(grey, source, normalize_mode, percentiles)
    return Image(data=data, source=source, value_range=value_range, spacing=spacing, chroma=chroma)


def _unit_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype.kind in "ui":
        return rgb.astype(np.float64) / float(np.iinfo(rgb.dtype).max)
    rgb = rgb.astype(np.float64)
    low, high = float(rgb.min()), float(rgb.max())
    if 0.0 <= low and high <= 1.0:
        return rgb
    return (rgb - low) / (high - low) if high > low else np.zeros_like(rgb)


def display_plane(volume: np.ndarray, axis: int, index: int, rotate: bool) -> np.ndarray:
    """Slice ``index`` across ``axis`` of an (X, Y, Z) array, as FuseVis shows slices.

    ``rotate`` turns it by 90° (NIfTI's RAS+ axes: anterior or superior up).
    """
    plane = np.take(volume, index, axis=axis)
    return np.ascontiguousarray(np.rot90(plane) if rotate else plane)


def volume_slice(raw: RawArray, source: Path, index: int | None, axis: int) -> RawArray:
    """Cut one 2-D slice out of a volume; ``index=None`` takes the middle slice."""
    volume = raw.pixels
    if axis not in (0, 1, 2):
        raise InputError(source, f"slice axis must be 0, 1 or 2, got {axis}")
    depth = volume.shape[axis]
    chosen = depth // 2 if index is None else index
    if not 0 <= chosen < depth:
        raise InputError(
            source, f"slice {chosen} is outside the volume (axis {axis} has {depth} slices)"
        )
    plane = display_plane(volume, axis, chosen, raw.rotate_slices)
    spacing = None
    if raw.spacing is not None:
        spacing = tuple(s for i, s in enumerate(raw.spacing[:3]) if i != axis)
        if raw.rotate_slices:
            spacing = (spacing[1], spacing[0])
    return RawArray(plane, spacing)


def series_per_path(
    series: SeriesChoice | Sequence[SeriesChoice], count: int
) -> list[SeriesChoice]:
    """One DICOM series choice per input: a single choice (or None) applies to all."""
    if series is None or isinstance(series, (int, str)):
        return [series] * count
    choices = list(series)
    if len(choices) == 1:
        return choices * count
    if len(choices) != count:
        raise InputError(None, f"{len(choices)} series choices for {count} inputs")
    return choices


def load_image(
    path: PathLike_,
    color: ColorMode = "gray",
    normalize: NormalizeMode = "minmax",
    percentiles: tuple[float, float] = (1.0, 99.0),
    slice_index: int | None = None,
    axis: int = 2,
    max_pixels: int | None = None,
    series: SeriesChoice = None,
) -> Image:
    """Read one 2-D image, or one slice of a volume, as a normalised :class:`Image`.

    Parameters
    ----------
    path : str or path-like
        A PNG, GIF, JPEG, TIFF or BMP file; a NIfTI file (``.nii``, ``.nii.gz``); a DICOM
        file or a folder holding one DICOM series.
    color : {"gray", "ycbcr"}
        How colour inputs are reduced to the one channel a network fuses.
    normalize : {"minmax", "percentile", "none"}
        Intensity scaling; see :func:`fusevis.io.normalize.normalize`.
    percentiles : tuple of float
        Clipping percentiles for ``normalize="percentile"``.
    slice_index : int or None
        For volumes, the slice to take along ``axis`` (default: the middle one).
    axis : int
        For volumes, the axis to slice along. NIfTI volumes are reoriented to RAS+ first, so
        axis 2 gives axial slices (shown anterior up); for DICOM, axis 2 runs over the stored
        images.
    max_pixels : int or None
        The most pixels (2-D images) or voxels (volumes) a file may announce; refused from
        its header before decoding. Default: ``$FUSEVIS_MAX_PIXELS``, else 67,108,864
        (:data:`fusevis.io.limits.DEFAULT_MAX_PIXELS`).
    series : int, str or None
        For a DICOM folder holding several series: the one to read, by its 1-based index in
        the listing the refusal shows, its SeriesInstanceUID or a unique end of the UID.
    """
    source = Path(path)
    if is_volume(source):
        volume = read_volume(source, max_pixels, series)
        raw = volume_slice(volume, source, slice_index, axis)
        label = slice_label(source, axis, "mid" if slice_index is None else slice_index)
    else:
        raw = read_raster(source, max_pixels)
        label = str(source)
    try:
        return image_from_array(raw.pixels, label, color, normalize, percentiles, raw.spacing)
    except InputError as error:
        raise InputError(source, error.problem) from None


def load_images(
    paths: Sequence[PathLike_],
    color: ColorMode = "gray",
    normalize: NormalizeMode = "minmax",
    percentiles: tuple[float, float] = (1.0, 99.0),
    slice_index: int | None = None,
    axis: int = 2,
    name: str = "",
    max_pixels: int | None = None,
    series: SeriesChoice | Sequence[SeriesChoice] = None,
) -> ImageSet:
    """Read registered images (one per input) into an :class:`ImageSet`.

    All files are read with the same options (see :func:`load_image`); their shapes must
    agree. ``series`` is one choice for every DICOM folder, or a sequence of one per path.
    """
    choices = series_per_path(series, len(paths))
    images = [
        load_image(p, color, normalize, percentiles, slice_index, axis, max_pixels, choice)
        for p, choice in zip(paths, choices, strict=True)
    ]
    return ImageSet(images, name=name or "+".join(Path(p).name for p in paths))


def slice_label(source: Path, axis: int, index: int | str) -> str:
    """The name of slice ``index`` of ``source`` across ``axis`` (as :func:`load_image` gives)."""
    return f"{source}[axis {axis}, slice {index}]"


def blank_input(planes: Sequence[np.ndarray]) -> int | None:
    """The first input whose slice is constant (background: nothing to normalise), if any."""
    return next((k for k, plane in enumerate(planes) if np.ptp(plane) == 0), None)


def slice_image_set(
    planes: Sequence[np.ndarray],
    labels: Sequence[str],
    color: ColorMode = "gray",
    normalize: NormalizeMode = "minmax",
    name: str = "",
) -> ImageSet:
    """The :class:`ImageSet` of one slice's raw planes, normalised as a 2-D run reads them."""
    images = [
        image_from_array(plane, label, color, normalize)
        for plane, label in zip(planes, labels, strict=True)
    ]
    return ImageSet(images, name=name or labels[0])


def volume_slices(
    paths: Sequence[PathLike_],
    axis: int = 2,
    color: ColorMode = "gray",
    normalize: NormalizeMode = "minmax",
    max_pixels: int | None = None,
    series: SeriesChoice | Sequence[SeriesChoice] = None,
) -> Iterator[ImageSet]:
    """Yield an :class:`ImageSet` for every slice of N registered volumes.

    Slices where any input is constant (empty background) are skipped, because they cannot
    be normalised. ``max_pixels`` and ``series`` are as for :func:`load_images`.
    """
    sources = [Path(p) for p in paths]
    choices = series_per_path(series, len(sources))
    volumes = [
        read_volume(p, max_pixels, choice) for p, choice in zip(sources, choices, strict=True)
    ]
    depths = {v.pixels.shape[axis] for v in volumes}
    if len(depths) != 1:
        raise InputError(sources[-1], f"volumes have differing depth along axis {axis}")
    for index in range(depths.pop()):
        planes = [
            volume_slice(v, s, index, axis).pixels for v, s in zip(volumes, sources, strict=True)
        ]
        if blank_input(planes) is not None:
            continue
        labels = [slice_label(s, axis, index) for s in sources]
        yield slice_image_set(planes, labels, color, normalize, name=f"slice{index:04d}")
