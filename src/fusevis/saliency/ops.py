"""The operation table: every graph operation the saliency engine knows, described once.

Each :class:`Op` entry names the modules, functions and tensor methods it covers and says

* ``window`` — its rule (:mod:`fusevis.saliency.windows`): whether and how it is local at a
  given input size, which window of its source a window of its output reads, and how it
  runs over that window. The tracer reads exact receptive fields from these rules
  (:mod:`fusevis.saliency.trace`), the cone runs a pixel with them
  (:mod:`fusevis.saliency.cone`); None where neither can;
* ``sweep`` — how a backward sweep from a recorded full-image forward sends a gradient
  through it (:mod:`fusevis.saliency.recorded`): the adjoint convolution, the ReLU mask,
  autograd over the window from stored inputs, or (for linear operations) from nothing;
* ``local`` — False for operations that mix the whole image;
* ``field`` — the size-free rule of the tracer used when no example inputs are given
  (:mod:`fusevis.saliency.extent`).

The tracer, the cone and the recorded sweep all find a node's entry with :func:`lookup`
(through :mod:`fusevis.saliency.graph`, which does it once per node), so adding an
operation is one entry in :data:`TABLE`; an element-wise one is one :func:`elementwise`
line::

    elementwise("erf", functions=(torch.erf, torch.special.erf), methods=("erf",)),

Operations that no entry names stop the tracer (the field is then measured) and the cone,
with a message that names the operation and the model's source line.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.fx
from torch import nn
from torch.nn import functional

from fusevis.saliency import windows
from fusevis.saliency.extent import (
    INTERPOLATION_REACH,
    Extent,
    NotLocal,
    TraceFailure,
    pair,
    sliding_window,
    spatial_dims,
    transposed_window,
    union,
    upsample,
)
from fusevis.saliency.sweeps import (
    AUTOGRAD,
    CONCAT,
    CONV,
    ITEM,
    LAST_AXIS,
    LINEAR,
    MASK,
    PADDING,
    PERMUTE,
    POINTWISE,
    REDUCE,
    SPLIT,
    SUM,
    Sweep,
)
from fusevis.saliency.windows import Rule, call_node

Node = torch.fx.Node
FieldRule = Callable[[Node, "nn.Module | None", list[Extent]], "Extent | None"]

__all__ = ["TABLE", "Op", "Step", "call_node", "elementwise", "lookup", "register", "unregister"]


class ConeUnsupported(TraceFailure):
    """The graph holds an operation the cone does not run over a window."""


@dataclass(frozen=True, slots=True)
class Step:
    """One node of a traced graph with what the engine needs to run it."""

    node: Node
    op: Op | None  # None: no entry of the table names this operation
    module: nn.Module | None  # the submodule of a call_module node
    sources: tuple[Node, ...]  # the nodes among its arguments, in order


def label(node: Node, module: nn.Module | None) -> str:
    """How messages name a node's operation."""
    if module is not None:
        return type(module).__name__
    if node.op == "call_method":
        return f".{node.target}()"
    return getattr(node.target, "__name__", str(node.target))


# -- receptive fields without example inputs (extent arithmetic) --------------------------


def elementwise_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent | None:
    """Element-wise: the union of its arguments' fields (None for a function of constants)."""
    if not inputs and node.op == "call_function":
        return None
    return union(inputs)


def no_feature_map(node: Node, module: nn.Module | None, inputs: list[Extent]) -> None:
    """An operation whose result is no feature map (``.size()``, ``.dim()``)."""
    return None


def getattr_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent | None:
    """``getattr``: of a constant nothing; ``.values`` of a channel maximum its field."""
    if not inputs:
        return None
    if len(node.args) > 1 and node.args[1] in ("values", "indices", "data"):
        return union(inputs)
    if len(node.args) > 1 and node.args[1] == "shape":
        return None
    raise TraceFailure(f"function {label(node, module)} is not known to the tracer")


def _dim(node: Node, default: object) -> object:
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else default)


def reduction_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent:
    """A reduction: local over the channels, not local over the image axes."""
    dim = getattr(module, "dim", 1) if module is not None else _dim(node, None)
    if isinstance(dim, Node):
        raise TraceFailure("a reduction over a computed dim is traced with example inputs only")
    if spatial_dims(dim):
        if node.op == "call_method":
            raise NotLocal(f".{node.target}() over the image axes mixes the whole image")
        raise NotLocal("a reduction over the image axes mixes the whole image")
    return union(inputs)


def maxmin_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent:
    """``max``/``min``: element-wise between maps, a reduction with a dim."""
    other = node.args[1] if len(node.args) > 1 else None
    if isinstance(other, Node) and "dim" not in node.kwargs:
        return union(inputs)
    return reduction_field(node, module, inputs)


def concat_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent:
    """Concatenation along the channel axis: the union of the fields."""
    if _dim(node, 0) not in (1, -3):
        raise TraceFailure("concatenation along a non-channel axis")
    return union(inputs)


def sliding_window_field(node: Node, module: nn.Module, inputs: list[Extent]) -> Extent:
    """Convolution or pooling module: kernel, stride, padding and dilation."""
    kernel = pair(module.kernel_size)
    stride = pair(module.stride if module.stride is not None else module.kernel_size)
    padding = module.padding
    if isinstance(padding, str):
        if padding != "valid":
            dilation = pair(getattr(module, "dilation", 1))
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
        else:
            padding = (0, 0)
    dilation = pair(getattr(module, "dilation", 1))
    return sliding_window(union(inputs), kernel, stride, pair(padding), dilation)


def transposed_field(node: Node, module: nn.ConvTranspose2d, inputs: list[Extent]) -> Extent:
    """Transposed convolution module."""
    return transposed_window(
        union(inputs),
        pair(module.kernel_size),
        pair(module.stride),
        pair(module.padding),
        pair(module.dilation),
    )


def upsample_module_field(node: Node, module: nn.Upsample, inputs: list[Extent]) -> Extent:
    """``nn.Upsample`` by a scale factor."""
    if module.scale_factor is None:
        raise TraceFailure("Upsample to a fixed size is traced with example inputs only")
    factor = (
        pair(module.scale_factor)
        if not isinstance(module.scale_factor, float)
        else (module.scale_factor, module.scale_factor)
    )
    if module.mode not in INTERPOLATION_REACH:
        raise TraceFailure(f"Upsample mode {module.mode}")
    fraction = (
        Fraction(factor[0]).limit_denominator(64),
        Fraction(factor[1]).limit_denominator(64),
    )
    return upsample(union(inputs), fraction, INTERPOLATION_REACH[module.mode])


def interpolate_field(node: Node, module: None, inputs: list[Extent]) -> Extent:
    """``functional.interpolate`` by a scale factor."""
    factor = node.kwargs.get("scale_factor")
    mode = node.kwargs.get("mode", "nearest")
    if factor is None or isinstance(factor, (Node, tuple, list)) or mode not in INTERPOLATION_REACH:
        raise TraceFailure("interpolate to a size is traced with example inputs only")
    fraction = Fraction(float(factor)).limit_denominator(64)
    return upsample(union(inputs), (fraction, fraction), INTERPOLATION_REACH[mode])


def pixel_shuffle_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent:
    """``PixelShuffle``: up-sampling by its factor."""
    if module is None:
        raise TraceFailure("pixel_shuffle is traced with example inputs only")
    factor = Fraction(module.upscale_factor)
    return upsample(union(inputs), (factor, factor), Fraction(1))


def pad_module_field(node: Node, module: nn.Module, inputs: list[Extent]) -> Extent:
    """Padding modules and ``F.pad``: the map shifted (row j reads row j − top)."""
    pads = module.padding if module is not None else node.args[1] if len(node.args) > 1 else None
    if not isinstance(pads, (tuple, list)) or any(isinstance(p, Node) for p in pads):
        raise TraceFailure("computed padding is traced with example inputs only")
    left, right, top, bottom = (*pads, 0, 0) if len(pads) == 2 else pads
    extent = union(inputs)
    sr, sc = extent.scale
    shifted = {
        index: (rlo - sr * top, rhi - sr * top, clo - sc * left, chi - sc * left)
        for index, (rlo, rhi, clo, chi) in extent.per_input.items()
    }
    return Extent(extent.scale, shifted, extent.max_scale, extent.fractional)


def fails(reason: str) -> FieldRule:
    """A field rule for an operation known but not traced this way (``reason`` says why)."""

    def rule(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent:
        raise TraceFailure(reason.format(name=node.target))

    return rule


WITH_INPUTS = fails("{name} is traced with example inputs only")


# -- the table ----------------------------------------------------------------------------

ELEMENTWISE_RULE = windows.ELEMENTWISE
CONCAT_RULE = windows.Concat()


@dataclass(frozen=True)
class Op:
    """One operation (or a family that behaves alike), and how each part of the engine runs it.

    Attributes
    ----------
    name : str
        For messages and the docs.
    modules, functions, methods : tuple
        What it covers: module classes (subclasses included), functions (``torch.relu``,
        ``operator.add``) and tensor method names (``"relu"``).
    local : bool
        False for operations that mix the whole image (the model takes the full path).
    field : callable
        The size-free tracer's rule, ``field(node, module, extents) -> Extent | None``.
    window : Rule or None
        Its window rule (:mod:`fusevis.saliency.windows`); None: neither the exact tracer
        nor the cone runs it.
    sweep : Sweep or None
        How the recorded backward sweep passes a gradient through it.
    reason : str
        Why it has no window rule (for messages).
    """

    name: str
    modules: tuple[type, ...] = ()
    functions: tuple[Callable, ...] = ()
    methods: tuple[str, ...] = ()
    local: bool = True
    field: FieldRule = elementwise_field
    window: Rule | None = ELEMENTWISE_RULE
    sweep: Sweep | None = AUTOGRAD
    reason: str = ""


def elementwise(
    name: str,
    *,
    modules: tuple[type, ...] = (),
    functions: tuple[Callable, ...] = (),
    methods: tuple[str, ...] = (),
    sweep: Sweep = POINTWISE,
) -> Op:
    """An element-wise operation.

    The field passes through; the cone runs it over its output's window; the sweep
    multiplies by its derivative maps unless ``sweep`` says otherwise.
    """
    return Op(name, modules, functions, methods, sweep=sweep)


def not_local(
    name: str,
    *,
    modules: tuple[type, ...] = (),
    functions: tuple[Callable, ...] = (),
    methods: tuple[str, ...] = (),
) -> Op:
    """An operation that mixes the whole image."""
    return Op(name, modules, functions, methods, local=False, window=None, sweep=None)


def measured(
    name: str,
    reason: str,
    *,
    functions: tuple[Callable, ...] = (),
    methods: tuple[str, ...] = (),
) -> Op:
    """Known, but not traced: the field is measured instead (``reason`` says why)."""
    return Op(
        name, (), functions, methods, field=fails(reason), window=None, sweep=None, reason=reason
    )


def _present(*names: str, within: object = functional) -> tuple:
    """The attributes of ``within`` that this PyTorch has."""
    return tuple(getattr(within, n) for n in names if hasattr(within, n))


#: Element-wise activations, as modules and as functions (the 3-D tracer knows them too).
ACTIVATION_MODULES: tuple[type, ...] = (
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
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
    nn.Softshrink,
    nn.Hardshrink,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Tanhshrink,
    nn.Threshold,
    nn.LogSigmoid,
)
ACTIVATION_FUNCTIONS: tuple[Callable, ...] = (
    torch.tanh,
    torch.sigmoid,
    torch.special.expit,
    functional.leaky_relu,
    functional.elu,
    functional.celu,
    functional.gelu,
    functional.silu,
    functional.sigmoid,
    functional.tanh,
    functional.softplus,
    functional.softsign,
    functional.hardtanh,
    functional.relu6,
    functional.mish,
    functional.prelu,
    functional.rrelu,
    functional.selu,
    functional.hardswish,
    functional.hardsigmoid,
    functional.logsigmoid,
    functional.threshold,
    functional.tanhshrink,
    functional.softshrink,
    functional.hardshrink,
)


TABLE: list[Op] = [
    # element-wise
    elementwise(
        "relu",
        modules=(nn.ReLU,),
        functions=(torch.relu, functional.relu),
        methods=("relu",),
        sweep=MASK,
    ),
    elementwise(
        "sum",
        functions=(operator.add, operator.iadd, torch.add),
        methods=("add", "__add__"),
        sweep=SUM,
    ),
    elementwise(
        "activation",
        modules=ACTIVATION_MODULES,
        functions=ACTIVATION_FUNCTIONS,
        methods=("sigmoid", "tanh", "relu_", "sigmoid_", "tanh_"),
    ),
    elementwise(
        "per-channel affine",
        modules=(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LocalResponseNorm),
        functions=(functional.batch_norm, functional.local_response_norm),
    ),
    elementwise(
        "identity",
        modules=(nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout),
        functions=(functional.dropout, functional.dropout2d, torch.clone),
        methods=(
            "contiguous",
            "float",
            "double",
            "half",
            "to",
            "type_as",
            "clone",
            "detach",
            "type",
        ),  # fmt: skip
    ),
    elementwise(
        "arithmetic",
        functions=(
            operator.sub,
            operator.mul,
            operator.truediv,
            operator.neg,
            operator.pow,
            operator.abs,
            operator.imul,
            operator.isub,
            operator.itruediv,
            torch.sub,
            torch.subtract,
            torch.mul,
            torch.multiply,
            torch.div,
            torch.divide,
            torch.true_divide,
            torch.maximum,
            torch.minimum,
            torch.fmax,
            torch.fmin,
            torch.exp,
            torch.log,
            torch.log2,
            torch.log10,
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
            torch.lerp,
            torch.addcmul,
            torch.addcdiv,
            torch.zeros_like,
            torch.ones_like,
            torch.full_like,
            torch.nan_to_num,
        ),
        methods=(
            "clamp",
            "clip",
            "abs",
            "exp",
            "log",
            "sqrt",
            "rsqrt",
            "pow",
            "mul",
            "sub",
            "div",
            "neg",
            "square",
            "maximum",
            "minimum",
            "__mul__",
            "__sub__",
            "__truediv__",
            "__rsub__",
            "__radd__",
            "__rmul__",
            "clamp_",
            "clamp_min",
            "clamp_max",
            "mul_",
            "add_",
            "sub_",
            "div_",
            "sign",
            "reciprocal",
            "lerp",
            "expand_as",
            "zero_",
        ),
    ),
    Op(
        "max and min",
        functions=(torch.max, torch.min),
        methods=("max", "min"),
        field=maxmin_field,
        window=windows.MaxMin(),
    ),
    # channels
    Op(
        "channel concatenation",
        functions=(torch.cat, torch.concat, torch.concatenate),
        field=concat_field,
        window=CONCAT_RULE,
        sweep=CONCAT,
    ),
    Op(
        "stack",
        functions=(torch.stack,),
        field=fails("stacking is traced with example inputs only"),
        window=windows.Concat(stack=True),
        sweep=LINEAR,
    ),
    Op(
        "reduction over channels",
        functions=(
            torch.mean,
            torch.sum,
            torch.amax,
            torch.amin,
            torch.softmax,
            torch.log_softmax,
            torch.logsumexp,
            torch.norm,
            torch.std,
            torch.var,
            torch.prod,
            torch.cumsum,
            functional.softmax,
            functional.log_softmax,
            functional.softmin,
        ),
        modules=(nn.Softmax, nn.Softmax2d, nn.LogSoftmax, nn.Softmin),
        methods=(
            "mean",
            "sum",
            "amax",
            "amin",
            "softmax",
            "log_softmax",
            "norm",
            "std",
            "var",
            "logsumexp",
            "prod",
            "cumsum",
        ),
        field=reduction_field,
        window=windows.Reduce(),
        sweep=REDUCE,
    ),
    Op(
        "normalisation over channels",
        functions=(functional.normalize,),
        field=reduction_field,
        window=windows.Reduce(1, "dim", 1),
    ),
    Op(
        "normalisation over trailing axes",
        modules=(nn.LayerNorm, *_present("RMSNorm", within=nn), nn.Linear, nn.Bilinear),
        functions=(functional.layer_norm, functional.linear, *_present("rms_norm")),
        field=fails("LayerNorm and Linear are traced with example inputs only"),
        window=windows.LAST_AXIS,
        sweep=LAST_AXIS,
    ),
    # reshaping that keeps the image axes
    Op(
        "reshape",
        modules=(nn.Flatten, nn.Unflatten),
        functions=(torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze),
        methods=(
            "view",
            "reshape",
            "flatten",
            "unflatten",
            "squeeze",
            "unsqueeze",
            "view_as",
            "reshape_as",
        ),  # fmt: skip
        field=WITH_INPUTS,
        window=windows.Reshape(),
        sweep=LINEAR,
    ),
    Op(
        "permute",
        functions=(torch.permute, torch.transpose, torch.swapaxes, torch.movedim),
        methods=("permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis"),
        field=WITH_INPUTS,
        window=windows.Permute(),
        sweep=PERMUTE,
    ),
    Op(
        "repeat",
        functions=(torch.tile, torch.repeat_interleave),
        methods=("repeat", "tile", "repeat_interleave"),
        field=WITH_INPUTS,
        window=windows.Repeat(),
        sweep=LINEAR,
    ),
    Op(
        "expand",
        functions=(torch.broadcast_to,),
        methods=("expand", "broadcast_to"),
        field=WITH_INPUTS,
        window=windows.Expand(),
        sweep=LINEAR,
    ),
    Op(
        "split",
        functions=(torch.chunk, torch.split, torch.unbind, torch.tensor_split),
        methods=("chunk", "split", "unbind", "tensor_split"),
        field=WITH_INPUTS,
        window=windows.Split(),
        sweep=SPLIT,
    ),
    Op(
        "indexing",
        functions=(operator.getitem,),
        field=WITH_INPUTS,
        window=windows.Select(),
        sweep=ITEM,
    ),
    # sliding windows and resampling
    Op(
        "convolution",
        modules=(nn.Conv2d,),
        functions=(functional.conv2d,),
        field=sliding_window_field,
        window=windows.Convolution(),
        sweep=CONV,
    ),
    Op(
        "max pooling",
        modules=(nn.MaxPool2d,),
        functions=(functional.max_pool2d,),
        field=sliding_window_field,
        window=windows.Pooling(),
    ),
    Op(
        "average pooling",
        modules=(nn.AvgPool2d,),
        functions=(functional.avg_pool2d,),
        field=sliding_window_field,
        window=windows.Pooling(),
        sweep=LINEAR,
    ),
    Op(
        "transposed convolution",
        modules=(nn.ConvTranspose2d,),
        functions=(functional.conv_transpose2d,),
        field=transposed_field,
        window=windows.Transposed(),
        sweep=LINEAR,
    ),
    Op(
        "upsample",
        modules=(nn.Upsample,),
        field=upsample_module_field,
        window=windows.Resampling(),
        sweep=LINEAR,
    ),
    Op(
        "interpolate",
        functions=(
            functional.interpolate,
            *_present("upsample", "upsample_nearest", "upsample_bilinear"),
        ),  # fmt: skip
        field=interpolate_field,
        window=windows.Resampling(),
        sweep=LINEAR,
    ),
    Op(
        "pixel shuffle",
        modules=(nn.PixelShuffle,),
        functions=tuple({functional.pixel_shuffle: 0, torch.pixel_shuffle: 0}),
        field=pixel_shuffle_field,
        window=windows.Shuffle(up=True),
        sweep=LINEAR,
    ),
    Op(
        "pixel unshuffle",
        modules=(nn.PixelUnshuffle,),
        functions=tuple({functional.pixel_unshuffle: 0, torch.pixel_unshuffle: 0}),
        field=WITH_INPUTS,
        window=windows.Shuffle(up=False),
        sweep=LINEAR,
    ),
    Op(
        "padding",
        modules=tuple(windows._PAD_MODES),
        functions=(functional.pad,),
        field=pad_module_field,
        window=windows.Padding(),
        sweep=PADDING,
    ),
    # not local
    not_local(
        "global",
        modules=(
            nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d,
            nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d,
            nn.MultiheadAttention,
            nn.GroupNorm,
            nn.InstanceNorm1d,
            nn.InstanceNorm2d,
            nn.Transformer,
            nn.TransformerEncoderLayer,
        ),
        functions=(
            functional.adaptive_avg_pool2d,
            functional.adaptive_max_pool2d,
            functional.group_norm,
            functional.instance_norm,
            functional.scaled_dot_product_attention,
        ),
    ),
    # no feature map, or measured
    Op(
        "attribute",
        functions=(getattr,),
        field=getattr_field,
        window=windows.Attribute(),
        sweep=ITEM,
    ),  # fmt: skip
    Op("shape", methods=("size", "dim", "numel"), field=no_feature_map, window=None, sweep=None),
    measured(
        "matrix product",
        "matrix products are measured, not traced",
        functions=(torch.matmul, torch.bmm, torch.einsum, operator.matmul),
        methods=("matmul", "bmm"),
    ),
]

_MODULES: dict[type, Op] = {}
_FUNCTIONS: dict[Callable, Op] = {}
_METHODS: dict[str, Op] = {}


def register(op: Op) -> Op:
    """Add ``op`` to the table (models traced afterwards see it); returns it.

    Raises
    ------
    ValueError
        If another entry already names one of its modules, functions or methods.
    """
    for index, names in (
        (_MODULES, op.modules),
        (_FUNCTIONS, op.functions),
        (_METHODS, op.methods),
    ):
        for key in names:
            if key in index and index[key] is not op:
                raise ValueError(f"{key!r} is already in the table ({index[key].name})")
    for index, names in (
        (_MODULES, op.modules),
        (_FUNCTIONS, op.functions),
        (_METHODS, op.methods),
    ):
        for key in names:
            index[key] = op
    if op not in TABLE:
        TABLE.append(op)
    return op


def unregister(op: Op) -> None:
    """Remove ``op`` from the table (models traced before keep what they found)."""
    for index in (_MODULES, _FUNCTIONS, _METHODS):
        for key in [k for k, v in index.items() if v is op]:
            del index[key]
    if op in TABLE:
        TABLE.remove(op)


for _op in TABLE:
    register(_op)


def lookup(node: Node, module: nn.Module | None = None) -> Op | None:
    """The table's entry for a graph node (None when no entry names its operation).

    A module is looked up by its class, then by its base classes in method resolution
    order; functions by identity; tensor methods by name.
    """
    if node.op == "call_module":
        for cls in type(module).__mro__:
            op = _MODULES.get(cls)
            if op is not None:
                return op
        return None
    if node.op == "call_function":
        try:
            return _FUNCTIONS.get(node.target)
        except TypeError:  # an unhashable callable
            return None
    if node.op == "call_method":
        return _METHODS.get(node.target)
    return None
