"""Non-local networks whose coupling passes through a few global quantities: banded plus low rank.

Channel attention, transposed (Restormer-style) attention and an output's min-max couple
distant pixels only through a few *global quantities* g — tensors whose size does not grow
with the image, computed from feature maps and fed back into feature maps (pooled channel
statistics, a C×C attention, a minimum and a maximum). With every g held fixed the network
is local, so F(x) = F̃(x, g(x)) and its Jacobian is

    J = ∂F̃/∂x + Σ_j (∂F̃/∂g_j)(dg_j/dx) = L + U·D

* L, the banded part, is the Jacobian of the *frozen* network (each g replaced by a
  constant): the local engine computes its rows (cone, recorded sweep or crop) and its
  diagonal (probe colouring) exactly;
* D = dg/dx (K × inputs), K vector-Jacobian products through the network once per image,
  batched; nested blocks need nothing more, because each dg_j/dx is the *total* derivative
  (autograd follows g_j back through the earlier g's), while ∂F̃/∂g treats every g as its
  own variable;
* U = ∂F̃/∂g (pixels × K), K Jacobian-vector products through the frozen network, batched.

A pixel's row is then its banded row plus U[p]·D, its guidance value diag(L)(p) +
Σ_k U[p, k] D_k(p), and its influence Σ_q |L_p(q) + (U·D)(p, q)|: the low-rank rows' l1 norms
for every pixel (one blocked matrix product) corrected inside each pixel's field from the
colouring passes over the frozen network. All of it is exact.

The global quantities are found in the traced graph by their sizes: a node is *global* when it
depends on the inputs and keeps its size when the image doubles (propagated with fake tensors,
nothing computed); those of them that feed a feature map are cut. The decomposition is used
only when the frozen network is local (analysed like any model), K is at most
``global_limit`` and U and D fit in ``memory`` bytes; and it is checked once per image against
a full-image backward pass at sampled pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.fx
from torch import nn

from fusevis.saliency.batched import vjps
from fusevis.saliency.explanation import Part
from fusevis.saliency.extent import TraceFailure
from fusevis.saliency.field import ReceptiveField, Window
from fusevis.saliency.graph import graph_of
from fusevis.saliency.inputs import Pixel, Stamp, image_shape
from fusevis.saliency.locality import Locality, sample_pixels
from fusevis.saliency.outputs import OutputChannel, select_output
from fusevis.saliency.strategies import PixelRows, Strategy

if TYPE_CHECKING:
    from fusevis.saliency.jacobian import PixelJacobian

GLOBAL_LIMIT = 4096  # most global scalars K for which the decomposition is used
MEMORY_LIMIT = 2 << 30  # bytes U and D may take
CHUNK_BYTES = 256 << 20  # what one batch of vector-Jacobian or Jacobian-vector products may take
CHECK_TOLERANCE = {torch.float64: 1e-8, torch.float32: 2e-3, torch.float16: 5e-2}

Node = torch.fx.Node
Progress = Callable[[int, int], None]


class NoStructure(Exception):
    """The model has no usable banded-plus-low-rank structure (the message says why)."""


# -- finding the global quantities ----------------------------------------------------------


class _Sizes(torch.fx.Interpreter):
    """Runs a graph on fake tensors and notes the elements of every node's tensors."""

    def __init__(self, module: torch.fx.GraphModule) -> None:
        super().__init__(module)
        self.numel: dict[Node, int | None] = {}
        self.values: dict[Node, torch.Tensor | None] = {}

    def run_node(self, n: Node) -> object:
        value = super().run_node(n)
        tensors = [t for t in torch.utils._pytree.tree_leaves(value) if isinstance(t, torch.Tensor)]
        self.numel[n] = sum(t.numel() for t in tensors) if tensors else None
        self.values[n] = value if isinstance(value, torch.Tensor) else None
        return value


def _sizes(module: torch.fx.GraphModule, items: Sequence[torch.Tensor], scale: int) -> _Sizes:
    """Every node's size for inputs ``scale`` times larger per axis, computing nothing."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    sizes = _Sizes(module)
    with mode:
        fakes = [
            torch.empty(
                (*x.shape[:-2], x.shape[-2] * scale, x.shape[-1] * scale),
                dtype=x.dtype,
                device=x.device,
            )
            for x in items
        ]
        sizes.run(*fakes)
    return sizes


@dataclass(frozen=True)
class Global:
    """One cut global quantity: the buffer holding it in the frozen network."""

    name: str  # the buffer's name on the frozen network
    shape: torch.Size  # at batch size 1
    floating: bool  # False: an integer or boolean quantity (a constant: its derivative is 0)
    what: str  # the graph node, for messages


@dataclass(frozen=True)
class Structure:
    """A network's global quantities and the two graphs built around them.

    Attributes
    ----------
    frozen : torch.fx.GraphModule
        The network with every cut global quantity replaced by a buffer (local, if the
        structure is usable); it takes the network's inputs.
    probe : torch.fx.GraphModule
        The network returning ``(output, g_1, ..., g_m)``.
    globals : tuple of Global
        The cut quantities, in the order of the probe's outputs.
    activation_bytes : int
        Bytes of all the network's intermediate tensors at the analysed size (for sizing
        batches of products).
    """

    frozen: torch.fx.GraphModule
    probe: torch.fx.GraphModule
    globals: tuple[Global, ...]
    activation_bytes: int

    @property
    def size(self) -> int:
        """K: the number of floating-point global scalars."""
        return sum(math.prod(g.shape) for g in self.globals if g.floating)

    def describe(self) -> str:
        """The quantities, for messages: ``"K=16 (sigmoid: 8, view_2: 8)"``."""
        parts = ", ".join(f"{g.what}: {math.prod(g.shape)}" for g in self.globals if g.floating)
        return f"K={self.size} ({parts})"


def find_structure(
    model: nn.Module, items: Sequence[torch.Tensor], global_limit: int = GLOBAL_LIMIT
) -> Structure:
    """The global quantities of ``model`` at the inputs' size, and the frozen network.

    Raises
    ------
    NoStructure
        If the model cannot be traced, has no global quantity, or has more than
        ``global_limit`` global scalars.
    """
    try:
        graph = graph_of(model)
    except TraceFailure as failure:
        raise NoStructure(str(failure)) from None
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(items):
        raise NoStructure(f"the model takes {len(placeholders)} inputs, not {len(items)}")
    try:
        small, large = _sizes(graph.module, items, 1), _sizes(graph.module, items, 2)
    except Exception as error:  # noqa: BLE001 - any failure means: no structure found
        raise NoStructure(f"sizes not propagated: {_one_line(error)}") from None

    def spatial(n: Node) -> bool:
        a, b = small.numel.get(n), large.numel.get(n)
        return a is not None and a != b

    depends: dict[Node, bool] = {}
    for n in graph.nodes:
        depends[n] = n.op == "placeholder" or any(depends.get(s, False) for s in n.all_input_nodes)
    cuts = [
        n
        for n in graph.nodes
        if n.op.startswith("call_")
        and depends[n]
        and small.values.get(n) is not None
        and not spatial(n)
        and any(spatial(user) for user in n.users)
    ]
    if not cuts:
        raise NoStructure("no global quantity (a tensor of fixed size fed back into a feature map)")
    quantities = []
    for index, n in enumerate(cuts):
        value = small.values[n]
        assert value is not None
        quantities.append(
            Global(f"fusevis_global_{index}", value.shape, value.is_floating_point(), n.name)
        )
    structure_size = sum(math.prod(g.shape) for g in quantities if g.floating)
    if structure_size > global_limit:
        raise NoStructure(
            f"{structure_size} global scalars (more than {global_limit}): "
            + ", ".join(n.name for n in cuts[:6])
        )
    itemsize = items[0].element_size()
    activation = sum(v for v in small.numel.values() if v is not None) * itemsize
    buffers = {
        q.name: torch.zeros(q.shape, dtype=small.values[n].dtype, device=items[0].device)  # type: ignore[union-attr]
        for q, n in zip(quantities, cuts, strict=True)
    }
    frozen = _rebuild(
        graph.module, dict(zip(cuts, (q.name for q in quantities), strict=True)), buffers
    )
    probe = _rebuild(graph.module, {}, {}, extra_outputs=cuts)
    return Structure(frozen, probe, tuple(quantities), activation)


def _rebuild(
    module: torch.fx.GraphModule,
    replace: dict[Node, str],
    buffers: dict[str, torch.Tensor],
    extra_outputs: Sequence[Node] = (),
) -> torch.fx.GraphModule:
    """A copy of the graph with nodes replaced by buffers, or with extra outputs."""
    graph = torch.fx.Graph()
    env: dict[Node, Node] = {}
    for node in module.graph.nodes:
        if node in replace:
            env[node] = graph.get_attr(replace[node])
        elif node.op == "output":
            result = torch.fx.node.map_arg(node.args[0], env.__getitem__)
            if extra_outputs:
                result = (result, *(env[n] for n in extra_outputs))
            graph.output(result)
        else:
            env[node] = graph.node_copy(node, env.__getitem__)
    root: dict[str, object] = dict(buffers)
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr") and node.target not in root:
            root[str(node.target)] = _attribute(module, str(node.target))
    rebuilt = torch.fx.GraphModule(root, graph, class_name=type(module).__name__)
    rebuilt.graph.eliminate_dead_code()
    rebuilt.delete_all_unused_submodules()
    rebuilt.recompile()
    return rebuilt.train(module.training)


def _attribute(root: object, path: str) -> object:
    value = root
    for name in path.split("."):
        value = getattr(value, name)
    return value


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:200] or type(error).__name__


# -- the decomposition at one image -----------------------------------------------------------


def _batch(per_item_bytes: int, count: int, budget: int = CHUNK_BYTES) -> int:
    return max(1, min(count, budget // max(1, per_item_bytes)))


@dataclass
class Decomposition:
    """J = L + U·D at one set of inputs.

    Attributes
    ----------
    output : torch.Tensor
        The selected (H, W) output.
    full_output : torch.Tensor
        The model's (1, C, H, W) output.
    values : list of torch.Tensor
        The global quantities (their values now sit in the frozen network's buffers).
    u : torch.Tensor
        (H, W, K): ∂F̃(p)/∂g.
    d : list of torch.Tensor or None
        Per input, (K, C, H, W): dg/dx (None for an input no quantity depends on).
    """

    output: torch.Tensor
    full_output: torch.Tensor
    values: list[torch.Tensor]
    u: torch.Tensor
    d: list[torch.Tensor | None]

    def low_rank(self, pixel: Pixel) -> list[torch.Tensor | None]:
        """Per input, the (C, H, W) low-rank part U[p]·D of the pixel's row."""
        weights = self.u[pixel[0], pixel[1]]
        return [
            None if d is None else (weights @ d.reshape(d.shape[0], -1)).view(d.shape[1:])
            for d in self.d
        ]

    def diagonal(self) -> list[torch.Tensor | None]:
        """Per input, the (C, H, W) diagonal of U·D: Σ_k U[p, k] D_k(p)."""
        return [None if d is None else torch.einsum("hwk,kchw->chw", self.u, d) for d in self.d]


def decompose(
    structure: Structure,
    items: Sequence[torch.Tensor],
    channel: OutputChannel,
    progress: Progress | None = None,
) -> Decomposition:
    """Compute g (set into the frozen network), D by batched VJPs and U by batched JVPs.

    Quantity by quantity, so that each pass runs only through the part of the network
    its quantity comes from (D) or goes to (U).
    """
    leaves = tuple(x.detach().requires_grad_(True) for x in items)
    with torch.enable_grad():
        output, *found = structure.probe(*leaves)
    selected = select_output(output, channel)[0].detach()
    full = output.detach()
    values = set_globals(structure, found)
    size = structure.size
    height, width = selected.shape
    itemsize = items[0].element_size()
    # the floating quantities, where each starts among the K scalars, and the batches
    floating, offset = [], 0
    for q, value in zip(structure.globals, found, strict=True):
        if q.floating:
            floating.append((q, value, offset))
            offset += value.numel()
    per_row = structure.activation_bytes + sum(x.numel() for x in items) * itemsize
    per_column = structure.activation_bytes + selected.numel() * itemsize

    def batches(per_item: int) -> list[tuple[int, int, int]]:
        step = _batch(per_item, size)
        return [
            (index, lo, min(value.numel(), lo + step))
            for index, (_, value, _) in enumerate(floating)
            for lo in range(0, value.numel(), step)
        ]

    rows, columns = batches(per_row), batches(per_column)
    steps, done = len(rows) + len(columns), 0
    # D = dg/dx: K vector-Jacobian products through the network (total derivatives)
    d: list[torch.Tensor | None] = [None] * len(items)
    for index, lo, hi in rows:
        _, value, offset = floating[index]
        flat = value.reshape(-1)
        eye = torch.zeros((hi - lo, flat.numel()), dtype=flat.dtype, device=flat.device)
        eye[torch.arange(hi - lo), torch.arange(lo, hi)] = 1.0
        for k, grad in enumerate(vjps(flat, leaves, eye)):
            if grad is None:
                continue
            if d[k] is None:
                d[k] = torch.zeros(
                    (size, *items[k].shape[1:]), dtype=grad.dtype, device=grad.device
                )
            d[k][offset + lo : offset + hi] = grad[:, 0].detach()  # type: ignore[index]
        done += 1
        if progress is not None:
            progress(done, steps)
    del found, output
    # U = ∂F̃/∂g: K Jacobian-vector products through the frozen network
    u = torch.zeros((height, width, size), dtype=selected.dtype, device=selected.device)
    buffers = dict(structure.frozen.named_buffers())
    inputs = tuple(x.detach() for x in items)
    frozen = structure.frozen
    for index, lo, hi in columns:
        q, _, offset = floating[index]

        def fused(quantity: torch.Tensor, name: str = q.name) -> torch.Tensor:
            call = torch.func.functional_call(frozen, {name: quantity}, inputs)
            return select_output(call, channel)[0]

        primal = buffers[q.name]
        tangent = torch.zeros((hi - lo, primal.numel()), dtype=primal.dtype, device=primal.device)
        tangent[torch.arange(hi - lo), torch.arange(lo, hi)] = 1.0
        columns_found = _jvps(fused, (primal,), [tangent.view(hi - lo, *primal.shape)])
        u[..., offset + lo : offset + hi] = columns_found.detach().permute(1, 2, 0)
        done += 1
        if progress is not None:
            progress(done, steps)
    return Decomposition(selected, full, values, u, d)


def _jvps(
    fn: Callable[..., torch.Tensor],
    primals: tuple[torch.Tensor, ...],
    tangents: list[torch.Tensor],
) -> torch.Tensor:
    """Batched Jacobian-vector products of ``fn`` at ``primals`` (forward mode, vmapped)."""

    def one(*tangent: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(fn, primals, tangent)[1]

    try:
        return torch.func.vmap(one)(*tangents)
    except RuntimeError:
        pass
    columns = []
    for index in range(tangents[0].shape[0]):
        tangent = tuple(t[index] for t in tangents)
        try:
            columns.append(one(*tangent))
        except RuntimeError:  # no forward-mode formula: the double-backward trick
            columns.append(
                torch.autograd.functional.jvp(fn, primals, tangent, create_graph=False)[1]
            )
    return torch.stack(columns)


# -- the engine: rows and maps ---------------------------------------------------------------


class LowRank:
    """The banded-plus-low-rank decomposition of one model, per input size and per image.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    channel : int or "luminance"
        The explained output.
    verify : bool
        Verify the frozen network's field (as :class:`~fusevis.saliency.PixelJacobian` does).
    global_limit : int
        Most global scalars K.
    memory : int
        Bytes U and D may take.
    """

    def __init__(
        self,
        model: nn.Module,
        channel: OutputChannel = 0,
        verify: bool = True,
        global_limit: int = GLOBAL_LIMIT,
        memory: int = MEMORY_LIMIT,
    ) -> None:
        self.model, self.channel, self.verify = model, channel, verify
        self.global_limit, self.memory = global_limit, memory
        self._found: dict[tuple, tuple[Structure, PixelJacobian] | str] = {}
        self._current: tuple[Stamp, tuple, Decomposition] | None = None

    @staticmethod
    def _key(items: Sequence[torch.Tensor]) -> tuple:
        return tuple((tuple(x.shape), x.dtype, x.device.type) for x in items)

    def problem(self, items: Sequence[torch.Tensor]) -> str | None:
        """Why the decomposition cannot be used for inputs like these (None: it can)."""
        found = self._analysed(items)
        return found if isinstance(found, str) else None

    def _analysed(self, items: Sequence[torch.Tensor]) -> tuple[Structure, PixelJacobian] | str:
        """The structure and the frozen network's engine for this input size (cached)."""
        key = self._key(items)
        if key not in self._found:
            self._found[key] = self._analyse(items)
        return self._found[key]

    def _analyse(self, items: Sequence[torch.Tensor]) -> tuple[Structure, PixelJacobian] | str:
        from fusevis.saliency.jacobian import PixelJacobian

        try:
            structure = find_structure(self.model, items, self.global_limit)
        except NoStructure as reason:
            return str(reason)
        height, width = image_shape(items)
        size = structure.size
        itemsize = items[0].element_size()
        needed = (height * width * size + size * sum(x[0].numel() for x in items)) * itemsize
        if needed > self.memory:
            return (
                f"U and D would take {needed / 2**20:.0f} MiB (more than {self.memory / 2**20:.0f})"
            )
        with torch.no_grad():
            try:
                set_globals(structure, structure.probe(*items)[1:])
            except NoStructure as reason:
                return str(reason)
        banded = PixelJacobian(structure.frozen, self.channel, verify=self.verify)
        locality = banded.locality(items)
        if not locality.local:
            return (
                f"with its global quantities ({structure.describe()}) held fixed the model is "
                f"{locality.how}"
            )
        return structure, banded

    def prepared(
        self, items: Sequence[torch.Tensor], progress: Progress | None = None
    ) -> tuple[Structure, PixelJacobian, Decomposition]:
        """The decomposition at these inputs (made once per image and kept while unchanged).

        Raises
        ------
        NoStructure
            If it cannot be used, or disagrees with a full-image backward pass.
        """
        found = self._analysed(items)
        if isinstance(found, str):
            raise NoStructure(found)
        structure, banded = found
        current = self._current
        if current is not None and current[1] == self._key(items) and current[0].matches(items):
            return structure, banded, current[2]
        self._current = None  # free the old one first
        decomposition = decompose(structure, items, self.channel, progress)
        banded.prepare(items)
        self._check(structure, banded, decomposition, items)
        self._current = (Stamp(items), self._key(items), decomposition)
        return structure, banded, decomposition

    def _check(
        self,
        structure: Structure,
        banded: PixelJacobian,
        decomposition: Decomposition,
        items: Sequence[torch.Tensor],
    ) -> None:
        """Sampled rows summed must equal one full-image backward pass with those pixels."""
        shape = image_shape(items)
        pixels = sample_pixels(shape, count=1)[::2]
        leaves = tuple(x.detach().requires_grad_(True) for x in items)
        with torch.enable_grad():
            output = select_output(structure.probe(*leaves)[0], self.channel)
            probe = torch.zeros_like(output)
            for r, c in pixels:
                probe[0, r, c] += 1.0
            full = torch.autograd.grad(output, leaves, probe, allow_unused=True)
        total = [torch.zeros_like(x[0]) for x in items]
        for _, parts in rows(banded, decomposition, items, pixels):
            for k, (_, values) in enumerate(parts):
                if values is not None:
                    total[k] += values
        tolerance = CHECK_TOLERANCE.get(items[0].dtype, 1e-2)
        for k, (mine, theirs) in enumerate(zip(total, full, strict=True)):
            reference = torch.zeros_like(mine) if theirs is None else theirs[0]
            scale = float(reference.abs().max()) or 1.0
            error = float((mine - reference).abs().max()) / scale
            if not error <= tolerance:
                raise NoStructure(
                    f"banded plus low rank differs from full-image gradients by {error:.2g} "
                    f"(input {k})"
                )


def set_globals(structure: Structure, found: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Copy the global quantities into the frozen network's buffers (which are returned).

    In place, so that the frozen network stays the object its analysis was made for.
    """
    buffers = dict(structure.frozen.named_buffers())
    values = []
    for q, value in zip(structure.globals, found, strict=True):
        buffer = buffers[q.name]
        if buffer.shape != value.shape or buffer.dtype != value.dtype:
            raise NoStructure(f"{q.what} changed shape or type")
        buffer.copy_(value.detach())
        values.append(buffer)
    return values


def rows(
    banded: PixelJacobian,
    decomposition: Decomposition,
    items: Sequence[torch.Tensor],
    pixels: Sequence[Pixel],
) -> list[PixelRows]:
    """Per pixel: the whole image and per input its row, banded part plus U[p]·D."""
    shape = image_shape(items)
    whole = Window(0, shape[0], 0, shape[1])
    found = []
    for explanation, pixel in zip(banded.explain_pixels(items, pixels), pixels, strict=True):
        dense = explanation.dense()
        parts: list[Part] = []
        for k, extra in enumerate(decomposition.low_rank(pixel)):
            row = dense[k][0]
            if extra is not None:
                row = row + extra
            parts.append((whole, row))
        found.append((whole, parts))
    return found


class LowRankStrategy(Strategy):
    """Banded plus low rank: the frozen network's row plus U[p]·D (a non-local model)."""

    name = "lowrank"

    def __init__(self, lowrank: LowRank) -> None:
        self.lowrank = lowrank

    def rows(self, items: tuple[torch.Tensor, ...], pixels: Sequence[Pixel]) -> list[PixelRows]:  # noqa: D102
        _, banded, decomposition = self.lowrank.prepared(items)
        return rows(banded, decomposition, items, pixels)


# -- maps -------------------------------------------------------------------------------------


def lowrank_maps(
    lowrank: LowRank,
    items: tuple[torch.Tensor, ...],
    arrays: dict[str, np.ndarray],
    influence: bool,
    tile: int,
    progress: Progress | None,
    cancel: Callable[[], bool] | None,
) -> str:
    """Guidance (and influence) maps of a model with the structure, exactly, into ``arrays``.

    Raises
    ------
    NoStructure
        If the model has no usable structure.
    """
    from fusevis.saliency.maps import Cancelled, colour_spacing, compute_maps

    structure, banded, decomposition = lowrank.prepared(items, _offset(progress, 0, 2))
    if cancel is not None and cancel():
        raise Cancelled("saliency computation cancelled")
    locality: Locality = banded.locality(items)
    field = locality.field
    assert field is not None
    arrays["fused"][...] = decomposition.output.detach().cpu().numpy()
    diagonal = decomposition.diagonal()
    if not influence:
        local = compute_maps(
            structure.frozen,
            items,
            influence=False,
            output_channel=lowrank.channel,
            tile=tile,
            progress=_offset(progress, 1, 2),
            cancel=cancel,
            locality=locality,
        )
        for k, extra in enumerate(diagonal):
            total = local.guidance[k]
            if extra is not None:
                total = total + extra.detach().cpu().numpy()
            arrays[f"guidance_{k}"][...] = total
        period_r, period_c = colour_spacing(field, influence=False)
        how = (
            f"the banded part's diagonal by colouring the network with them held fixed "
            f"({period_r}x{period_c} passes per tile, field {field.height}x{field.width}, "
            f"{field.source})"
        )
    else:
        how = _influence(
            structure, decomposition, field, items, arrays, lowrank.channel, progress, cancel
        )
    return (
        f"{'guidance + influence' if influence else 'guidance'}, exact: banded plus low rank, "
        f"{structure.describe()} global quantities; {how}"
    )


def _offset(progress: Progress | None, part: int, parts: int) -> Progress | None:
    """Progress of one of ``parts`` equal phases, reported as a fraction of 1000 passes."""
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(int(1000 * (part + done / max(1, total)) / parts), 1000)

    return report


def _influence(
    structure: Structure,
    decomposition: Decomposition,
    field: ReceptiveField,
    items: tuple[torch.Tensor, ...],
    arrays: dict[str, np.ndarray],
    channel: OutputChannel,
    progress: Progress | None,
    cancel: Callable[[], bool] | None,
) -> str:
    """Guidance and influence: colouring passes with influence spacing, rows made whole.

    For the pixels p of one colour, one backward pass of the frozen network gives every
    banded row at once (their fields do not overlap). With R = U·D, Σ_q |L_p(q) + R(p, q)|
    is Σ_q |R(p, q)| (a blocked matrix product for all pixels) plus, inside p's field,
    |L_p(q) + R(p, q)| - |R(p, q)|.
    """
    from fusevis.saliency.crop import KeptForward
    from fusevis.saliency.maps import Cancelled, colour_spacing

    rf = field
    height, width = image_shape(items)
    u = decomposition.u
    period_r, period_c = colour_spacing(rf, influence=True)  # type: ignore[arg-type]
    # Σ_q |R(p, q)| for every pixel, in blocks of pixels
    totals = []
    pixels = u.reshape(height * width, -1)
    for d in decomposition.d:
        if d is None:
            totals.append(torch.zeros(height * width, dtype=torch.float64, device=u.device))
            continue
        flat = d.reshape(d.shape[0], -1)
        block = _batch(flat.shape[1] * flat.element_size(), height * width)
        sums = torch.empty(height * width, dtype=torch.float64, device=u.device)
        for start in range(0, height * width, block):
            sums[start : start + block] = (pixels[start : start + block] @ flat).abs().sum(dim=1)
        totals.append(sums)
    kept = KeptForward(structure.frozen, items, channel)
    rows_at = torch.arange(height, device=u.device)
    cols_at = torch.arange(width, device=u.device)
    colours = [(a, b) for a in range(period_r) for b in range(period_c)]
    guidance = [torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device) for x in items]
    for count, (a, b) in enumerate(colours):
        probe = torch.zeros_like(kept.output)
        probe[0, a::period_r, b::period_c] = 1.0
        grads = kept.probed(probe)
        owner_r = _owner(rows_at, rf.row_lo, rf.row_hi, period_r, a, height)
        owner_c = _owner(cols_at, rf.col_lo, rf.col_hi, period_c, b, width)
        valid = (owner_r >= 0)[:, None] & (owner_c >= 0)[None, :]
        owners = owner_r.clamp(min=0)[:, None] * width + owner_c.clamp(min=0)[None, :]
        weights = pixels[owners.reshape(-1)].view(height, width, -1)  # U of each q's owner
        for k, (grad, d) in enumerate(zip(grads, decomposition.d, strict=True)):
            banded = torch.zeros_like(guidance[k]) if grad is None else grad[0]
            low = (
                torch.zeros_like(banded) if d is None else torch.einsum("hwk,kchw->chw", weights, d)
            )
            mask = valid.to(banded.dtype)
            change = ((banded + low).abs() - low.abs()).sum(dim=0) * mask
            sums = torch.zeros(height * width, dtype=torch.float64, device=u.device)
            sums.index_add_(0, owners.reshape(-1), change.reshape(-1).double())
            totals[k] += sums
            on = torch.zeros((height, width), dtype=torch.bool, device=u.device)
            on[a::period_r, b::period_c] = True
            guidance[k][:, on] = banded[:, on]
        if progress is not None:
            progress(500 + int(500 * (count + 1) / len(colours)), 1000)
        if cancel is not None and cancel():
            raise Cancelled("saliency computation cancelled")
    for k, extra in enumerate(decomposition.diagonal()):
        total = guidance[k] if extra is None else guidance[k] + extra
        arrays[f"guidance_{k}"][...] = total.detach().cpu().numpy()
        arrays[f"influence_{k}"][...] = totals[k].view(height, width).cpu().numpy()
    return (
        f"rows by colouring the banded part ({period_r}x{period_c} passes, field "
        f"{rf.height}x{rf.width}) plus l1 norms of the low-rank rows"
    )


def _owner(
    positions: torch.Tensor, lo: int, hi: int, period: int, colour: int, size: int
) -> torch.Tensor:
    """For positions q, the position p ≡ colour whose field [p+lo, p+hi] holds q (-1: none)."""
    start = positions - hi
    found = start + torch.remainder(colour - start, period)
    return torch.where((found >= 0) & (found < size) & (found + lo <= positions), found, -1)
