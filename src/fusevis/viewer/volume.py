"""Volumes in the viewer: N registered volumes, cut into the 2-D slice pairs the networks fuse.

A :class:`VolumeSet` holds the volumes as read (NIfTI reoriented to RAS+, DICOM ordered
along the slice normal) and makes the :class:`~fusevis.io.ImageSet` of any slice, as
:func:`fusevis.io.load_images` would with ``slice_index`` and ``axis`` (the same
normalisation, slices turned to show anterior up). A slice that is constant in some input
(background outside the head) cannot be normalised: it raises :class:`BlankSlice`, whose
one line the page shows in place of the panels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from fusevis.errors import InputError
from fusevis.io import ImageSet
from fusevis.io.loading import (
    ColorMode,
    blank_input,
    series_per_path,
    slice_image_set,
    volume_slice,
)
from fusevis.io.normalize import NormalizeMode
from fusevis.io.readers import RawArray, SeriesChoice, is_volume, read_volume

AXES = ("sagittal", "coronal", "axial")  # RAS+ axes 0, 1, 2: slices across x, y, z
SliceKey = tuple[int, int]  # (axis, index)


class BlankSlice(InputError):
    """A slice that is constant in some input (background): there is nothing to fuse."""


def axis_name(axis: int) -> str:
    """``"sagittal"``, ``"coronal"`` or ``"axial"`` for axis 0, 1 or 2."""
    return AXES[axis]


def parse_axis(value: object) -> int:
    """An axis given as 0, 1, 2 or by name; a one-line InputError otherwise."""
    if isinstance(value, str) and value in AXES:
        return AXES.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return value
    raise InputError(None, f"unknown axis {value!r}: use {', '.join(AXES)} (or 0, 1, 2)")


def all_volumes(paths: Sequence[str | PathLike[str]]) -> bool:
    """Whether every path names a volume (NIfTI, DICOM file or DICOM folder)."""
    return bool(paths) and all(is_volume(Path(p)) for p in paths)


@dataclass
class VolumeSet:
    """N registered volumes of one shape, and how their slices are normalised.

    Attributes
    ----------
    volumes : list of RawArray
        The (X, Y, Z) volumes as read.
    sources : list of Path
        Their files (labels of the slices).
    color, normalize : str
        As for :func:`fusevis.io.load_images`.
    """

    volumes: list[RawArray]
    sources: list[Path]
    color: ColorMode = "gray"
    normalize: NormalizeMode = "minmax"

    def __post_init__(self) -> None:
        first = self.volumes[0].pixels.shape[:3]
        for volume, source in zip(self.volumes[1:], self.sources[1:], strict=True):
            if volume.pixels.shape[:3] != first:
                shape = "x".join(map(str, volume.pixels.shape[:3]))
                raise InputError(source, f"volume of {shape} voxels differs from {self.sources[0]}")

    @classmethod
    def read(
        cls,
        paths: Sequence[str | PathLike[str]],
        color: ColorMode = "gray",
        normalize: NormalizeMode = "minmax",
        max_pixels: int | None = None,
        series: SeriesChoice | Sequence[SeriesChoice] = None,
    ) -> VolumeSet:
        """Read the volumes (each within ``max_pixels`` voxels)."""
        sources = [Path(p) for p in paths]
        choices = series_per_path(series, len(sources))
        volumes = [read_volume(p, max_pixels, c) for p, c in zip(sources, choices, strict=True)]
        return cls(volumes, sources, color, normalize)

    @classmethod
    def from_arrays(
        cls,
        arrays: Sequence[np.ndarray],
        names: Sequence[str],
        spacing: tuple[float, float, float] | None = None,
    ) -> VolumeSet:
        """Volumes held in memory as (X, Y, Z) arrays in RAS+ order (as NIfTI is read)."""
        volumes = []
        for array, name in zip(arrays, names, strict=True):
            if np.ndim(array) != 3:
                raise InputError(name, f"expected an (X, Y, Z) volume, got shape {np.shape(array)}")
            volumes.append(RawArray(np.asarray(array), spacing, rotate_slices=True))
        return cls(volumes, [Path(name) for name in names])

    @property
    def depths(self) -> tuple[int, int, int]:
        """The number of slices along each axis."""
        x, y, z = self.volumes[0].pixels.shape[:3]
        return int(x), int(y), int(z)

    def slice_shape(self, axis: int) -> tuple[int, int]:
        """The (H, W) of a slice across ``axis`` (as shown: turned anterior up for NIfTI)."""
        rest = [d for i, d in enumerate(self.depths) if i != axis]
        return (rest[1], rest[0]) if self.volumes[0].rotate_slices else (rest[0], rest[1])

    def check(self, key: SliceKey) -> SliceKey:
        """``(axis, index)`` if inside the volume, else a one-line InputError."""
        axis, index = key
        depth = self.depths[axis]
        if not 0 <= index < depth:
            raise InputError(
                None,
                f"slice {index} is outside the volume ({axis_name(axis)} slices 0-{depth - 1})",
            )
        return axis, index

    def image_set(self, key: SliceKey) -> ImageSet:
        """The inputs' slice ``key`` as the networks take it.

        Raises
        ------
        BlankSlice
            The slice is constant in some input (nothing to normalise or fuse).
        """
        axis, index = self.check(key)
        planes = [
            volume_slice(v, s, index, axis).pixels
            for v, s in zip(self.volumes, self.sources, strict=True)
        ]
        k = blank_input(planes)
        if k is not None:
            raise BlankSlice(
                None,
                f"{axis_name(axis)} slice {index} is constant in input {k + 1} "
                f"({self.sources[k].name}: background): nothing to fuse here; "
                "move to another slice",
            )
        labels = [f"{s.name}[{axis_name(axis)} {index}]" for s in self.sources]
        return slice_image_set(
            planes, labels, self.color, self.normalize, name=f"{axis_name(axis)}{index:04d}"
        )
