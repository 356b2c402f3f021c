"""Boxes of a grid and receptive fields in any number of dimensions (volumes: three).

The N-dimensional counterparts of :class:`~fusevis.saliency.field.Window` and
:class:`~fusevis.saliency.field.ReceptiveField`, which stay the 2-D engine's (their
named rows and columns are used throughout it). A :class:`GridField` of two axes holds
what a ``ReceptiveField`` holds (:meth:`GridField.of_2d` converts), so the volume engine's
colouring (:mod:`fusevis.saliency.volumetric`) runs on images too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fusevis.saliency.field import ReceptiveField


@dataclass(frozen=True)
class GridField:
    """Which input voxels a fused voxel can depend on, per axis.

    The fused voxel ``v`` depends only on input voxels ``u`` with
    ``v[a] + lo[a] <= u[a] <= v[a] + hi[a]`` on every axis ``a`` (clipped to the grid).

    Attributes
    ----------
    lo, hi : tuple of int
        Offsets of the field's first and last voxel per axis, relative to the fused voxel.
    stride : tuple of int
        The network's total down-sampling factor per axis: crops start on its multiples so
        that the network's sampling grid is the same as on the whole volume.
    source : str
        How it was found: ``"traced"`` or ``"user"``.
    """

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    stride: tuple[int, ...] | None = None
    source: str = "traced"

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi):
            raise ValueError(f"lo {self.lo} and hi {self.hi} differ in length")
        if any(a > b for a, b in zip(self.lo, self.hi, strict=True)):
            raise ValueError(f"a field's lo {self.lo} lies beyond its hi {self.hi}")
        if self.stride is None:
            object.__setattr__(self, "stride", (1,) * len(self.lo))

    @classmethod
    def cube(cls, radius: int, dims: int = 3, source: str = "user") -> GridField:
        """A field reaching ``radius`` voxels in every direction."""
        return cls((-radius,) * dims, (radius,) * dims, source=source)

    @classmethod
    def of_2d(cls, field: ReceptiveField) -> GridField:
        """The 2-D engine's field as a two-axis grid field."""
        return cls(
            (field.row_lo, field.col_lo),
            (field.row_hi, field.col_hi),
            tuple(field.stride),
            field.source,
        )

    @property
    def dims(self) -> int:
        """Number of axes."""
        return len(self.lo)

    @property
    def size(self) -> tuple[int, ...]:
        """Voxels the field spans per axis."""
        return tuple(h - lo + 1 for lo, h in zip(self.lo, self.hi, strict=True))

    @property
    def reach(self) -> tuple[int, ...]:
        """The largest offset per axis, in either direction."""
        return tuple(max(-lo, h) for lo, h in zip(self.lo, self.hi, strict=True))

    def union(self, other: GridField) -> GridField:
        """The smallest field containing both."""
        return GridField(
            tuple(min(a, b) for a, b in zip(self.lo, other.lo, strict=True)),
            tuple(max(a, b) for a, b in zip(self.hi, other.hi, strict=True)),
            tuple(max(a, b) for a, b in zip(self.stride, other.stride, strict=True)),
            self.source,
        )

    def widened(self, margin: int) -> GridField:
        """The field grown by ``margin`` voxels on every side."""
        return GridField(
            tuple(v - margin for v in self.lo),
            tuple(v + margin for v in self.hi),
            self.stride,
            self.source,
        )


@dataclass(frozen=True)
class Box:
    """A box of a grid: ``[start[a], stop[a])`` on every axis ``a``."""

    start: tuple[int, ...]
    stop: tuple[int, ...]

    @classmethod
    def voxel(cls, voxel: tuple[int, ...]) -> Box:
        """The box of one voxel."""
        return cls(tuple(voxel), tuple(v + 1 for v in voxel))

    @classmethod
    def whole(cls, shape: tuple[int, ...]) -> Box:
        """The whole grid."""
        return cls((0,) * len(shape), tuple(shape))

    @property
    def shape(self) -> tuple[int, ...]:
        """Voxels per axis."""
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))

    def as_slices(self) -> tuple[slice, ...]:
        """Slices selecting the box from an array's last axes."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    def within(self, outer: Box) -> tuple[slice, ...]:
        """Slices selecting this box from an array covering ``outer``."""
        return tuple(
            slice(a - o, b - o) for a, b, o in zip(self.start, self.stop, outer.start, strict=True)
        )


def cut_box(tensor: torch.Tensor, have: Box, want: Box) -> torch.Tensor:
    """The part ``want`` of a tensor whose last axes cover ``have`` (a view, no copy)."""
    if have == want:
        return tensor
    return tensor[(..., *want.within(have))]


def field_box(field: GridField, box: Box, shape: tuple[int, ...]) -> Box:
    """The crop needed to compute the fused voxels of ``box``.

    It extends the box by the field, is clipped to the grid and starts and ends on the
    network's sampling grid (multiples of ``field.stride``, or the grid's end).
    """
    start, stop = [], []
    for a, b, lo, hi, step, n in zip(
        box.start, box.stop, field.lo, field.hi, field.stride, shape, strict=True
    ):
        start.append((max(0, a + lo) // step) * step)
        stop.append(min(n, -(-min(n, b - 1 + hi + 1) // step) * step))
    return Box(tuple(start), tuple(stop))


def tiles(shape: tuple[int, ...], tile: int) -> list[Box]:
    """Split a grid into boxes of at most ``tile`` voxels per axis (last axis fastest)."""
    boxes = [Box((), ())]
    for n in shape:
        boxes = [
            Box((*b.start, a), (*b.stop, min(n, a + tile)))
            for b in boxes
            for a in range(0, n, tile)
        ]
    return boxes
