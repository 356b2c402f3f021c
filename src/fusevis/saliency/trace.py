"""Deriving a network's receptive field from its structure.

Every node of the model's traced graph (:mod:`fusevis.saliency.graph`) carries, per network
input, the offsets of the input pixels that one of its feature pixels can depend on
(:class:`~fusevis.saliency.extent.Extent`); each operation moves them as its entry in the
operation table (:mod:`fusevis.saliency.ops`) says. Convolutions, pooling, dilation,
stride, transposed convolutions and up-sampling move the bounds; concatenation, additions
and element-wise operations take their union. Operations that mix the whole image
(adaptive/global pooling, spatial means, linear layers, attention, instance/group/layer
normalisation) mark the network as not local. Anything the table does not know raises
:class:`TraceFailure`, and the caller measures the field instead.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.fx
from torch import nn

from fusevis.saliency.extent import Extent, NotLocal, TraceFailure
from fusevis.saliency.field import ReceptiveField
from fusevis.saliency.graph import graph_of
from fusevis.saliency.ops import Step, label

__all__ = ["NotLocal", "TraceFailure", "trace_receptive_fields"]

_UNKNOWN = {
    "call_module": "module {name} is not known to the tracer",
    "call_function": "function {name} is not known to the tracer",
    "call_method": "method .{name}() is not known to the tracer",
}


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


def _extent(step: Step, inputs: list[Extent]) -> Extent | None:
    """The extent of a call node's result, by its table entry."""
    node, op = step.node, step.op
    if op is None:
        if node.op == "call_module":
            name = type(step.module).__name__
        elif node.op == "call_function":
            name = getattr(node.target, "__name__", str(node.target))
        else:
            name = node.target
        raise TraceFailure(_UNKNOWN[node.op].format(name=name))
    if not op.local:
        raise NotLocal(f"{label(node, step.module)} mixes the whole image")
    return op.field(node, step.module, inputs)


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
    graph = graph_of(model)
    extents: dict[torch.fx.Node, Extent | None] = {}
    placeholders = 0
    output: Extent | None = None
    for node in graph.nodes:
        if node.op == "placeholder":
            extents[node] = Extent.of_input(placeholders) if placeholders < num_inputs else None
            placeholders += 1
        elif node.op == "get_attr":
            extents[node] = None
        elif node.op == "output":
            found = _tensor_args(node.args, extents)
            if len(found) != 1:
                raise TraceFailure("the model must return one tensor")
            output = found[0]
        else:
            inputs = _tensor_args((node.args, node.kwargs), extents)
            extents[node] = _extent(graph.steps[node], inputs)
    if placeholders < num_inputs:
        raise TraceFailure(f"the model takes {placeholders} inputs, not {num_inputs}")
    if output is None:
        raise TraceFailure("no output found")
    if output.scale != (1, 1):
        raise TraceFailure("the output's resolution differs from the inputs'")
    stride = (math.ceil(output.max_scale[0]), math.ceil(output.max_scale[1]))
    margin = max(stride) if output.fractional else 0
    zero = Fraction(0)
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
