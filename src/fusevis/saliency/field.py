"""Rectangles of an image and receptive fields: the two shapes every saliency module uses."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels a fused pixel can depend on.

    The fused pixel (r, c) depends only on input pixels with rows in
    ``[r + row_lo, r + row_hi]`` and columns in ``[c + col_lo, c + col_hi]`` (clipped to the
    image). ``stride`` is the network's total down-sampling factor per axis: crops must start
    on multiples of it so that the network's sampling grid is the same as on the full image.

    Attributes
    ----------
    row_lo, row_hi, col_lo, col_hi : int
        Offsets of the field's first and last row and column relative to the fused pixel.
    stride : tuple of int
        Total stride (rows, columns); 1 for networks that keep the resolution throughout.
    source : str
        How it was found: ``"traced"``, ``"measured"`` or ``"user"``.
    crops : bool
        Whether the network on a crop of the inputs computes the crop's pixels as on the
        whole image. False where an operation depends on the image's size (an interpolation
        with ``align_corners=True``, or to a size): :func:`field_window` then gives the
        whole image, and the cone computes pixels exactly instead.
    """

    row_lo: int
    row_hi: int
    col_lo: int
    col_hi: int
    stride: tuple[int, int] = (1, 1)
    source: str = "traced"
    crops: bool = True

    @classmethod
    def square(cls, radius: int, source: str = "user") -> ReceptiveField:
        """A field reaching ``radius`` pixels in every direction."""
        return cls(-radius, radius, -radius, radius, source=source)

    @property
    def height(self) -> int:
        """Number of rows the field spans."""
        return self.row_hi - self.row_lo + 1

    @property
    def width(self) -> int:
        """Number of columns the field spans."""
        return self.col_hi - self.col_lo + 1

    @property
    def radius(self) -> int:
        """The largest offset in any direction."""
        return max(-self.row_lo, self.row_hi, -self.col_lo, self.col_hi)

    def widened(self, margin: int) -> ReceptiveField:
        """The field grown by ``margin`` pixels on every side."""
        return ReceptiveField(
            self.row_lo - margin,
            self.row_hi + margin,
            self.col_lo - margin,
            self.col_hi + margin,
            self.stride,
            self.source,
            self.crops,
        )

    def union(self, other: ReceptiveField) -> ReceptiveField:
        """The smallest field containing both."""
        stride = (max(self.stride[0], other.stride[0]), max(self.stride[1], other.stride[1]))
        return ReceptiveField(
            min(self.row_lo, other.row_lo),
            max(self.row_hi, other.row_hi),
            min(self.col_lo, other.col_lo),
            max(self.col_hi, other.col_hi),
            stride,
            self.source,
            self.crops and other.crops,
        )


@dataclass(frozen=True)
class Window:
    """A rectangle of an image: rows ``[top, bottom)``, columns ``[left, right)``.

    Image coordinates; a window may reach outside the image (``grow`` before ``clip``), for
    instance where a convolution's zero padding lies.
    """

    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def pixel(cls, row: int, col: int) -> Window:
        """The 1×1 window of one pixel."""
        return cls(row, row + 1, col, col + 1)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the window."""
        return (self.bottom - self.top, self.right - self.left)

    def as_slices(self) -> tuple[slice, slice]:
        """Slices selecting the window from an array's last two axes."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def grow(self, before: tuple[int, int], after: tuple[int, int]) -> Window:
        """Extend by ``before`` (rows, cols) above/left and ``after`` below/right."""
        return Window(
            self.top - before[0],
            self.bottom + after[0],
            self.left - before[1],
            self.right + after[1],
        )

    def shift(self, rows: int, cols: int) -> Window:
        """Move by (rows, cols)."""
        return Window(self.top + rows, self.bottom + rows, self.left + cols, self.right + cols)

    def clip(self, height: int, width: int) -> Window:
        """Intersect with the image."""
        return Window(
            max(0, self.top), min(height, self.bottom), max(0, self.left), min(width, self.right)
        )

    def union(self, other: Window | None) -> Window:
        """Smallest window containing both (``self`` when ``other`` is None)."""
        if other is None:
            return self
        return Window(
            min(self.top, other.top),
            max(self.bottom, other.bottom),
            min(self.left, other.left),
            max(self.right, other.right),
        )


def cut(tensor: torch.Tensor, have: Window, want: Window) -> torch.Tensor:
    """The part ``want`` of a tensor whose last two axes cover ``have`` (a view, no copy)."""
    if have == want:
        return tensor
    return tensor[
        ...,
        want.top - have.top : want.bottom - have.top,
        want.left - have.left : want.right - have.left,
    ]


def _align_down(value: int, step: int) -> int:
    return (value // step) * step


def _align_up(value: int, step: int, limit: int) -> int:
    return min(limit, -(-value // step) * step)


def field_window(
    field: ReceptiveField, rows: tuple[int, int], cols: tuple[int, int], shape: tuple[int, int]
) -> Window:
    """The crop needed to compute fused pixels in rows ``[r0, r1)`` and cols ``[c0, c1)``.

    It extends the pixels by the field, is clipped to the image and starts and ends on the
    network's sampling grid; for a network whose crops differ from the whole image
    (``field.crops`` False) it is the whole image.
    """
    height, width = shape
    if not field.crops:
        return Window(0, height, 0, width)
    top = _align_down(max(0, rows[0] + field.row_lo), field.stride[0])
    left = _align_down(max(0, cols[0] + field.col_lo), field.stride[1])
    bottom = _align_up(min(height, rows[1] - 1 + field.row_hi + 1), field.stride[0], height)
    right = _align_up(min(width, cols[1] - 1 + field.col_hi + 1), field.stride[1], width)
    return Window(top, bottom, left, right)
