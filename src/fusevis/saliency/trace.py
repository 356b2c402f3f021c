"""Deriving a network's receptive field from its structure with ``torch.fx``.

Every traced node carries, per network input, the offsets of the input pixels that one of
its feature pixels can depend on, in the input's coordinates:
feature pixel j depends on input pixels ``[scale·j + lo, scale·j + hi]`` per axis.
Convolutions, pooling, dilation, stride, transposed convolutions and up-sampling move these
bounds; concatenation, additions and element-wise operations take their union. Operations
that mix the whole image (adaptive/global pooling, spatial means, linear layers, attention,
instance/group/layer normalisation) mark the network as not local. Anything the tracer does
not know raises :class:`TraceFailure`, and the caller measures the field instead.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.fx
from torch import nn
from torch.nn import functional

from fusevis.saliency.field import ReceptiveField


class TraceFailure(Exception):
    """The network's structure could not be traced; measure its field instead."""


class NotLocal(Exception):
    """The network mixes information across the whole image."""


Bounds = tuple[Fraction, Fraction, Fraction, Fraction]  # row lo, row hi, col lo, col hi


@dataclass
class Extent:
    """Dependence of one feature map on the network inputs."""

    scale: tuple[Fraction, Fraction]
    per_input: dict[int, Bounds]
    max_scale: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))
    fractional: bool = False


POINTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Tanhshrink,
    nn.Threshold,
    nn.LogSigmoid,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
)
NONLOCAL_MODULES = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.Linear,
    nn.MultiheadAttention,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.LocalResponseNorm,
    nn.Transformer,
    nn.TransformerEncoderLayer,
    nn.Flatten,
    nn.Unflatten,
)
POINTWISE_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    operator.pow,
    operator.abs,
    operator.iadd,
    operator.imul,
    operator.isub,
    operator.itruediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
    torch.max,
    torch.min,
    torch.tanh,
    torch.sigmoid,
    torch.relu,
    torch.exp,
    torch.log,
    torch.sqrt,
    torch.abs,
    torch.neg,
    torch.pow,
    torch.clamp,
    torch.clip,
    torch.where,
    torch.square,
    torch.sin,
    torch.cos,
    torch.log1p,
    torch.expm1,
    torch.sign,
    torch.reciprocal,
    torch.rsqrt,
    functional.relu,
    functional.leaky_relu,
    functional.elu,
    functional.gelu,
    functional.silu,
    functional.sigmoid,
    functional.tanh,
    functional.softplus,
    functional.hardtanh,
    functional.relu6,
    functional.mish,
    functional.dropout,
    functional.batch_norm,
    functional.prelu,
    functional.selu,
    functional.hardswish,
    functional.hardsigmoid,
}
POINTWISE_METHODS = {
    "relu",
    "sigmoid",
    "tanh",
    "clamp",
    "clip",
    "abs",
    "exp",
    "log",
    "sqrt",
    "pow",
    "mul",
    "add",
    "sub",
    "div",
    "neg",
    "contiguous",
    "float",
    "double",
    "half",
    "to",
    "type_as",
    "clone",
    "detach",
    "square",
    "maximum",
    "minimum",
    "__add__",
    "__mul__",
    "relu_",
    "clamp_",
    "mul_",
    "add_",
    "sub_",
    "div_",
    "sign",
    "reciprocal",
}
NONLOCAL_FUNCTIONS = {
    functional.adaptive_avg_pool2d,
    functional.adaptive_max_pool2d,
    functional.linear,
    functional.layer_norm,
    functional.group_norm,
    functional.instance_norm,
    functional.scaled_dot_product_attention,
    torch.flatten,
}
REDUCTIONS = {
    "mean",
    "sum",
    "amax",
    "amin",
    "max",
    "min",
    "softmax",
    "log_softmax",
    "norm",
    "std",
    "var",
    "logsumexp",
    "prod",
}


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _union(extents: list[Extent]) -> Extent:
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


def _window(
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


def _upsample(extent: Extent, factor: tuple[Fraction, Fraction], reach: Fraction) -> Extent:
    """Up-sample by ``factor``: feature j/f, ± ``reach`` feature pixels of interpolation."""
    new: dict[int, Bounds] = {}
    sr, sc = extent.scale
    for index, (rlo, rhi, clo, chi) in extent.per_input.items():
        new[index] = (rlo - sr * reach, rhi + sr * reach, clo - sc * reach, chi + sc * reach)
    scale = (sr / factor[0], sc / factor[1])
    return Extent(scale, new, extent.max_scale, True)


def _conv_transpose(extent: Extent, module: nn.ConvTranspose2d) -> Extent:
    kernel, stride = _pair(module.kernel_size), _pair(module.stride)
    padding, dilation = _pair(module.padding), _pair(module.dilation)
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


def _tensor_args(args: tuple, extents: dict[torch.fx.Node, Extent | None]) -> list[Extent]:
    found: list[Extent] = []

    def visit(value: object) -> None:
        if isinstance(value, torch.fx.Node):
            extent = extents.get(value)
            if extent is not None:
                found.append(extent)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit(args)
    return found


def _spatial_dims(dims: object) -> bool:
    if dims is None:
        return True
    values = dims if isinstance(dims, (list, tuple)) else [dims]
    return any(not isinstance(d, int) or d in (2, 3, -1, -2) for d in values)


def _module_extent(module: nn.Module, inputs: list[Extent]) -> Extent:
    if isinstance(module, NONLOCAL_MODULES):
        raise NotLocal(f"{type(module).__name__} mixes the whole image")
    if isinstance(module, POINTWISE_MODULES):
        return _union(inputs)
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        padding = module.padding
        if isinstance(padding, str):
            if padding == "valid":
                padding = (0, 0)
            else:
                raise TraceFailure("padding='same' is not traced")
        dilation = _pair(getattr(module, "dilation", 1))
        return _window(_union(inputs), kernel, stride, _pair(padding), dilation)
    if isinstance(module, nn.ConvTranspose2d):
        return _conv_transpose(_union(inputs), module)
    if isinstance(module, nn.Upsample):
        if module.scale_factor is None:
            raise TraceFailure("Upsample to a fixed size")
        factor = (
            _pair(module.scale_factor)
            if not isinstance(module.scale_factor, float)
            else (module.scale_factor, module.scale_factor)
        )
        reach = {"nearest": Fraction(1), "bilinear": Fraction(3, 2), "bicubic": Fraction(5, 2)}
        if module.mode not in reach:
            raise TraceFailure(f"Upsample mode {module.mode}")
        frac = (
            Fraction(factor[0]).limit_denominator(64),
            Fraction(factor[1]).limit_denominator(64),
        )
        return _upsample(_union(inputs), frac, reach[module.mode])
    if isinstance(module, nn.PixelShuffle):
        r = module.upscale_factor
        return _upsample(_union(inputs), (Fraction(r), Fraction(r)), Fraction(1))
    if isinstance(module, nn.ZeroPad2d | nn.ReflectionPad2d | nn.ReplicationPad2d):
        left, right, top, bottom = module.padding
        return _window(
            _union(inputs), (top + bottom + 1, left + right + 1), (1, 1), (top, left), (1, 1)
        )
    raise TraceFailure(f"module {type(module).__name__} is not known to the tracer")


def _function_extent(node: torch.fx.Node, inputs: list[Extent]) -> Extent | None:
    target = node.target
    if target in NONLOCAL_FUNCTIONS:
        raise NotLocal(f"{getattr(target, '__name__', target)} mixes the whole image")
    if target in (torch.cat, torch.concat, torch.stack):
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if target is torch.stack or dim not in (1, -3):
            raise TraceFailure("concatenation along a non-channel axis")
        return _union(inputs)
    if target in (torch.mean, torch.sum, torch.amax, torch.softmax, functional.softmax):
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if _spatial_dims(dims):
            raise NotLocal("a reduction over the image axes mixes the whole image")
        return _union(inputs)
    if target in POINTWISE_FUNCTIONS:
        return _union(inputs) if inputs else None
    if target in (functional.conv2d, functional.max_pool2d, functional.avg_pool2d):
        raise TraceFailure("functional convolution or pooling is measured, not traced")
    if target is functional.interpolate:
        factor = node.kwargs.get("scale_factor")
        mode = node.kwargs.get("mode", "nearest")
        if factor is None or mode not in ("nearest", "bilinear", "bicubic"):
            raise TraceFailure("interpolate without a scale factor")
        reach = {"nearest": Fraction(1), "bilinear": Fraction(3, 2), "bicubic": Fraction(5, 2)}
        f = Fraction(float(factor)).limit_denominator(64)
        return _upsample(_union(inputs), (f, f), reach[mode])
    if target is getattr and not inputs:
        return None
    if target is operator.getitem:
        raise TraceFailure("indexing is measured, not traced")
    name = getattr(target, "__name__", str(target))
    raise TraceFailure(f"function {name} is not known to the tracer")


def _method_extent(node: torch.fx.Node, inputs: list[Extent]) -> Extent | None:
    name = str(node.target)
    if name in ("size", "dim", "numel"):
        return None
    if name in REDUCTIONS:
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if _spatial_dims(dims):
            raise NotLocal(f".{name}() over the image axes mixes the whole image")
        return _union(inputs)
    if name in POINTWISE_METHODS:
        return _union(inputs)
    if name in ("view", "reshape", "flatten", "permute", "transpose", "matmul", "bmm"):
        raise TraceFailure(f".{name}() may mix pixels; measured instead")
    raise TraceFailure(f"method .{name}() is not known to the tracer")


def trace_receptive_fields(model: nn.Module, num_inputs: int) -> list[ReceptiveField]:
    """Derive the receptive field of every input of ``model`` from its structure.

    Returns
    -------
    list of ReceptiveField
        One per input (an input the output does not depend on gets an empty field of
        offsets 0).

    Raises
    ------
    TraceFailure
        If ``torch.fx`` cannot trace the model or meets an operation it does not know.
    NotLocal
        If the model mixes information across the whole image.
    """
    try:
        graph_module = torch.fx.symbolic_trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure means "measure instead"
        raise TraceFailure(f"torch.fx cannot trace the model: {error}") from None
    extents: dict[torch.fx.Node, Extent | None] = {}
    placeholders = 0
    output: Extent | None = None
    zero = Fraction(0)
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            if placeholders < num_inputs:
                extents[node] = Extent(
                    (Fraction(1), Fraction(1)), {placeholders: (zero, zero, zero, zero)}
                )
            else:
                extents[node] = None
            placeholders += 1
            continue
        inputs = _tensor_args((node.args, node.kwargs), extents)
        if node.op == "get_attr":
            extents[node] = None
        elif node.op == "call_module":
            extents[node] = _module_extent(graph_module.get_submodule(node.target), inputs)
        elif node.op == "call_function":
            extents[node] = _function_extent(node, inputs)
        elif node.op == "call_method":
            extents[node] = _method_extent(node, inputs)
        elif node.op == "output":
            found = _tensor_args(node.args, extents)
            if len(found) != 1:
                raise TraceFailure("the model must return one tensor")
            output = found[0]
    if placeholders < num_inputs:
        raise TraceFailure(f"the model takes {placeholders} inputs, not {num_inputs}")
    if output is None:
        raise TraceFailure("no output found")
    if output.scale != (1, 1):
        raise TraceFailure("the output's resolution differs from the inputs'")
    stride = (math.ceil(output.max_scale[0]), math.ceil(output.max_scale[1]))
    margin = max(stride) if output.fractional else 0
    fields = []
    for index in range(num_inputs):
        rlo, rhi, clo, chi = output.per_input.get(index, (zero, zero, zero, zero))
        fields.append(
            ReceptiveField(
                math.floor(rlo) - margin,
                math.ceil(rhi) + margin,
                math.floor(clo) - margin,
                math.ceil(chi) + margin,
                stride,
                "traced",
            )
        )
    return fields
