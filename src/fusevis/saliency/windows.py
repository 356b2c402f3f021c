"""How each operation runs over a window of its output: the rules of the cone and the sweep.

Every feature map of a traced network lives on its own *grid* (its rows and columns: the
image's for a full-resolution map, half of them after a stride-2 layer, ...) and its image
axes sit at two positions of its shape (the last two, or elsewhere after a ``permute``). A
:class:`Rule` says, for one operation,

* ``prepare`` — once per model and input size, from the full-size shapes
  (:mod:`fusevis.saliency.geometry`): whether it is local, where the image axes of its
  result are, how its grid relates to its source's (a stride, an up-sampling factor), which
  output positions it computes the same way everywhere (its *interior*), and anything it
  needs precomputed (interpolation matrices, padding maps);
* ``need`` — the window of its source that a window of its output reads (border effects
  included: reflected rows, replicated ones, wrapped ones);
* ``forward`` — its output over that window, exactly what the full-image operation gives
  there, from its sources over (at least) the windows they need.

The cone (:mod:`fusevis.saliency.cone`) plans and runs a pixel with these; the recorded
sweep differentiates them over a window (:mod:`fusevis.saliency.ops`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn import functional

from fusevis.saliency.extent import NotLocal, TraceFailure
from fusevis.saliency.field import Window

Node = torch.fx.Node
STANDARD = (-2, -1)  # the image axes of a (..., H, W) tensor
ONE = Fraction(1)

# what a node of a traced graph is at one input size (see fusevis.saliency.geometry)
PLACEHOLDER, FEATURE, PARAMETER, CONSTANT, OUTPUT, ATTRIBUTE = range(6)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :meth:`Rule.prepare` found for one node at one input size.

    Attributes
    ----------
    info : object
        The rule's own precomputed data.
    axes : (int, int)
        Negative positions of the result's row and column axes.
    factor : (Fraction, Fraction)
        Source pixels per result pixel (2 after a stride-2 layer, 1/2 after up-sampling).
    interior : Window or None
        Output positions computed the same way everywhere (no border effect): a plan shifted
        inside it stays a plan. None: all of the grid.
    periodic : bool
        False when the operation's reads do not repeat along the grid: every pixel is then
        planned on its own.
    crops : bool
        False when the operation on a crop computes other values than on the whole image
        (an interpolation with ``align_corners=True``, whose weights drift along the image).
    """

    info: Any = None
    axes: tuple[int, int] = STANDARD
    factor: tuple[Fraction, Fraction] = (ONE, ONE)
    interior: Window | None = None
    periodic: bool = True
    crops: bool = True


Values = dict[Node, tuple[Any, "Window | None"]]  # a value, the window it covers (None: whole)


def cut(tensor: torch.Tensor, have: Window, want: Window, axes: tuple[int, int] = STANDARD) -> Any:
    """The part ``want`` of a tensor whose image axes cover ``have`` (a view, no copy)."""
    if have == want:
        return tensor
    if axes == STANDARD:
        return tensor[
            ...,
            want.top - have.top : want.bottom - have.top,
            want.left - have.left : want.right - have.left,
        ]
    return tensor.narrow(axes[0], want.top - have.top, want.bottom - want.top).narrow(
        axes[1], want.left - have.left, want.right - want.left
    )


def call_node(node: Node, module: nn.Module | None, value_of: Callable[[Node], object]) -> Any:
    """Run ``node``'s operation with every node among its arguments replaced by ``value_of``."""
    args = torch.fx.node.map_arg(node.args, value_of)
    kwargs = torch.fx.node.map_arg(node.kwargs, value_of)
    if node.op == "call_module":
        return module(*args, **kwargs)
    if node.op == "call_method":
        subject, *rest = args
        return getattr(subject, node.target)(*rest, **kwargs)
    return node.target(*args, **kwargs)


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, without ``nn.Module.__call__``'s overhead when no hooks are set."""
    if module._forward_hooks or module._forward_pre_hooks:
        return module(x)
    return module.forward(x)


def bind(node: Node, names: tuple[str, ...], geo: Any) -> dict[str, Any]:
    """A call's arguments by parameter name (``names[0]`` is the tensor), constants resolved."""
    found = dict(zip(names, node.args, strict=False))
    found.update(node.kwargs)
    return {k: geo.value(v) if k != names[0] else v for k, v in found.items()}


def pair(value: Any) -> tuple[int, int]:
    """``(v, v)`` for a number, the two entries of a pair."""
    if isinstance(value, (int, float)):
        return (int(value), int(value))
    values = tuple(int(v) for v in value)
    return (values[0], values[-1])


def positive(dim: int, rank: int) -> int:
    """``dim`` as a non-negative axis of a rank-``rank`` tensor."""
    return dim + rank if dim < 0 else dim


def refuse(step: Any, geo: Any, problem: str, not_local: bool = False) -> Exception:
    """A :class:`TraceFailure` (or :class:`NotLocal`) naming the operation and its line."""
    message = f"{geo.describe(step)}: {problem}"
    return NotLocal(message) if not_local else TraceFailure(message)


# -- the border: zero, reflected, replicated or wrapped rows ------------------------------


def _mapped(index: int, size: int, mode: str) -> int | None:
    """Where row ``index`` of a padded axis reads from (None: a constant)."""
    if 0 <= index < size:
        return index
    if mode == "reflect":
        period = 2 * (size - 1)
        index = abs(index) % period if period else 0
        return period - index if index >= size else index
    if mode == "replicate":
        return min(max(index, 0), size - 1)
    if mode == "circular":
        return index % size
    return None


def _axis_need(lo: int, hi: int, size: int, mode: str) -> tuple[int, int] | None:
    if 0 <= lo and hi <= size:
        return lo, hi
    if mode == "constant":
        lo, hi = max(lo, 0), min(hi, size)
        return (lo, hi) if lo < hi else None
    found = [_mapped(i, size, mode) for i in range(lo, hi)]
    return min(found), max(found) + 1


def border_need(raw: Window, grid: tuple[int, int], mode: str) -> Window | None:
    """The source window read for ``raw`` (which may reach past the grid) under ``mode``."""
    if raw.top >= 0 and raw.left >= 0 and raw.bottom <= grid[0] and raw.right <= grid[1]:
        return raw
    rows = _axis_need(raw.top, raw.bottom, grid[0], mode)
    cols = _axis_need(raw.left, raw.right, grid[1], mode)
    if rows is None or cols is None:
        return None
    return Window(rows[0], rows[1], cols[0], cols[1])


def gather(
    value: tuple[torch.Tensor, Window] | None,
    raw: Window,
    grid: tuple[int, int],
    mode: str,
    fill: float,
    lead: tuple[int, ...],
    like: torch.Tensor | None = None,
) -> torch.Tensor:
    """A source over ``raw``, rows and columns past the grid made as ``mode`` makes them.

    ``value`` is the source over a window holding ``border_need(raw)`` (None where nothing
    is read); ``lead`` its leading dimensions, ``like`` a tensor giving dtype and device.
    """
    if raw.top >= 0 and raw.left >= 0 and raw.bottom <= grid[0] and raw.right <= grid[1]:
        return cut(value[0], value[1], raw)
    if mode == "constant":
        inside = Window(
            max(raw.top, 0), min(raw.bottom, grid[0]), max(raw.left, 0), min(raw.right, grid[1])
        )
        if value is None or inside.top >= inside.bottom or inside.left >= inside.right:
            reference = value[0] if value is not None else like
            return reference.new_full((*lead, *raw.shape), fill)
        x = cut(value[0], value[1], inside)
        pad = (
            inside.left - raw.left,
            raw.right - inside.right,
            inside.top - raw.top,
            raw.bottom - inside.bottom,
        )
        return functional.pad(x, pad, value=fill)
    tensor, have = value
    rows = [_mapped(i, grid[0], mode) - have.top for i in range(raw.top, raw.bottom)]
    cols = [_mapped(i, grid[1], mode) - have.left for i in range(raw.left, raw.right)]
    device = tensor.device
    tensor = tensor.index_select(-2, torch.tensor(rows, device=device))
    return tensor.index_select(-1, torch.tensor(cols, device=device))


def _place(y: torch.Tensor, have: Window, want: Window) -> torch.Tensor:
    """``y`` (covering ``have``) over ``want``, zero where it does not reach."""
    inside = Window(
        max(want.top, have.top),
        min(want.bottom, have.bottom),
        max(want.left, have.left),
        min(want.right, have.right),
    )
    if inside == want:
        return cut(y, have, want)
    if inside.top >= inside.bottom or inside.left >= inside.right:
        return y.new_zeros((*y.shape[:-2], *want.shape))
    x = cut(y, have, inside)
    pad = (
        inside.left - want.left,
        want.right - inside.right,
        inside.top - want.top,
        want.bottom - inside.bottom,
    )
    return functional.pad(x, pad)


# -- rules --------------------------------------------------------------------------------


class Rule:
    """An operation applied at every pixel alone: the window passes through.

    The sources are cut to the output's window and the operation runs on them; the field
    is the union of the sources' (the default rule: element-wise operations, channel
    reductions and concatenations, normalisations over the channels, ...).
    """

    def check(self, step: Any, geo: Any) -> None:
        """Further conditions on the arguments (a dim that must not be an image axis)."""

    def prepare(self, step: Any, geo: Any) -> Prepared:
        """Check the sources share one grid and layout; the result keeps them."""
        sources = geo.features(step)
        if not sources:
            raise refuse(step, geo, "no feature map among its arguments")
        first = sources[0]
        grid, axes, scale = geo.grid[first], geo.axes[first], geo.scale[first]
        for other in sources[1:]:
            if geo.grid[other] != grid or geo.scale[other] != scale:
                if geo.grid[other] == (1, 1) or grid == (1, 1):
                    raise refuse(
                        step, geo, "spreads a 1×1 map (a global quantity) over the image", True
                    )
                raise refuse(step, geo, "combines feature maps of different sizes")
            if geo.axes[other] != axes:
                raise refuse(step, geo, "combines feature maps whose image axes differ")
        for constant in step.sources:
            size = (
                geo.shape.get(constant)
                if geo.kind.get(constant) in (PARAMETER, ATTRIBUTE)
                else None
            )
            if (
                size
                and len(size) >= 2
                and grid != (1, 1)
                and (size[axes[0]], size[axes[1]]) == grid
            ):
                raise refuse(step, geo, "combines a map with a constant as large as the image")
        self.check(step, geo)
        shape = geo.shape[step.node]  # a tuple's first item's
        if len(shape) < 2 or (shape[axes[0]], shape[axes[1]]) != grid:
            raise refuse(step, geo, "changes the image axes")
        return Prepared(info=axes, axes=axes)

    def need(self, step: Any, info: Any, window: Window, geo: Any) -> Window | None:
        """The window of the sources that ``window`` of the output reads."""
        return window

    def forward(
        self,
        step: Any,
        info: Any,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> Any:
        """The operation's output over ``window``."""
        axes = info
        if step.module is not None and len(step.sources) == 1:
            source, have = values[step.sources[0]]
            return _call(step.module, cut(source, have, window, axes))

        def value_of(node: Node) -> Any:
            value, have = values[node]
            return value if have is None else cut(value, have, window, axes)

        return call_node(step.node, step.module, value_of)


ELEMENTWISE = Rule()


def _dims(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


class Reduce(Rule):
    """A reduction (or softmax, normalisation) over dims that must not be the image axes.

    ``dim_at``/``dim_name``: where the call gives the dims; ``default``: when it does not
    (None: over everything, which is not local).
    """

    def __init__(self, dim_at: int = 1, dim_name: str = "dim", default: Any = None) -> None:
        self.dim_at, self.dim_name, self.default = dim_at, dim_name, default

    def dims(self, step: Any, geo: Any) -> list[int] | None:
        """The reduced dims (None: all)."""
        node, module = step.node, step.module
        if module is not None:
            dim = getattr(module, "dim", self.default)
            if isinstance(module, nn.Softmax2d):
                dim = -3
            elif dim is None and isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
                rank = len(geo.shape[step.sources[0]])
                dim = 0 if rank in (0, 1, 3) else 1
            return _dims(dim)
        value = node.kwargs.get(
            self.dim_name, node.args[self.dim_at] if len(node.args) > self.dim_at else self.default
        )
        return _dims(geo.value(value))

    def check(self, step: Any, geo: Any) -> None:  # noqa: D102
        source = geo.features(step)[0]
        rank = len(geo.shape[source])
        axes = {positive(a, rank) for a in geo.axes[source]}
        dims = self.dims(step, geo)
        if dims is None or any(positive(d, rank) in axes for d in dims):
            raise refuse(step, geo, "reduces over the image axes: it mixes the whole image", True)

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        self.check(step, geo)
        source = geo.features(step)[0]
        rank = len(geo.shape[source])
        axes = [positive(a, rank) for a in geo.axes[source]]
        shape = geo.shape[step.node]  # a tuple's first item's
        out_rank = len(shape)
        dims = self.dims(step, geo)
        removed = 0 if out_rank == rank else sum(1 for d in dims if positive(d, rank) < axes[0])
        new = (axes[0] - removed - out_rank, axes[1] - removed - out_rank)
        if out_rank < 2 or (shape[new[0]], shape[new[1]]) != geo.grid[source]:
            raise refuse(step, geo, "changes the image axes")
        return Prepared(info=geo.axes[source], axes=new)


class MaxMin(Rule):
    """``torch.max``/``torch.min``: element-wise between two maps, a reduction with a dim."""

    def __init__(self) -> None:
        self.reduce = Reduce(1, "dim", None)

    def _pick(self, step: Any, geo: Any) -> Rule:
        node = step.node
        other = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        if isinstance(other, Node) and geo.kind.get(other) in (PLACEHOLDER, FEATURE, PARAMETER):
            return ELEMENTWISE
        return self.reduce

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        return self._pick(step, geo).prepare(step, geo)


class Concat(Rule):
    """Concatenation (or stack) of maps along an axis that is not an image axis."""

    def __init__(self, stack: bool = False) -> None:
        self.stack = stack

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        node = step.node
        tensors = node.args[0] if node.args else node.kwargs["tensors"]
        dim = int(geo.value(node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)))
        sources = [t for t in tensors if isinstance(t, Node)]
        if len(sources) != len(tensors) or any(
            geo.kind.get(t) not in (PLACEHOLDER, FEATURE) for t in sources
        ):
            raise refuse(step, geo, "concatenates a constant with feature maps")
        first = sources[0]
        rank = len(geo.shape[first])
        axes = tuple(positive(a, rank) for a in geo.axes[first])
        out_rank = len(geo.shape[node])
        if self.stack:
            d = positive(dim, out_rank)
            if axes[0] < d <= axes[1]:
                raise refuse(step, geo, "stacks between the image axes")
            new = tuple(a + 1 if a >= d else a for a in axes)
        else:
            if positive(dim, rank) in axes:
                raise refuse(step, geo, "concatenates along an image axis")
            new = axes
        negative = (new[0] - out_rank, new[1] - out_rank)
        for other in sources[1:]:
            if geo.grid[other] != geo.grid[first] or geo.axes[other] != geo.axes[first]:
                raise refuse(step, geo, "combines feature maps of different sizes")
        return Prepared(info=geo.axes[first], axes=negative)

    def forward(  # noqa: D102
        self,
        step: Any,
        info: Any,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> Any:
        def value_of(node: Node) -> Any:
            value, have = values[node]
            return value if have is None else cut(value, have, window, info)

        return call_node(step.node, step.module, value_of)


@dataclass(frozen=True)
class Sliding:
    """A convolution or pooling window: kernel, stride, padding before, dilation, border."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    before: tuple[int, int]
    dilation: tuple[int, int]
    mode: str = "constant"  # how rows past the border are made
    fill: float = 0.0
    grid: tuple[int, int] = (0, 0)  # the source's grid
    extra: Any = None

    def raw(self, window: Window) -> Window:
        """The source rows/columns a window of output reads, border ignored."""
        (kr, kc), (sr, sc), (pr, pc), (dr, dc) = (
            self.kernel,
            self.stride,
            self.before,
            self.dilation,
        )
        return Window(
            sr * window.top - pr,
            sr * (window.bottom - 1) - pr + dr * (kr - 1) + 1,
            sc * window.left - pc,
            sc * (window.right - 1) - pc + dc * (kc - 1) + 1,
        )

    def interior(self, out: tuple[int, int]) -> Window:
        """Output positions that read no row or column past the border."""
        bounds = []
        for axis in (0, 1):
            k, s, p, d = (
                self.kernel[axis],
                self.stride[axis],
                self.before[axis],
                self.dilation[axis],
            )
            size = self.grid[axis]
            lo = -(-p // s)
            hi = (size - 1 - d * (k - 1) + p) // s + 1
            bounds.append((max(lo, 0), min(max(hi, 0), out[axis])))
        return Window(bounds[0][0], bounds[0][1], bounds[1][0], bounds[1][1])


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


class Convolution(Rule):
    """``Conv2d`` (any stride, dilation, groups, padding and ``padding_mode``) or ``conv2d``.

    Over a window: the source rows it reads, the border's padding made explicit (zeros,
    reflected, replicated or wrapped), then a 'valid' convolution with the layer's stride.
    """

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        if geo.axes[source] != STANDARD or len(geo.shape[source]) != 4:
            raise refuse(step, geo, "a convolution over axes that are not the image axes")
        module = step.module
        if module is not None:
            kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
            padding, groups = module.padding, module.groups
            mode = {"zeros": "constant"}.get(module.padding_mode, module.padding_mode)
        else:
            args = bind(step.node, _CONV_ARGS, geo)
            weight = geo.shape_of(args["weight"])
            kernel = (int(weight[-2]), int(weight[-1]))
            stride, dilation = pair(args.get("stride", 1)), pair(args.get("dilation", 1))
            padding, groups, mode = args.get("padding", 0), int(args.get("groups", 1)), "constant"
        kernel, stride, dilation = pair(kernel), pair(stride), pair(dilation)
        if padding == "valid":
            before = (0, 0)
        elif padding == "same":
            before = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
        else:
            before = pair(padding)
        sliding = Sliding(kernel, stride, before, dilation, mode, 0.0, geo.grid[source], groups)
        out = geo.shape[step.node]
        return Prepared(
            info=sliding,
            factor=(Fraction(stride[0]), Fraction(stride[1])),
            interior=sliding.interior((int(out[-2]), int(out[-1]))),
        )

    def need(self, step: Any, info: Sliding, window: Window, geo: Any) -> Window | None:  # noqa: D102
        return border_need(info.raw(window), info.grid, info.mode)

    def forward(  # noqa: D102
        self,
        step: Any,
        info: Sliding,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        node, module = step.node, step.module
        source = step.sources[0]
        value = values.get(source)
        raw = info.raw(window)
        if module is not None:
            weight, bias = weights.get(node.target, module), module.bias
        else:
            args = bind(node, _CONV_ARGS, geo)
            weight = values[args["weight"]][0]
            bias = args.get("bias")
            bias = values[bias][0] if isinstance(bias, Node) else bias
        lead = tuple(geo.shape[source][:-2])
        x = gather(value, raw, info.grid, info.mode, info.fill, lead, weight)
        return conv(x, weight, bias, info.stride, 0, info.dilation, info.extra)


_MAX_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_ARGS = (
    "input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
    "divisor_override",
)  # fmt: skip


class Pooling(Rule):
    """Max or average pooling (any stride, padding, dilation, ``ceil_mode``, divisor)."""

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        if geo.axes[source] != STANDARD:
            raise refuse(step, geo, "pooling over axes that are not the image axes")
        module, node = step.module, step.node
        if module is not None:
            is_max = isinstance(module, nn.MaxPool2d)
            kernel, stride, padding = module.kernel_size, module.stride, module.padding
            dilation = getattr(module, "dilation", 1)
            returns = getattr(module, "return_indices", False)
            include = getattr(module, "count_include_pad", True)
            divisor = getattr(module, "divisor_override", None)
        else:
            is_max = node.target is functional.max_pool2d
            args = bind(node, _MAX_ARGS if is_max else _AVG_ARGS, geo)
            kernel, stride = args["kernel_size"], args.get("stride")
            padding, dilation = args.get("padding", 0), args.get("dilation", 1)
            returns = args.get("return_indices", False)
            include = args.get("count_include_pad", True)
            divisor = args.get("divisor_override")
        if returns:
            raise refuse(step, geo, "pooling that returns indices")
        kernel = pair(kernel)
        stride = pair(stride) if stride not in (None, ()) and stride != [] else kernel
        extra = None if is_max else (bool(include), divisor)
        fill = -math.inf if is_max else 0.0
        sliding = Sliding(
            kernel, stride, pair(padding), pair(dilation), "constant", fill, geo.grid[source], extra
        )
        out = geo.shape[step.node]
        return Prepared(
            info=sliding,
            factor=(Fraction(stride[0]), Fraction(stride[1])),
            interior=sliding.interior((int(out[-2]), int(out[-1]))),
        )

    def need(self, step: Any, info: Sliding, window: Window, geo: Any) -> Window | None:  # noqa: D102
        return border_need(info.raw(window), info.grid, "constant")

    def forward(  # noqa: D102
        self,
        step: Any,
        info: Sliding,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        source = step.sources[0]
        value = values.get(source)
        like = value[0] if value is not None else None
        lead = tuple(geo.shape[source][:-2])
        x = gather(value, info.raw(window), info.grid, "constant", info.fill, lead, like)
        if info.extra is None:
            return functional.max_pool2d(x, info.kernel, info.stride, 0, info.dilation)
        y = functional.avg_pool2d(x, info.kernel, info.stride, 0)
        include, divisor = info.extra
        if divisor:
            return y * (info.kernel[0] * info.kernel[1] / divisor)
        scales = []
        for axis, (lo, hi) in enumerate(((window.top, window.bottom), (window.left, window.right))):
            k, s, p, size = info.kernel[axis], info.stride[axis], info.before[axis], info.grid[axis]
            found = []
            for j in range(lo, hi):
                start = j * s - p
                end = min(start + k, size + p)
                count = end - start if include else min(end, size) - max(start, 0)
                found.append(k / count)
            scales.append(found)
        if all(v == 1.0 for v in scales[0]) and all(v == 1.0 for v in scales[1]):
            return y
        rows = torch.tensor(scales[0], dtype=y.dtype, device=y.device)
        cols = torch.tensor(scales[1], dtype=y.dtype, device=y.device)
        return y * (rows[:, None] * cols[None, :])


_PAD_ARGS = ("input", "pad", "mode", "value")
_PAD_MODES = {
    nn.ZeroPad2d: "constant",
    nn.ConstantPad2d: "constant",
    nn.ReflectionPad2d: "reflect",
    nn.ReplicationPad2d: "replicate",
}
if hasattr(nn, "CircularPad2d"):
    _PAD_MODES[nn.CircularPad2d] = "circular"


class Padding(Rule):
    """Padding modules and ``F.pad``: the map shifted by the padding before it.

    A padded map's row j is the source's row j − top (reflected, replicated, wrapped or a
    constant past the border); a following 'valid' convolution brings the field back
    around the pixel.
    """

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        if geo.axes[source] != STANDARD:
            raise refuse(step, geo, "padding over axes that are not the image axes")
        module = step.module
        if module is not None:
            pads = tuple(module.padding)
            mode = next(m for cls, m in _PAD_MODES.items() if isinstance(module, cls))
            value = float(getattr(module, "value", 0.0))
        else:
            args = bind(step.node, _PAD_ARGS, geo)
            pads, mode = tuple(args["pad"]), args.get("mode", "constant") or "constant"
            value = float(args.get("value") or 0.0)
        if len(pads) == 2:
            pads = (*pads, 0, 0)
        if len(pads) != 4:
            raise refuse(step, geo, "padding of axes other than the image axes")
        left, right, top, bottom = (int(p) for p in pads)
        grid = geo.grid[source]
        if mode != "constant" and min(left, right, top, bottom) < 0:
            raise refuse(step, geo, f"negative {mode} padding")
        interior = Window(max(top, 0), max(top, 0) + grid[0], max(left, 0), max(left, 0) + grid[1])
        return Prepared(info=((top, left), mode, value, grid), interior=interior)

    def need(self, step: Any, info: Any, window: Window, geo: Any) -> Window | None:  # noqa: D102
        (top, left), mode, _, grid = info
        return border_need(window.shift(-top, -left), grid, mode)

    def forward(  # noqa: D102
        self,
        step: Any,
        info: Any,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        (top, left), mode, fill, grid = info
        source = step.sources[0]
        value = values.get(source)
        like = (
            value[0]
            if value is not None
            else next(v[0] for v in values.values() if isinstance(v[0], torch.Tensor))
        )
        lead = tuple(geo.shape[source][:-2])
        return gather(value, window.shift(-top, -left), grid, mode, fill, lead, like)


_TRANSPOSED_ARGS = (
    "input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation",
)  # fmt: skip


class Transposed(Rule):
    """``ConvTranspose2d`` or ``conv_transpose2d``: the source rows that reach the window."""

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        if geo.axes[source] != STANDARD:
            raise refuse(step, geo, "a convolution over axes that are not the image axes")
        module = step.module
        if module is not None:
            if module.padding_mode != "zeros":
                raise refuse(
                    step, geo, f"transposed convolution with {module.padding_mode} padding"
                )
            kernel, stride, padding = module.kernel_size, module.stride, module.padding
            dilation, groups = module.dilation, module.groups
        else:
            args = bind(step.node, _TRANSPOSED_ARGS, geo)
            weight = geo.shape_of(args["weight"])
            kernel = (int(weight[-2]), int(weight[-1]))
            stride, padding = args.get("stride", 1), args.get("padding", 0)
            dilation, groups = args.get("dilation", 1), int(args.get("groups", 1))
        kernel, stride, padding, dilation = (
            pair(kernel),
            pair(stride),
            pair(padding),
            pair(dilation),
        )
        grid = geo.grid[source]
        out = geo.shape[step.node]
        bounds = []
        for axis in (0, 1):
            k, s, p, d = kernel[axis], stride[axis], padding[axis], dilation[axis]
            lo = max(0, d * (k - 1) - p - s + 1)
            hi = min(int(out[axis - 2]), s * grid[axis] - p)
            bounds.append((lo, max(lo, hi)))
        info = Sliding(kernel, stride, padding, dilation, "constant", 0.0, grid, groups)
        return Prepared(
            info=info,
            factor=(Fraction(1, stride[0]), Fraction(1, stride[1])),
            interior=Window(bounds[0][0], bounds[0][1], bounds[1][0], bounds[1][1]),
        )

    def need(self, step: Any, info: Sliding, window: Window, geo: Any) -> Window | None:  # noqa: D102
        found = []
        for axis, (lo, hi) in enumerate(((window.top, window.bottom), (window.left, window.right))):
            k, s, p, d = (
                info.kernel[axis],
                info.stride[axis],
                info.before[axis],
                info.dilation[axis],
            )
            first = max(0, -(-(lo + p - d * (k - 1)) // s))
            last = min(info.grid[axis], (hi - 1 + p) // s + 1)
            if first >= last:
                return None
            found.append((first, last))
        return Window(found[0][0], found[0][1], found[1][0], found[1][1])

    def forward(  # noqa: D102
        self,
        step: Any,
        info: Sliding,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        node, module = step.node, step.module
        if module is not None:
            weight, bias = module.weight, module.bias
        else:
            args = bind(node, _TRANSPOSED_ARGS, geo)
            weight = values[args["weight"]][0]
            bias = args.get("bias")
            bias = values[bias][0] if isinstance(bias, Node) else bias
        need = self.need(step, info, window, geo)
        source = step.sources[0]
        channels = int(geo.shape[node][-3])
        if need is None:
            y = weight.new_zeros((*geo.shape[source][:-3], channels, *window.shape))
        else:
            value, have = values[source]
            x = cut(value, have, need)
            y = functional.conv_transpose2d(
                x, weight, None, info.stride, 0, 0, info.extra, info.dilation
            )
            (sr, sc), (pr, pc) = info.stride, info.before
            top, left = sr * need.top - pr, sc * need.left - pc
            y = _place(y, Window(top, top + y.shape[-2], left, left + y.shape[-1]), window)
        return y if bias is None else y + bias.reshape(-1, 1, 1)


@dataclass
class _Axis:
    """One axis of a separable resampling: out × in weights, and the rows each output reads."""

    matrix: torch.Tensor  # (out, in), in the inputs' dtype and on their device
    first: list[int]
    last: list[int]
    count: list[int]  # how many source rows it reads
    picks: list[int] | None  # nearest: the one source row of every output row
    cast: dict[tuple, torch.Tensor] = field(default_factory=dict)

    def weights(self, lo: int, hi: int, src: Window, axis: int, like: torch.Tensor) -> Any:
        key = (like.dtype, like.device)
        matrix = self.cast.get(key)
        if matrix is None:
            matrix = self.cast[key] = self.matrix.to(dtype=like.dtype, device=like.device)
        if axis == 0:
            return matrix[lo:hi, src.top : src.bottom]
        return matrix[lo:hi, src.left : src.right]


_INTERPOLATE_ARGS = (
    "input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias",
)  # fmt: skip


def _resampling_axis(
    call: Callable[[torch.Tensor, int], torch.Tensor], size: int, dtype: torch.dtype, device: Any
) -> _Axis:
    # in the inputs' dtype and on their device: PyTorch computes the source positions in
    # that precision, and which rows an output reads must be exactly its
    eye = torch.eye(size, dtype=dtype, device=device)
    matrix = call(eye, size).T.contiguous()  # (out, in)
    nonzero = (matrix != 0).to(torch.int8)
    width = matrix.shape[1]
    first = nonzero.argmax(dim=1).tolist()  # a row reading nothing: 0 .. width - 1
    last = (width - 1 - nonzero.flip(1).argmax(dim=1)).tolist()
    count = nonzero.sum(1).tolist()
    one_hot = bool(((matrix == 0) | (matrix == 1)).all()) and all(c == 1 for c in count)
    return _Axis(matrix, first, last, count, first if one_hot else None)


def _periodic_interior(axis: _Axis, factor: Fraction) -> tuple[int, int] | None:
    """The output rows whose reads repeat with the factor's period (None: they do not)."""
    out_period, in_period = factor.denominator, factor.numerator
    rows = axis.matrix.shape[0]
    if out_period > 64 or rows < 3 * out_period:
        return None
    centre = rows // 2
    ok = [False] * rows
    for j in range(rows):
        k, phase = divmod(j - centre, out_period)
        reference = centre + phase
        if reference >= rows:
            continue
        shift = k * in_period  # the rows read repeat (their weights may differ in the last bit)
        ok[j] = (
            axis.first[j] == axis.first[reference] + shift
            and axis.last[j] == axis.last[reference] + shift
            and axis.count[j] == axis.count[reference]
        )
    if not ok[centre]:
        return None
    lo = hi = centre
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < rows and ok[hi]:
        hi += 1
    if 2 * (hi - lo) < rows:  # only near the centre: the reads drift
        return None
    return lo, hi


def _same_weights(axis: _Axis, factor: Fraction, rows: tuple[int, int]) -> bool:
    """Whether the weights repeat too, up to rounding (not with ``align_corners=True``)."""
    out_period, in_period = factor.denominator, factor.numerator
    matrix = axis.matrix
    lo, hi = rows
    for j in range(lo + out_period, hi):
        a, b = axis.first[j], axis.first[j - out_period]
        width = axis.last[j] - a + 1
        if a != b + in_period or not torch.allclose(
            matrix[j, a : a + width], matrix[j - out_period, b : b + width], rtol=1e-4, atol=1e-6
        ):
            return False
    return True


class Resampling(Rule):
    """``interpolate`` and ``Upsample`` (by scale or size; every mode; ``align_corners``).

    PyTorch's resampling is separable: output = R_rows · x · R_colsᵀ. The two matrices are
    made once per size by resampling an identity with the layer's own arguments, so a
    window of the output is computed from just the source rows its matrix rows touch.
    """

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        if geo.axes[source] != STANDARD or len(geo.shape[source]) != 4:
            raise refuse(step, geo, "resampling of axes that are not the image axes")
        module = step.module
        if module is not None:
            options = {
                "size": module.size,
                "scale_factor": module.scale_factor,
                "mode": module.mode,
                "align_corners": module.align_corners,
                "recompute_scale_factor": getattr(module, "recompute_scale_factor", None),
            }
        else:
            options = bind(step.node, _INTERPOLATE_ARGS, geo)
            options.pop("input", None)
        size, scale = options.pop("size", None), options.pop("scale_factor", None)
        grid_in, out = geo.grid[source], geo.shape[step.node]
        grid_out = (int(out[-2]), int(out[-1]))

        def along(axis: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
            def call(eye: torch.Tensor, count: int) -> torch.Tensor:
                x = (
                    eye.reshape(1, count, count, 1)
                    if axis == 0
                    else eye.reshape(1, count, 1, count)
                )
                if size is not None:
                    target = (grid_out[0], 1) if axis == 0 else (1, grid_out[1])
                    y = functional.interpolate(x, size=target, **options)
                else:
                    factors = scale if isinstance(scale, (tuple, list)) else (scale, scale)
                    factor = (float(factors[0]), 1.0) if axis == 0 else (1.0, float(factors[-1]))
                    y = functional.interpolate(x, scale_factor=factor, **options)
                return y[0, :, :, 0] if axis == 0 else y[0, :, 0, :]

            return call

        axes = [_resampling_axis(along(a), grid_in[a], geo.dtype, geo.device) for a in (0, 1)]
        factors = (Fraction(grid_in[0], grid_out[0]), Fraction(grid_in[1], grid_out[1]))
        interiors = [_periodic_interior(axes[a], factors[a]) for a in (0, 1)]
        periodic = all(i is not None for i in interiors)
        interior = (
            Window(interiors[0][0], interiors[0][1], interiors[1][0], interiors[1][1])
            if periodic
            else None
        )
        crops = periodic and all(
            _same_weights(axes[a], factors[a], interiors[a])
            for a in (0, 1)  # type: ignore[arg-type]
        )
        return Prepared(
            info=axes, factor=factors, interior=interior, periodic=periodic, crops=crops
        )

    def need(self, step: Any, info: list[_Axis], window: Window, geo: Any) -> Window | None:  # noqa: D102
        rows, cols = info
        return Window(
            min(rows.first[window.top : window.bottom]),
            max(rows.last[window.top : window.bottom]) + 1,
            min(cols.first[window.left : window.right]),
            max(cols.last[window.left : window.right]) + 1,
        )

    def forward(  # noqa: D102
        self,
        step: Any,
        info: list[_Axis],
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        rows, cols = info
        need = self.need(step, info, window, geo)
        value, have = values[step.sources[0]]
        x = cut(value, have, need)
        if rows.picks is not None:
            picks = [p - need.top for p in rows.picks[window.top : window.bottom]]
            x = x.index_select(-2, torch.tensor(picks, device=x.device))
        else:
            x = torch.matmul(rows.weights(window.top, window.bottom, need, 0, x), x)
        if cols.picks is not None:
            picks = [p - need.left for p in cols.picks[window.left : window.right]]
            return x.index_select(-1, torch.tensor(picks, device=x.device))
        return torch.matmul(x, cols.weights(window.left, window.right, need, 1, x).T)


class Shuffle(Rule):
    """``PixelShuffle`` (``up``) and ``PixelUnshuffle``: channels to pixels and back."""

    def __init__(self, up: bool) -> None:
        self.up = up

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        if geo.axes[source] != STANDARD:
            raise refuse(step, geo, "pixel shuffle of axes that are not the image axes")
        module = step.module
        if module is not None:
            r = module.upscale_factor if self.up else module.downscale_factor
        else:
            r = geo.value(
                step.node.args[1]
                if len(step.node.args) > 1
                else next(iter(step.node.kwargs.values()))
            )
        r = int(r)
        factor = Fraction(1, r) if self.up else Fraction(r)
        return Prepared(info=r, factor=(factor, factor))

    def need(self, step: Any, info: int, window: Window, geo: Any) -> Window | None:  # noqa: D102
        r = info
        if self.up:
            return Window(
                window.top // r,
                (window.bottom - 1) // r + 1,
                window.left // r,
                (window.right - 1) // r + 1,
            )
        return Window(r * window.top, r * window.bottom, r * window.left, r * window.right)

    def forward(  # noqa: D102
        self,
        step: Any,
        info: int,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        r = info
        need = self.need(step, info, window, geo)
        value, have = values[step.sources[0]]
        x = cut(value, have, need)
        if not self.up:
            return functional.pixel_unshuffle(x, r)
        y = functional.pixel_shuffle(x, r)
        top, left = r * need.top, r * need.left
        return cut(y, Window(top, top + y.shape[-2], left, left + y.shape[-1]), window)


def _layout_preserved(step: Any, geo: Any) -> tuple[int, int]:
    """The result's image axes for a reshape that keeps the source's last two (or refuse)."""
    source = geo.features(step)[0]
    shape_in, shape_out = geo.shape[source], geo.shape[step.node]
    grid = geo.grid[source]
    if (
        geo.axes[source] != STANDARD
        or len(shape_out) < 2
        or tuple(shape_out[-2:]) != grid
        or math.prod(shape_in[:-2]) != math.prod(shape_out[:-2])
    ):
        raise refuse(step, geo, "reshapes the image axes")
    return STANDARD


class Reshape(Rule):
    """``view``, ``reshape``, ``flatten``, ``unflatten``, ``squeeze``, ``unsqueeze``, ...

    Allowed when the image axes stay the last two, untouched (channel groups split or
    merged); over a window the result is the source reshaped to the full result's leading
    shape and the window's size.
    """

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        axes = _layout_preserved(step, geo)
        return Prepared(info=tuple(geo.shape[step.node][:-2]), axes=axes)

    def forward(  # noqa: D102
        self,
        step: Any,
        info: tuple,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        value, have = values[step.sources[0]]
        return cut(value, have, window).reshape(*info, *window.shape)


class Expand(Rule):
    """``expand``/``broadcast_to``: leading axes broadcast, the image axes kept."""

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        shape_out = geo.shape[step.node]
        axes = geo.axes[source]
        if (shape_out[axes[0]], shape_out[axes[1]]) != geo.grid[source]:
            raise refuse(step, geo, "expands over the image axes")
        return Prepared(info=(tuple(shape_out), axes), axes=axes)

    def forward(  # noqa: D102
        self,
        step: Any,
        info: Any,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        shape, axes = info
        target = list(shape)
        target[axes[0]], target[axes[1]] = window.shape
        value, have = values[step.sources[0]]
        return cut(value, have, window, axes).expand(*target)


class Repeat(Rule):
    """``repeat``/``tile``/``repeat_interleave`` over axes that are not the image axes."""

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        shape_out = geo.shape[step.node]
        axes = geo.axes[source]
        if len(shape_out) < 2 or (shape_out[axes[0]], shape_out[axes[1]]) != geo.grid[source]:
            raise refuse(step, geo, "repeats over the image axes")
        return Prepared(info=axes, axes=axes)


_PERMUTES = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis"}


class Permute(Rule):
    """``permute``/``transpose``/``movedim``: the image axes move (rows stay before columns)."""

    def order(self, step: Any, geo: Any, rank: int) -> list[int]:
        """The source axis of every result axis."""
        node = step.node
        name = node.target if isinstance(node.target, str) else node.target.__name__
        args = [geo.value(a) for a in node.args[1:]]
        kwargs = {k: geo.value(v) for k, v in node.kwargs.items()}
        if name == "permute":
            dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            dims = dims or kwargs.get("dims")
            return [positive(int(d), rank) for d in dims]
        order = list(range(rank))
        if name in ("transpose", "swapaxes", "swapdims"):
            a, b = (
                (args + [kwargs.get(k) for k in ("dim0", "dim1")])[:2]
                if len(args) < 2
                else args[:2]
            )
            a, b = positive(int(a), rank), positive(int(b), rank)
            order[a], order[b] = order[b], order[a]
            return order
        source, target = (args + [kwargs.get("source"), kwargs.get("destination")])[:2]
        sources = [positive(int(s), rank) for s in _dims(source)]
        targets = [positive(int(t), rank) for t in _dims(target)]
        rest = [d for d in order if d not in sources]
        result: list[int | None] = [None] * rank
        for s, t in zip(sources, targets, strict=True):
            result[t] = s
        it = iter(rest)
        return [r if r is not None else next(it) for r in result]

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source = geo.features(step)[0]
        rank = len(geo.shape[source])
        order = self.order(step, geo, rank)
        axes = [positive(a, rank) for a in geo.axes[source]]
        new = (order.index(axes[0]) - rank, order.index(axes[1]) - rank)
        if new[0] > new[1]:
            raise refuse(step, geo, "swaps the image's rows and columns")
        return Prepared(info=geo.axes[source], axes=new)


class Split(Rule):
    """``chunk``/``split``/``unbind``/``tensor_split`` along an axis that is not an image axis."""

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        node = step.node
        source = geo.features(step)[0]
        rank = len(geo.shape[source])
        name = node.target if isinstance(node.target, str) else node.target.__name__
        default = 0
        at = 1 if name == "unbind" else 2
        dim = node.kwargs.get("dim", node.args[at] if len(node.args) > at else default)
        dim = positive(int(geo.value(dim)), rank)
        axes = [positive(a, rank) for a in geo.axes[source]]
        if dim in axes:
            raise refuse(step, geo, f".{name}() along an image axis")
        out_rank = rank - 1 if name == "unbind" else rank
        removed = 1 if name == "unbind" and dim < axes[0] else 0
        new = (axes[0] - removed - out_rank, axes[1] - removed - out_rank)
        return Prepared(info=geo.axes[source], axes=new)


@dataclass(frozen=True)
class _Index:
    """Basic indexing of a feature map: per image axis a start and a step (a crop, a stride)."""

    index: tuple  # the index with the image axes' entries made whole (``slice(None)``)
    axes: tuple[int, int]  # the source's image axes
    start: tuple[int, int]
    stride: tuple[int, int]

    def need(self, window: Window) -> Window:
        (r0, c0), (sr, sc) = self.start, self.stride
        return Window(
            r0 + sr * window.top,
            r0 + sr * (window.bottom - 1) + 1,
            c0 + sc * window.left,
            c0 + sc * (window.right - 1) + 1,
        )


class Select(Rule):
    """``getitem``: one map of a tuple, or basic indexing.

    Channels are picked as they are (``x[:, k:k + 1]``); the image axes may be cropped or
    strided (``x[..., 1:-1, 1:-1]``, ``x[:, :, ::2]``), which moves the window.
    """

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        node = step.node
        source = node.args[0]
        index = geo.value(node.args[1])
        if geo.items.get(source):
            return Prepared(info=("item", index, geo.axes[source]), axes=geo.axes[source])
        rank = len(geo.shape[source])
        axes = [positive(a, rank) for a in geo.axes[source]]
        grid = geo.grid[source]
        entries = list(index) if isinstance(index, tuple) else [index]
        if any(isinstance(e, (torch.Tensor, list, Node, bool)) for e in entries):
            raise refuse(step, geo, "indexing with tensors")
        consumed = sum(1 for e in entries if e is not None and e is not Ellipsis)
        if Ellipsis in entries:
            at = entries.index(Ellipsis)
            entries[at : at + 1] = [slice(None)] * (rank - consumed)
        entries += [slice(None)] * (rank - sum(1 for e in entries if e is not None))
        normal: list[Any] = []
        starts, strides = [0, 0], [1, 1]
        dim = out = 0
        new: list[int] = []
        for entry in entries:
            if entry is None:
                normal.append(None)
                out += 1
                continue
            if dim in axes:
                which = axes.index(dim)
                if not isinstance(entry, slice) or (entry.step or 1) < 1:
                    raise refuse(step, geo, "indexes the image axes")
                starts[which], _, strides[which] = entry.indices(grid[which])
                normal.append(
                    slice(None, None, strides[which]) if strides[which] > 1 else slice(None)
                )
                new.append(out)
                out += 1
            else:
                normal.append(entry)
                if not isinstance(entry, int):
                    out += 1
            dim += 1
        info = _Index(
            tuple(normal), geo.axes[source], (starts[0], starts[1]), (strides[0], strides[1])
        )
        shape = geo.shape[node]
        grid_out = (int(shape[new[0] - out]), int(shape[new[1] - out]))
        interior = Window(0, grid_out[0], 0, grid_out[1])
        return Prepared(
            info=("index", info, geo.axes[source]),
            axes=(new[0] - out, new[1] - out),
            factor=(Fraction(strides[0]), Fraction(strides[1])),
            interior=interior,
        )

    def need(self, step: Any, info: Any, window: Window, geo: Any) -> Window | None:  # noqa: D102
        return window if info[0] == "item" else info[1].need(window)

    def forward(  # noqa: D102
        self,
        step: Any,
        info: Any,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        kind, index, axes = info
        value, have = values[step.node.args[0]]
        if kind == "item":
            return cut(value[index], have, window, axes)
        return cut(value, have, index.need(window), axes)[index.index]


class Attribute(Rule):
    """``getattr`` of a feature map: ``.values``/``.indices`` of ``max(dim)``, ``.data``."""

    def prepare(self, step: Any, geo: Any) -> Prepared:  # noqa: D102
        source, name = step.node.args[0], step.node.args[1]
        if geo.items.get(source) and name in ("values", "indices"):
            index = 0 if name == "values" else 1
            return Prepared(info=("item", index, geo.axes[source]), axes=geo.axes[source])
        if name == "data":
            return Prepared(info=("same", None, geo.axes[source]), axes=geo.axes[source])
        raise refuse(step, geo, f"attribute .{name} of a feature map")

    def forward(  # noqa: D102
        self,
        step: Any,
        info: Any,
        values: Values,
        window: Window,
        geo: Any,
        conv: Any,
        weights: Any,
    ) -> torch.Tensor:
        kind, index, axes = info
        value, have = values[step.node.args[0]]
        if kind == "item":
            return cut(value[index], have, window, axes)
        return cut(value, have, window, axes)


class LastAxis(Rule):
    """``LayerNorm``/``Linear``/``RMSNorm`` over trailing axes that are not the image axes.

    The channels-last idiom (``permute`` → ``LayerNorm(C)`` → ``permute``) is local: the
    normalisation runs per pixel.
    """

    def check(self, step: Any, geo: Any) -> None:  # noqa: D102
        module, node = step.module, step.node
        if module is not None:
            shape = getattr(module, "normalized_shape", None)
            count = len(shape) if shape is not None else 1
        elif node.target in (functional.layer_norm, getattr(functional, "rms_norm", None)):
            shape = geo.value(
                node.args[1] if len(node.args) > 1 else node.kwargs["normalized_shape"]
            )
            count = len(shape) if isinstance(shape, (list, tuple, torch.Size)) else 1
        else:
            count = 1
        source = geo.features(step)[0]
        if max(geo.axes[source]) >= -count:
            what = (
                "normalises"
                if count and module is not None and hasattr(module, "normalized_shape")
                else "mixes"
            )
            raise refuse(step, geo, f"{what} over the image axes: it mixes the whole image", True)


LAST_AXIS = LastAxis()
