"""A traced network at one input size: every feature map's grid, image axes and scale.

:class:`Geometry` runs the model's graph once on zeros (in no_grad, keeping shapes
only) and, walking it in order, sorts every node into

* a *feature* map (or a tuple of them) — it depends on the inputs' values; its table entry's
  window rule (:mod:`fusevis.saliency.windows`) prepares it: local or not, where its image
  axes are, how its grid relates to its source's, its interior;
* a *parameter* — a tensor computed from the model's weights alone (run whole);
* a *constant* — anything else (sizes, shapes, numbers), its value fixed at this size.

Operations the table does not know, or not here, stop it with a message naming the
operation and the model's source line (:class:`TraceFailure`); operations that mix the
whole image with :class:`NotLocal`. The cone (:mod:`fusevis.saliency.cone`) plans and runs
a pixel over a geometry; the tracer (:mod:`fusevis.saliency.trace`) reads exact receptive
fields from those plans.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import torch
import torch.fx

from fusevis.saliency.extent import NotLocal, TraceFailure
from fusevis.saliency.field import Window
from fusevis.saliency.graph import Graph, where
from fusevis.saliency.ops import Step, label
from fusevis.saliency.windows import (
    ATTRIBUTE,
    CONSTANT,
    FEATURE,
    OUTPUT,
    PARAMETER,
    PLACEHOLDER,
    STANDARD,
    Prepared,
)

Node = torch.fx.Node
MAX_PERIOD = 64  # beyond this, pixels are planned one by one


# Modules whose output has their input's shape: the shape pass passes the input on.
SHAPE_KEEPING = (
    torch.nn.BatchNorm2d,
    torch.nn.Dropout,
    torch.nn.ELU,
    torch.nn.GELU,
    torch.nn.Identity,
    torch.nn.LeakyReLU,
    torch.nn.ReLU,
    torch.nn.ReLU6,
    torch.nn.SiLU,
    torch.nn.Sigmoid,
    torch.nn.Tanh,
)


class _Shapes(torch.fx.Interpreter):
    """Runs a graph once, keeping of every node only its shape (or its value if no tensor).

    Values are freed as soon as no later node needs them, as in any forward pass.
    """

    def __init__(self, module: torch.fx.GraphModule) -> None:
        super().__init__(module)
        self.found: dict[Node, object] = {}

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:  # noqa: D102
        module = self.fetch_attr(target)
        if not kwargs and len(args) == 1 and isinstance(args[0], torch.Tensor):
            if type(module) is torch.nn.Conv2d:
                return _conv_of_shape(module, args[0])
            if type(module) in SHAPE_KEEPING:
                return args[0]
        return super().call_module(target, args, kwargs)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:  # noqa: D102
        if target is torch.nn.functional.conv2d or target is torch.conv2d:
            shaped = _functional_conv_of_shape(args, kwargs)
            if shaped is not None:
                return shaped
        return super().call_function(target, args, kwargs)

    def run_node(self, n: Node) -> Any:  # noqa: D102
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            self.found[n] = _Shape(tuple(result.shape))
        elif _is_tensors(result):
            self.found[n] = [_Shape(tuple(t.shape)) for t in result]
        else:
            self.found[n] = result
        return result


def _conv_grid(
    size: tuple[int, int], kernel: Any, stride: Any, padding: Any, dilation: Any
) -> tuple[int, int]:
    """A 2-D convolution's output (rows, cols), as ``torch.nn.functional.conv2d`` makes it."""
    kernel, stride, dilation = _two(kernel), _two(stride), _two(dilation)
    if padding == "same":
        return size
    padding = (0, 0) if padding == "valid" else _two(padding)
    return tuple(  # type: ignore[return-value]
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True)
    )


def _two(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


def _conv_of_shape(conv: torch.nn.Conv2d, x: Any) -> Any:
    """Zeros shaped as ``conv(x)`` (only the shapes of feature maps matter here)."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        return conv(x)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    padding: Any = conv.padding
    if conv.padding_mode != "zeros":  # the module pads first, then convolves unpadded
        left, right, top, bottom = conv._reversed_padding_repeated_twice  # noqa: SLF001
        size, padding = (size[0] + top + bottom, size[1] + left + right), 0
    grid = _conv_grid(size, conv.kernel_size, conv.stride, padding, conv.dilation)
    return x.new_zeros((*x.shape[:-3], conv.out_channels, *grid))


def _functional_conv_of_shape(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """:func:`_conv_of_shape` for ``F.conv2d(x, weight, ...)`` (None: run it for real)."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    bound = dict(zip(names, args, strict=False)) | kwargs
    x, weight = bound.get("input"), bound.get("weight")
    if not (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)) or x.dim() != 4:
        return None
    grid = _conv_grid(
        (int(x.shape[-2]), int(x.shape[-1])),
        tuple(weight.shape[-2:]),
        bound.get("stride", 1),
        bound.get("padding", 0),
        bound.get("dilation", 1),
    )
    return x.new_zeros((x.shape[0], weight.shape[0], *grid))


class _Shape(tuple):
    """A tensor's shape standing for the tensor (what the geometry knows of it)."""


def _propagate(
    graph: Graph, shapes: list[tuple[int, ...]], dtype: torch.dtype, device: Any
) -> dict:
    """Per node its shape (a tensor), shapes (a tuple of tensors) or value: one forward on zeros.

    Convolutions, most of a forward's cost, are replaced by zeros of their output's shape,
    and element-wise modules pass their input on (the values of feature maps are never
    kept). Fake or meta tensors would load ``torch._dynamo``, which takes as long as loading
    torch, and took 2 s for MaskNet at 256² where this pass takes milliseconds.
    """
    try:
        with torch.no_grad():
            interpreter = _Shapes(graph.module)
            interpreter.run(*[torch.zeros(shape, dtype=dtype, device=device) for shape in shapes])
            return interpreter.found
    except Exception as error:  # noqa: BLE001
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TraceFailure(f"the model does not run at this size: {first}") from None


def _is_tensors(value: object) -> bool:
    return (
        isinstance(value, (tuple, list))
        and bool(value)
        and all(isinstance(v, (torch.Tensor, _Shape)) for v in value)
    )


class Geometry:
    """A model's graph at one input size (see the module's description).

    Attributes
    ----------
    image : (int, int)
        The inputs' height and width.
    kind : dict
        Per node: ``PLACEHOLDER``, ``FEATURE``, ``PARAMETER``, ``CONSTANT``, ``ATTRIBUTE``
        (a ``get_attr``) or ``OUTPUT``.
    shape, grid, axes, scale : dict
        Per feature map: its full shape (a tuple's first item's), its (rows, cols), the
        negative positions of its image axes, image pixels per grid pixel (per axis).
    prepared : dict
        Per feature map, what its rule prepared.
    constants : dict
        Per constant node, its value.
    sources : dict
        Per feature map, the feature maps among its arguments.
    period : (int, int)
        Shifting a pixel by a multiple of this shifts every grid by whole pixels.
    shift : dict
        Per feature map, grid pixels per ``period`` image pixels.
    interior : dict
        Per feature map, where plans may be shifted (see :class:`~windows.Prepared`).
    periodic : bool
        Whether plans may be shifted at all.
    program : list
        Per node in order: (step, rule, info, kind) for the cone's loop.
    """

    def __init__(self, graph: Graph, num_inputs: int, inputs: tuple[torch.Tensor, ...]) -> None:
        self.graph = graph
        shapes = [tuple(x.shape) for x in inputs]
        self.image = (int(shapes[0][-2]), int(shapes[0][-1]))
        self.dtype, self.device = inputs[0].dtype, inputs[0].device
        self.kind: dict[Node, int] = {}
        self.shape: dict[Node, tuple[int, ...]] = {}
        self.grid: dict[Node, tuple[int, int]] = {}
        self.axes: dict[Node, tuple[int, int]] = {}
        self.scale: dict[Node, tuple[Fraction, Fraction]] = {}
        self.prepared: dict[Node, Prepared] = {}
        self.constants: dict[Node, object] = {}
        self.sources: dict[Node, tuple[Node, ...]] = {}
        self.items: dict[Node, int] = {}  # tuple-valued feature nodes: how many maps
        self.templates: dict[tuple[int, int], object] = {}  # the cone's, per phase
        if len(graph.inputs) < num_inputs:
            raise TraceFailure(f"the model takes {len(graph.inputs)} inputs, not {num_inputs}")
        values = _propagate(graph, shapes, inputs[0].dtype, inputs[0].device)
        placeholders = 0
        for node in graph.nodes:
            step = graph.steps[node]
            if node.op == "placeholder":
                if placeholders < num_inputs:
                    shape = shapes[placeholders]
                    self._feature(node, tuple(shape), STANDARD, (Fraction(1), Fraction(1)))
                    self.kind[node] = PLACEHOLDER
                else:
                    self.kind[node] = CONSTANT
                    self.constants[node] = values.get(node)
                placeholders += 1
            elif node.op == "get_attr":
                self.kind[node] = ATTRIBUTE
                value = values.get(node)
                if isinstance(value, _Shape):
                    self.shape[node] = tuple(value)
            elif node.op == "output":
                self.kind[node] = OUTPUT
                self._check_output(node)
            else:
                self._classify(step, values.get(node))
        self._periods()
        self.program = [
            (
                graph.steps[node],
                None if self.kind[node] != FEATURE else graph.steps[node].op.window,
                self.prepared[node].info if node in self.prepared else None,
                self.kind[node],
            )
            for node in graph.nodes
        ]

    # -- what rules ask ---------------------------------------------------------------------

    def value(self, arg: Any) -> Any:
        """``arg`` with every constant node replaced by its value (other nodes kept)."""
        return torch.fx.node.map_arg(arg, lambda n: self.constants.get(n, n))

    def features(self, step: Step) -> list[Node]:
        """The feature maps among a node's arguments, in order."""
        return [s for s in step.sources if self.kind.get(s) in (FEATURE, PLACEHOLDER)]

    def shape_of(self, node: Any) -> tuple[int, ...]:
        """The shape of a parameter or feature node."""
        return self.shape[node]

    def describe(self, step: Step) -> str:
        """How messages name a node: its operation and the source line that made it."""
        at = where(step.node)
        return f"{label(step.node, step.module)}" + (f" at {at}" if at else "")

    # -- building ---------------------------------------------------------------------------

    def _feature(
        self, node: Node, shape: tuple[int, ...], axes: tuple[int, int], scale: tuple
    ) -> None:
        self.kind[node] = FEATURE
        self.shape[node] = shape
        self.axes[node] = axes
        self.grid[node] = (int(shape[axes[0]]), int(shape[axes[1]]))
        self.scale[node] = scale

    def _classify(self, step: Step, value: object) -> None:
        node = step.node
        depends = any(self.kind.get(s) in (FEATURE, PLACEHOLDER) for s in step.sources)
        tensors = isinstance(value, _Shape) or _is_tensors(value)
        if not tensors:
            self.kind[node] = CONSTANT
            self.constants[node] = value
            return
        if not depends:
            self.kind[node] = PARAMETER
            if isinstance(value, _Shape):
                self.shape[node] = tuple(value)
            return
        op = step.op
        if op is None:
            raise TraceFailure(f"{unknown(step)}" + (f" at {where(node)}" if where(node) else ""))
        if not op.local:
            raise NotLocal(f"{self.describe(step)}: it mixes the whole image")
        if op.window is None:
            raise TraceFailure(f"{self.describe(step)}: {op.reason or 'not run over a window'}")
        first = value if isinstance(value, _Shape) else value[0]
        if not isinstance(value, _Shape):
            self.items[node] = len(value)
        self.shape[node] = tuple(first)
        self.kind[node] = FEATURE
        self.sources[node] = tuple(self.features(step))
        prepared = op.window.prepare(step, self)
        self.prepared[node] = prepared
        source = self.sources[node][0]
        base = self.scale[source]
        scale = (base[0] * prepared.factor[0], base[1] * prepared.factor[1])
        self._feature(node, tuple(first), prepared.axes, scale)

    def _check_output(self, node: Node) -> None:
        found = [a for a in node.all_input_nodes if self.kind.get(a) in (FEATURE, PLACEHOLDER)]
        if len(found) != 1 or not isinstance(node.args[0], Node):
            raise TraceFailure("the model must return one tensor")
        (last,) = found
        if self.grid[last] != self.image:
            raise TraceFailure("the output's resolution differs from the inputs'")
        if self.axes[last] != STANDARD or len(self.shape[last]) != 4:
            raise TraceFailure("the output is not a (B, C, H, W) map")
        self.last = last

    def _periods(self) -> None:
        nodes = [n for n, k in self.kind.items() if k in (FEATURE, PLACEHOLDER)]
        period = []
        for axis in (0, 1):
            value = 1
            for node in nodes:
                value = math.lcm(value, self.scale[node][axis].numerator)
            period.append(value)
        self.period = (period[0], period[1])
        self.shift = {
            n: (int(self.period[0] / self.scale[n][0]), int(self.period[1] / self.scale[n][1]))
            for n in nodes
        }
        self.interior: dict[Node, Window] = {}
        for node in nodes:
            rows, cols = self.grid[node]
            whole = Window(0, rows, 0, cols)
            prepared = self.prepared.get(node)
            inner = whole if prepared is None or prepared.interior is None else prepared.interior
            self.interior[node] = Window(
                max(inner.top, 0),
                min(inner.bottom, rows),
                max(inner.left, 0),
                min(inner.right, cols),
            )
        self.periodic = (
            max(self.period) <= MAX_PERIOD
            and self.scale[self.last] == (1, 1)  # grids that do not divide evenly: no shifts
            and all(p.periodic for p in self.prepared.values())
        )


def unknown(step: Step) -> str:
    """The message for an operation no entry of the table names."""
    node = step.node
    if node.op == "call_module":
        return f"module {type(step.module).__name__} is not known to the tracer"
    if node.op == "call_method":
        return f"method .{node.target}() is not known to the tracer"
    return f"function {getattr(node.target, '__name__', node.target)} is not known to the tracer"


MAX_SIZES = 8  # input sizes whose geometry a graph keeps


def geometry_of(graph: Graph, num_inputs: int, inputs: tuple[torch.Tensor, ...]) -> Geometry:
    """The graph's geometry at the inputs' sizes, made once per size and shared.

    Raises
    ------
    TraceFailure, NotLocal
        As :class:`Geometry` does (remembered as well).
    """
    key = (num_inputs, *(tuple(x.shape) for x in inputs), inputs[0].dtype, inputs[0].device)
    found = graph.geometries.get(key)
    if found is None:
        try:
            found = Geometry(graph, num_inputs, inputs)
        except (TraceFailure, NotLocal) as problem:
            found = problem
        if len(graph.geometries) >= MAX_SIZES:
            graph.geometries.clear()
        graph.geometries[key] = found
    if isinstance(found, (TraceFailure, NotLocal)):
        raise type(found)(*found.args)
    return found
