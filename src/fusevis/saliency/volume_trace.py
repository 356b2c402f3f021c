"""Receptive fields of N-dimensional networks (volumes: Conv3d and friends), traced.

The size-free tracer of :mod:`fusevis.saliency.trace` (offsets per axis, moved by each
operation's rule) on any number of spatial axes: every node of the model's ``torch.fx``
graph (:func:`fusevis.saliency.graph.graph_of`) carries, per network input, the offsets of
the input voxels that one of its feature voxels can depend on, in the input's coordinates
(feature voxel j depends on input voxels ``[scale·j + lo, scale·j + hi]`` per axis).

Known: convolutions, transposed convolutions, max and average pooling, BatchNorm (eval
mode), interpolation by a scale factor (nearest, linear, bilinear, trilinear, bicubic),
padding modules and ``F.pad`` (they shift the field: voxel j reads voxel j − before),
element-wise activations and arithmetic, concatenation along channels and reductions over
channels. Operations that mix the whole volume (adaptive pooling, instance/group/layer
normalisation, BatchNorm in training mode, circular padding, reductions over spatial axes)
raise :class:`NotLocal`; anything else :class:`TraceFailure`, naming the operation and the
model's source line.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.fx
from torch import nn
from torch.nn import functional

from fusevis.saliency.boxes import GridField
from fusevis.saliency.extent import NotLocal, TraceFailure
from fusevis.saliency.graph import graph_of, propagate, where
from fusevis.saliency.ops import ACTIVATION_FUNCTIONS, ACTIVATION_MODULES

Node = torch.fx.Node
Span = tuple[Fraction, Fraction]

__all__ = ["NotLocal", "TraceFailure", "trace_grid_fields"]

#: Interpolation reach per mode, in source voxels (as the 2-D tracer's table).
REACH = {
    "nearest": Fraction(1),
    "linear": Fraction(3, 2),
    "bilinear": Fraction(3, 2),
    "trilinear": Fraction(3, 2),
    "bicubic": Fraction(5, 2),
}


@dataclass
class GridExtent:
    """Dependence of one feature map on the network inputs, per spatial axis."""

    scale: tuple[Fraction, ...]
    per_input: dict[int, tuple[Span, ...]]
    max_scale: tuple[Fraction, ...]
    fractional: bool = False

    @classmethod
    def of_input(cls, index: int, dims: int) -> GridExtent:
        """Network input ``index``: every voxel depends on itself."""
        one, zero = Fraction(1), Fraction(0)
        return cls((one,) * dims, {index: ((zero, zero),) * dims}, (one,) * dims)

    def moved(self, move: Callable[[int, Fraction, Span], Span]) -> dict[int, tuple[Span, ...]]:
        """Every input's spans with ``move(axis, scale, span)`` applied."""
        return {
            index: tuple(move(a, self.scale[a], span) for a, span in enumerate(spans))
            for index, spans in self.per_input.items()
        }


def _union(extents: list[GridExtent]) -> GridExtent:
    scale = extents[0].scale
    if any(e.scale != scale for e in extents[1:]):
        raise TraceFailure("an operation combines feature maps of different resolutions")
    merged: dict[int, tuple[Span, ...]] = {}
    for extent in extents:
        for index, spans in extent.per_input.items():
            old = merged.get(index)
            merged[index] = (
                spans
                if old is None
                else tuple(
                    (min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(old, spans, strict=True)
                )
            )
    dims = len(scale)
    max_scale = tuple(max(e.max_scale[a] for e in extents) for a in range(dims))
    return GridExtent(scale, merged, max_scale, any(e.fractional for e in extents))


def _per_axis(value: object, dims: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    values = tuple(int(v) for v in value)  # type: ignore[union-attr]
    if len(values) == 1:
        return values * dims
    if len(values) != dims:
        raise TraceFailure(f"{what} {values} does not have {dims} axes")
    return values


def _sliding(
    extent: GridExtent, kernel: object, stride: object, padding: object, dilation: object
) -> GridExtent:
    dims = len(extent.scale)
    kernel = _per_axis(kernel, dims, "kernel")
    stride = _per_axis(stride, dims, "stride")
    dilation = _per_axis(dilation, dims, "dilation")
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    elif padding == "valid":
        padding = (0,) * dims
    padding = _per_axis(padding, dims, "padding")

    def move(a: int, s: Fraction, span: Span) -> Span:
        return (
            span[0] - s * padding[a],
            span[1] + s * (dilation[a] * (kernel[a] - 1) - padding[a]),
        )

    scale = tuple(s * st for s, st in zip(extent.scale, stride, strict=True))
    max_scale = tuple(max(m, s) for m, s in zip(extent.max_scale, scale, strict=True))
    return GridExtent(scale, extent.moved(move), max_scale, extent.fractional)


def _module_window(node: Node, module: nn.Module, extent: GridExtent) -> GridExtent:
    stride = module.stride if module.stride is not None else module.kernel_size
    return _sliding(
        extent, module.kernel_size, stride, module.padding, getattr(module, "dilation", 1)
    )


def _transposed(node: Node, module: nn.Module, extent: GridExtent) -> GridExtent:
    dims = len(extent.scale)
    kernel = _per_axis(module.kernel_size, dims, "kernel")
    stride = _per_axis(module.stride, dims, "stride")
    padding = _per_axis(module.padding, dims, "padding")
    dilation = _per_axis(module.dilation, dims, "dilation")

    def move(a: int, s: Fraction, span: Span) -> Span:
        return (
            span[0] + s * Fraction(padding[a] - dilation[a] * (kernel[a] - 1), stride[a]) - s,
            span[1] + s * Fraction(padding[a], stride[a]) + s,
        )

    scale = tuple(s / st for s, st in zip(extent.scale, stride, strict=True))
    return GridExtent(scale, extent.moved(move), extent.max_scale, True)


def _resample(extent: GridExtent, factor: object, mode: str, align_corners: object) -> GridExtent:
    dims = len(extent.scale)
    if align_corners:
        raise TraceFailure("interpolation with align_corners=True depends on the volume's size")
    if mode not in REACH:
        raise TraceFailure(f"interpolation mode {mode!r} is not known to the tracer")
    factors = (factor,) * dims if isinstance(factor, (int, float)) else tuple(factor)  # type: ignore[arg-type]
    if len(factors) != dims:
        raise TraceFailure(f"scale factor {factor} does not have {dims} axes")
    fractions = tuple(Fraction(float(f)).limit_denominator(64) for f in factors)
    reach = REACH[mode]

    def move(a: int, s: Fraction, span: Span) -> Span:
        return (span[0] - s * reach, span[1] + s * reach)

    scale = tuple(s / f for s, f in zip(extent.scale, fractions, strict=True))
    return GridExtent(scale, extent.moved(move), extent.max_scale, True)


def _upsample_module(node: Node, module: nn.Upsample, extent: GridExtent) -> GridExtent:
    if module.scale_factor is None:
        raise TraceFailure("Upsample to a fixed size depends on the volume's size")
    return _resample(extent, module.scale_factor, module.mode, module.align_corners)


def _interpolate(node: Node, module: None, extent: GridExtent) -> GridExtent:
    names = ("input", "size", "scale_factor", "mode", "align_corners")
    bound = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
    if bound.get("size") is not None or bound.get("scale_factor") is None:
        raise TraceFailure("interpolation to a size depends on the volume's size")
    factor = bound["scale_factor"]
    if isinstance(factor, Node) or (
        isinstance(factor, (tuple, list)) and any(isinstance(f, Node) for f in factor)
    ):
        raise TraceFailure("interpolation by a computed scale factor")
    return _resample(extent, factor, bound.get("mode", "nearest"), bound.get("align_corners"))


def _shift(extent: GridExtent, pads: object, mode: str) -> GridExtent:
    if mode == "circular":
        raise NotLocal("circular padding joins opposite borders of the volume")
    if not isinstance(pads, (tuple, list)) or any(isinstance(p, Node) for p in pads):
        raise TraceFailure("padding by computed amounts")
    dims = len(extent.scale)
    pads = tuple(int(p) for p in pads)
    before = [0] * dims
    for k in range(min(dims, len(pads) // 2)):
        before[dims - 1 - k] = pads[2 * k]

    def move(a: int, s: Fraction, span: Span) -> Span:
        return (span[0] - s * before[a], span[1] - s * before[a])

    return GridExtent(extent.scale, extent.moved(move), extent.max_scale, extent.fractional)


def _pad_module(node: Node, module: nn.Module, extent: GridExtent) -> GridExtent:
    mode = "circular" if "Circular" in type(module).__name__ else "constant"
    return _shift(extent, module.padding, mode)


def _pad_function(node: Node, module: None, extent: GridExtent) -> GridExtent:
    names = ("input", "pad", "mode", "value")
    bound = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
    return _shift(extent, bound.get("pad"), str(bound.get("mode", "constant")))


def _same(node: Node, module: nn.Module | None, extent: GridExtent) -> GridExtent:
    return extent


def _batch_norm(node: Node, module: nn.Module, extent: GridExtent) -> GridExtent:
    if module.training or not module.track_running_stats:
        raise NotLocal(
            f"{type(module).__name__} in training mode normalises over the whole volume "
            "(call model.eval())"
        )
    return extent


def _channel_dim(node: Node, dims: int, default: object = None) -> bool:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else default)
    return dim in (1, -(dims + 1))


def _concat(node: Node, module: None, extent: GridExtent) -> GridExtent:
    if not _channel_dim(node, len(extent.scale), 0):
        raise TraceFailure("concatenation along an axis other than the channels")
    return extent


def _reduction(node: Node, module: None, extent: GridExtent) -> GridExtent:
    dims = len(extent.scale)
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if isinstance(dim, Node):
        raise TraceFailure("a reduction over computed axes")
    if dim in (1, -(dims + 1)) or (isinstance(dim, (tuple, list)) and set(dim) <= {1}):
        return extent
    raise NotLocal("a reduction over the volume's axes mixes the whole volume")


def _binary_max(node: Node, module: None, extent: GridExtent) -> GridExtent:
    if len(node.args) > 1 and isinstance(node.args[1], Node) and "dim" not in node.kwargs:
        return extent  # torch.max(a, b): element-wise
    return _reduction(node, module, extent)


def _getitem(node: Node, module: None, extent: GridExtent) -> GridExtent:
    """``x[:, channels]``: indexing that keeps every spatial axis whole."""
    index = node.args[1] if len(node.args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    if (
        items
        and items[0] == slice(None)
        and all(item == slice(None) or item is Ellipsis for item in items[2:])
    ):
        return extent
    raise TraceFailure("indexing along the volume's axes")


Rule = Callable[[Node, object, GridExtent], GridExtent]


def _all_dims(*names: str) -> tuple[type, ...]:
    """The modules ``nn.<name>1d``, ``nn.<name>2d`` and ``nn.<name>3d`` of each name."""
    return tuple(getattr(nn, f"{name}{dims}d") for name in names for dims in (1, 2, 3))


ELEMENTWISE_MODULES: tuple[type, ...] = (
    nn.ReLU,
    *ACTIVATION_MODULES,
    nn.Identity,
    nn.Dropout,
    *_all_dims("Dropout"),
    nn.AlphaDropout,
)

MODULE_RULES: dict[type, Rule] = {
    **{m: _same for m in ELEMENTWISE_MODULES},
    **{m: _batch_norm for m in _all_dims("BatchNorm")},
    **{m: _module_window for m in _all_dims("Conv", "MaxPool", "AvgPool")},
    **{m: _transposed for m in _all_dims("ConvTranspose")},
    nn.Upsample: _upsample_module,
    **{
        m: _pad_module
        for m in _all_dims(
            "ConstantPad", "ZeroPad", "ReplicationPad", "ReflectionPad", "CircularPad"
        )
    },
}

_NOT_LOCAL_MODULES: tuple[type, ...] = (
    *_all_dims("AdaptiveAvgPool", "AdaptiveMaxPool", "InstanceNorm"),
    nn.GroupNorm,
    nn.LayerNorm,
    nn.MultiheadAttention,
)

FUNCTION_RULES: dict[Callable, Rule] = {
    **{
        f: _same
        for f in (
            operator.add,
            operator.sub,
            operator.mul,
            operator.truediv,
            operator.neg,
            torch.add,
            torch.sub,
            torch.mul,
            torch.div,
            torch.neg,
            torch.abs,
            torch.exp,
            torch.relu,
            torch.sigmoid,
            torch.tanh,
            torch.maximum,
            torch.minimum,
            torch.clamp,
            torch.where,
            functional.relu,
            *ACTIVATION_FUNCTIONS,
        )
    },
    operator.getitem: _getitem,
    torch.cat: _concat,
    torch.concat: _concat,
    torch.max: _binary_max,
    torch.min: _binary_max,
    torch.mean: _reduction,
    torch.sum: _reduction,
    functional.interpolate: _interpolate,
    functional.pad: _pad_function,
}

METHOD_RULES: dict[str, Rule] = {
    **{
        name: _same
        for name in (
            "relu",
            "sigmoid",
            "tanh",
            "clamp",
            "clamp_min",
            "clamp_max",
            "abs",
            "exp",
            "neg",
            "add",
            "sub",
            "mul",
            "div",
            "contiguous",
            "float",
            "double",
            "to",
        )
    },
    "max": _binary_max,
    "min": _binary_max,
    "mean": _reduction,
    "sum": _reduction,
}


def _label(node: Node, module: nn.Module | None) -> str:
    if node.op == "call_module":
        return f"module {type(module).__name__} ({node.target})"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)}"
    return f"method .{node.target}()"


def _rule(node: Node, module: nn.Module | None) -> Rule | None:
    if node.op == "call_module":
        for cls in type(module).__mro__:
            if cls in _NOT_LOCAL_MODULES:
                raise NotLocal(f"{_label(node, module)} mixes the whole volume")
            if cls in MODULE_RULES:
                return MODULE_RULES[cls]
        return None
    if node.op == "call_function":
        try:
            return FUNCTION_RULES.get(node.target)
        except TypeError:
            return None
    return METHOD_RULES.get(str(node.target))


def trace_grid_fields(model: nn.Module, num_inputs: int, dims: int = 3) -> list[GridField]:
    """Derive the receptive field of every input of an N-dimensional network.

    Parameters
    ----------
    model : torch.nn.Module
        The network, called as ``model(x1, ..., xN)`` on (B, C, *spatial) tensors.
    num_inputs : int
        How many inputs it takes.
    dims : int
        Spatial axes (3 for volumes).

    Returns
    -------
    list of GridField
        One per input (an input the output does not depend on gets the field of offsets 0).

    Raises
    ------
    TraceFailure
        If ``torch.fx`` cannot trace the model or meets an operation the table does not
        know (the message names it and the model's source line).
    NotLocal
        If the model mixes information across the whole volume.
    """
    graph = graph_of(model, num_inputs)
    modules = dict(graph.module.named_modules())

    def through(node: Node, found: list[GridExtent]) -> GridExtent | None:
        if not found:
            return None  # computed from weights or constants alone
        module = modules.get(node.target) if node.op == "call_module" else None
        at = where(node)
        suffix = f" at {at}" if at else ""
        try:
            rule = _rule(node, module)
        except NotLocal as problem:
            raise NotLocal(f"{problem}{suffix}") from None
        if rule is None:
            raise TraceFailure(f"{_label(node, module)} is not known to the tracer{suffix}")
        try:
            return rule(node, module, _union(found))
        except (TraceFailure, NotLocal) as problem:
            raise type(problem)(f"{_label(node, module)}: {problem}{suffix}") from None

    output = propagate(graph, num_inputs, lambda index: GridExtent.of_input(index, dims), through)
    if any(s != 1 for s in output.scale):
        raise TraceFailure("the output's resolution differs from the inputs'")
    stride = tuple(math.ceil(s) for s in output.max_scale)
    margin = max(stride) if output.fractional else 0
    zero = (Fraction(0), Fraction(0))
    fields = []
    for index in range(num_inputs):
        spans = output.per_input.get(index, (zero,) * dims)
        fields.append(
            GridField(
                tuple(math.floor(lo) - margin for lo, _ in spans),
                tuple(math.ceil(hi) + margin for _, hi in spans),
                stride,
                "traced",
            )
        )
    return fields
