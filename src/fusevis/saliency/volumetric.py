"""Exact saliency of 3-D fusion networks: per-voxel Jacobian rows, guidance and influence.

The 2-D engine's ideas on volumes (any number of spatial axes, in fact):

* the receptive field is traced from the network's modules per axis
  (:func:`fusevis.saliency.volume_trace.trace_grid_fields`; padding modules shift it, pooling
  and strides widen it and set the crops' sampling grid, interpolation reaches back);
* a voxel's Jacobian row J_k(v) = ∂F(v)/∂x_k is computed by one forward and one backward
  pass of the network on the field-sized crop around v (:class:`VoxelJacobian`): exactly
  the full volume's gradient, at a cost independent of the volume's size;
* guidance volumes G_k(v) = ∂F(v)/∂x_k(v) and influence volumes
  I_k(v) = Σ_u |∂F(v)/∂x_k(u)| (summed over the input's channels, as
  :mod:`fusevis.saliency.maps` defines them in 2-D) come from probe colouring in three
  dimensions (:func:`volume_maps`): voxels coloured by their coordinates modulo a period
  per axis — the field's reach + 1 for guidance, its size for influence — share one
  backward pass, so the whole volume takes the product of the periods in passes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fusevis.errors import InputError, ModelError
from fusevis.saliency.boxes import Box, GridField, cut_box, field_box, tiles
from fusevis.saliency.precision import without_tf32
from fusevis.saliency.switches import flushed_denormals, frozen_parameters
from fusevis.saliency.volume_trace import NotLocal, TraceFailure, trace_grid_fields

Voxel = tuple[int, ...]
VolumeLike = torch.Tensor | np.ndarray
ProgressCallback = Callable[[int, int], None]


def as_volume_tuple(
    inputs: VolumeLike | Sequence[VolumeLike], dims: int = 3
) -> tuple[torch.Tensor, ...]:
    """Inputs as (1, C, X, Y, Z) tensors of one spatial shape (``dims`` spatial axes).

    Accepts (X, Y, Z), (C, X, Y, Z) and (1, C, X, Y, Z) tensors or NumPy arrays; NumPy
    arrays of a type other than float64 become float32.
    """
    items = [inputs] if isinstance(inputs, (torch.Tensor, np.ndarray)) else list(inputs)
    if not items:
        raise InputError(None, "no input volumes given")
    shaped = []
    for index, item in enumerate(items, start=1):
        if isinstance(item, np.ndarray):
            dtype = np.float64 if item.dtype == np.float64 else np.float32
            item = torch.from_numpy(np.ascontiguousarray(item, dtype=dtype))
        if not isinstance(item, torch.Tensor):
            raise InputError(f"input {index}", f"expected a volume, got {type(item).__name__}")
        if not dims <= item.dim() <= dims + 2 or (item.dim() == dims + 2 and item.shape[0] != 1):
            raise InputError(
                f"input {index}",
                f"expected a {dims}-D volume ((X, Y, Z), (C, X, Y, Z) or (1, C, X, Y, Z)), "
                f"got shape {tuple(item.shape)}",
            )
        tensor = item
        while tensor.dim() < dims + 2:
            tensor = tensor.unsqueeze(0)
        if not bool(torch.isfinite(tensor).all()):
            raise InputError(f"input {index}", "contains NaN or infinite values")
        shaped.append(tensor)
    size = tuple(shaped[0].shape[2:])
    for index, tensor in enumerate(shaped[1:], start=2):
        if tuple(tensor.shape[2:]) != size:
            raise InputError(
                f"input {index}", f"size {tuple(tensor.shape[2:])} differs from input 1 {size}"
            )
    return tuple(shaped)


def volume_field(model: nn.Module, num_inputs: int, dims: int = 3) -> GridField:
    """The traced receptive field of a volume network (the union over its inputs).

    Raises
    ------
    ModelError
        One line naming the operation that stops the trace (unknown to the tracer, or mixing
        the whole volume) and the model's source line.
    """
    name = type(model).__name__
    try:
        fields = trace_grid_fields(model, num_inputs, dims)
    except NotLocal as problem:
        raise ModelError(
            f"{name} is not local, so its voxels' saliency cannot be computed on crops: {problem}"
        ) from None
    except TraceFailure as problem:
        raise ModelError(
            f"cannot trace the receptive field of {name}: {problem}; "
            "pass receptive_field=GridField(lo, hi) to give it"
        ) from None
    field = fields[0]
    for other in fields[1:]:
        field = field.union(other)
    return field


def run_volume_model(
    model: nn.Module, inputs: Sequence[torch.Tensor], channel: int
) -> torch.Tensor:
    """``model(*inputs)``'s channel ``channel`` as (B, *spatial), checked against the inputs."""
    try:
        output = model(*inputs)
    except Exception as error:  # noqa: BLE001 - a user model failing gets one line
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
        raise ModelError(f"{type(model).__name__} failed on inputs {shapes}: {error}") from None
    reference = inputs[0]
    if (
        not isinstance(output, torch.Tensor)
        or output.dim() != reference.dim()
        or output.shape[2:] != reference.shape[2:]
    ):
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelError(
            f"{type(model).__name__} returned {got}; a fusion model must return "
            f"(B, C, {', '.join(str(n) for n in reference.shape[2:])}) like its inputs"
        )
    if not 0 <= channel < output.shape[1]:
        raise ModelError(
            f"output channel {channel} does not exist (the model returns {output.shape[1]})"
        )
    return output[:, channel]


def check_voxel(voxel: Sequence[int], shape: tuple[int, ...]) -> Voxel:
    """Validate a voxel (one index per axis) against a volume's shape."""
    try:
        found = tuple(int(v) for v in voxel)
    except (TypeError, ValueError):
        raise InputError(None, f"voxel must be (x, y, z), got {voxel!r}") from None
    if len(found) != len(shape) or not all(0 <= v < n for v, n in zip(found, shape, strict=True)):
        size = "x".join(str(n) for n in shape)
        raise InputError(None, f"voxel {found} is outside the {size} volume")
    return found


class VoxelJacobian:
    """Per-voxel Jacobian rows J_k(v) = ∂F(v)/∂x_k of a 3-D fusion network, exactly.

    Each row is one forward and one backward pass of the network on the crop of the inputs
    that the voxel's receptive field covers (clipped to the volume, aligned on the network's
    sampling grid); it equals the whole volume's gradient.

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(x1, ..., xN)`` on (1, C, X, Y, Z) tensors, returning
        (1, C_out, X, Y, Z); in eval mode.
    inputs : sequence of volumes
        The N input volumes: (X, Y, Z), (C, X, Y, Z) or (1, C, X, Y, Z) tensors or arrays.
    output_channel : int
        Which output channel is explained.
    receptive_field : GridField, optional
        The field, where it cannot be traced (default: traced from the modules).

    Examples
    --------
    >>> jac = VoxelJacobian(model, [mri, pet])          # doctest: +SKIP
    >>> j_mri, j_pet = jac.row((40, 50, 30))             # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Sequence[VolumeLike],
        output_channel: int = 0,
        receptive_field: GridField | None = None,
    ) -> None:
        self.model = model
        self.inputs = as_volume_tuple(inputs)
        self.output_channel = output_channel
        self.shape = tuple(int(n) for n in self.inputs[0].shape[2:])
        self.field = receptive_field or volume_field(model, len(self.inputs), len(self.shape))
        self._given = [
            tuple(x.shape) if isinstance(x, (torch.Tensor, np.ndarray)) else None for x in inputs
        ]
        self._parameters = list(model.parameters())

    def box(self, voxel: Sequence[int]) -> Box:
        """The crop a voxel's row is computed on (its receptive field, clipped and aligned)."""
        return field_box(self.field, Box.voxel(check_voxel(voxel, self.shape)), self.shape)

    @without_tf32
    def row_in_box(self, voxel: Sequence[int]) -> tuple[Box, list[torch.Tensor]]:
        """The row of ``voxel`` on its crop: the box and, per input, (C, *box.shape)."""
        found = check_voxel(voxel, self.shape)
        box = self.box(found)
        with frozen_parameters(self.model, self._parameters), flushed_denormals():
            leaves = [cut_box(x, Box.whole(self.shape), box).detach() for x in self.inputs]
            for leaf in leaves:
                leaf.requires_grad_(True)
            with torch.enable_grad():
                output = run_volume_model(self.model, leaves, self.output_channel)
                local = tuple(v - s for v, s in zip(found, box.start, strict=True))
                grads = torch.autograd.grad(output[(0, *local)], leaves, allow_unused=True)
        rows = [
            torch.zeros_like(leaf[0]) if g is None else g[0]
            for g, leaf in zip(grads, leaves, strict=True)
        ]
        return box, rows

    def row(self, voxel: Sequence[int]) -> list[np.ndarray]:
        """The Jacobian row of ``voxel``, per input, shaped as the input (zeros outside the field).

        An input given as (X, Y, Z) gets an (X, Y, Z) row; (C, X, Y, Z) or (1, C, X, Y, Z)
        inputs get (C, X, Y, Z) rows.
        """
        box, rows = self.row_in_box(voxel)
        result = []
        for x, crop, given in zip(self.inputs, rows, self._given, strict=True):
            values = crop.detach().cpu().numpy()
            full = np.zeros(tuple(x.shape[1:]), dtype=values.dtype)
            full[(slice(None), *box.as_slices())] = values
            result.append(full[0] if given is not None and len(given) == len(self.shape) else full)
        return result

    def verify(self, voxels: Sequence[Sequence[int]] | None = None) -> float:
        """Largest |crop row − whole-volume float64 gradient| over ``voxels``.

        Default voxels: the volume's corners and centre. The whole-volume gradients run the
        model in float64 on the whole volume, one backward pass per voxel.
        """
        import copy

        chosen = [check_voxel(v, self.shape) for v in voxels] if voxels else _sample(self.shape)
        twin = copy.deepcopy(self.model).to(torch.float64).eval()
        wide = [x.detach().to(torch.float64).requires_grad_(True) for x in self.inputs]
        check = VoxelJacobian(twin, [x.detach() for x in wide], self.output_channel, self.field)
        worst = 0.0
        with torch.enable_grad():
            output = run_volume_model(twin, wide, self.output_channel)
            for voxel in chosen:
                grads = torch.autograd.grad(
                    output[(0, *voxel)], wide, retain_graph=True, allow_unused=True
                )
                box, rows = check.row_in_box(voxel)
                for g, x, crop in zip(grads, wide, rows, strict=True):
                    whole = torch.zeros_like(x[0]) if g is None else g[0]
                    inside = whole[(slice(None), *box.as_slices())]
                    outside = whole.abs().sum() - inside.abs().sum()
                    worst = max(worst, float((inside - crop).abs().max()), float(outside))
        return worst


def _sample(shape: tuple[int, ...]) -> list[Voxel]:
    corners = itertools.product(*[(0, n - 1) for n in shape])
    return list(dict.fromkeys([*corners, tuple(n // 2 for n in shape)]))


@dataclass
class VolumeMaps:
    """Fused volume, guidance volumes and (optionally) influence volumes.

    Attributes
    ----------
    fused : numpy.ndarray
        (X, Y, Z) selected output channel of the network.
    guidance : list of numpy.ndarray
        Per input, (C, X, Y, Z) signed ∂F(v)/∂x_k(v) per input channel.
    influence : list of numpy.ndarray or None
        Per input, (X, Y, Z) Σ_u |∂F(v)/∂x_k(u)| summed over the input's channels.
    field : GridField
        The receptive field used.
    method : str
        How the volumes were computed.
    seconds : float
        Wall time of the computation.
    """

    fused: np.ndarray
    guidance: list[np.ndarray]
    influence: list[np.ndarray] | None
    field: GridField
    method: str
    seconds: float = 0.0

    @property
    def share(self) -> list[np.ndarray] | None:
        """Each input's share of the total influence (1/N where all are 0)."""
        if self.influence is None:
            return None
        from fusevis.saliency.maps import influence_shares

        return influence_shares(self.influence)


def colour_periods(field: GridField, influence: bool) -> tuple[int, ...]:
    """Colour period per axis: reach + 1 for guidance, also the field's size for influence.

    Two voxels of one colour differ by at least a period on some axis, so neither lies in
    the other's field (guidance); with periods of the field's size their fields do not
    overlap at all (influence).
    """
    reach = tuple(r + 1 for r in field.reach)
    if not influence:
        return reach
    return tuple(max(r, s) for r, s in zip(reach, field.size, strict=True))


@without_tf32
def volume_maps(
    model: nn.Module,
    inputs: Sequence[VolumeLike],
    influence: bool = False,
    output_channel: int = 0,
    receptive_field: GridField | None = None,
    tile: int = 128,
    progress: ProgressCallback | None = None,
) -> VolumeMaps:
    """Guidance (and optionally influence) volumes of every fused voxel, exactly.

    Parameters
    ----------
    model : torch.nn.Module
        The 3-D fusion network (eval mode); it runs on the inputs' device and dtype.
    inputs : sequence of volumes
        As for :class:`VoxelJacobian`.
    influence : bool
        Also compute the influence volumes (the product of the field's sizes in backward
        passes instead of the product of its reaches + 1).
    output_channel : int
        Which output channel is explained.
    receptive_field : GridField, optional
        The field, where it cannot be traced.
    tile : int
        Largest tile edge in voxels: each tile runs on a crop with a field-wide halo, which
        bounds memory.
    progress : callable(done, total), optional
        Called after every backward pass.
    """
    started = time.perf_counter()
    items = as_volume_tuple(inputs)
    shape = tuple(int(n) for n in items[0].shape[2:])
    field = receptive_field or volume_field(model, len(items), len(shape))
    with frozen_parameters(model), flushed_denormals():
        arrays, method = _colour(model, items, field, influence, output_channel, tile, progress)
    return VolumeMaps(
        fused=arrays["fused"],
        guidance=[arrays[f"guidance_{k}"] for k in range(len(items))],
        influence=[arrays[f"influence_{k}"] for k in range(len(items))] if influence else None,
        field=field,
        method=method,
        seconds=time.perf_counter() - started,
    )


def guidance_volumes(
    model: nn.Module, inputs: Sequence[VolumeLike], **options: object
) -> VolumeMaps:
    """Guidance volumes (the Jacobian's diagonal per input); options of :func:`volume_maps`."""
    return volume_maps(model, inputs, influence=False, **options)  # type: ignore[arg-type]


def influence_volumes(
    model: nn.Module, inputs: Sequence[VolumeLike], **options: object
) -> VolumeMaps:
    """Guidance and influence volumes (Σ_u |∂F(v)/∂x_k(u)|); options of :func:`volume_maps`."""
    return volume_maps(model, inputs, influence=True, **options)  # type: ignore[arg-type]


def _colour(
    model: nn.Module,
    items: tuple[torch.Tensor, ...],
    field: GridField,
    influence: bool,
    channel: int,
    tile: int,
    progress: ProgressCallback | None,
) -> tuple[dict[str, np.ndarray], str]:
    shape = tuple(int(n) for n in items[0].shape[2:])
    dims = len(shape)
    dtype = torch.float64 if items[0].dtype == torch.float64 else torch.float32
    fused = torch.zeros(shape, dtype=dtype)
    guidance = [torch.zeros((x.shape[1], *shape), dtype=dtype) for x in items]
    device = items[0].device
    totals = (
        [torch.zeros(shape, dtype=torch.float64, device=device) for _ in items] if influence else []
    )
    periods = colour_periods(field, influence)
    parts = tiles(shape, max(tile, *periods))
    colours = list(itertools.product(*[range(p) for p in periods]))
    total, finished = len(parts) * len(colours), 0
    whole = Box.whole(shape)
    for part in parts:
        window = field_box(field, part, shape)
        leaves = [cut_box(x, whole, window).detach().requires_grad_(True) for x in items]
        with torch.enable_grad():
            output = run_volume_model(model, leaves, channel)
        fused[part.as_slices()] = output[(0, *part.within(window))].detach().cpu().to(dtype)
        for colour in colours:
            first = [s + (c - s) % p for s, c, p in zip(part.start, colour, periods, strict=True)]
            finished += 1
            if any(f >= e for f, e in zip(first, part.stop, strict=True)):
                continue
            local = tuple(
                slice(f - w, e - w, p)
                for f, e, w, p in zip(first, part.stop, window.start, periods, strict=True)
            )
            image = tuple(slice(f, e, p) for f, e, p in zip(first, part.stop, periods, strict=True))
            probe = torch.zeros_like(output)
            probe[(0, *local)] = 1.0
            grads = torch.autograd.grad(output, leaves, probe, retain_graph=True, allow_unused=True)
            for k, grad in enumerate(grads):
                if grad is None:
                    continue
                g = grad[0].detach()
                guidance[k][(slice(None), *image)] = g[(slice(None), *local)].cpu().to(dtype)
                if influence:
                    _add_influence(
                        totals[k], g.abs().sum(dim=0), field, periods, colour, part, window
                    )
            if progress is not None:
                progress(finished, total)
        del output, leaves
    arrays = {"fused": fused.numpy()}
    for k in range(len(items)):
        arrays[f"guidance_{k}"] = guidance[k].numpy()
        if influence:
            arrays[f"influence_{k}"] = totals[k].to(dtype).cpu().numpy()
    what = "guidance + influence" if influence else "guidance"
    size = "x".join(str(s) for s in field.size)
    grid = "x".join(str(p) for p in periods)
    return arrays, (
        f"{what} by probe colouring in {dims} dimensions: {grid} backward passes per tile, "
        f"{len(parts)} tile(s), field {size} ({field.source})"
    )


def _add_influence(
    target: torch.Tensor,
    magnitude: torch.Tensor,
    field: GridField,
    periods: tuple[int, ...],
    colour: tuple[int, ...],
    part: Box,
    window: Box,
) -> None:
    """Add |∂F(v)/∂x(u)| at every input voxel u of the window to its owner v of ``colour``.

    Per axis, the owner of u is the voxel v ≡ colour whose field [v + lo, v + hi] holds u
    (one at most, the period being at least the field's size); owners outside the tile
    belong to another tile's pass.
    """
    dims = len(periods)
    device = magnitude.device
    index = torch.zeros((), dtype=torch.int64, device=device)
    keep = torch.ones((), dtype=torch.bool, device=device)
    stride = 1
    for a in reversed(range(dims)):
        positions = torch.arange(window.start[a], window.stop[a], device=device)
        first = positions - field.hi[a]
        owner = first + torch.remainder(colour[a] - first, periods[a])
        valid = (
            (owner >= part.start[a]) & (owner < part.stop[a]) & (owner + field.lo[a] <= positions)
        )
        view = [1] * dims
        view[a] = -1
        index = index + (owner * stride).view(view)
        keep = keep & valid.view(view)
        stride *= target.shape[a]
    keep = keep.expand(magnitude.shape)
    flat = target.view(-1)
    flat.index_add_(0, index.expand(magnitude.shape)[keep], magnitude[keep].to(torch.float64))


def row_planes(
    row: np.ndarray, voxel: Sequence[int], rotate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three orthogonal planes of a row (or any volume) through ``voxel``.

    Parameters
    ----------
    row : numpy.ndarray
        (X, Y, Z), or (..., X, Y, Z) with the spatial axes last.
    voxel : (x, y, z)
        The voxel the planes pass through.
    rotate : bool
        Rotate each plane by 90° as :func:`fusevis.io.loading.volume_slice` shows NIfTI
        (RAS+) slices (anterior or superior up); False keeps the array's axis order.

    Returns
    -------
    tuple of numpy.ndarray
        (axial, coronal, sagittal): the planes z = voxel[2], y = voxel[1], x = voxel[0],
        i.e. ``volume_slice`` along axes 2, 1 and 0.
    """
    x, y, z = check_voxel(voxel, tuple(row.shape[-3:]))
    base = row.ndim - 3
    planes = [np.take(row, index, axis=base + axis) for axis, index in ((2, z), (1, y), (0, x))]
    if rotate:
        planes = [np.rot90(p, axes=(-2, -1)) for p in planes]
    axial, coronal, sagittal = (np.ascontiguousarray(p) for p in planes)
    return axial, coronal, sagittal
