"""The operation table: every graph operation the saliency engine knows, described once.

Each :class:`Op` entry names the modules, functions and tensor methods it covers and says

* ``field`` — how it moves a receptive field (:mod:`fusevis.saliency.trace`), or that it is
  not ``local`` (it mixes the whole image);
* ``window`` — how it runs over just the window of a pixel's cone, with the image border's
  zero padding where the window meets it (:mod:`fusevis.saliency.cone`); None when the
  cone does not run it (the pixel is then computed on a receptive-field crop);
* ``sweep`` — how a backward sweep from a recorded full-image forward sends a gradient
  through it (:mod:`fusevis.saliency.recorded`).

The tracer, the cone and the recorded sweep all find a node's entry with :func:`lookup`
(through :mod:`fusevis.saliency.graph`, which does it once per node), so adding an
operation is one entry in :data:`TABLE`; an element-wise one is one :func:`elementwise`
line::

    elementwise("erf", functions=(torch.erf, torch.special.erf), methods=("erf",)),

Operations that no entry names stop the tracer (the field is then measured) and the cone.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn import functional

from fusevis.saliency.convolution import Convolve, ConvWeights
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
from fusevis.saliency.field import Window, cut

Node = torch.fx.Node
Reach = tuple[tuple[int, int], tuple[int, int]]  # rows/cols before, rows/cols after
NO_REACH: Reach = ((0, 0), (0, 0))
FieldRule = Callable[[Node, "nn.Module | None", list[Extent]], "Extent | None"]


class ConeUnsupported(Exception):
    """The graph holds an operation the cone does not run over a window."""


@dataclass(frozen=True, slots=True)
class Step:
    """One node of a traced graph with what the engine needs to run it."""

    node: Node
    op: Op | None  # None: no entry of the table names this operation
    module: nn.Module | None  # the submodule of a call_module node
    sources: tuple[Node, ...]  # the nodes among its arguments, in order


# -- receptive fields ---------------------------------------------------------------------


def label(node: Node, module: nn.Module | None) -> str:
    """How messages name a node's operation."""
    if module is not None:
        return type(module).__name__
    if node.op == "call_method":
        return f".{node.target}()"
    return getattr(node.target, "__name__", str(node.target))


def elementwise_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent | None:
    """Element-wise: the union of its arguments' fields (None for a function of constants)."""
    if not inputs and node.op == "call_function":
        return None
    return union(inputs)


def no_feature_map(node: Node, module: nn.Module | None, inputs: list[Extent]) -> None:
    """An operation whose result is no feature map (``.size()``, ``.dim()``)."""
    return None


def getattr_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> None:
    """``getattr`` of a constant (of a feature map: not traced)."""
    if inputs:
        raise TraceFailure(f"function {label(node, module)} is not known to the tracer")
    return None


def _dim(node: Node, default: object) -> object:
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else default)


def reduction_field(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent:
    """A reduction: local over the channels, not local over the image axes."""
    if spatial_dims(_dim(node, None)):
        if node.op == "call_method":
            raise NotLocal(f".{node.target}() over the image axes mixes the whole image")
        raise NotLocal("a reduction over the image axes mixes the whole image")
    return union(inputs)


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
            raise TraceFailure("padding='same' is not traced")
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
        raise TraceFailure("Upsample to a fixed size")
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
    if factor is None or mode not in INTERPOLATION_REACH:
        raise TraceFailure("interpolate without a scale factor")
    fraction = Fraction(float(factor)).limit_denominator(64)
    return upsample(union(inputs), (fraction, fraction), INTERPOLATION_REACH[mode])


def pixel_shuffle_field(node: Node, module: nn.PixelShuffle, inputs: list[Extent]) -> Extent:
    """``nn.PixelShuffle``: up-sampling by its factor."""
    factor = Fraction(module.upscale_factor)
    return upsample(union(inputs), (factor, factor), Fraction(1))


def pad_module_field(node: Node, module: nn.Module, inputs: list[Extent]) -> Extent:
    """Padding modules, as a window as wide as both paddings (wider than needed, exact)."""
    left, right, top, bottom = module.padding
    return sliding_window(
        union(inputs), (top + bottom + 1, left + right + 1), (1, 1), (top, left), (1, 1)
    )


def fails(reason: str) -> FieldRule:
    """A field rule for an operation that is known but not traced (its field is measured)."""

    def rule(node: Node, module: nn.Module | None, inputs: list[Extent]) -> Extent:
        raise TraceFailure(reason.format(name=node.target))

    return rule


# -- running over a window (the cone) -----------------------------------------------------


def call_node(node: Node, module: nn.Module | None, value_of: Callable[[Node], object]) -> Any:
    """Run ``node``'s operation with every node among its arguments replaced by ``value_of``."""
    args = torch.fx.node.map_arg(node.args, value_of)
    kwargs = torch.fx.node.map_arg(node.kwargs, value_of)
    if node.op == "call_module":
        return module(*args, **kwargs)
    if node.op == "call_method":
        subject, *rest = args
        return getattr(subject, node.target)(*rest, **kwargs)
    return node.target(*args, **kwargs)


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, without ``nn.Module.__call__``'s overhead when no hooks are set."""
    if module._forward_hooks or module._forward_pre_hooks:
        return module(x)
    return module.forward(x)


Values = dict[Node, tuple[torch.Tensor, "Window | None"]]  # a value, the window it covers


class Elementwise:
    """Runs over the same window as its output: arguments cut to it, then the operation."""

    def reach(self, step: Step) -> Reach:
        """How far beyond its output window the operation reads its input."""
        return NO_REACH

    def forward(
        self,
        step: Step,
        reach: Reach,
        values: Values,
        window: Window,
        shape: tuple[int, int],
        conv: Convolve,
        weights: ConvWeights,
    ) -> torch.Tensor:
        """The operation's output over ``window``."""
        if step.module is not None and len(step.sources) == 1:
            source, have = values[step.sources[0]]
            return _call(step.module, cut(source, have, window))

        def value_of(node: Node) -> torch.Tensor:
            tensor, have = values[node]
            return tensor if have is None else cut(tensor, have, window)  # None: a constant

        return call_node(step.node, step.module, value_of)


class ChannelConcat(Elementwise):
    """Concatenation along the channel axis: element-wise as far as windows go."""

    def reach(self, step: Step) -> Reach:  # noqa: D102
        if _dim(step.node, 0) not in (1, -3):
            raise ConeUnsupported("concatenation along a non-channel axis")
        return NO_REACH


def conv_reach(conv: nn.Conv2d) -> Reach:
    """Rows/cols a stride-1 convolution reads before and after its output window."""
    kernel, padding, dilation = conv.kernel_size, conv.padding, conv.dilation
    before = (padding[0], padding[1])
    after = (dilation[0] * (kernel[0] - 1) - padding[0], dilation[1] * (kernel[1] - 1) - padding[1])
    return before, after


class ValidConvolution:
    """A stride-1 zero-padded ``Conv2d`` as a 'valid' convolution over the needed window.

    Where the window reaches past the image border, the network's zero padding is
    reproduced with an explicit pad.
    """

    def reach(self, step: Step) -> Reach:  # noqa: D102
        conv = step.module
        if (
            not isinstance(conv, nn.Conv2d)
            or conv.stride != (1, 1)
            or isinstance(conv.padding, str)
            or conv.padding_mode != "zeros"
        ):
            raise ConeUnsupported(f"{type(conv).__name__} with stride or non-zero padding mode")
        return conv_reach(conv)

    def forward(  # noqa: D102
        self,
        step: Step,
        reach: Reach,
        values: Values,
        window: Window,
        shape: tuple[int, int],
        conv: Convolve,
        weights: ConvWeights,
    ) -> torch.Tensor:
        module = step.module
        source, have = values[step.sources[0]]
        wanted = window.grow(*reach)
        available = wanted.clip(*shape)
        x = source[
            ...,
            available.top - have.top : available.bottom - have.top,
            available.left - have.left : available.right - have.left,
        ]
        pad = (
            available.left - wanted.left,
            wanted.right - available.right,
            available.top - wanted.top,
            wanted.bottom - available.bottom,
        )
        if any(pad):
            x = functional.pad(x, pad)
        weight = weights.get(step.node.target, module)
        return conv(x, weight, module.bias, 1, 0, module.dilation, module.groups)


ELEMENTWISE_WINDOW = Elementwise()
CONCAT_WINDOW = ChannelConcat()
CONV_WINDOW = ValidConvolution()


# -- backward sweeps from a record --------------------------------------------------------


class Sweep:
    """How a backward sweep sends a node's output gradient (over a window) to its inputs.

    ``keeps_inputs``: the full-image forward must store the node's inputs (before it runs:
    an in-place operation changes them). :meth:`for_node` specialises the sweep to one node
    (or falls back to autograd), :meth:`recorded` sees the node's full-image result.
    """

    keeps_inputs = False

    def for_node(self, step: Step) -> Sweep:
        """The sweep for this node (this one, or autograd where it does not apply)."""
        return self

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:
        """Record what the sweep needs from the node's full-image result."""
        return self

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:
        """Send ``gradient`` (over ``window``) to the node's sources via ``sweeper.accumulate``."""
        raise NotImplementedError


class AutogradSweep(Sweep):
    """Differentiate the node by autograd over the window, from its recorded inputs."""

    keeps_inputs = True

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        record = sweeper.record
        leaves: dict[Node, torch.Tensor] = {}

        def window_of(value: Node) -> torch.Tensor:
            stored = record.values[value]
            if stored.dim() < 2 or tuple(stored.shape[-2:]) != record.shape:
                return stored  # a broadcast constant (a parameter, a per-channel scale)
            crop = stored[..., window.top : window.bottom, window.left : window.right]
            if value.op == "get_attr":
                return crop
            if value not in leaves:
                leaves[value] = crop.detach().requires_grad_(True)
            return leaves[value].clone()  # in-place operations must not touch the leaf

        with torch.enable_grad():
            result = call_node(step.node, step.module, window_of)
            sources = list(leaves)
            if not sources:
                return
            parts = torch.autograd.grad(
                result, [leaves[s] for s in sources], gradient, allow_unused=True
            )
        for source, part in zip(sources, parts, strict=True):
            if part is not None and source in sweeper.demand:
                sweeper.accumulate(source, window, part)


AUTOGRAD = AutogradSweep()


class MaskSweep(Sweep):
    """ReLU: the gradient times the recorded sign pattern (1 where the output is positive).

    Only for the entry's own module types (not subclasses) and functions called without
    ``inplace``.
    """

    def for_node(self, step: Step) -> Sweep:  # noqa: D102
        if step.module is not None:
            return self if type(step.module) in step.op.modules else AUTOGRAD
        return AUTOGRAD if step.node.kwargs.get("inplace", False) else self

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:  # noqa: D102
        # uint8 (multiplying by it is several times faster than masking with a bool),
        # channels-last like the gradients
        memory_format = torch.channels_last if result.dim() == 4 else torch.contiguous_format
        alive = (result > 0).contiguous(memory_format=memory_format).view(torch.uint8)
        recorder.charge(alive.numel())
        recorder.record.masks[step.node] = alive
        return self

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        alive = sweeper.record.masks[step.node]
        alive = alive[..., window.top : window.bottom, window.left : window.right]
        sweeper.accumulate(step.sources[0], window, gradient * alive)


class SumSweep(Sweep):
    """A sum of same-shaped tensors: the gradient goes to every argument unchanged.

    A sum with keyword arguments (``alpha=``) or that broadcasts is differentiated by
    autograd instead.
    """

    def for_node(self, step: Step) -> Sweep:  # noqa: D102
        return AUTOGRAD if step.node.kwargs else self

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:  # noqa: D102
        env = recorder.env
        same = all(
            isinstance(a, Node)
            and isinstance(env.get(a), torch.Tensor)
            and env[a].shape == result.shape
            for a in step.node.args
        )
        if same:
            return self
        recorder.keep_inputs(step.node)
        return AUTOGRAD

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        for source in step.node.args:  # x + x sends the gradient to x twice
            if isinstance(source, Node):
                sweeper.accumulate(source, window, gradient)


class ConcatSweep(Sweep):
    """Channel concatenation: each argument gets its channels of the gradient."""

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        node = step.node
        start = 0
        channels = sweeper.record.channels
        for source in node.args[0] if node.args else node.kwargs["tensors"]:
            width = channels[source]
            sweeper.accumulate(source, window, gradient[:, start : start + width])
            start += width


class ConvSweep(Sweep):
    """A convolution sends its gradient back by the adjoint ('full') convolution.

    It is computed as an ordinary convolution with the flipped, transposed kernel in
    channels-last layout (faster than ``conv_transpose2d``); gradient reaching the zero
    padding beyond the image border is dropped.
    """

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        module = step.module
        wanted = window.grow(*sweeper.reach[step.node])
        dilation, kernel = module.dilation, module.kernel_size
        back = sweeper.conv(
            gradient,
            sweeper.weights.get(step.node.target, module, adjoint=True),
            None,
            1,
            (dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)),
            dilation,
            module.groups,
        )
        inside = wanted.clip(*sweeper.shape)
        sweeper.accumulate(step.sources[0], inside, cut(back, wanted, inside))


MASK = MaskSweep()
SUM = SumSweep()
CONCAT = ConcatSweep()
CONV = ConvSweep()


# -- the table ----------------------------------------------------------------------------


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
        ``field(node, module, extents) -> Extent | None``: how it moves the receptive field
        of its arguments; may raise ``TraceFailure`` or ``NotLocal``.
    window : Elementwise, ValidConvolution or None
        How the cone runs it over a window; None: not by the cone.
    sweep : Sweep or None
        How the recorded backward sweep passes a gradient through it (None: only with the
        window being None).
    """

    name: str
    modules: tuple[type, ...] = ()
    functions: tuple[Callable, ...] = ()
    methods: tuple[str, ...] = ()
    local: bool = True
    field: FieldRule = elementwise_field
    window: Elementwise | ValidConvolution | None = ELEMENTWISE_WINDOW
    sweep: Sweep | None = AUTOGRAD


def elementwise(
    name: str,
    *,
    modules: tuple[type, ...] = (),
    functions: tuple[Callable, ...] = (),
    methods: tuple[str, ...] = (),
    sweep: Sweep = AUTOGRAD,
) -> Op:
    """An element-wise operation.

    The field passes through; the cone runs it over its output's window; the sweep
    differentiates it there by autograd unless ``sweep`` says otherwise.
    """
    return Op(name, modules, functions, methods, sweep=sweep)


def not_local(
    name: str, *, modules: tuple[type, ...] = (), functions: tuple[Callable, ...] = ()
) -> Op:
    """An operation that mixes the whole image."""
    return Op(name, modules, functions, local=False, window=None, sweep=None)


def measured(
    name: str,
    reason: str,
    *,
    functions: tuple[Callable, ...] = (),
    methods: tuple[str, ...] = (),
) -> Op:
    """Known, but not traced: the field is measured instead (``reason`` says why)."""
    return Op(name, (), functions, methods, field=fails(reason), window=None, sweep=None)


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
        sweep=SUM,
    ),
    elementwise(
        "activation",
        modules=(
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
        ),
        functions=(
            torch.tanh,
            torch.sigmoid,
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
            functional.prelu,
            functional.selu,
            functional.hardswish,
            functional.hardsigmoid,
        ),
        methods=("sigmoid", "tanh", "relu_"),
    ),
    elementwise(
        "per-channel affine",
        modules=(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
        functions=(functional.batch_norm,),
    ),
    elementwise(
        "identity",
        modules=(nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout),
        functions=(functional.dropout,),
        methods=("contiguous", "float", "double", "half", "to", "type_as", "clone", "detach"),
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
            torch.mul,
            torch.div,
            torch.maximum,
            torch.minimum,
            torch.max,
            torch.min,
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
        ),
        methods=(
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
            "square",
            "maximum",
            "minimum",
            "__add__",
            "__mul__",
            "clamp_",
            "mul_",
            "add_",
            "sub_",
            "div_",
            "sign",
            "reciprocal",
        ),
    ),
    # channels
    Op(
        "channel concatenation",
        functions=(torch.cat, torch.concat),
        field=concat_field,
        window=CONCAT_WINDOW,
        sweep=CONCAT,
    ),
    measured("stack", "concatenation along a non-channel axis", functions=(torch.stack,)),
    Op(
        "reduction",
        functions=(torch.mean, torch.sum, torch.amax, torch.softmax, functional.softmax),
        methods=(
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
        ),
        field=reduction_field,
        window=None,
        sweep=None,
    ),
    # sliding windows and resampling
    Op(
        "convolution",
        modules=(nn.Conv2d,),
        field=sliding_window_field,
        window=CONV_WINDOW,
        sweep=CONV,
    ),
    Op(
        "pooling",
        modules=(nn.MaxPool2d, nn.AvgPool2d),
        field=sliding_window_field,
        window=None,
        sweep=None,
    ),
    Op(
        "transposed convolution",
        modules=(nn.ConvTranspose2d,),
        field=transposed_field,
        window=None,
        sweep=None,
    ),
    Op("upsample", modules=(nn.Upsample,), field=upsample_module_field, window=None, sweep=None),
    Op(
        "interpolate",
        functions=(functional.interpolate,),
        field=interpolate_field,
        window=None,
        sweep=None,
    ),
    Op(
        "pixel shuffle",
        modules=(nn.PixelShuffle,),
        field=pixel_shuffle_field,
        window=None,
        sweep=None,
    ),
    Op(
        "padding",
        modules=(nn.ZeroPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d),
        field=pad_module_field,
        window=None,
        sweep=None,
    ),
    # not local
    not_local(
        "global",
        modules=(
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
        ),
        functions=(
            functional.adaptive_avg_pool2d,
            functional.adaptive_max_pool2d,
            functional.linear,
            functional.layer_norm,
            functional.group_norm,
            functional.instance_norm,
            functional.scaled_dot_product_attention,
            torch.flatten,
        ),
    ),
    # no feature map, or measured
    Op("attribute", functions=(getattr,), field=getattr_field, window=None, sweep=None),
    Op("shape", methods=("size", "dim", "numel"), field=no_feature_map, window=None, sweep=None),
    measured(
        "functional window",
        "functional convolution or pooling is measured, not traced",
        functions=(functional.conv2d, functional.max_pool2d, functional.avg_pool2d),
    ),
    measured("indexing", "indexing is measured, not traced", functions=(operator.getitem,)),
    measured(
        "reshaping",
        ".{name}() may mix pixels; measured instead",
        methods=("view", "reshape", "flatten", "permute", "transpose", "matmul", "bmm"),
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
