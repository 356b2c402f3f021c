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

from fusevis.saliency.cone import Cone, Plan
from fusevis.saliency.convolution import Convolve
from fusevis.saliency.field import Window
from fusevis.saliency.inputs import Stamp
from fusevis.saliency.ops import Sweep
from fusevis.saliency.outputs import OutputChannel, select_output

Node = torch.fx.Node
DEFAULT_RECORD_LIMIT = 2 * 1024**3  # bytes a record may hold before rows fall back to the cone


@dataclass
class ForwardRecord:
    """What the backward sweeps over one set of inputs need from the full-image forward.

    Attributes
    ----------
    stamp : Stamp
        The inputs it was made from (:meth:`made_from` tells whether it serves inputs).
    shape : (int, int)
        The image size.
    output : torch.Tensor
        The model's full-image output.
    sweeps : dict of Node to Sweep
        How the sweep passes each call node (the table's entry, specialised to the node).
    masks, values, channels : dict
        ReLU sign patterns (uint8), stored inputs of nodes differentiated by autograd, and
        the channel count of every 4-d result.
    seeds : dict
        d(selected output)/d(output channels) at one pixel, per output channel choice.
    nbytes : int
        Bytes held by masks and values.
    """

    stamp: Stamp
    shape: tuple[int, int]
    output: torch.Tensor
    sweeps: dict[Node, Sweep] = field(default_factory=dict)
    masks: dict[Node, torch.Tensor] = field(default_factory=dict)
    values: dict[Node, torch.Tensor] = field(default_factory=dict)
    channels: dict[Node, int] = field(default_factory=dict)
    seeds: dict[str, torch.Tensor] = field(default_factory=dict)
    nbytes: int = 0

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

    def charge(self, nbytes: int) -> None:
        """Count ``nbytes`` more against the limit."""
        self.record.nbytes += nbytes
        if self.record.nbytes > self.limit:
            raise RecordTooLarge(f"{self.record.nbytes} bytes")

    def keep_inputs(self, node: Node) -> None:
        """Store a copy of every tensor argument of ``node`` not stored yet."""
        for source in node.all_input_nodes:
            value = self.env[source]
            if source not in self.record.values and isinstance(value, torch.Tensor):
                self.charge(value.numel() * value.element_size())
                self.record.values[source] = value.detach().clone()

    def run_node(self, n: Node) -> Any:
        step = self.steps[n]
        op = step.op
        sweep = None if op is None or op.sweep is None else op.sweep.for_node(step)
        if sweep is not None and sweep.keeps_inputs:  # before it runs: in-place operations
            self.keep_inputs(n)
        result = super().run_node(n)
        if sweep is not None:
            self.record.sweeps[n] = sweep.recorded(self, step, result)
        if isinstance(result, torch.Tensor) and result.dim() == 4:
            self.record.channels[n] = int(result.shape[1])
        return result


def record_forward(
    cone: Cone, inputs: tuple[torch.Tensor, ...], limit: int = DEFAULT_RECORD_LIMIT
) -> ForwardRecord | None:
    """Run the model over the whole image and record what backward sweeps need.

    Returns None when the record would hold more than ``limit`` bytes.
    """
    shape = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
    record = ForwardRecord(Stamp(inputs), shape, torch.empty(0))
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


class _Sweeper:
    """One pixel's backward sweep: the gradients on their way back through the graph."""

    __slots__ = ("conv", "demand", "grads", "reach", "record", "shape", "weights")

    def __init__(self, cone: Cone, record: ForwardRecord, demand: Plan, conv: Convolve) -> None:
        self.record = record
        self.demand = demand
        self.shape = record.shape
        self.conv = conv
        self.reach = cone.reach
        self.weights = cone.weights
        self.grads: dict[Node, torch.Tensor] = {}

    def accumulate(self, node: Node, window: Window, gradient: torch.Tensor) -> None:
        """Add ``gradient`` (over ``window``) into ``node``'s gradient (over its plan window)."""
        have = self.demand[node]
        existing = self.grads.get(node)
        if existing is None and have == window:
            self.grads[node] = gradient
            return
        if existing is None:
            existing = gradient.new_zeros(
                (*gradient.shape[:2], have.bottom - have.top, have.right - have.left)
            )
        else:
            existing = existing.clone()  # never add into a tensor another node may share
        existing[
            ...,
            window.top - have.top : window.bottom - have.top,
            window.left - have.left : window.right - have.left,
        ] += gradient
        self.grads[node] = existing


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
    demand = cone.plan(pixel, record.shape)
    last = cone.last
    seed = record.seeds.get(repr(channel))
    if seed is None:
        seed = record.seeds[repr(channel)] = _seed(record.channels[last], record.output, channel)
    sweeper = _Sweeper(cone, record, demand, conv)
    grads = sweeper.grads
    grads[last] = seed
    results: dict[Node, torch.Tensor] = {}
    sweeps, steps = record.sweeps, cone.graph.steps
    for node in reversed(cone.graph.nodes):
        gradient = grads.pop(node, None)
        if gradient is None:
            continue
        if node.op == "placeholder":
            results[node] = gradient
        else:
            sweeps[node].back(sweeper, steps[node], gradient, demand[node])
    windows = [demand.get(node, Window.pixel(*pixel)) for node in cone.graph.inputs]
    return windows, [results.get(node) for node in cone.graph.inputs]
