"""Jacobian rows from one recorded full-image forward: each pixel costs a backward sweep only.

:meth:`Cone.run` computes a pixel's cone forward and autograd walks it back: two passes of
about equal cost. The forward activations do not depend on the pixel, so one forward over
the whole image can record what a backward pass needs — nothing for convolutions, sums and
concatenations, the sign pattern of every ReLU, and the inputs of other element-wise
operations — after which a pixel costs only the reverse sweep over its cone: every node's
gradient over the window the cone's plan gives it, passed on as the node's entry in the
operation table says (its ``sweep``: the adjoint convolution, the ReLU mask, autograd over
the window, ...). The full-image forward is the reference's own forward, so the result is
the full-image gradient, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from fusevis.saliency.cone import Cone, ConeUnsupported, Plan
from fusevis.saliency.convolution import Convolve
from fusevis.saliency.field import Window
from fusevis.saliency.geometry import Geometry
from fusevis.saliency.inputs import Stamp
from fusevis.saliency.outputs import OutputChannel, select_output
from fusevis.saliency.sweeps import NoSweep, Sweep
from fusevis.saliency.windows import FEATURE, PLACEHOLDER, cut

Node = torch.fx.Node
DEFAULT_RECORD_LIMIT = 2 * 1024**3  # bytes a record may hold before rows fall back to the cone


@dataclass
class ForwardRecord:
    """What the backward sweeps over one set of inputs need from the full-image forward.

    Attributes
    ----------
    stamp : Stamp
        The inputs it was made from (:meth:`made_from` tells whether it serves inputs).
    geo : Geometry
        The graph at the inputs' size.
    shape : (int, int)
        The image size.
    output : torch.Tensor
        The model's full-image output.
    sweeps : dict of Node to Sweep
        How the sweep passes each call node (the table's entry, specialised to the node).
    masks, values : dict
        ReLU sign patterns (uint8) and stored inputs of nodes differentiated by autograd
        (by source node; by (node, source) where an in-place call changed the source first).
    seeds : dict
        d(selected output)/d(output channels) at one pixel, per output channel choice.
    nbytes : int
        Bytes held by masks and values.
    """

    stamp: Stamp
    geo: Geometry
    shape: tuple[int, int]
    output: torch.Tensor
    sweeps: dict[Node, Sweep] = field(default_factory=dict)
    masks: dict[Node, torch.Tensor] = field(default_factory=dict)
    values: dict[Node | tuple[Node, Node], torch.Tensor] = field(default_factory=dict)
    seeds: dict[str, torch.Tensor] = field(default_factory=dict)
    nbytes: int = 0

    def stored(self, node: Node, source: Node) -> torch.Tensor:
        """The value ``node`` read from ``source``.

        ``node``'s own copy where an in-place call had changed ``source`` before it ran.
        """
        kept = self.values.get((node, source))
        return self.values[source] if kept is None else kept

    def made_from(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        """Whether ``inputs`` are the tensors of this record, unmodified since."""
        return self.stamp.matches(inputs)


class RecordTooLarge(Exception):
    """The record would hold more than the allowed number of bytes."""


class _Recorder(torch.fx.Interpreter):
    """Runs the traced model once over the full image, filling a :class:`ForwardRecord`."""

    def __init__(self, cone: Cone, record: ForwardRecord, limit: int) -> None:
        super().__init__(cone.graph.module)
        self.steps = cone.graph.steps
        self.record = record
        self.limit = limit
        self.versions: dict[Node, int] = {}  # each stored argument's version when stored

    def charge(self, nbytes: int) -> None:
        """Count ``nbytes`` more against the limit."""
        self.record.nbytes += nbytes
        if self.record.nbytes > self.limit:
            raise RecordTooLarge(f"{self.record.nbytes} bytes")

    def keep_inputs(self, node: Node) -> None:
        """Store a copy of every tensor argument of ``node`` not stored yet.

        An argument changed in place since its copy was made (its version counter moved)
        is stored again, for ``node`` alone.
        """
        for source in node.all_input_nodes:
            value = self.env[source]
            if not isinstance(value, torch.Tensor):
                continue
            version = self.versions.get(source)
            if version is None:
                key: Node | tuple[Node, Node] = source
                self.versions[source] = value._version
            elif version != value._version:
                key = (node, source)
            else:
                continue
            self.charge(value.numel() * value.element_size())
            self.record.values[key] = value.detach().clone()

    def run_node(self, n: Node) -> Any:
        if self.record.geo.kind[n] != FEATURE:
            return super().run_node(n)
        step = self.steps[n]
        if step.op.sweep is None:
            raise NoSweep(step.op.name)
        sweep = step.op.sweep.for_node(step, self.record.geo)
        if sweep.keeps_inputs:  # before it runs: in-place operations
            self.keep_inputs(n)
        result = super().run_node(n)
        try:
            self.record.sweeps[n] = sweep.recorded(self, step, result)
        except (RecordTooLarge, NoSweep):
            raise
        except Exception as error:  # noqa: BLE001 - no record: the cone computes the rows
            raise NoSweep(f"{step.op.name}: {type(error).__name__}: {error}") from None
        return result


def record_forward(
    cone: Cone, inputs: tuple[torch.Tensor, ...], limit: int = DEFAULT_RECORD_LIMIT
) -> ForwardRecord | None:
    """Run the model over the whole image and record what backward sweeps need.

    Returns None when the record would hold more than ``limit`` bytes, or when the cone
    cannot run the model at this size.
    """
    try:
        geo = cone.geometry(inputs)
    except ConeUnsupported:
        return None
    record = ForwardRecord(Stamp(inputs), geo, geo.image, torch.empty(0))
    recorder = _Recorder(cone, record, limit)
    try:
        with torch.no_grad():
            record.output = recorder.run(*inputs)
    except (RecordTooLarge, NoSweep):
        return None
    return record


def _seed(channels: int, like: torch.Tensor, channel: OutputChannel) -> torch.Tensor:
    """d(selected output)/d(output channels) at one pixel, as a (1, C, 1, 1) tensor."""
    value = like.new_zeros((1, channels, 1, 1)).requires_grad_(True)
    with torch.enable_grad():
        (seed,) = torch.autograd.grad(select_output(value, channel)[0, 0, 0], value)
    return seed


class _Sweeper:
    """One pixel's backward sweep: the gradients on their way back through the graph."""

    __slots__ = ("conv", "demand", "geo", "grads", "record", "shape", "weights")

    def __init__(self, cone: Cone, record: ForwardRecord, demand: Plan, conv: Convolve) -> None:
        self.record = record
        self.geo = record.geo
        self.demand = demand
        self.shape = record.shape
        self.conv = conv
        self.weights = cone.weights
        self.grads: dict[Node, Any] = {}

    def accumulate(self, node: Node, window: Window, gradient: torch.Tensor) -> None:
        """Add ``gradient`` (over ``window``) into ``node``'s gradient (over its plan window).

        Nodes outside the plan (parameters, constants) get nothing.
        """
        have = self.demand.get(node)
        if have is None:
            return
        self.grads[node] = _added(self.grads.get(node), have, window, gradient, self.geo.axes[node])

    def accumulate_item(
        self, node: Node, index: int, window: Window, gradient: torch.Tensor
    ) -> None:
        """:meth:`accumulate` into item ``index`` of a tuple-valued node."""
        have = self.demand.get(node)
        if have is None:
            return
        items = self.grads.setdefault(node, {})
        items[index] = _added(items.get(index), have, window, gradient, self.geo.axes[node])


def _added(
    existing: torch.Tensor | None,
    have: Window,
    window: Window,
    gradient: torch.Tensor,
    axes: tuple[int, int],
) -> torch.Tensor:
    """``existing`` (over ``have``, None: zero) plus ``gradient`` over ``window``."""
    if existing is None and have == window:
        return gradient
    if existing is None:
        shape = list(gradient.shape)
        shape[axes[0]], shape[axes[1]] = have.shape
        existing = gradient.new_zeros(shape)
    else:
        existing = existing.clone()  # never add into a tensor another node may share
    cut(existing, have, window, axes).add_(gradient)
    return existing


def backward_rows(
    cone: Cone,
    record: ForwardRecord,
    pixel: tuple[int, int],
    channel: OutputChannel,
    conv: Convolve,
) -> tuple[list[Window], list[torch.Tensor | None]]:
    """One fused pixel's Jacobian rows by a backward sweep over its cone.

    Returns the window each input's gradient covers and the (1, C, h, w) gradient there
    (None for an input the pixel does not depend on).
    """
    geo = record.geo
    demand = cone.plan(pixel, geo)
    last = geo.last
    seed = record.seeds.get(repr(channel))
    if seed is None:
        channels = int(geo.shape[last][1])
        seed = record.seeds[repr(channel)] = _seed(channels, record.output, channel)
    sweeper = _Sweeper(cone, record, demand, conv)
    grads = sweeper.grads
    grads[last] = seed
    results: dict[Node, torch.Tensor] = {}
    sweeps, steps, kinds = record.sweeps, cone.graph.steps, geo.kind
    for node in reversed(cone.graph.nodes):
        gradient = grads.pop(node, None)
        if gradient is None:
            continue
        if kinds[node] == PLACEHOLDER:
            results[node] = gradient
        else:
            sweeps[node].back(sweeper, steps[node], gradient, demand[node])
    windows = [demand.get(node, Window.pixel(*pixel)) for node in cone.graph.inputs]
    return windows, [results.get(node) for node in cone.graph.inputs]
