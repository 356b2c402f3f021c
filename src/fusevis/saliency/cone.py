"""Computing one fused pixel over its dependency cone only.

A receptive-field crop still computes, at every layer, activations that never reach the
fused pixel. For networks built from stride-1 convolutions and element-wise operations a
:class:`Cone` plans, for one pixel, the window every node of the traced graph must provide
(:meth:`Cone.plan`, walking the graph backwards with each operation's reach from the
operation table), and runs the graph layer by layer over just those windows
(:meth:`Cone.run`): convolutions become 'valid' convolutions over exactly the needed input
window, skip branches are cropped to match, and where a window meets the image border the
real network's zero padding is reproduced with an explicit pad. Gradients through this
computation are exactly those of the full network. The recorded sweep
(:mod:`fusevis.saliency.recorded`) walks the same plan backwards.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from fusevis.saliency.convolution import Convolve, ConvWeights
from fusevis.saliency.extent import TraceFailure
from fusevis.saliency.field import Window
from fusevis.saliency.graph import Graph, graph_of
from fusevis.saliency.ops import NO_REACH, ConeUnsupported, Reach, Step

__all__ = ["Cone", "ConeUnsupported", "cone_of"]

Node = torch.fx.Node
Plan = dict[Node, Window]  # the window each node must provide


class Cone:
    """Runs a traced stride-1 convolutional network over one pixel's cone.

    Raises :class:`ConeUnsupported` at construction when the graph holds an operation the
    operation table gives no window rule (anything other than stride-1 zero-padded
    ``Conv2d`` modules, element-wise operations and channel concatenation), or when its
    inputs are not the model's ``num_inputs`` tensors.

    Attributes
    ----------
    graph : Graph
        The model's traced graph.
    reach : dict of torch.fx.Node to Reach
        Per node, how far beyond its output window it reads its inputs.
    weights : ConvWeights
        Channels-last copies of the convolution weights, shared with the recorded sweep.
    """

    def __init__(self, graph: Graph, num_inputs: int) -> None:
        self.graph = graph
        if len(graph.inputs) != num_inputs:
            raise ConeUnsupported("placeholder count differs from the number of inputs")
        self.reach: dict[Node, Reach] = {}
        # per node, in order: the step and how it runs over a window (None: no operation)
        self.program: list[tuple[Step, object]] = []
        for node in graph.nodes:
            step = graph.steps[node]
            if node.op in ("placeholder", "output", "get_attr"):
                self.reach[node] = NO_REACH
                self.program.append((step, None))
                continue
            if step.op is None or step.op.window is None:
                raise ConeUnsupported(f"{node.op} {node.target}")
            self.reach[node] = step.op.window.reach(step)
            self.program.append((step, step.op.window))
        self.weights = ConvWeights()
        (self.last,) = graph.steps[graph.output].sources  # the node the model returns
        self._template: Plan | None = None
        self._template_extent = Window(0, 0, 0, 0)

    def plan(self, pixel: tuple[int, int], shape: tuple[int, int]) -> Plan:
        """The window every node must provide for ``pixel`` (already clipped to the image).

        Away from the border no window is clipped, so the plan is the plan of pixel (0, 0)
        on an unbounded image, shifted: that template is made once and reused.
        """
        if self._template is None:
            self._template = self._plan((0, 0), None)
            windows = self._template.values()
            self._template_extent = Window(
                min(w.top for w in windows),
                max(w.bottom for w in windows),
                min(w.left for w in windows),
                max(w.right for w in windows),
            )
        row, col = pixel
        extent = self._template_extent
        if (
            row + extent.top >= 0
            and col + extent.left >= 0
            and row + extent.bottom <= shape[0]
            and col + extent.right <= shape[1]
        ):
            return {node: window.shift(row, col) for node, window in self._template.items()}
        return self._plan(pixel, shape)

    def _plan(self, pixel: tuple[int, int], shape: tuple[int, int] | None) -> Plan:
        demand: Plan = {self.last: Window.pixel(*pixel)}
        steps = self.graph.steps
        for node in reversed(self.graph.nodes):
            if node not in demand or node.op == "output":
                continue
            needed = demand[node].grow(*self.reach[node])
            if shape is not None:
                needed = needed.clip(*shape)
            for source in steps[node].sources:
                demand[source] = needed.union(demand.get(source))
        return demand

    def run(
        self, inputs: tuple[torch.Tensor, ...], pixel: tuple[int, int], conv: Convolve
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], list[Window]]:
        """Compute the fused pixel over its cone, convolving with ``conv``.

        Returns the (B, C) output at the pixel, the input crops (leaves requiring grad) and
        their windows in image coordinates.
        """
        shape = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
        demand = self.plan(pixel, shape)
        values: dict[Node, tuple[torch.Tensor, Window]] = {}
        leaves: list[torch.Tensor] = []
        windows: list[Window] = []
        placeholder_index = 0
        reach, weights = self.reach, self.weights
        for step, rule in self.program:
            node = step.node
            if node.op == "placeholder":
                window = demand.get(node, Window.pixel(*pixel))
                x = inputs[placeholder_index]
                x = x[..., window.top : window.bottom, window.left : window.right]
                leaf = x.detach().requires_grad_(True)
                leaves.append(leaf)
                windows.append(window)
                values[node] = (leaf, window)
                placeholder_index += 1
            elif node.op == "output":
                result, window = values[self.last]
                value = result[..., pixel[0] - window.top, pixel[1] - window.left]
                return value, tuple(leaves), windows
            elif node.op == "get_attr":
                values[node] = (self.graph.constant(node), None)
            elif rule is not None and node in demand:
                window = demand[node]
                result = rule.forward(step, reach[node], values, window, shape, conv, weights)
                values[node] = (result, window)
        raise ConeUnsupported("graph without output")


def cone_of(model: nn.Module, num_inputs: int) -> Cone:
    """A cone for ``model`` over its shared traced graph.

    Raises
    ------
    ConeUnsupported
        If the model cannot be traced or holds an operation the cone does not run.
    """
    try:
        graph = graph_of(model)
    except TraceFailure as failure:
        raise ConeUnsupported(str(failure)) from None
    return Cone(graph, num_inputs)
