"""The receptive-field description shared by the saliency code."""

from __future__ import annotations

from dataclasses import dataclass


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
    """

    row_lo: int
    row_hi: int
    col_lo: int
    col_hi: int
    stride: tuple[int, int] = (1, 1)
    source: str = "traced"

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
        )


@dataclass(frozen=True)
class Window:
    """A rectangle of an image: rows ``[top, bottom)``, columns ``[left, right)``."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the window."""
        return (self.bottom - self.top, self.right - self.left)

    def as_slices(self) -> tuple[slice, slice]:
        """Slices selecting the window from an array's last two axes."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


def _align_down(value: int, step: int) -> int:
    return (value // step) * step


def _align_up(value: int, step: int, limit: int) -> int:
    return min(limit, -(-value // step) * step)


def field_window(
    field: ReceptiveField, rows: tuple[int, int], cols: tuple[int, int], shape: tuple[int, int]
) -> Window:
    """The crop needed to compute fused pixels in rows ``[r0, r1)`` and cols ``[c0, c1)``.

    It extends the pixels by the field, is clipped to the image and starts and ends on the
    network's sampling grid.
    """
    height, width = shape
    top = _align_down(max(0, rows[0] + field.row_lo), field.stride[0])
    left = _align_down(max(0, cols[0] + field.col_lo), field.stride[1])
    bottom = _align_up(min(height, rows[1] - 1 + field.row_hi + 1), field.stride[0], height)
    right = _align_up(min(width, cols[1] - 1 + field.col_hi + 1), field.stride[1], width)
    return Window(top, bottom, left, right)
