"""How one feature map depends on the network inputs, and how operations move that.

Every feature map of a traced network carries, per network input, the offsets of the input
pixels that one of its feature pixels can depend on, in the input's coordinates: feature
pixel j depends on input pixels ``[scale·j + lo, scale·j + hi]`` per axis. The functions
here are the rules the operation table (:mod:`fusevis.saliency.ops`) applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

Bounds = tuple[Fraction, Fraction, Fraction, Fraction]  # row lo, row hi, col lo, col hi

INTERPOLATION_REACH = {
    "nearest": Fraction(1),
    "bilinear": Fraction(3, 2),
    "bicubic": Fraction(5, 2),
}


class TraceFailure(Exception):
    """The network's structure could not be traced; measure its field instead."""


class NotLocal(Exception):
    """The network mixes information across the whole image."""


@dataclass
class Extent:
    """Dependence of one feature map on the network inputs."""

    scale: tuple[Fraction, Fraction]
    per_input: dict[int, Bounds]
    max_scale: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))
    fractional: bool = False

    @classmethod
    def of_input(cls, index: int) -> Extent:
        """The extent of network input ``index`` itself: every pixel depends on itself."""
        zero = Fraction(0)
        return cls((Fraction(1), Fraction(1)), {index: (zero, zero, zero, zero)})


def pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """``(v, v)`` for an int, the first and last entries of a tuple otherwise."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def union(extents: list[Extent]) -> Extent:
    """The extent of an element-wise combination of feature maps of one resolution."""
    if not extents:
        raise TraceFailure("operation without tensor inputs")
    scale = extents[0].scale
    for other in extents[1:]:
        if other.scale != scale:
            raise TraceFailure("operation combines feature maps of different resolutions")
    merged: dict[int, Bounds] = {}
    for extent in extents:
        for index, bounds in extent.per_input.items():
            if index in merged:
                old = merged[index]
                merged[index] = (
                    min(old[0], bounds[0]),
                    max(old[1], bounds[1]),
                    min(old[2], bounds[2]),
                    max(old[3], bounds[3]),
                )
            else:
                merged[index] = bounds
    max_scale = (max(e.max_scale[0] for e in extents), max(e.max_scale[1] for e in extents))
    return Extent(scale, merged, max_scale, any(e.fractional for e in extents))


def sliding_window(
    extent: Extent,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Extent:
    """Apply a sliding window (convolution or pooling)."""
    new: dict[int, Bounds] = {}
    sr, sc = extent.scale
    for index, (rlo, rhi, clo, chi) in extent.per_input.items():
        new[index] = (
            rlo - sr * padding[0],
            rhi + sr * (dilation[0] * (kernel[0] - 1) - padding[0]),
            clo - sc * padding[1],
            chi + sc * (dilation[1] * (kernel[1] - 1) - padding[1]),
        )
    scale = (sr * stride[0], sc * stride[1])
    max_scale = (max(extent.max_scale[0], scale[0]), max(extent.max_scale[1], scale[1]))
    return Extent(scale, new, max_scale, extent.fractional)


def upsample(extent: Extent, factor: tuple[Fraction, Fraction], reach: Fraction) -> Extent:
    """Up-sample by ``factor``: feature j/f, ± ``reach`` feature pixels of interpolation."""
    new: dict[int, Bounds] = {}
    sr, sc = extent.scale
    for index, (rlo, rhi, clo, chi) in extent.per_input.items():
        new[index] = (rlo - sr * reach, rhi + sr * reach, clo - sc * reach, chi + sc * reach)
    scale = (sr / factor[0], sc / factor[1])
    return Extent(scale, new, extent.max_scale, True)


def transposed_window(
    extent: Extent,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Extent:
    """Apply a transposed convolution."""
    new: dict[int, Bounds] = {}
    sr, sc = extent.scale
    for index, (rlo, rhi, clo, chi) in extent.per_input.items():
        new[index] = (
            rlo + sr * Fraction(padding[0] - dilation[0] * (kernel[0] - 1), stride[0]) - sr,
            rhi + sr * Fraction(padding[0], stride[0]) + sr,
            clo + sc * Fraction(padding[1] - dilation[1] * (kernel[1] - 1), stride[1]) - sc,
            chi + sc * Fraction(padding[1], stride[1]) + sc,
        )
    return Extent((sr / stride[0], sc / stride[1]), new, extent.max_scale, True)


def spatial_dims(dims: object) -> bool:
    """Whether a reduction over ``dims`` (None: all) touches the image axes."""
    if dims is None:
        return True
    values = dims if isinstance(dims, (list, tuple)) else [dims]
    return any(not isinstance(d, int) or d in (2, 3, -1, -2) for d in values)
