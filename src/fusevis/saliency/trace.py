"""Deriving a network's receptive field from its structure.

With example inputs (the way :func:`~fusevis.saliency.analyse_locality` calls it) the
field is exact: the model's graph at the inputs' size (:mod:`fusevis.saliency.geometry`)
gives, through every operation's window rule, the input window each pixel reads
(:func:`fusevis.saliency.cone.receptive_fields`) — the true support of the Jacobian
wherever the weights are not zero, padding modules shifting it, strides and up-sampling
mapping it between grids, reshapes that keep the image axes passing it through.

Without inputs, every node of the graph carries, per network input, the offsets of the
input pixels that one of its feature pixels can depend on
(:class:`~fusevis.saliency.extent.Extent`), moved by each operation's size-free ``field``
rule; operations whose effect depends on shapes (reshapes, ``repeat``, indexing) need the
inputs.

Operations that mix the whole image (adaptive/global pooling, reductions over the image
axes, attention, instance/group normalisation) mark the network as not local. Anything the
table does not know raises :class:`TraceFailure` naming the operation and the model's
source line, and the caller measures the field instead.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.fx
from torch import nn

from fusevis.saliency.extent import Extent, NotLocal, TraceFailure
from fusevis.saliency.field import ReceptiveField
from fusevis.saliency.graph import graph_of, propagate, where
from fusevis.saliency.ops import Step, label

__all__ = ["NotLocal", "TraceFailure", "trace_receptive_fields"]

_UNKNOWN = {
    "call_module": "module {name} is not known to the tracer",
    "call_function": "function {name} is not known to the tracer",
    "call_method": "method .{name}() is not known to the tracer",
}


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
        at = where(node)
        raise TraceFailure(_UNKNOWN[node.op].format(name=name) + (f" at {at}" if at else ""))
    if not op.local:
        raise NotLocal(f"{label(node, step.module)} mixes the whole image")
    return op.field(node, step.module, inputs)


def trace_receptive_fields(
    model: nn.Module, num_inputs: int, inputs: tuple[torch.Tensor, ...] | None = None
) -> list[ReceptiveField]:
    """Derive the receptive field of every input of ``model`` from its structure.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    num_inputs : int
        How many inputs it takes.
    inputs : tuple of torch.Tensor, optional
        Example inputs, (B, C, H, W) each: the field is then exact at their size (and
        shape-dependent operations are understood); without them it is the size-free
        bound of the ``field`` rules.

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
    if inputs is not None:
        from fusevis.saliency.cone import Cone, receptive_fields
        from fusevis.saliency.geometry import geometry_of

        graph = graph_of(model, num_inputs)
        if len(graph.inputs) < num_inputs:
            raise TraceFailure(f"the model takes {len(graph.inputs)} inputs, not {num_inputs}")
        geometry = geometry_of(graph, num_inputs, tuple(inputs))  # raises TraceFailure, NotLocal
        return receptive_fields(Cone(graph, num_inputs), geometry)
    graph = graph_of(model, num_inputs)
    output = propagate(
        graph, num_inputs, Extent.of_input, lambda node, found: _extent(graph.steps[node], found)
    )
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
