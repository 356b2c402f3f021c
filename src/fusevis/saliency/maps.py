"""Guidance and influence maps for every fused pixel, by batched probe colouring.

Pixels are coloured by (row mod s_r, col mod s_c). One backward pass whose output gradient
is 1 on every pixel of one colour returns, at each input pixel q, the derivative of the
single fused pixel of that colour whose receptive field covers q, because same-coloured
fields do not overlap. s_r·s_c passes therefore give exactly

* the guidance maps G_k(p) = ∂F(p)/∂x_k(p) (the Jacobian's diagonal): here it is enough that
  no same-coloured pixel's field contains p, so s = radius + 1 per axis;
* the influence maps I_k(p) = Σ_q |∂F(p)/∂x_k(q)| and each input's share I_k / Σ_j I_j: here
  the fields must not overlap at all, so s = field width per axis.

Large images are processed in tiles (each with a receptive-field halo) to bound memory.

Models that are not local are handed to :func:`fusevis.saliency.batched.not_local_maps`:
exact by their banded-plus-low-rank form where they have one, else exact by batched
full-image backward passes, or — only when asked for — an estimate with error bounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fusevis.errors import FuseVisError
from fusevis.saliency.crop import KeptForward, cut_inputs
from fusevis.saliency.field import ReceptiveField, Window, field_window
from fusevis.saliency.inputs import as_input_tuple
from fusevis.saliency.locality import Locality, analyse_locality
from fusevis.saliency.outputs import OutputChannel
from fusevis.saliency.precision import without_tf32
from fusevis.saliency.switches import flushed_denormals, frozen_parameters

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


class Cancelled(FuseVisError):
    """A long computation was cancelled by its caller."""


def influence_shares(influence: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each input's share of the total influence, I_k / Σ_j I_j (1/N where all are 0)."""
    total = np.sum(influence, axis=0)
    safe = np.where(total > 0, total, 1.0)
    return [
        np.where(total > 0, i / safe, 1.0 / len(influence)).astype(np.float32) for i in influence
    ]


@dataclass
class SaliencyMaps:
    """Fused image, guidance maps and (optionally) influence maps of an image set.

    Attributes
    ----------
    fused : numpy.ndarray
        (H, W) selected output channel of the network.
    guidance : list of numpy.ndarray
        Per input, (C, H, W) signed ∂F(p)/∂x_k(p) for each input channel.
    influence : list of numpy.ndarray or None
        Per input, (H, W) Σ_q |∂F(p)/∂x_k(q)| summed over the input's channels.
    locality : Locality
        Whether the model is local, and the field used.
    method : str
        A description of how the maps were computed.
    estimate : bool
        True when the guidance maps are an estimate, not exact (asked for with
        ``estimate=True`` for a model without exact fast structure).
    error_bound : list of numpy.ndarray or None
        For an estimate, per input the (C, H, W) bound on |estimate − exact| at each pixel
        (at the confidence :attr:`extra` ``["estimate"]`` states, checked at sampled pixels).
    """

    fused: np.ndarray
    guidance: list[np.ndarray]
    influence: list[np.ndarray] | None = None
    locality: Locality | None = None
    method: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    estimate: bool = False
    error_bound: list[np.ndarray] | None = None

    @property
    def share(self) -> list[np.ndarray] | None:
        """Each input's share of the total influence, I_k / Σ_j I_j (1/N where all are 0)."""
        return None if self.influence is None else influence_shares(self.influence)

    def guidance_2d(self, index: int) -> np.ndarray:
        """Guidance of input ``index`` as (H, W), summing channels for multi-channel inputs."""
        return self.guidance[index].sum(axis=0)


class Checkpoint(Protocol):
    """Where partial results go, so that an interrupted run can resume."""

    def load(self) -> tuple[dict[str, np.ndarray], set[tuple[int, int]]] | None:
        """Arrays and finished (tile, colour) units saved before, if any."""

    def save(self, arrays: dict[str, np.ndarray], done: set[tuple[int, int]]) -> None:
        """Persist the arrays and the finished units atomically."""


def colour_spacing(rf: ReceptiveField, influence: bool) -> tuple[int, int]:
    """Colour period per axis: the field's size for influence, radius + 1 for guidance."""
    if influence:
        return rf.height, rf.width
    return max(-rf.row_lo, rf.row_hi) + 1, max(-rf.col_lo, rf.col_hi) + 1


def tiles(shape: tuple[int, int], tile: int) -> list[Window]:
    """Split an image into tiles of at most ``tile`` × ``tile`` pixels."""
    height, width = shape
    return [
        Window(r, min(height, r + tile), c, min(width, c + tile))
        for r in range(0, height, tile)
        for c in range(0, width, tile)
    ]


def _owners(positions: torch.Tensor, lo: int, hi: int, period: int, colour: int) -> torch.Tensor:
    """For input positions q, the fused position p ≡ colour whose field [p+lo, p+hi] holds q."""
    start = positions - hi
    return start + torch.remainder(colour - start, period)


@without_tf32
def compute_maps(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    influence: bool = False,
    output_channel: OutputChannel = 0,
    receptive_field: ReceptiveField | None = None,
    tile: int = 512,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    checkpoint: Checkpoint | None = None,
    verify: bool = True,
    locality: Locality | None = None,
    checkpoint_interval: float = 2.0,
    estimate: bool = False,
    probes: int = 256,
) -> SaliencyMaps:
    """Compute guidance (and optionally influence) maps of every fused pixel exactly.

    Parameters
    ----------
    model : torch.nn.Module
        The fusion network; it runs on the inputs' device and dtype.
    inputs : tensor or sequence of tensors
        The N inputs, (1, C, H, W) each.
    influence : bool
        Also compute influence maps (needs more passes: field width² instead of radius²).
    output_channel : int or "luminance"
        Which output channel is explained.
    receptive_field : ReceptiveField, optional
        Override the traced or measured field.
    tile : int
        Tile size bounding memory; each tile is computed on a crop with a field-wide halo.
    progress : callable(done, total), optional
        Called after every backward pass.
    cancel : callable() -> bool, optional
        Polled after every pass; returning True raises :class:`Cancelled`.
    checkpoint : Checkpoint, optional
        Saves partial results and skips units finished before (resume).
    verify : bool
        Verify the field against full-image gradients first.
    locality : Locality, optional
        A decision made before (skips the analysis).
    checkpoint_interval : float
        Least number of seconds between two checkpoint saves.
    estimate : bool
        For a model that is not local and has no banded-plus-low-rank form, estimate the
        guidance maps (``probes`` backward passes, with error bounds) instead of computing
        them exactly (a backward pass per pixel). Ignored where the maps are exact anyway.
    probes : int
        Probes of the estimate.
    """
    items = as_input_tuple(inputs)
    shape = (int(items[0].shape[-2]), int(items[0].shape[-1]))
    if locality is None:
        locality = analyse_locality(model, items, output_channel, receptive_field, verify)
    dtype = np.float64 if items[0].dtype == torch.float64 else np.float32
    arrays = {"fused": np.zeros(shape, dtype)}
    for k, x in enumerate(items):
        arrays[f"guidance_{k}"] = np.zeros((x.shape[1], *shape), dtype)
        if influence:
            arrays[f"influence_{k}"] = np.zeros(shape, dtype)
    done: set[tuple[int, int]] = set()
    if checkpoint is not None:
        restored = checkpoint.load()
        if restored is not None:
            saved, done = restored
            arrays.update({k: v for k, v in saved.items() if k in arrays})
    saver = _Saver(checkpoint, checkpoint_interval)
    bounds, extra = None, {}
    with frozen_parameters(model), flushed_denormals():
        if not locality.local:
            from fusevis.saliency.batched import not_local_maps

            method, bounds, extra = not_local_maps(
                model,
                items,
                arrays,
                influence,
                output_channel,
                tile,
                progress,
                cancel,
                saver,
                done,
                verify=verify,
                estimate=estimate,
                probes=probes,
            )
        else:
            method = _probe_colouring(
                model,
                items,
                arrays,
                locality.field,
                influence,
                output_channel,
                tile,
                progress,
                cancel,
                saver,
                done,
            )
    count = len(items)
    return SaliencyMaps(
        fused=arrays["fused"],
        guidance=[arrays[f"guidance_{k}"] for k in range(count)],
        influence=[arrays[f"influence_{k}"] for k in range(count)] if influence else None,
        locality=locality,
        method=method,
        extra=extra,
        estimate=bounds is not None,
        error_bound=bounds,
    )


class _Saver:
    """Throttled checkpointing (at most once per ``interval`` seconds, and at the end)."""

    def __init__(self, checkpoint: Checkpoint | None, interval: float = 2.0) -> None:
        self.checkpoint = checkpoint
        self.interval = interval
        self.last = time.monotonic()

    def maybe(self, arrays: dict[str, np.ndarray], done: set, force: bool = False) -> None:
        if self.checkpoint is None:
            return
        if force or time.monotonic() - self.last >= self.interval:
            self.checkpoint.save(arrays, done)
            self.last = time.monotonic()

    def after_pass(
        self,
        finished: int,
        total: int,
        progress: ProgressCallback | None,
        cancel: CancelCheck | None,
        arrays: dict[str, np.ndarray],
        done: set,
    ) -> None:
        """Report progress, checkpoint, and stop (saving first) if cancellation was asked."""
        if progress is not None:
            progress(finished, total)
        self.maybe(arrays, done)
        if cancel is not None and cancel():
            self.maybe(arrays, done, force=True)
            raise Cancelled("saliency computation cancelled")


def _probe_colouring(
    model: nn.Module,
    items: tuple[torch.Tensor, ...],
    arrays: dict[str, np.ndarray],
    rf: ReceptiveField,
    influence: bool,
    channel: OutputChannel,
    tile: int,
    progress: ProgressCallback | None,
    cancel: CancelCheck | None,
    saver: _Saver,
    done: set[tuple[int, int]],
) -> str:
    shape = arrays["fused"].shape
    period_r, period_c = colour_spacing(rf, influence)
    tile = max(tile, period_r, period_c)
    parts = tiles(shape, tile)
    total = len(parts) * period_r * period_c
    finished = len(done)
    for tile_index, part in enumerate(parts):
        colours = [
            (a, b)
            for a in range(period_r)
            for b in range(period_c)
            if (tile_index, a * period_c + b) not in done
        ]
        if not colours:
            continue
        window = field_window(rf, (part.top, part.bottom), (part.left, part.right), shape)
        kept = KeptForward(model, cut_inputs(items, window), channel)
        output = kept.output
        local = (
            slice(part.top - window.top, part.bottom - window.top),
            slice(part.left - window.left, part.right - window.left),
        )
        arrays["fused"][part.as_slices()] = output[0][local].detach().cpu().numpy()
        image_rows = torch.arange(window.top, window.bottom)
        image_cols = torch.arange(window.left, window.right)
        for a, b in colours:
            first_r = part.top + (a - part.top) % period_r
            first_c = part.left + (b - part.left) % period_c
            if first_r >= part.bottom or first_c >= part.right:
                done.add((tile_index, a * period_c + b))
                finished += 1
                continue
            probe = torch.zeros_like(output)
            probe[
                0,
                first_r - window.top : part.bottom - window.top : period_r,
                first_c - window.left : part.right - window.left : period_c,
            ] = 1.0
            grads = kept.probed(probe)
            for k, grad in enumerate(grads):
                if grad is None:
                    continue
                g = grad[0]
                target = arrays[f"guidance_{k}"]
                target[:, first_r : part.bottom : period_r, first_c : part.right : period_c] = (
                    g[
                        :,
                        first_r - window.top : part.bottom - window.top : period_r,
                        first_c - window.left : part.right - window.left : period_c,
                    ]
                    .detach()
                    .cpu()
                    .numpy()
                )
                if influence:
                    _accumulate_influence(
                        arrays[f"influence_{k}"],
                        g.abs().sum(dim=0),
                        rf,
                        (period_r, period_c),
                        (a, b),
                        part,
                        image_rows,
                        image_cols,
                    )
            done.add((tile_index, a * period_c + b))
            finished += 1
            saver.after_pass(finished, total, progress, cancel, arrays, done)
        del output, kept
    saver.maybe(arrays, done, force=True)
    what = "guidance + influence" if influence else "guidance"
    return (
        f"{what} by probe colouring: {period_r}x{period_c} backward passes per tile, "
        f"{len(parts)} tile(s), field {rf.height}x{rf.width} ({rf.source})"
    )


def _accumulate_influence(
    target: np.ndarray,
    magnitude: torch.Tensor,
    rf: ReceptiveField,
    period: tuple[int, int],
    colour: tuple[int, int],
    part: Window,
    image_rows: torch.Tensor,
    image_cols: torch.Tensor,
) -> None:
    owner_r = _owners(image_rows, rf.row_lo, rf.row_hi, period[0], colour[0])
    owner_c = _owners(image_cols, rf.col_lo, rf.col_hi, period[1], colour[1])
    valid_r = (owner_r >= part.top) & (owner_r < part.bottom)
    valid_c = (owner_c >= part.left) & (owner_c < part.right)
    values = magnitude[valid_r][:, valid_c].detach().cpu().double()
    rows = owner_r[valid_r]
    cols = owner_c[valid_c]
    sums = torch.zeros(target.shape, dtype=torch.float64)
    sums.index_put_(
        (rows[:, None].expand_as(values), cols[None, :].expand_as(values)), values, accumulate=True
    )
    mask = torch.zeros(target.shape, dtype=torch.bool)
    mask[rows.min() : rows.max() + 1 : period[0], cols.min() : cols.max() + 1 : period[1]] = True
    target[mask.numpy()] = sums[mask].numpy()


def guidance_maps(
    model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], **options: object
) -> SaliencyMaps:
    """Guidance maps (the Jacobian's diagonal per input) of every fused pixel.

    See :func:`compute_maps` for the options.
    """
    return compute_maps(model, inputs, influence=False, **options)  # type: ignore[arg-type]


def influence_maps(
    model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], **options: object
) -> SaliencyMaps:
    """Guidance and influence maps (Σ_q |∂F(p)/∂x_k(q)| per input) of every fused pixel.

    See :func:`compute_maps` for the options.
    """
    return compute_maps(model, inputs, influence=True, **options)  # type: ignore[arg-type]
