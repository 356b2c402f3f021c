"""Jacobian rows from one recorded full-image forward: each pixel costs a backward sweep only.

:meth:`ConeExecutor.run` computes a pixel's cone forward and autograd walks it back: two
passes of about equal cost. The forward activations do not depend on the pixel, so one
forward over the whole image can record what a backward pass needs — nothing for
convolutions, sums and concatenations, the sign pattern of every ReLU, and the inputs of
other element-wise operations — after which a pixel costs only the reverse sweep over its
cone: every node's gradient over the span the cone's plan gives it, convolutions turned
back by the adjoint ('full') convolution, ReLUs masked, other element-wise operations
differentiated by autograd over the span. The full-image forward is the reference's own
forward, so the result is the full-image gradient, exactly.
"""

from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn import functional

from fusevis.saliency.cone import ConeExecutor, Span, _conv_reach, _cut, call_node
from fusevis.saliency.tensors import OutputChannel, select_output

RELU_FUNCTIONS = {torch.relu, functional.relu}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
CAT_FUNCTIONS = {torch.cat, torch.concat}
DEFAULT_RECORD_LIMIT = 2 * 1024**3  # bytes a record may hold before rows fall back to the cone


@dataclass
class ForwardRecord:
    """What the backward sweeps over one set of inputs need from the full-image forward."""

    inputs: list[weakref.ref]  # the tensors (or their bases) it was made from, not kept alive
    layouts: tuple[tuple, ...]  # per input: address, shape, strides and version counter
    shape: tuple[int, int]
    output: torch.Tensor
    kinds: dict[torch.fx.Node, str] = field(default_factory=dict)
    masks: dict[torch.fx.Node, torch.Tensor] = field(default_factory=dict)
    values: dict[torch.fx.Node, torch.Tensor] = field(default_factory=dict)
    channels: dict[torch.fx.Node, int] = field(default_factory=dict)
    seeds: dict[str, torch.Tensor] = field(default_factory=dict)
    nbytes: int = 0

    def made_from(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        """Whether ``inputs`` are the tensors of this record, unmodified since.

        The same tensor objects (or views of the same bases: reshaped inputs are new views
        on every call) with the same layout and version counter, which every in-place
        change bumps; a freed tensor whose memory was reused does not match.
        """
        return (
            len(inputs) == len(self.inputs)
            and all(ref() is _owner(x) for ref, x in zip(self.inputs, inputs, strict=True))
            and tuple(_layout_of(x) for x in inputs) == self.layouts
        )

    @classmethod
    def empty(cls, inputs: tuple[torch.Tensor, ...]) -> ForwardRecord:
        """A record for ``inputs`` with nothing recorded yet."""
        shape = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
        return cls(
            [weakref.ref(_owner(x)) for x in inputs],
            tuple(_layout_of(x) for x in inputs),
            shape,
            torch.empty(0),
        )


def _owner(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor that owns ``tensor``'s memory: its base for a view, itself otherwise."""
    return tensor if tensor._base is None else tensor._base


def _layout_of(tensor: torch.Tensor) -> tuple:
    """Address, shape, strides and version counter: what must not have changed."""
    return (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor._version)


class RecordTooLarge(Exception):
    """The record would hold more than the allowed number of bytes."""


def _kind(cone: ConeExecutor, node: torch.fx.Node) -> str:
    """How the backward sweep treats ``node``: conv, relu, add, cat or generic."""
    if node.op == "call_module":
        module = cone.modules[node.target]
        if isinstance(module, nn.Conv2d):
            return "conv"
        if type(module) is nn.ReLU:
            return "relu"
        return "generic"
    if node.op == "call_function":
        if node.target in RELU_FUNCTIONS and not node.kwargs.get("inplace", False):
            return "relu"
        if node.target in ADD_FUNCTIONS and not node.kwargs:
            return "add"
        if node.target in CAT_FUNCTIONS:
            return "cat"
        return "generic"
    if node.op == "call_method":
        return "relu" if node.target == "relu" else "generic"
    return node.op  # placeholder, get_attr, output


class _Recorder(torch.fx.Interpreter):
    """Runs the traced model once over the full image, filling a :class:`ForwardRecord`."""

    def __init__(self, cone: ConeExecutor, record: ForwardRecord, limit: int) -> None:
        super().__init__(cone.graph_module)
        self.cone = cone
        self.record = record
        self.limit = limit

    def _charge(self, nbytes: int) -> None:
        """Count ``nbytes`` more against the limit."""
        self.record.nbytes += nbytes
        if self.record.nbytes > self.limit:
            raise RecordTooLarge(f"{self.record.nbytes} bytes")

    def _keep_inputs(self, node: torch.fx.Node) -> None:
        """Store a copy of every tensor argument of ``node`` not stored yet."""
        for source in node.all_input_nodes:
            value = self.env[source]
            if source not in self.record.values and isinstance(value, torch.Tensor):
                self._charge(value.numel() * value.element_size())
                self.record.values[source] = value.detach().clone()

    def run_node(self, n: torch.fx.Node) -> Any:
        kind = _kind(self.cone, n)
        if kind == "generic":  # before it runs: an in-place operation changes its input
            self._keep_inputs(n)
        result = super().run_node(n)
        if kind == "add" and not _same_shaped(n, self.env, result):
            kind = "generic"  # a broadcasting sum: differentiated like other element-wise ops
            self._keep_inputs(n)
        if kind == "relu":
            # 1 where the ReLU passes gradient, as uint8 (multiplying by it is several
            # times faster than masking with a bool), channels-last like the gradients
            alive = (result > 0).contiguous(memory_format=_layout(result)).view(torch.uint8)
            self._charge(alive.numel())
            self.record.masks[n] = alive
        if isinstance(result, torch.Tensor) and result.dim() == 4:
            self.record.channels[n] = int(result.shape[1])
        self.record.kinds[n] = kind
        return result


def _layout(tensor: torch.Tensor) -> torch.memory_format:
    """Channels-last for 4-d tensors, the tensor's own layout otherwise."""
    return torch.channels_last if tensor.dim() == 4 else torch.contiguous_format


def _same_shaped(node: torch.fx.Node, env: dict, result: torch.Tensor) -> bool:
    """Whether every argument of a sum is a tensor node of the result's shape."""
    return all(
        isinstance(a, torch.fx.Node)
        and isinstance(env.get(a), torch.Tensor)
        and env[a].shape == result.shape
        for a in node.args
    )


def record_forward(
    cone: ConeExecutor, inputs: tuple[torch.Tensor, ...], limit: int = DEFAULT_RECORD_LIMIT
) -> ForwardRecord | None:
    """Run the model over the whole image and record what backward sweeps need.

    Returns None when the record would hold more than ``limit`` bytes.
    """
    record = ForwardRecord.empty(inputs)
    recorder = _Recorder(cone, record, limit)
    try:
        with torch.no_grad():
            record.output = recorder.run(*inputs)
    except RecordTooLarge:
        return None
    return record


def _seed(channels: int, like: torch.Tensor, channel: OutputChannel) -> torch.Tensor:
    """d(selected output)/d(output channels) at one pixel, as a (1, C, 1, 1) tensor."""
    value = like.new_zeros((1, channels, 1, 1)).requires_grad_(True)
    with torch.enable_grad():
        (seed,) = torch.autograd.grad(select_output(value, channel)[0, 0, 0], value)
    return seed


def backward_row(
    cone: ConeExecutor,
    record: ForwardRecord,
    pixel: tuple[int, int],
    channel: OutputChannel,
) -> tuple[list[Span], list[torch.Tensor | None]]:
    """One fused pixel's Jacobian rows by a backward sweep over its cone.

    Returns the span each input's gradient covers and the (1, C, h, w) gradient there (None
    for an input the pixel does not depend on).
    """
    demand = cone.plan(pixel, record.shape)
    (last,) = cone.sources[cone.output]
    seed = record.seeds.get(repr(channel))
    if seed is None:
        seed = record.seeds[repr(channel)] = _seed(record.channels[last], record.output, channel)
    grads: dict[torch.fx.Node, torch.Tensor] = {last: seed}
    results: dict[torch.fx.Node, torch.Tensor] = {}
    for node in reversed(cone.nodes):
        gradient = grads.pop(node, None)
        if gradient is None:
            continue
        span = demand[node]
        kind = record.kinds[node]
        if kind == "placeholder":
            results[node] = gradient
        elif kind == "conv":
            _conv_back(cone, node, gradient, span, record.shape, demand, grads)
        elif kind == "relu":
            alive = record.masks[node][..., span.top : span.bottom, span.left : span.right]
            _accumulate(grads, demand, cone.sources[node][0], span, gradient * alive)
        elif kind == "add":
            for source in node.args:  # x + x sends the gradient to x twice
                if isinstance(source, torch.fx.Node):
                    _accumulate(grads, demand, source, span, gradient)
        elif kind == "cat":
            start = 0
            for source in node.args[0] if node.args else node.kwargs["tensors"]:
                width = record.channels[source]
                _accumulate(grads, demand, source, span, gradient[:, start : start + width])
                start += width
        else:
            _generic_back(cone, record, node, gradient, span, demand, grads)
    spans, rows = [], []
    for node in cone.nodes:
        if node.op == "placeholder":
            spans.append(demand.get(node, Span(pixel[0], pixel[0] + 1, pixel[1], pixel[1] + 1)))
            rows.append(results.get(node))
    return spans, rows


def _accumulate(
    grads: dict[torch.fx.Node, torch.Tensor],
    demand: dict[torch.fx.Node, Span],
    node: torch.fx.Node,
    span: Span,
    gradient: torch.Tensor,
) -> None:
    """Add ``gradient`` (over ``span``) into ``node``'s gradient (over its demanded span)."""
    have = demand[node]
    existing = grads.get(node)
    if existing is None and have == span:
        grads[node] = gradient
        return
    if existing is None:
        existing = gradient.new_zeros(
            (*gradient.shape[:2], have.bottom - have.top, have.right - have.left)
        )
    else:
        existing = existing.clone()  # never add into a tensor another node may share
    existing[
        ...,
        span.top - have.top : span.bottom - have.top,
        span.left - have.left : span.right - have.left,
    ] += gradient
    grads[node] = existing


def _conv_back(
    cone: ConeExecutor,
    node: torch.fx.Node,
    gradient: torch.Tensor,
    span: Span,
    shape: tuple[int, int],
    demand: dict[torch.fx.Node, Span],
    grads: dict[torch.fx.Node, torch.Tensor],
) -> None:
    """Send a convolution's output gradient back to its input, clipped to the image."""
    module = cone.modules[node.target]
    before, after = _conv_reach(module)
    wanted = span.grow(before, after)
    dilation = module.dilation
    kernel = module.kernel_size
    back = functional.conv2d(  # the adjoint ('full') convolution: conv_transpose2d, faster
        gradient,
        cone._weight(node.target, module, transposed=True),
        padding=(dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)),
        dilation=dilation,
        groups=module.groups,
    )
    inside = wanted.clip(*shape)
    back = _cut(back, wanted, inside)  # gradient reaching the zero padding is dropped
    _accumulate(grads, demand, cone.sources[node][0], inside, back)


def _generic_back(
    cone: ConeExecutor,
    record: ForwardRecord,
    node: torch.fx.Node,
    gradient: torch.Tensor,
    span: Span,
    demand: dict[torch.fx.Node, Span],
    grads: dict[torch.fx.Node, torch.Tensor],
) -> None:
    """Differentiate an element-wise node over ``span`` from its recorded inputs."""
    leaves: dict[torch.fx.Node, torch.Tensor] = {}

    def window_of(value: torch.fx.Node) -> torch.Tensor:
        stored = record.values[value]
        if stored.dim() < 2 or tuple(stored.shape[-2:]) != record.shape:
            return stored  # a broadcast constant (a parameter, a per-channel scale)
        crop = stored[..., span.top : span.bottom, span.left : span.right]
        if record.kinds[value] == "get_attr":
            return crop
        if value not in leaves:
            leaves[value] = crop.detach().requires_grad_(True)
        return leaves[value].clone()  # in-place operations must not touch the leaf

    with torch.enable_grad():
        result = call_node(node, cone.modules, window_of)
        sources = list(leaves)
        if not sources:
            return
        parts = torch.autograd.grad(
            result, [leaves[s] for s in sources], gradient, allow_unused=True
        )
    for source, part in zip(sources, parts, strict=True):
        if part is not None and source in demand:
            _accumulate(grads, demand, source, span, part)
