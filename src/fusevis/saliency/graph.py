"""One ``torch.fx`` trace per model, shared by the tracer, the cone and the recorded sweep.

:func:`graph_of` traces a model once (per model object, for as long as it lives) and finds
every node's entry in the operation table (:mod:`fusevis.saliency.ops`) once.
"""

from __future__ import annotations

import threading
import weakref

import torch.fx
from torch import nn

from fusevis.saliency.extent import TraceFailure
from fusevis.saliency.ops import Step, lookup


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
    """

    def __init__(self, module: torch.fx.GraphModule) -> None:
        self.module = module
        self.nodes = list(module.graph.nodes)
        modules = dict(module.named_modules())
        self.steps: dict[torch.fx.Node, Step] = {}
        for node in self.nodes:
            submodule = modules[node.target] if node.op == "call_module" else None
            op = lookup(node, submodule) if node.op.startswith("call_") else None
            self.steps[node] = Step(node, op, submodule, tuple(node.all_input_nodes))
        self.inputs = [n for n in self.nodes if n.op == "placeholder"]
        outputs = [n for n in self.nodes if n.op == "output"]
        if len(outputs) != 1:
            raise TraceFailure("a graph without exactly one output")
        self.output = outputs[0]

    def still_of(self, model: nn.Module) -> bool:
        """Whether ``model`` still holds the submodules and constants traced (no surgery)."""
        try:
            return all(
                _attribute(model, node.target) is _attribute(self.module, node.target)
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


_GRAPHS: weakref.WeakKeyDictionary[nn.Module, Graph | TraceFailure] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def graph_of(model: nn.Module) -> Graph:
    """The traced graph of ``model``, made on the first call for this model object.

    Traced again if the model's submodules or constants were replaced since.

    Raises
    ------
    TraceFailure
        If ``torch.fx`` cannot trace the model (remembered as well).
    """
    with _LOCK:
        found = _GRAPHS.get(model)
        if isinstance(found, Graph) and not found.still_of(model):
            found = None
        if found is None:
            try:
                found = Graph(torch.fx.symbolic_trace(model))
            except TraceFailure as failure:
                found = TraceFailure(*failure.args)  # no traceback: it would hold the model
            except Exception as error:  # noqa: BLE001 - any tracing failure means "measure"
                found = TraceFailure(f"torch.fx cannot trace the model: {error}")
            _GRAPHS[model] = found
    if isinstance(found, TraceFailure):
        raise TraceFailure(*found.args)
    return found
