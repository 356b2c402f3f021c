"""Computing one fused pixel over its dependency cone only.

A receptive-field crop still computes, at every layer, activations that never reach the
fused pixel. For networks built from stride-1 convolutions and element-wise operations this
module runs the ``torch.fx`` graph layer by layer over just the window each layer must
provide: convolutions become 'valid' convolutions over exactly the needed input window,
skip branches are cropped to match, and where the window meets the image border the real
network's zero padding is reproduced with an explicit pad. Gradients through this
computation are exactly those of the full network.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn
from torch.nn import functional

from fusevis.saliency.trace import POINTWISE_FUNCTIONS, POINTWISE_METHODS, POINTWISE_MODULES


class ConeUnsupported(Exception):
    """The graph holds an operation the cone executor does not handle."""


@dataclass(frozen=True)
class Span:
    """Rows [top, bottom) and columns [left, right) in image coordinates."""

    top: int
    bottom: int
    left: int
    right: int

    def grow(self, before: tuple[int, int], after: tuple[int, int]) -> Span:
        """Extend by ``before`` (rows, cols) above/left and ``after`` below/right."""
        return Span(
            self.top - before[0],
            self.bottom + after[0],
            self.left - before[1],
            self.right + after[1],
        )

    def shift(self, rows: int, cols: int) -> Span:
        """Move by (rows, cols)."""
        return Span(self.top + rows, self.bottom + rows, self.left + cols, self.right + cols)

    def clip(self, height: int, width: int) -> Span:
        """Intersect with the image."""
        return Span(
            max(0, self.top), min(height, self.bottom), max(0, self.left), min(width, self.right)
        )

    def union(self, other: Span | None) -> Span:
        """Smallest span containing both."""
        if other is None:
            return self
        return Span(
            min(self.top, other.top),
            max(self.bottom, other.bottom),
            min(self.left, other.left),
            max(self.right, other.right),
        )


def _conv_reach(conv: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int]]:
    kernel = conv.kernel_size
    padding = conv.padding
    dilation = conv.dilation
    before = (padding[0], padding[1])
    after = (dilation[0] * (kernel[0] - 1) - padding[0], dilation[1] * (kernel[1] - 1) - padding[1])
    return before, after


def _check_conv(conv: nn.Module) -> None:
    if (
        not isinstance(conv, nn.Conv2d)
        or conv.stride != (1, 1)
        or isinstance(conv.padding, str)
        or conv.padding_mode != "zeros"
    ):
        raise ConeUnsupported(f"{type(conv).__name__} with stride or non-zero padding mode")


ORIGIN = (0, 0)


class ConeExecutor:
    """Runs a traced stride-1 convolutional network over one pixel's cone.

    Raises :class:`ConeUnsupported` at construction when the graph holds anything other than
    stride-1 zero-padded ``Conv2d`` modules, element-wise operations and channel
    concatenation.
    """

    def __init__(self, model: nn.Module, num_inputs: int) -> None:
        try:
            self.graph_module = torch.fx.symbolic_trace(model)
        except Exception as error:  # noqa: BLE001
            raise ConeUnsupported(str(error)) from None
        self.nodes = list(self.graph_module.graph.nodes)
        self.sources = {node: tuple(node.all_input_nodes) for node in self.nodes}
        outputs = [n for n in self.nodes if n.op == "output"]
        if len(outputs) != 1:
            raise ConeUnsupported("a graph without exactly one output")
        self.output = outputs[0]
        self._template: dict[torch.fx.Node, Span] | None = None
        self._template_extent = Span(0, 0, 0, 0)
        self.num_inputs = num_inputs
        self.modules = dict(self.graph_module.named_modules())
        self._weights: dict[tuple[str, bool], tuple[tuple, torch.Tensor]] = {}
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if len(placeholders) != num_inputs:
            raise ConeUnsupported("placeholder count differs from the number of inputs")
        for node in self.nodes:
            self._reach(node)  # validates every node once

    def _reach(self, node: torch.fx.Node) -> tuple[tuple[int, int], tuple[int, int]]:
        zero = ((0, 0), (0, 0))
        if node.op in ("placeholder", "output", "get_attr"):
            return zero
        if node.op == "call_module":
            module = self.modules[node.target]
            if isinstance(module, nn.Conv2d):
                _check_conv(module)
                return _conv_reach(module)
            if isinstance(module, POINTWISE_MODULES):
                return zero
            raise ConeUnsupported(f"module {type(module).__name__}")
        if node.op == "call_function":
            if node.target in (torch.cat, torch.concat):
                dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
                if dim not in (1, -3):
                    raise ConeUnsupported("concatenation along a non-channel axis")
                return zero
            if node.target in POINTWISE_FUNCTIONS:
                return zero
            raise ConeUnsupported(f"function {getattr(node.target, '__name__', node.target)}")
        if node.op == "call_method" and node.target in POINTWISE_METHODS:
            return zero
        raise ConeUnsupported(f"{node.op} {node.target}")

    def plan(self, pixel: tuple[int, int], shape: tuple[int, int]) -> dict[torch.fx.Node, Span]:
        """The span every node must provide for ``pixel`` (already clipped to the image).

        Away from the border no span is clipped, so the plan is the plan of pixel (0, 0) on
        an unbounded image, shifted: that template is made once and reused.
        """
        if self._template is None:
            self._template = self._plan(ORIGIN, None)
            spans = self._template.values()
            self._template_extent = Span(
                min(s.top for s in spans),
                max(s.bottom for s in spans),
                min(s.left for s in spans),
                max(s.right for s in spans),
            )
        row, col = pixel
        extent = self._template_extent
        if (
            row + extent.top >= 0
            and col + extent.left >= 0
            and row + extent.bottom <= shape[0]
            and col + extent.right <= shape[1]
        ):
            return {node: span.shift(row, col) for node, span in self._template.items()}
        return self._plan(pixel, shape)

    def _plan(
        self, pixel: tuple[int, int], shape: tuple[int, int] | None
    ) -> dict[torch.fx.Node, Span]:
        demand: dict[torch.fx.Node, Span] = {}
        target = Span(pixel[0], pixel[0] + 1, pixel[1], pixel[1] + 1)
        for arg in self.sources[self.output]:
            demand[arg] = target
        for node in reversed(self.nodes):
            if node not in demand or node.op == "output":
                continue
            before, after = self._reach(node)
            needed = demand[node].grow(before, after)
            if shape is not None:
                needed = needed.clip(*shape)
            for arg in self.sources[node]:
                demand[arg] = needed.union(demand.get(arg))
        return demand

    def run(
        self, inputs: tuple[torch.Tensor, ...], pixel: tuple[int, int]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], list[Span]]:
        """Compute the fused pixel over its cone.

        Returns the (B, C) output at the pixel, the input crops (leaves requiring grad) and
        their spans in image coordinates.
        """
        shape = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
        demand = self.plan(pixel, shape)
        values: dict[torch.fx.Node, tuple[torch.Tensor, Span]] = {}
        leaves: list[torch.Tensor] = []
        spans: list[Span] = []
        placeholder_index = 0
        for node in self.nodes:
            if node.op == "placeholder":
                span = demand.get(node, Span(pixel[0], pixel[0] + 1, pixel[1], pixel[1] + 1))
                x = inputs[placeholder_index][..., span.top : span.bottom, span.left : span.right]
                leaf = x.detach().requires_grad_(True)
                leaves.append(leaf)
                spans.append(span)
                values[node] = (leaf, span)
                placeholder_index += 1
            elif node.op == "output":
                ((result, span),) = [values[a] for a in self.sources[node]]
                return result[..., pixel[0] - span.top, pixel[1] - span.left], tuple(leaves), spans
            elif node not in demand:
                continue
            else:
                values[node] = (self._execute(node, values, demand[node], shape), demand[node])
        raise ConeUnsupported("graph without output")

    def _weight(self, name: str, conv: nn.Conv2d, transposed: bool = False) -> torch.Tensor:
        """The convolution's weight in channels-last layout (copied once per weight version).

        Channels-last weights make every activation of the cone channels-last, which
        oneDNN convolves about 15 % faster on these small windows; the weight is detached
        (only input gradients are wanted) and re-copied whenever it changes.
        ``transposed=True`` gives the weight of the adjoint convolution instead — input and
        output channels swapped within each group, kernel flipped — so that a 'full'
        convolution with it sends an output gradient back to the input.
        """
        weight = conv.weight
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cached = self._weights.get((name, transposed))
        if cached is None or cached[0] != key:
            value = weight.detach()
            if transposed:
                out_channels, in_per_group, *kernel = value.shape
                groups = conv.groups
                value = (
                    value.reshape(groups, out_channels // groups, in_per_group, *kernel)
                    .transpose(1, 2)
                    .reshape(groups * in_per_group, out_channels // groups, *kernel)
                    .flip(-2, -1)
                )
            cached = (key, value.contiguous(memory_format=torch.channels_last))
            self._weights[(name, transposed)] = cached
        return cached[1]

    def _execute(
        self, node: torch.fx.Node, values: dict, span: Span, shape: tuple[int, int]
    ) -> torch.Tensor:
        if node.op == "call_module":
            module = self.modules[node.target]
            ((source, source_span),) = [values[a] for a in self.sources[node]]
            if isinstance(module, nn.Conv2d):
                before, after = _conv_reach(module)
                wanted = span.grow(before, after)
                available = wanted.clip(*shape)
                x = source[
                    ...,
                    available.top - source_span.top : available.bottom - source_span.top,
                    available.left - source_span.left : available.right - source_span.left,
                ]
                pad = (
                    available.left - wanted.left,
                    wanted.right - available.right,
                    available.top - wanted.top,
                    wanted.bottom - available.bottom,
                )
                if any(pad):
                    x = functional.pad(x, pad)
                return functional.conv2d(
                    x, self._weight(node.target, module), module.bias, 1, 0, module.dilation,
                    module.groups,
                )  # fmt: skip
            return _call(module, _cut(source, source_span, span))

        def cut(value: torch.fx.Node) -> torch.Tensor:
            tensor, value_span = values[value]
            return _cut(tensor, value_span, span)

        return call_node(node, self.modules, cut)


def call_node(
    node: torch.fx.Node,
    modules: dict[str, nn.Module],
    value_of: Callable[[torch.fx.Node], object],
) -> object:
    """Run ``node``'s operation with every node among its arguments replaced by ``value_of``."""
    args = torch.fx.node.map_arg(node.args, value_of)
    kwargs = torch.fx.node.map_arg(node.kwargs, value_of)
    if node.op == "call_module":
        return modules[node.target](*args, **kwargs)
    if node.op == "call_method":
        subject, *rest = args
        return getattr(subject, node.target)(*rest, **kwargs)
    if node.target is operator.getitem:
        raise ConeUnsupported("getitem")
    return node.target(*args, **kwargs)


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, without ``nn.Module.__call__``'s overhead when no hooks are set."""
    if module._forward_hooks or module._forward_pre_hooks:
        return module(x)
    return module.forward(x)


def _cut(tensor: torch.Tensor, have: Span, want: Span) -> torch.Tensor:
    if have == want:
        return tensor
    return tensor[
        ...,
        want.top - have.top : want.bottom - have.top,
        want.left - have.left : want.right - have.left,
    ]
