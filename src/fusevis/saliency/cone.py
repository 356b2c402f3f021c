"""Computing one fused pixel over its dependency cone only.

A receptive-field crop still computes, at every layer, activations that never reach the
fused pixel. A :class:`Cone` plans, for one pixel, the window every feature map of the
traced graph must provide (:meth:`Cone.plan`, walking the graph backwards with each
operation's window rule, :mod:`fusevis.saliency.windows`), and runs the graph layer by
layer over just those windows (:meth:`Cone.run`): convolutions and pooling become 'valid'
ones over exactly the needed source window, with the border's padding (zeros, reflected,
replicated or wrapped rows) made explicit where the window meets it; strided layers,
up-sampling, pixel shuffles and reshapes that keep the image axes map windows between
grids; skip branches are cropped to match. Gradients through this computation are exactly
those of the full network. The recorded sweep (:mod:`fusevis.saliency.recorded`) walks the
same plan backwards.

Each feature map has its own grid (:mod:`fusevis.saliency.geometry`, one per input size).
Away from the border the plan of a pixel is the plan of another pixel of the same phase
(its position modulo the network's total stride) shifted: one template per phase is made
and shifted.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
from torch import nn

from fusevis.saliency.convolution import Convolve, ConvWeights
from fusevis.saliency.extent import NotLocal, TraceFailure
from fusevis.saliency.field import ReceptiveField, Window
from fusevis.saliency.geometry import Geometry, geometry_of
from fusevis.saliency.graph import Graph, graph_of
from fusevis.saliency.ops import ConeUnsupported
from fusevis.saliency.windows import (
    ATTRIBUTE,
    CONSTANT,
    FEATURE,
    OUTPUT,
    PARAMETER,
    PLACEHOLDER,
    call_node,
)

__all__ = ["Cone", "ConeUnsupported", "cone_of", "receptive_fields"]

Node = torch.fx.Node
Plan = dict[Node, Window]  # the window each feature map must provide


class _Template:
    """The plan of one pixel of a phase, and how far it may be shifted."""

    __slots__ = ("anchor", "cols", "entries", "rows")

    def __init__(self, anchor: tuple[int, int], entries: list, rows: range, cols: range) -> None:
        self.anchor, self.entries, self.rows, self.cols = anchor, entries, rows, cols


class Cone:
    """Runs a traced local network over one pixel's cone.

    Raises :class:`ConeUnsupported` at construction when the model takes fewer than
    ``num_inputs`` inputs; :meth:`geometry` raises it, per input size, where an operation
    has no window rule, is not local, or reshapes the image axes (naming the operation and
    the model's source line).

    Attributes
    ----------
    graph : Graph
        The model's traced graph.
    weights : ConvWeights
        Channels-last copies of the convolution weights, shared with the recorded sweep.
    """

    def __init__(self, graph: Graph, num_inputs: int) -> None:
        self.graph = graph
        self.num_inputs = num_inputs
        if len(graph.inputs) < num_inputs:
            raise ConeUnsupported(f"the model takes {len(graph.inputs)} inputs, not {num_inputs}")
        self.weights = ConvWeights()

    @property
    def last(self) -> Node:
        """The node the model returns."""
        (last,) = self.graph.steps[self.graph.output].sources
        return last

    # -- per input size -------------------------------------------------------------------

    def geometry(self, inputs: tuple[torch.Tensor, ...]) -> Geometry:
        """The graph's geometry at these inputs' sizes (made once per size).

        Raises
        ------
        ConeUnsupported
            If the model is not local or cannot be run over windows at this size.
        """
        try:
            return geometry_of(self.graph, self.num_inputs, inputs)
        except (TraceFailure, NotLocal) as problem:
            raise ConeUnsupported(str(problem)) from None

    # -- planning -------------------------------------------------------------------------

    def plan(self, pixel: tuple[int, int], geo: Geometry) -> Plan:
        """The window every feature map must provide for ``pixel``.

        Away from the border the plan is a template of the pixel's phase shifted.
        """
        if geo.periodic:
            (pr, pc), (row, col) = geo.period, pixel
            phase = (row % pr, col % pc)
            template = geo.templates.get(phase, False)
            if template is False:
                template = geo.templates[phase] = self._template(geo, phase)
            if template is not None:
                kr = (row - template.anchor[0]) // pr
                kc = (col - template.anchor[1]) // pc
                if kr in template.rows and kc in template.cols:
                    return {
                        node: Window(
                            w.top + kr * r, w.bottom + kr * r, w.left + kc * c, w.right + kc * c
                        )
                        for node, w, r, c in template.entries
                    }
        return self._plan(pixel, geo)

    def _plan(self, pixel: tuple[int, int], geo: Geometry) -> Plan:
        demand: Plan = {geo.last: Window.pixel(*pixel)}
        sources = geo.sources
        for step, rule, info, kind in reversed(geo.program):
            if kind != FEATURE:
                continue
            node = step.node
            window = demand.get(node)
            if window is None:
                continue
            needed = rule.need(step, info, window, geo)
            if needed is None:
                continue
            for source in sources[node]:
                demand[source] = needed.union(demand.get(source))
        return demand

    def _template(self, geo: Geometry, phase: tuple[int, int]) -> _Template | None:
        """The plan of the pixel of ``phase`` nearest the centre, if no border touches it."""
        (height, width), (pr, pc) = geo.image, geo.period
        anchor = (
            height // 2 - (height // 2 - phase[0]) % pr,
            width // 2 - (width // 2 - phase[1]) % pc,
        )
        if anchor[0] < 0 or anchor[1] < 0:
            return None
        plan = self._plan(anchor, geo)
        low_r = low_c = -(10**9)
        high_r = high_c = 10**9
        entries = []
        for node, window in plan.items():
            inner = geo.interior[node]
            r, c = geo.shift[node]
            low_r = max(low_r, -((window.top - inner.top) // r))
            high_r = min(high_r, (inner.bottom - window.bottom) // r)
            low_c = max(low_c, -((window.left - inner.left) // c))
            high_c = min(high_c, (inner.right - window.right) // c)
            entries.append((node, window, r, c))
        if not (low_r <= 0 <= high_r and low_c <= 0 <= high_c):
            return None
        return _Template(anchor, entries, range(low_r, high_r + 1), range(low_c, high_c + 1))

    # -- running --------------------------------------------------------------------------

    def run(
        self, inputs: tuple[torch.Tensor, ...], pixel: tuple[int, int], conv: Convolve
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], list[Window]]:
        """Compute the fused pixel over its cone, convolving with ``conv``.

        Returns the (B, C) output at the pixel, the input crops (leaves requiring grad) and
        their windows in image coordinates.
        """
        geo = self.geometry(inputs)
        demand = self.plan(pixel, geo)
        values: dict[Node, tuple[Any, Window | None]] = {}
        leaves: list[torch.Tensor] = []
        windows: list[Window] = []
        placeholder_index = 0
        weights = self.weights
        for step, rule, info, kind in geo.program:
            node = step.node
            if kind == FEATURE:
                window = demand.get(node)
                if window is not None:
                    result = rule.forward(step, info, values, window, geo, conv, weights)
                    values[node] = (result, window)
            elif kind == PLACEHOLDER:
                window = demand.get(node, Window.pixel(*pixel))
                x = inputs[placeholder_index]
                x = x[..., window.top : window.bottom, window.left : window.right]
                leaf = x.detach().requires_grad_(True)
                leaves.append(leaf)
                windows.append(window)
                values[node] = (leaf, window)
                placeholder_index += 1
            elif kind == OUTPUT:
                last = geo.last
                result, window = values[last]
                value = result[..., pixel[0] - window.top, pixel[1] - window.left]
                return value, tuple(leaves), windows
            elif kind == ATTRIBUTE:
                values[node] = (self.graph.constant(node), None)
            elif kind == CONSTANT:
                values[node] = (geo.constants[node], None)
            elif kind == PARAMETER:
                values[node] = (call_node(node, step.module, lambda n: values[n][0]), None)
        raise ConeUnsupported("graph without output")


def receptive_fields(cone: Cone, geo: Geometry) -> list[ReceptiveField]:
    """Every input's receptive field, exactly, from the plans of the pixels.

    A plan's window has rows that depend on the pixel's row only and columns on its column,
    so the plans along the centre column and the centre row together cover every pixel's:
    the union of their input windows, relative to the pixel, is the field — its extent
    at interior pixels, and wider only where the border's padding (a reflection of an
    asymmetric field, a wrap) makes a pixel read further.
    """
    height, width = geo.image
    pixels = {(row, width // 2) for row in range(height)} | {
        (height // 2, col) for col in range(width)
    }
    bounds: list[list[int] | None] = [None] * cone.num_inputs
    inputs = cone.graph.inputs[: cone.num_inputs]
    for pixel in sorted(pixels):
        plan = cone.plan(pixel, geo)
        for index, node in enumerate(inputs):
            window = plan.get(node)
            if window is None:
                continue
            found = [
                window.top - pixel[0],
                window.bottom - 1 - pixel[0],
                window.left - pixel[1],
                window.right - 1 - pixel[1],
            ]
            if pixel[1] != width // 2:  # rows from the centre column's pixels only
                found[0], found[1] = None, None
            if pixel[0] != height // 2:
                found[2], found[3] = None, None
            old = bounds[index] or [None] * 4
            bounds[index] = [
                _pick(min, old[0], found[0]),
                _pick(max, old[1], found[1]),
                _pick(min, old[2], found[2]),
                _pick(max, old[3], found[3]),
            ]
    crops = all(p.periodic and p.crops for p in geo.prepared.values())
    fields = []
    for found in bounds:
        lo_r, hi_r, lo_c, hi_c = (v if v is not None else 0 for v in found or [None] * 4)
        fields.append(ReceptiveField(lo_r, hi_r, lo_c, hi_c, geo.period, "traced", crops))
    return fields


def _pick(choose: Any, old: int | None, new: int | None) -> int | None:
    if old is None:
        return new
    if new is None:
        return old
    return choose(old, new)


def cone_of(model: nn.Module, num_inputs: int) -> Cone:
    """A cone for ``model`` over its shared traced graph.

    Raises
    ------
    ConeUnsupported
        If the model cannot be traced or holds an operation the cone does not run.
    """
    try:
        graph = graph_of(model, num_inputs)
    except TraceFailure as failure:
        raise ConeUnsupported(str(failure)) from None
    return Cone(graph, num_inputs)
