"""Finding, measuring and verifying a model's receptive field.

:func:`analyse_locality` decides once per model and input size how saliency is computed:

1. trace the field from the network's structure (:mod:`fusevis.saliency.trace`), or, where
   that is impossible, measure it from float64 gradients at several pixels and inputs and
   add a safety margin;
2. verify it: crop-based Jacobians must equal full-image gradients (float64) at sampled
   pixels, the four corners and edge midpoints included; a failed check widens the field;
3. a model whose field covers the whole image (global pooling, attention, image-wide
   normalisation) is not local: it is computed on the full image, and the result says so.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from fusevis.errors import ModelError
from fusevis.saliency.crop import KeptForward, crop_rows
from fusevis.saliency.field import ReceptiveField, Window, field_window
from fusevis.saliency.outputs import OutputChannel
from fusevis.saliency.switches import frozen_parameters
from fusevis.saliency.trace import NotLocal, TraceFailure, trace_receptive_fields

VERIFY_TOLERANCE = 1e-9
ALIGNMENTS = (2, 4, 8, 16, 32)  # crop periods tried for a measured field that fails


@dataclass
class Locality:
    """How saliency is computed for one model and input size.

    Attributes
    ----------
    local : bool
        True: each fused pixel depends on a receptive field smaller than the image, and is
        computed from it alone (exact, fast); False: full-image gradients.
    field : ReceptiveField or None
        The field (the union over inputs); None for a model that is not local.
    per_input : list of ReceptiveField
        The field of every input (for a local model).
    how : str
        ``"traced"``, ``"measured"`` or ``"user"``, and for a model that is not local why.
    verified_error : float or None
        Largest relative difference between crop and full-image Jacobians seen when
        verifying (None when verification was skipped).
    """

    local: bool
    field: ReceptiveField | None
    per_input: list[ReceptiveField] = field(default_factory=list)
    how: str = ""
    verified_error: float | None = None


def sample_pixels(shape: tuple[int, int], count: int = 3, seed: int = 0) -> list[tuple[int, int]]:
    """Corners, edge midpoints, the centre and ``count`` random pixels of an image."""
    height, width = shape
    fixed = [
        (0, 0),
        (0, width - 1),
        (height - 1, 0),
        (height - 1, width - 1),
        (0, width // 2),
        (height // 2, 0),
        (height - 1, width // 2),
        (height // 2, width - 1),
        (height // 2, width // 2),
    ]
    generator = torch.Generator().manual_seed(seed)
    randoms = [
        (
            int(torch.randint(height, (1,), generator=generator)),
            int(torch.randint(width, (1,), generator=generator)),
        )
        for _ in range(count)
    ]
    return list(dict.fromkeys(fixed + randoms))


def _float64_copy(
    model: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    twin = copy.deepcopy(model).to(dtype=torch.float64).eval()
    return twin, tuple(x.detach().to(torch.float64) for x in inputs)


def measure_fields(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    channel: OutputChannel,
    margin_fraction: float = 0.25,
    pixels: list[tuple[int, int]] | None = None,
) -> list[ReceptiveField]:
    """Measure each input's field from float64 gradients, with a safety margin.

    The support (exactly non-zero entries) of the Jacobian rows of several pixels (three
    spread over the image unless ``pixels`` are given) is taken
    over the real inputs and two random ones; the bounding offsets are widened by
    ``max(2, margin_fraction × radius)`` because ReLUs can zero gradients inside the field.

    Raises
    ------
    NotLocal
        If the centre pixel's support reaches all four image borders.
    """
    twin, originals = _float64_copy(model, inputs)
    height, width = inputs[0].shape[-2:]
    generator = torch.Generator().manual_seed(0)
    trials = [originals] + [
        tuple(
            torch.rand(x.shape, generator=generator, dtype=torch.float64).to(x.device)
            for x in originals
        )
        for _ in range(2)
    ]
    pixels = pixels or [
        (height // 2, width // 2),
        (height // 3, width // 4),
        (2 * height // 3, 3 * width // 4),
    ]
    bounds = [[0, 0, 0, 0] for _ in inputs]
    whole = Window(0, height, 0, width)
    with frozen_parameters(twin):
        for trial in trials:
            for pixel in pixels:
                rows = crop_rows(twin, trial, pixel, whole, channel)
                for index, grad in enumerate(rows):
                    support = grad.abs().sum(dim=0).nonzero()
                    if support.numel() == 0:
                        continue
                    origin = torch.tensor(pixel, device=support.device)
                    r_lo, c_lo = (support.min(dim=0).values - origin).tolist()
                    r_hi, c_hi = (support.max(dim=0).values - origin).tolist()
                    b = bounds[index]
                    bounds[index] = [
                        min(b[0], r_lo),
                        max(b[1], r_hi),
                        min(b[2], c_lo),
                        max(b[3], c_hi),
                    ]
                    if pixel == pixels[0] and (
                        r_lo + pixel[0] == 0
                        and c_lo + pixel[1] == 0
                        and r_hi + pixel[0] == height - 1
                        and c_hi + pixel[1] == width - 1
                    ):
                        raise NotLocal("the centre pixel depends on the whole image")
    fields = []
    for r_lo, r_hi, c_lo, c_hi in bounds:
        radius = max(-r_lo, r_hi, -c_lo, c_hi)
        margin = max(2, math.ceil(margin_fraction * radius))
        fields.append(ReceptiveField(r_lo, r_hi, c_lo, c_hi, source="measured").widened(margin))
    return fields


def verify_field(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    rf: ReceptiveField,
    channel: OutputChannel,
    pixels: list[tuple[int, int]],
) -> float:
    """Relative error of crop Jacobians against the full-image gradient (float64).

    One full-image backward pass whose output gradient is 1 at every sampled pixel gives
    the sum of their Jacobian rows; it must equal the sum of the crop rows placed in the
    image. A field that is too small misses part of some row and fails the check.
    """
    pixels = list(dict.fromkeys(pixels))  # each once: the probe holds a pixel's 1 once
    twin, originals = _float64_copy(model, inputs)
    shape = tuple(inputs[0].shape[-2:])
    with frozen_parameters(twin):
        kept = KeptForward(twin, originals, channel)
        probe = torch.zeros_like(kept.output)
        for row, col in pixels:
            probe[0, row, col] = 1.0
        full = kept.probed(probe, keep=False)
        placed = [torch.zeros_like(x[0]) for x in originals]
        for pixel in pixels:
            window = field_window(rf, (pixel[0], pixel[0] + 1), (pixel[1], pixel[1] + 1), shape)
            rows, cols = window.as_slices()
            for total, crop_grad in zip(
                placed, crop_rows(twin, originals, pixel, window, channel), strict=True
            ):
                total[..., rows, cols] += crop_grad
    worst = 0.0
    for full_grad, total in zip(full, placed, strict=True):
        reference = torch.zeros_like(total) if full_grad is None else full_grad[0]
        scale = float(reference.abs().max()) or 1.0
        worst = max(worst, float((total - reference).abs().max()) / scale)
    return worst


def _aligned_field(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    rf: ReceptiveField,
    channel: OutputChannel,
    pixels: list[tuple[int, int]],
) -> tuple[ReceptiveField, float] | None:
    """The measured field with crops starting on multiples of a period, if one verifies.

    Networks that cut the image into windows (Swin-style attention, ``view`` into blocks,
    shifted by ``torch.roll``) are local, but a crop computes a pixel as the whole image does
    only where the crop's windows are the image's: where it starts on a multiple of the
    window. The smallest period in :data:`ALIGNMENTS` whose crops pass the check is taken.
    """
    shape = tuple(inputs[0].shape[-2:])
    for period in ALIGNMENTS:
        if period * 2 > min(shape):
            break
        aligned = replace(rf, stride=(period, period))
        try:
            # A window's pixels reach differently far: measure again at every phase, on an
            # aligned part of the image (the field repeats with the period).
            part = _aligned_part(inputs, period, max(64, 4 * (rf.radius + period)))
            part_shape = tuple(part[0].shape[-2:])
            for measured in measure_fields(
                model, part, channel, pixels=phase_pixels(part_shape, period)
            ):
                aligned = aligned.union(measured)
            error = verify_field(
                model, inputs, aligned, channel, pixels + phase_pixels(shape, period)
            )
        except ModelError:
            continue
        except NotLocal:
            return None
        if error <= VERIFY_TOLERANCE:
            return aligned, error
    return None


def _aligned_part(
    inputs: tuple[torch.Tensor, ...], period: int, side: int
) -> tuple[torch.Tensor, ...]:
    """The inputs cut to about ``side`` × ``side`` around the centre, starting on the period."""
    height, width = inputs[0].shape[-2:]
    rows = min(height, max(period, side // period * period))
    cols = min(width, max(period, side // period * period))
    top = max(0, (height - rows) // 2) // period * period
    left = max(0, (width - cols) // 2) // period * period
    return tuple(x[..., top : top + rows, left : left + cols] for x in inputs)


def phase_pixels(shape: tuple[int, int], period: int) -> list[tuple[int, int]]:
    """Pixels near the image's centre at every offset from a multiple of ``period``.

    Each row offset and each column offset appears (twice, in two pairings: the diagonal and
    the anti-diagonal of a period × period block).
    """
    top = (shape[0] // 2) // period * period
    left = (shape[1] // 2) // period * period
    found = {(top + i, left + i) for i in range(period)}
    found |= {(top + i, left + period - 1 - i) for i in range(period)}
    return sorted((min(r, shape[0] - 1), min(c, shape[1] - 1)) for r, c in found)


def analyse_locality(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    channel: OutputChannel = 0,
    override: ReceptiveField | None = None,
    verify: bool = True,
    cache: bool = True,
) -> Locality:
    """Decide whether ``model`` is local at the inputs' size, and find its field.

    With ``cache`` the result is remembered on disk per model (class, structure, weights)
    and input size (:mod:`fusevis.saliency.fieldcache`), and read back instead of analysed.
    """
    if not cache:
        return _analyse(model, inputs, channel, override, verify)
    from fusevis.saliency import fieldcache

    key = fieldcache.analysis_key(model, inputs, channel, override, verify)
    found = fieldcache.load(key)
    if found is None:
        found = _analyse(model, inputs, channel, override, verify)
        fieldcache.store(key, found)
    return found


def _analyse(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    channel: OutputChannel,
    override: ReceptiveField | None,
    verify: bool,
) -> Locality:
    shape = tuple(inputs[0].shape[-2:])
    try:
        if override is not None:
            per_input = [override] * len(inputs)
            how = "user"
        else:
            try:
                per_input = trace_receptive_fields(model, len(inputs), inputs)
                how = "traced"
            except TraceFailure as failure:
                per_input = measure_fields(model, inputs, channel)
                how = f"measured ({failure})"
    except NotLocal as reason:
        return Locality(False, None, [], f"not local: {reason}")
    combined = per_input[0]
    for other in per_input[1:]:
        combined = combined.union(other)
    if not verify:
        return Locality(True, combined, per_input, how, None)
    pixels = sample_pixels(shape)
    for _ in range(6):
        if combined.height >= shape[0] and combined.width >= shape[1]:
            break
        try:
            error = verify_field(model, inputs, combined, channel, pixels)
        except ModelError as failure:  # a model that runs only on some sizes (windows)
            return Locality(False, None, [], f"{how}; the model fails on crops: {failure}")
        if error <= VERIFY_TOLERANCE:
            return Locality(True, combined, per_input, how, error)
        if how.startswith("measured") and combined.stride == (1, 1) and "widened" not in how:
            aligned = _aligned_field(model, inputs, combined, channel, pixels)
            if aligned is not None:
                field_, error = aligned
                note = f"{how}; crops start on multiples of {field_.stride[0]} (windows)"
                return Locality(True, field_, [field_] * len(inputs), note, error)
        combined = combined.widened(max(2, combined.radius))
        per_input = [combined] * len(inputs)
        how += "; widened after verification"
    return Locality(False, None, [], f"{how}; field covers the image")
