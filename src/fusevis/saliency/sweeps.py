"""How a backward sweep from a recorded full-image forward passes a gradient through a node.

The recorded strategy (:mod:`fusevis.saliency.recorded`) runs the model once over the
whole image and then, per pixel, walks the pixel's cone backwards. Each entry of the
operation table (:mod:`fusevis.saliency.ops`) names a :class:`Sweep`: how a node's output
gradient over a window reaches its sources. The sweeps here need no autograd per pixel —
the adjoint convolution, the ReLU mask, an element-wise operation's derivative maps
(made once from the full-image forward), sums and softmax over channels, permutes,
splits and channel indexing, ``LayerNorm`` and ``Linear`` over the channels-last axis —
and where none applies, :data:`AUTOGRAD` runs the node's window rule over the window from
its recorded inputs and differentiates it by autograd (:data:`LINEAR`: from zeros, for
linear operations).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn import functional

from fusevis.saliency import windows
from fusevis.saliency.field import Window
from fusevis.saliency.windows import (
    ATTRIBUTE,
    CONSTANT,
    FEATURE,
    PLACEHOLDER,
    STANDARD,
    call_node,
    cut,
    positive,
)

Node = torch.fx.Node
Step = Any  # fusevis.saliency.ops.Step (that module imports this one)

__all__ = [
    "AUTOGRAD",
    "CONCAT",
    "CONV",
    "ITEM",
    "LAST_AXIS",
    "LINEAR",
    "MASK",
    "NoSweep",
    "PADDING",
    "PERMUTE",
    "POINTWISE",
    "REDUCE",
    "SPLIT",
    "SUM",
    "Sweep",
    "in_place",
]


class NoSweep(Exception):
    """A feature map's operation has no backward sweep (the record is not made)."""


class Sweep:
    """How a backward sweep sends a node's output gradient (over a window) to its inputs.

    ``keeps_inputs``: the full-image forward must store the node's inputs (before it runs:
    an in-place operation changes them). :meth:`for_node` specialises the sweep to one node
    (or falls back to autograd), :meth:`recorded` sees the node's full-image result.
    """

    keeps_inputs = False

    def for_node(self, step: Step, geo: Any) -> Sweep:
        """The sweep for this node (this one, or autograd where it does not apply)."""
        return self

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:
        """Record what the sweep needs from the node's full-image result."""
        return self

    def back(self, sweeper: Any, step: Step, gradient: Any, window: Window) -> None:
        """Send ``gradient`` (over ``window``) to the node's sources via ``sweeper.accumulate``."""
        raise NotImplementedError


class AutogradSweep(Sweep):
    """Run the node's window rule over the window from its recorded inputs; autograd back.

    Linear operations (``zeros=True``) need no recorded inputs: their gradient does not
    depend on them, so they run from zeros.
    """

    def __init__(self, zeros: bool = False) -> None:
        self.zeros = zeros
        self.keeps_inputs = not zeros

    def back(self, sweeper: Any, step: Step, gradient: Any, window: Window) -> None:  # noqa: D102
        record, geo = sweeper.record, sweeper.geo
        node = step.node
        info = geo.prepared[node].info
        rule = step.op.window
        need = rule.need(step, info, window, geo)
        values: dict[Node, tuple[Any, Window | None]] = {}
        leaves: dict[Node, torch.Tensor] = {}
        for source in step.sources:
            kind = geo.kind[source]
            if kind in (PLACEHOLDER, FEATURE):
                if source not in sweeper.demand or need is None:
                    continue
                if source not in leaves:
                    if self.zeros:
                        leaf = _zeros(geo, source, need, gradient)
                    else:
                        leaf = _over(record.stored(node, source), geo, source, need).detach()
                    leaves[source] = leaf.requires_grad_(True)
                values[source] = (
                    leaves[source].clone() if not self.zeros else leaves[source],
                    need,
                )
            elif kind == CONSTANT:
                values[source] = (geo.constants[source], None)
            elif kind == ATTRIBUTE:
                values[source] = (geo.graph.constant(source), None)
            else:
                values[source] = (record.stored(node, source), None)
        if not leaves:
            return
        with torch.enable_grad():
            result = rule.forward(step, info, values, window, geo, sweeper.conv, sweeper.weights)
            if isinstance(gradient, dict):
                outputs = [result[i] for i in gradient]
                wanted = list(gradient.values())
            else:
                outputs, wanted = [result], [gradient]
            sources = list(leaves)
            parts = torch.autograd.grad(
                outputs, [leaves[s] for s in sources], wanted, allow_unused=True
            )
        for source, part in zip(sources, parts, strict=True):
            if part is not None:
                sweeper.accumulate(source, need, part)


def _over(whole: torch.Tensor, geo: Any, node: Node, window: Window) -> torch.Tensor:
    """The part ``window`` of a full-image tensor of ``node`` (a view)."""
    rows, cols = geo.grid[node]
    return cut(whole, Window(0, rows, 0, cols), window, geo.axes[node])


def _zeros(geo: Any, node: Node, window: Window, like: Any) -> torch.Tensor:
    """Zeros shaped like ``node`` over ``window``."""
    shape = list(geo.shape[node])
    axes = geo.axes[node]
    shape[axes[0]], shape[axes[1]] = window.shape
    reference = like if isinstance(like, torch.Tensor) else next(iter(like.values()))
    return reference.new_zeros(shape)


AUTOGRAD = AutogradSweep()
LINEAR = AutogradSweep(zeros=True)


class MaskSweep(Sweep):
    """ReLU: the gradient times the recorded sign pattern (1 where the output is positive).

    Only for the entry's own module types (not subclasses) and functions called without
    ``inplace``, on maps whose image axes are the last two.
    """

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        if geo.axes[step.node] != STANDARD:
            return AUTOGRAD
        if step.module is not None:
            return self if type(step.module) in step.op.modules else AUTOGRAD
        return AUTOGRAD if step.node.kwargs.get("inplace", False) else self

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:  # noqa: D102
        # uint8 (multiplying by it is several times faster than masking with a bool),
        # channels-last like the gradients
        memory_format = torch.channels_last if result.dim() == 4 else torch.contiguous_format
        alive = (result > 0).contiguous(memory_format=memory_format).view(torch.uint8)
        recorder.charge(alive.numel())
        recorder.record.masks[step.node] = alive
        return self

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        alive = sweeper.record.masks[step.node]
        alive = alive[..., window.top : window.bottom, window.left : window.right]
        sweeper.accumulate(step.sources[0], window, gradient * alive)


class SumSweep(Sweep):
    """A sum of same-shaped feature maps: the gradient goes to every argument unchanged.

    A sum with keyword arguments (``alpha=``), of a constant, or that broadcasts is
    differentiated by autograd instead.
    """

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        node = step.node
        shape = geo.shape[node]
        same = all(
            isinstance(a, Node)
            and geo.kind.get(a) in (PLACEHOLDER, FEATURE)
            and geo.shape[a] == shape
            for a in node.args
        )
        return self if same and not node.kwargs else POINTWISE.for_node(step, geo)

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        for source in step.node.args:  # x + x sends the gradient to x twice
            if isinstance(source, Node):
                sweeper.accumulate(source, window, gradient)


class ConcatSweep(Sweep):
    """Channel concatenation: each argument gets its channels of the gradient."""

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        node = step.node
        rule = step.op.window
        if not isinstance(rule, windows.Concat) or rule.stack or geo.axes[node] != STANDARD:
            return LINEAR
        rank = len(geo.shape[node])
        dim = geo.value(node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0))
        return self if rank == 4 and dim in (1, -3) else LINEAR

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        node = step.node
        start = 0
        shapes = sweeper.geo.shape
        for source in node.args[0] if node.args else node.kwargs["tensors"]:
            width = shapes[source][1]
            sweeper.accumulate(source, window, gradient[:, start : start + width])
            start += width


class ConvSweep(Sweep):
    """A stride-1 ``Conv2d`` sends its gradient back by the adjoint convolution.

    It is computed as an ordinary convolution with the flipped, transposed kernel in
    channels-last layout (faster than ``conv_transpose2d``); gradient reaching the zero
    padding beyond the image border is dropped. With reflected, replicated or circular
    padding, a window whose sources lie inside the image is swept the same way (the
    padding is not read there); one that reads the padding, like strided and functional
    convolutions, is differentiated as a linear operation.
    """

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        module = step.module
        sliding = geo.prepared[step.node].info
        if isinstance(module, nn.Conv2d) and sliding.stride == (1, 1):
            return self
        return LINEAR

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        module = step.module
        sliding = sweeper.geo.prepared[step.node].info
        wanted = sliding.raw(window)
        inside = wanted.clip(*sliding.grid)
        if sliding.mode != "constant" and inside != wanted:
            LINEAR.back(sweeper, step, gradient, window)
            return
        dilation, kernel = sliding.dilation, sliding.kernel
        back = sweeper.conv(
            gradient,
            sweeper.weights.get(step.node.target, module, adjoint=True),
            None,
            1,
            (dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)),
            dilation,
            module.groups,
        )
        sweeper.accumulate(step.sources[0], inside, cut(back, wanted, inside))


class PaddingSweep(Sweep):
    """Padding: the gradient shifted back by the padding before it.

    Gradient on zero (constant) padding is dropped; a window that reads reflected,
    replicated or wrapped rows is differentiated as a linear operation.
    """

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        (top, left), mode, _, grid = sweeper.geo.prepared[step.node].info
        wanted = window.shift(-top, -left)
        inside = wanted.clip(*grid)
        if inside == wanted:
            sweeper.accumulate(step.sources[0], wanted, gradient)
        elif mode == "constant":
            if inside.bottom > inside.top and inside.right > inside.left:
                sweeper.accumulate(step.sources[0], inside, cut(gradient, wanted, inside))
        else:
            LINEAR.back(sweeper, step, gradient, window)


class ItemSweep(Sweep):
    """One item of a tuple (``chunk(...)[k]``, ``max(x, 1).values``): its gradient goes there.

    Basic indexing of a map (``x[:, :16]``, ``x[:, k:k + 1]``, a crop of the image axes)
    places the gradient into zeros shaped like the source's window (:class:`IndexSweep`).
    """

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        info = geo.prepared[step.node].info
        if isinstance(info, tuple) and info[0] == "item":
            return self
        if isinstance(info, tuple) and info[0] == "index" and info[1].stride == (1, 1):
            return IndexSweep(info[1])
        return LINEAR

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        index = sweeper.geo.prepared[step.node].info[1]
        sweeper.accumulate_item(step.node.args[0], index, window, gradient)


class IndexSweep(Sweep):
    """Basic indexing without strides: the gradient placed where the index reads."""

    def __init__(self, index: Any) -> None:
        self.index = index  # windows._Index

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        source = step.node.args[0]
        geo = sweeper.geo
        need = self.index.need(window)
        shape = list(geo.shape[source])
        axes = geo.axes[source]
        shape[axes[0]], shape[axes[1]] = need.shape
        placed = gradient.new_zeros(shape)
        placed[self.index.index] = gradient
        sweeper.accumulate(source, need, placed)


class _Part:
    """How a pointwise node's gradient reaches one feature argument."""

    __slots__ = ("cast", "derivative", "lead", "map", "one", "source", "two")

    def __init__(
        self,
        source: Node,
        derivative: Derivative,
        lead: tuple[int, ...] | None,
        cast: torch.dtype | None,
    ) -> None:
        self.source = source
        self.derivative = derivative  # a number, one pixel (..., 1, 1), two values or a map
        self.two = isinstance(derivative, TwoValued)
        self.map = isinstance(derivative, torch.Tensor) and derivative.shape[-2:] != (1, 1)
        self.one = isinstance(derivative, float) and derivative == 1.0
        self.lead = lead  # the argument's leading shape where the gradient is summed to it
        self.cast = cast  # the argument's dtype where it differs from the output's

    @property
    def nbytes(self) -> int:
        """Bytes the derivative holds."""
        d = self.derivative
        if isinstance(d, TwoValued):
            return d.nbytes
        return d.numel() * d.element_size() if isinstance(d, torch.Tensor) else 0

    def after(self, outer: Derivative) -> _Part:
        """The part as a later pointwise node sees it, ``outer`` its derivative here."""
        inner = self.derivative
        if isinstance(inner, float) and isinstance(outer, float):
            return _Part(self.source, inner * outer, self.lead, self.cast)
        inner = inner.dense() if isinstance(inner, TwoValued) else inner
        outer = outer.dense() if isinstance(outer, TwoValued) else outer
        return _Part(self.source, _compact(outer * inner), self.lead, self.cast)


class PointwiseSweep(Sweep):
    """An element-wise operation: the gradient times its derivative maps, made once.

    The full-image forward computes, for every feature argument, the derivative of each
    output element with respect to that argument (the argument expanded to the output's
    shape, one autograd pass over the whole image: element-wise, so each output element
    has its own partial derivative). A pixel's sweep multiplies its gradient by the
    derivative maps over the window and sums over the axes the argument was broadcast
    along: no autograd per pixel. A derivative that is one constant everywhere (``+ b``,
    ``x * 2``, an identity) is kept as that number, one that is the same at every pixel
    (a per-channel scale) as that pixel, one with two values per channel (a leaky ReLU's
    slopes) as a boolean map (:class:`TwoValued`). A chain of element-wise operations (an argument
    made by another one and used nowhere else, of the same shape) is swept as one: its
    derivatives are multiplied once, in the forward.

    Only for operations that are element-wise in every feature argument, out of place, on
    maps whose image axes are the last two; otherwise autograd over the window.
    """

    keeps_inputs = False

    def __init__(self, parts: tuple[_Part, ...] = ()) -> None:
        self.parts = parts

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        node, module = step.node, step.module
        if geo.axes[node] != STANDARD or in_place(node, module):
            return AUTOGRAD
        if (
            isinstance(module, nn.LocalResponseNorm)
            or node.target is functional.local_response_norm
        ):
            return AUTOGRAD  # mixes neighbouring channels
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            return AUTOGRAD  # batch statistics
        shape = geo.shape.get(node)
        if not isinstance(shape, tuple) or len(shape) < 2:
            return AUTOGRAD
        for source in geo.features(step):
            own = geo.shape[source]
            if geo.axes[source] != STANDARD or len(own) > len(shape):
                return AUTOGRAD
            lead = len(shape) - len(own)
            if any(a not in (1, b) for a, b in zip(own, shape[lead:], strict=True)):
                return AUTOGRAD
        return self

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:  # noqa: D102
        if not isinstance(result, torch.Tensor) or not result.is_floating_point():
            return PointwiseSweep(())  # no gradient passes a value that is not a float
        node, module = step.node, step.module
        env, sweeps = recorder.env, recorder.record.sweeps
        parts: list[_Part] = []
        for source in dict.fromkeys(recorder.record.geo.features(step)):
            value = env[source]
            if not value.is_floating_point():
                continue
            full = result.numel() * result.element_size()
            recorder.charge(full)  # before the autograd pass: a record too large stops early
            leaf = value.detach().expand(result.shape).clone().requires_grad_(True)
            derivative = None
            with torch.enable_grad():
                out = call_node(node, module, lambda n, s=source, x=leaf: x if n is s else env[n])
                if out.requires_grad:
                    (derivative,) = torch.autograd.grad(
                        out, leaf, torch.ones_like(out), allow_unused=True
                    )
            recorder.charge(-full)  # the reservation, replaced by what is kept
            if derivative is None:
                continue
            kept = _compact(derivative)
            inner = sweeps.get(source)
            if (
                isinstance(inner, PointwiseSweep)
                and len(source.users) == 1
                and value.shape == result.shape
                and value.dtype == result.dtype
            ):  # a chain: sweep through both at once, the inner node is never reached
                recorder.charge(-sum(p.nbytes for p in inner.parts))
                found = [p.after(kept) for p in inner.parts]
                inner.parts = ()
            else:
                lead = tuple(value.shape[:-2]) if value.shape != result.shape else None
                cast = value.dtype if value.dtype != result.dtype else None
                found = [_Part(source, kept, lead, cast)]
            recorder.charge(sum(p.nbytes for p in found))
            parts.extend(found)
        return PointwiseSweep(tuple(parts))

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        top, bottom, left, right = window.top, window.bottom, window.left, window.right
        for part in self.parts:
            derivative = part.derivative
            if part.map:
                piece = gradient * derivative[..., top:bottom, left:right]
            elif part.two:
                piece = gradient * derivative.over(top, bottom, left, right)
            elif part.one:
                piece = gradient
            else:
                piece = gradient * derivative
            if part.lead is not None:
                piece = piece.sum_to_size((*part.lead, bottom - top, right - left))
            if part.cast is not None:
                piece = piece.to(part.cast)
            sweeper.accumulate(part.source, window, piece)


class TwoValued:
    """A derivative map with two values per channel, kept as a boolean map (1 byte a value).

    A leaky ReLU's slopes, scaled by a BatchNorm before it: at every pixel of a channel
    either ``low`` or ``high`` (each (..., C, 1, 1)), ``high`` where ``mask`` is set.
    """

    __slots__ = ("high", "low", "mask")

    def __init__(self, low: torch.Tensor, high: torch.Tensor, mask: torch.Tensor) -> None:
        self.low, self.high, self.mask = low, high, mask

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.mask.numel() + 2 * self.low.numel() * self.low.element_size()

    def over(self, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
        """The derivative over a window of the image."""
        return torch.where(self.mask[..., top:bottom, left:right], self.high, self.low)

    def dense(self) -> torch.Tensor:
        """The whole derivative map."""
        return torch.where(self.mask, self.high, self.low)


Derivative = torch.Tensor | TwoValued | float


def _compact(derivative: torch.Tensor) -> Derivative:
    """A derivative map as kept: the number it is everywhere, one pixel, two values, a map.

    One pixel where it is the same at every pixel (a per-channel scale: an eval-mode
    BatchNorm, a parameter multiplied in); :class:`TwoValued` where each channel takes two
    values (a leaky ReLU's slopes).
    """
    if derivative.dim() < 3 or derivative.shape[-2:] == (1, 1):
        low, high = derivative.aminmax()
        return float(low) if bool(low == high) else derivative
    low, high = torch.aminmax(derivative.flatten(-2), dim=-1)
    low, high = low[..., None, None], high[..., None, None]
    if bool((low == high).all()):  # the same at every pixel
        first = low.flatten()[0]
        return float(first) if bool((low == first).all()) else low.clone()
    layout = torch.channels_last if derivative.dim() == 4 else torch.contiguous_format
    mask = derivative == high
    if bool((mask | (derivative == low)).all()):
        return TwoValued(low, high, mask.contiguous(memory_format=layout))
    return derivative.contiguous(memory_format=layout)


def in_place(node: Node, module: nn.Module | None) -> bool:
    """Whether a call changes its first argument in place (``x.mul_(2)``, ``inplace=True``)."""
    if module is not None:
        return bool(getattr(module, "inplace", False))
    if node.kwargs.get("inplace", False):
        return True
    if node.target in (operator.iadd, operator.isub, operator.imul, operator.itruediv):
        return True
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    return isinstance(name, str) and name.endswith("_") and not name.endswith("__")


class ReduceSweep(Sweep):
    """Sums and means over channels (linear), softmax and log-softmax over channels.

    A sum's gradient is spread over the summed axes (divided by their size for a mean); a
    softmax's is ``y * (g - sum(g * y))`` and a log-softmax's ``g - y * sum(g)`` with ``y``
    the full-image softmax, recorded. Other reductions (max, norms, variances, products)
    are differentiated by autograd.
    """

    def __init__(
        self, kind: str = "", dims: tuple[int, ...] = (), keepdim: bool = True, count: int = 1
    ) -> None:
        self.kind, self.dims, self.keepdim, self.count = kind, dims, keepdim, count
        self.softmax: torch.Tensor | None = None

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        node, module = step.node, step.module
        rule = step.op.window
        if not isinstance(rule, windows.Reduce) or geo.axes[node] != STANDARD:
            return AUTOGRAD
        features = geo.features(step)
        if len(features) != 1 or geo.axes[features[0]] != STANDARD:
            return AUTOGRAD
        dims = rule.dims(step, geo)
        if dims is None:
            return AUTOGRAD
        rank = len(geo.shape[features[0]])
        dims = tuple(sorted({positive(int(d), rank) for d in dims}))
        kind = _name(step)
        args, kwargs = node.args, node.kwargs
        if kind in ("sum", "mean") and module is None:
            if len(args) > 3 or set(kwargs) - {"dim", "keepdim"}:
                return AUTOGRAD  # a dtype, an out=
            keepdim = geo.value(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
            count = math.prod(int(geo.shape[features[0]][d]) for d in dims)
            return ReduceSweep(kind, dims, bool(keepdim), count)
        if kind in ("softmax", "log_softmax", "softmax2d", "logsoftmax") and len(dims) == 1:
            if module is not None and type(module) not in (nn.Softmax, nn.Softmax2d, nn.LogSoftmax):
                return AUTOGRAD
            if module is None and (len(args) > 2 or set(kwargs) - {"dim", "_stacklevel"}):
                return AUTOGRAD  # a dtype
            kind = "log_softmax" if "log" in kind else "softmax"
            return ReduceSweep(kind, dims)
        return AUTOGRAD

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:  # noqa: D102
        if self.kind in ("sum", "mean"):
            return self
        if not isinstance(result, torch.Tensor):
            raise NoSweep(f"{self.kind} returned no tensor")
        found = ReduceSweep(self.kind, self.dims)
        softmax = result.detach().exp() if self.kind == "log_softmax" else result.detach().clone()
        if softmax.dim() == 4:
            softmax = softmax.contiguous(memory_format=torch.channels_last)
        recorder.charge(softmax.numel() * softmax.element_size())
        found.softmax = softmax
        return found

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        source = sweeper.geo.features(step)[0]
        if self.softmax is not None:
            (dim,) = self.dims
            y = self.softmax[..., window.top : window.bottom, window.left : window.right]
            if self.kind == "softmax":
                part = y * (gradient - (gradient * y).sum(dim, keepdim=True))
            else:
                part = gradient - y * gradient.sum(dim, keepdim=True)
            sweeper.accumulate(source, window, part)
            return
        if not self.keepdim:
            for dim in self.dims:
                gradient = gradient.unsqueeze(dim)
        if self.kind == "mean":
            gradient = gradient / self.count
        shape = list(sweeper.geo.shape[source])
        shape[-2:] = window.shape
        sweeper.accumulate(source, window, gradient.expand(shape))


class PermuteSweep(Sweep):
    """``permute``/``transpose``/``movedim``: the gradient permuted back."""

    def __init__(self, inverse: tuple[int, ...] = ()) -> None:
        self.inverse = inverse

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        rule = step.op.window
        features = geo.features(step)
        if not isinstance(rule, windows.Permute) or len(features) != 1:
            return LINEAR
        order = rule.order(step, geo, len(geo.shape[features[0]]))
        return PermuteSweep(tuple(order.index(d) for d in range(len(order))))

    def back(self, sweeper: Any, step: Step, gradient: Any, window: Window) -> None:  # noqa: D102
        if not isinstance(gradient, torch.Tensor):
            LINEAR.back(sweeper, step, gradient, window)
            return
        sweeper.accumulate(sweeper.geo.features(step)[0], window, gradient.permute(self.inverse))


class SplitSweep(Sweep):
    """``chunk``/``split``/``tensor_split``/``unbind``: the items' gradients joined back.

    Items that the pixel does not reach get zeros; the items' sizes along the split axis
    come from the full-image forward.
    """

    def __init__(self, dim: int = 0, unbind: bool = False, sizes: tuple[int, ...] = ()) -> None:
        self.dim, self.unbind, self.sizes = dim, unbind, sizes

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        node = step.node
        features = geo.features(step)
        if not isinstance(step.op.window, windows.Split) or len(features) != 1:
            return LINEAR
        name = _name(step)
        at = 1 if name == "unbind" else 2
        dim = geo.value(node.kwargs.get("dim", node.args[at] if len(node.args) > at else 0))
        rank = len(geo.shape[features[0]])
        return SplitSweep(positive(int(dim), rank), name == "unbind")

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:  # noqa: D102
        if not isinstance(result, (tuple, list)):
            return LINEAR
        sizes = tuple(1 if self.unbind else int(item.shape[self.dim]) for item in result)
        return SplitSweep(self.dim, self.unbind, sizes)

    def back(self, sweeper: Any, step: Step, gradient: Any, window: Window) -> None:  # noqa: D102
        if not isinstance(gradient, dict):
            LINEAR.back(sweeper, step, gradient, window)
            return
        source = sweeper.geo.features(step)[0]
        shape = list(sweeper.geo.shape[source])
        axes = sweeper.geo.axes[source]
        shape[axes[0]], shape[axes[1]] = window.shape
        like = next(iter(gradient.values()))
        parts = []
        for index, size in enumerate(self.sizes):
            part = gradient.get(index)
            if part is None:
                shape[self.dim] = size
                part = like.new_zeros(shape)
            elif self.unbind:
                part = part.unsqueeze(self.dim)
            parts.append(part)
        sweeper.accumulate(source, window, torch.cat(parts, self.dim))


class LastAxisSweep(Sweep):
    """``LayerNorm`` over the last axis (the channels-last idiom) and ``Linear``.

    ``Linear`` sends ``g @ W`` back. ``LayerNorm`` records the normalised input ``x̂`` and
    ``1/σ`` of every pixel; its input gradient is ``(g' - mean(g') - x̂ mean(g' x̂)) / σ`` with
    ``g' = g · γ``. Only for the modules themselves (not subclasses); otherwise autograd.
    """

    def __init__(self) -> None:
        self.normalised: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None

    def for_node(self, step: Step, geo: Any) -> Sweep:  # noqa: D102
        module = step.module
        if type(module) is nn.Linear:
            return self
        if type(module) is nn.LayerNorm and len(module.normalized_shape) == 1:
            return self
        return AUTOGRAD

    def recorded(self, recorder: Any, step: Step, result: object) -> Sweep:  # noqa: D102
        module = step.module
        if type(module) is nn.Linear:
            return self
        x = recorder.env[step.sources[0]].detach()
        variance, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        found = LastAxisSweep()
        found.scale = torch.rsqrt(variance + module.eps)
        found.normalised = (x - mean) * found.scale
        recorder.charge((x.numel() + variance.numel()) * x.element_size())
        return found

    def back(self, sweeper: Any, step: Step, gradient: torch.Tensor, window: Window) -> None:  # noqa: D102
        module = step.module
        source = step.sources[0]
        if self.normalised is None:
            sweeper.accumulate(source, window, gradient @ module.weight.detach())
            return
        normalised = _over(self.normalised, sweeper.geo, step.node, window)
        scale = _over(self.scale, sweeper.geo, step.node, window)
        if module.weight is not None:
            gradient = gradient * module.weight.detach()
        part = scale * (
            gradient
            - gradient.mean(-1, keepdim=True)
            - normalised * (gradient * normalised).mean(-1, keepdim=True)
        )
        sweeper.accumulate(source, window, part)


def _name(step: Step) -> str:
    """The operation's name: the module class's (lower case), the method's or function's."""
    if step.module is not None:
        return type(step.module).__name__.lower()
    target = step.node.target
    return target if isinstance(target, str) else getattr(target, "__name__", "")


MASK = MaskSweep()
POINTWISE = PointwiseSweep()
SUM = SumSweep()
CONCAT = ConcatSweep()
CONV = ConvSweep()
ITEM = ItemSweep()
PADDING = PaddingSweep()
REDUCE = ReduceSweep()
PERMUTE = PermuteSweep()
SPLIT = SplitSweep()
LAST_AXIS = LastAxisSweep()
