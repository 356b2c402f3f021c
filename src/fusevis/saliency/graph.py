"""One ``torch.fx`` trace per model, shared by the tracer, the cone and the recorded sweep.

:func:`graph_of` traces a model once (per model object and, for ``forward(*inputs)``, per
number of inputs, for as long as the model lives) and finds every node's entry in the
operation table (:mod:`fusevis.saliency.ops`) once. Nodes keep the source line that made
them, so that messages can name it (:func:`where`).
"""

from __future__ import annotations

import inspect
import linecache
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch.fx
from torch import nn

from fusevis.saliency.extent import TraceFailure
from fusevis.saliency.ops import Step, lookup
from fusevis.saliency.sweeps import in_place

_TORCH = os.path.dirname(os.path.dirname(torch.fx.__file__))
_HERE = os.path.dirname(__file__)
_LINE = "fusevis_line"  # node.meta key: (file, line) of the model's source that made the node


def _outside(filename: str) -> bool:
    return not filename.startswith((_TORCH, _HERE)) and not filename.startswith("<")


def _describe(filename: str, line: int) -> str:
    code = linecache.getline(filename, line).strip()
    return f"{os.path.basename(filename)}:{line}" + (f" ({code})" if code else "")


def where(node: torch.fx.Node) -> str:
    """``file:line (code)`` of the model's source that made ``node`` ('' when unknown)."""
    found = node.meta.get(_LINE)
    return _describe(*found) if found else ""


Value = TypeVar("Value")


def node_values(args: object, values: Mapping[torch.fx.Node, Value | None]) -> list[Value]:
    """The values of the nodes in a node's ``args``, in order (lists, tuples, dicts opened).

    Nodes whose value is None (constants, weights) or that ``values`` lacks are skipped.
    """
    found: list[Value] = []

    def visit(value: object) -> None:
        if isinstance(value, torch.fx.Node):
            held = values.get(value)
            if held is not None:
                found.append(held)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit(args)
    return found


def propagate(
    graph: Graph,
    num_inputs: int,
    of_input: Callable[[int], Value],
    through: Callable[[torch.fx.Node, list[Value]], Value | None],
) -> Value:
    """Carry a value per node from the inputs through ``graph`` to its one output.

    Input ``k`` (of the first ``num_inputs`` placeholders) gets ``of_input(k)``; a call node
    gets ``through(node, values)``, ``values`` those of its arguments' nodes in order
    (:func:`node_values`); placeholders after the first ``num_inputs`` and attributes have
    none. The tracers' walk: the value is a feature map's dependence on the inputs.

    Raises
    ------
    TraceFailure
        If the model takes fewer than ``num_inputs`` inputs, or does not return one tensor
        that depends on them.
    """
    values: dict[torch.fx.Node, Value | None] = {}
    placeholders = 0
    output: Value | None = None
    for node in graph.nodes:
        if node.op == "placeholder":
            values[node] = of_input(placeholders) if placeholders < num_inputs else None
            placeholders += 1
        elif node.op == "get_attr":
            values[node] = None
        elif node.op == "output":
            found = node_values(node.args, values)
            if len(found) != 1:
                raise TraceFailure("the model must return one tensor")
            output = found[0]
        else:
            values[node] = through(node, node_values((node.args, node.kwargs), values))
    if placeholders < num_inputs:
        raise TraceFailure(f"the model takes {placeholders} inputs, not {num_inputs}")
    if output is None:
        raise TraceFailure("no output found")
    return output


def _user_frame(error: BaseException) -> str:
    """``file:line (code)`` of the innermost frame outside torch and this package."""
    found = ""
    for frame in traceback.extract_tb(error.__traceback__):
        if _outside(frame.filename) and frame.lineno is not None:
            found = _describe(frame.filename, frame.lineno)
    return found


class _Tracer(torch.fx.Tracer):
    """``torch.fx``'s tracer, noting each node's source line (cheaply: one frame walk)."""

    def create_proxy(self, *args: object, **kwargs: object) -> torch.fx.Proxy:  # noqa: D102
        proxy = super().create_proxy(*args, **kwargs)
        frame = sys._getframe(1)
        while frame is not None and not _outside(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is not None:
            proxy.node.meta[_LINE] = (frame.f_code.co_filename, frame.f_lineno)
        return proxy


def _takes_varargs(model: nn.Module) -> bool:
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def _fixed_arity(model: nn.Module, count: int) -> nn.Module:
    """A module whose ``forward(input_0, ..., input_{count-1})`` calls ``model`` with them.

    ``torch.fx`` gives a ``forward(*inputs)`` one placeholder (a tuple it cannot iterate);
    through this wrapper the inputs are ``count`` tensors and loops over them unroll.
    """
    names = ", ".join(f"input_{k}" for k in range(count))
    namespace: dict[str, object] = {}
    exec(f"def forward(self, {names}):\n    return self.model({names})\n", namespace)  # noqa: S102
    wrapper = type(f"{type(model).__name__}Inputs", (nn.Module,), {"forward": namespace["forward"]})
    root = wrapper()
    root.model = model
    return root


class Graph:
    """A model's traced graph: its nodes in order, each with its operation-table entry.

    Attributes
    ----------
    module : torch.fx.GraphModule
        The traced model (its submodules are the model's own).
    nodes : list of torch.fx.Node
        All nodes in execution order.
    steps : dict of torch.fx.Node to Step
        Per node: its entry of the table (None if unknown), its submodule, its sources.
    inputs : list of torch.fx.Node
        The placeholders, in the order of the model's arguments.
    output : torch.fx.Node
        The output node.
    prefix : str
        ``"model."`` when the model was traced through a fixed-arity wrapper.
    """

    def __init__(self, module: torch.fx.GraphModule, prefix: str = "") -> None:
        self.module = module
        self.prefix = prefix
        self.nodes = list(module.graph.nodes)
        modules = dict(module.named_modules())
        self.steps: dict[torch.fx.Node, Step] = {}
        for node in self.nodes:
            submodule = modules[node.target] if node.op == "call_module" else None
            op = lookup(node, submodule) if node.op.startswith("call_") else None
            self.steps[node] = Step(node, op, submodule, tuple(node.all_input_nodes))
        self.inputs = [n for n in self.nodes if n.op == "placeholder"]
        self.geometries: dict[tuple, object] = {}  # per input size (fusevis.saliency.geometry)
        outputs = [n for n in self.nodes if n.op == "output"]
        if len(outputs) != 1:
            raise TraceFailure("a graph without exactly one output")
        self.output = outputs[0]

    def still_of(self, model: nn.Module) -> bool:
        """Whether ``model`` still holds the submodules and constants traced (no surgery)."""
        size = len(self.prefix)
        try:
            return all(
                _attribute(model, str(node.target)[size:]) is _attribute(self.module, node.target)
                for node in self.nodes
                if node.op in ("call_module", "get_attr")
            )
        except AttributeError:
            return False

    def constant(self, node: torch.fx.Node) -> object:
        """The value of a ``get_attr`` node (a parameter or buffer of the model)."""
        return _attribute(self.module, node.target)


def _attribute(root: object, path: object) -> object:
    value = root
    for name in str(path).split("."):
        value = getattr(value, name)
    return value


def trace(model: nn.Module, num_inputs: int | None = None) -> Graph:
    """Trace ``model`` (through a fixed-arity wrapper for ``forward(*inputs)``).

    Raises
    ------
    TraceFailure
        If ``torch.fx`` cannot trace it; the message names the model's source line.
    """
    prefix = ""
    root = model
    if _takes_varargs(model):
        if num_inputs is None:
            raise TraceFailure("forward(*inputs): the number of inputs is needed to trace it")
        root, prefix = _fixed_arity(model, num_inputs), "model."
    try:
        graph = _Tracer().trace(root)
        _follow_in_place(graph, root)
        module = torch.fx.GraphModule(root, graph, type(root).__name__)
    except TraceFailure:
        raise
    except Exception as error:  # noqa: BLE001 - any tracing failure means "measure"
        line = _user_frame(error)
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TraceFailure(
            f"torch.fx cannot trace the model: {first}" + (f" at {line}" if line else "")
        ) from None
    return Graph(module, prefix)


def _follow_in_place(graph: torch.fx.Graph, root: nn.Module) -> None:
    """Make every use of a map after an in-place call on it a use of that call's result.

    ``x.clamp_(0, 1); return x`` traces to a ``clamp_`` node nothing uses and an output
    that reads ``x``: the node order alone says that the output sees the clamped values.
    Rewired, the graph says it too, so that a backward sweep over the graph passes
    through the in-place call (the call returns the tensor it changed: values are
    unchanged).
    """
    order = {node: index for index, node in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if node.op not in ("call_function", "call_method", "call_module") or not node.args:
            continue
        module = root.get_submodule(str(node.target)) if node.op == "call_module" else None
        changed = node.args[0]
        if not isinstance(changed, torch.fx.Node) or not in_place(node, module):
            continue
        for user in list(changed.users):
            if order[user] > order[node]:
                user.replace_input_with(changed, node)


_GRAPHS: weakref.WeakKeyDictionary[nn.Module, dict[int | None, Graph | TraceFailure]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def graph_of(model: nn.Module, num_inputs: int | None = None) -> Graph:
    """The traced graph of ``model``, made on the first call for this model object.

    ``num_inputs`` matters only for ``forward(*inputs)``, which is traced once per count.
    Traced again if the model's submodules or constants were replaced since.

    Raises
    ------
    TraceFailure
        If ``torch.fx`` cannot trace the model (remembered as well).
    """
    arity = num_inputs if _takes_varargs(model) else None
    with _LOCK:
        per_model = _GRAPHS.setdefault(model, {})
        found = per_model.get(arity)
        if isinstance(found, Graph) and not found.still_of(model):
            found = None
        if found is None:
            try:
                found = trace(model, arity)
            except TraceFailure as failure:
                found = TraceFailure(*failure.args)  # no traceback: it would hold the model
            per_model[arity] = found
    if isinstance(found, TraceFailure):
        raise TraceFailure(*found.args)
    return found
