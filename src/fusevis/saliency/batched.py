"""All-pixel maps of models that are not local: low rank, batched exact passes, or an estimate.

:func:`not_local_maps` is what :func:`~fusevis.saliency.compute_maps` runs for a model that
is not local:

1. a model whose pixels are coupled only through a few global quantities gets exact maps from
   its banded-plus-low-rank form (:mod:`fusevis.saliency.lowrank`);
2. otherwise, exactly, by batched vector-Jacobian products over one kept full-image forward
   (``autograd.grad(..., is_grads_batched=True)``): every pixel is one product, many pixels
   one batched backward pass, in chunks whose memory is bounded, on the GPU when the inputs
   are there. On a CPU the passes run one at a time (batching does not pay there): one
   backward pass's time per pixel;
3. only when asked for (``estimate=True``), an estimate of the guidance maps: Hutchinson's
   diagonal estimator with Rademacher probes v, diag(J) ≈ mean over probes of v ⊙ (vᵀJ) (one
   backward pass per probe, whatever the image size; the probes coloured as in probe
   colouring so that near pixels do not disturb each other), with a per-pixel error bound
   from the sample variance, checked against exact values at sampled pixels. The result is marked as
   an estimate (:attr:`SaliencyMaps.estimate`) and never passed off as exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fusevis.errors import InputError
from fusevis.saliency.crop import KeptForward
from fusevis.saliency.inputs import image_shape
from fusevis.saliency.locality import sample_pixels
from fusevis.saliency.outputs import OutputChannel
from fusevis.saliency.precision import without_tf32

if TYPE_CHECKING:
    from fusevis.saliency.maps import _Saver

CPU_MEMORY = 1 << 30  # bytes one batched backward pass may take on a CPU
GPU_SHARE = 0.5  # share of the free GPU memory it may take there
MAX_BATCH = 256
DEFAULT_PROBES = 256
DEFAULT_CONFIDENCE = 0.999
MIN_SAMPLES = 16  # least probes per pixel (for its sample variance)
CHECK_PIXELS = 8  # random pixels checked besides corners, edge midpoints and the centre

Progress = Callable[[int, int], None]


@without_tf32
def not_local_maps(
    model: nn.Module,
    items: tuple[torch.Tensor, ...],
    arrays: dict[str, np.ndarray],
    influence: bool,
    channel: OutputChannel,
    tile: int,
    progress: Progress | None,
    cancel: Callable[[], bool] | None,
    saver: _Saver,
    done: set[tuple[int, int]],
    verify: bool = True,
    estimate: bool = False,
    probes: int = DEFAULT_PROBES,
) -> tuple[str, list[np.ndarray] | None, dict[str, object]]:
    """Maps of a model that is not local, into ``arrays``.

    Returns
    -------
    method : str
        How they were computed (an estimate says so first).
    bounds : list of numpy.ndarray or None
        For an estimate, per input the (C, H, W) error bound of the guidance values.
    extra : dict
        For an estimate, ``{"estimate": {...}}`` with the probes, the confidence and the check.
    """
    from fusevis.saliency.lowrank import LowRank, NoStructure, lowrank_maps

    try:
        lowrank = LowRank(model, channel, verify)
        method = lowrank_maps(lowrank, items, arrays, influence, tile, progress, cancel)
        return method, None, {}
    except NoStructure as problem:
        why = f"no low-rank structure: {problem}"
    if estimate:
        if influence:
            raise InputError(
                None,
                "influence maps have no estimate (only guidance maps do); "
                "ask for guidance alone, or for exact influence maps without estimate",
            )
        method, bounds, check = estimate_maps(
            model, items, arrays, channel, probes, progress, cancel
        )
        return f"{method}; {why}", bounds, {"estimate": check}
    method = exact_maps(model, items, arrays, influence, channel, progress, cancel, saver, done)
    return f"{method}; {why}", None, {}


# -- batched backward passes -------------------------------------------------------------------


def kept_forward(
    model: nn.Module, items: Sequence[torch.Tensor], channel: OutputChannel
) -> tuple[KeptForward, int]:
    """The kept full-image forward and the bytes one more backward pass of it may need.

    The bytes are those of the tensors autograd saved for the backward pass (each storage
    once) plus the gradients of the inputs.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        kept = KeptForward(model, items, channel)
    inputs = sum(x.numel() * x.element_size() for x in items)
    return kept, sum(storages.values()) + inputs


def batch_size(per_pass: int, device: torch.device, memory: int | None = None) -> int:
    """How many backward passes to batch: the memory budget over the bytes of one.

    On a CPU, without a budget given, one: a batched backward pass costs there as much per
    pixel as single ones, or more (measured: 1.0-1.6× on the zoo's attention networks).
    """
    if memory is None:
        if device.type == "cpu":
            return 1
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            memory = int(free * GPU_SHARE)
        else:
            memory = CPU_MEMORY
    return max(1, min(MAX_BATCH, memory // max(1, per_pass)))


def vjps(
    output: torch.Tensor, leaves: tuple[torch.Tensor, ...], cotangents: torch.Tensor
) -> tuple[torch.Tensor | None, ...]:
    """Batched vector-Jacobian products (one per leading index of ``cotangents``) per leaf.

    One batched backward pass (``is_grads_batched``); where an operation has no batching
    rule for its backward, or for a single product, one pass per product.
    """
    if cotangents.shape[0] == 1:
        found = torch.autograd.grad(
            output, leaves, cotangents[0], retain_graph=True, allow_unused=True
        )
        return tuple(None if g is None else g[None] for g in found)
    try:
        return torch.autograd.grad(
            output, leaves, cotangents, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
    except RuntimeError:
        found = [
            torch.autograd.grad(output, leaves, row, retain_graph=True, allow_unused=True)
            for row in cotangents
        ]
        return tuple(
            None if found[0][k] is None else torch.stack([f[k] for f in found])  # type: ignore[misc]
            for k in range(len(leaves))
        )


def _one_hot(kept: KeptForward, pixels: Sequence[tuple[int, int]]) -> torch.Tensor:
    probes = torch.zeros((len(pixels), *kept.output.shape), dtype=kept.output.dtype)
    index = torch.arange(len(pixels))
    rows = torch.tensor([p[0] for p in pixels])
    cols = torch.tensor([p[1] for p in pixels])
    probes[index, 0, rows, cols] = 1.0
    return probes.to(kept.output.device)


@without_tf32
def exact_rows(
    kept: KeptForward, pixels: Sequence[tuple[int, int]], batch: int
) -> list[list[torch.Tensor | None]]:
    """Per pixel, per input, its exact (C, H, W) Jacobian row (None: the input is unused)."""
    found: list[list[torch.Tensor | None]] = []
    for start in range(0, len(pixels), batch):
        chunk = pixels[start : start + batch]
        grads = vjps(kept.output, kept.leaves, _one_hot(kept, chunk))
        for index in range(len(chunk)):
            found.append([None if g is None else g[index, 0].detach() for g in grads])
    return found


class Replicated:
    """Rows of a batch of pixels from the model run on the image repeated once per pixel.

    One forward and one backward pass of a batch, in the network's own batched kernels,
    instead of a vmapped backward pass over one kept forward (which may fall back to slow
    batching rules); it costs a forward pass per pixel more. It needs a model that treats
    the images of a batch independently, which :meth:`agrees` checks against the kept
    forward's rows. Slower than vmap on an H100 (docs/saliency.md), so not the default.
    """

    def __init__(self, model: nn.Module, channel: OutputChannel) -> None:
        self.model, self.channel = model, channel

    def rows(
        self, items: Sequence[torch.Tensor], pixels: Sequence[tuple[int, int]]
    ) -> tuple[torch.Tensor | None, ...]:
        """Per input, the (b, 1, C, H, W) rows of the pixels, as :func:`vjps` gives them."""
        from fusevis.models.inference import run_model
        from fusevis.saliency.outputs import select_output

        count = len(pixels)
        leaves = [
            x.detach().expand(count, *x.shape[1:]).clone().requires_grad_(True) for x in items
        ]
        with torch.enable_grad():
            output = select_output(run_model(self.model, leaves), self.channel)  # (b, H, W)
        probe = torch.zeros_like(output)
        rows = torch.tensor([p[0] for p in pixels], device=output.device)
        cols = torch.tensor([p[1] for p in pixels], device=output.device)
        probe[torch.arange(count, device=output.device), rows, cols] = 1.0
        grads = torch.autograd.grad(output, leaves, probe, allow_unused=True)
        return tuple(None if g is None else g[:, None] for g in grads)

    def agrees(
        self,
        found: tuple[torch.Tensor | None, ...],
        kept: KeptForward,
        pixels: Sequence[tuple[int, int]],
    ) -> bool:
        """Whether the first and last pixels' rows equal those of the kept forward."""
        tolerance = 1e-9 if kept.output.dtype == torch.float64 else 1e-4
        for index in (0, len(pixels) - 1):
            for mine, theirs in zip(found, kept.at(pixels[index]), strict=True):
                if (mine is None) != (theirs is None):
                    return False
                if mine is None or theirs is None:
                    continue
                scale = float(theirs.abs().max()) or 1.0
                if float((mine[index, 0] - theirs[0]).abs().max()) > tolerance * scale:
                    return False
        return True


@without_tf32
def exact_maps(
    model: nn.Module,
    items: tuple[torch.Tensor, ...],
    arrays: dict[str, np.ndarray],
    influence: bool,
    channel: OutputChannel,
    progress: Progress | None,
    cancel: Callable[[], bool] | None,
    saver: _Saver,
    done: set[tuple[int, int]],
    memory: int | None = None,
    way: str = "auto",
) -> str:
    """Exact maps by batched vector-Jacobian products, one per pixel.

    ``way``: ``"vmap"`` (a vmapped backward pass over one kept full-image forward),
    ``"replicate"`` (:class:`Replicated`, checked on the first batch; where the check fails
    the vmapped way is taken) or ``"auto"`` (vmap: faster on a GPU, an H100 at 256²: 42.2 s
    for the zoo's global attention against 85.0 s replicated, docs/saliency.md). Rows
    finished before (``(0, row)`` in ``done``) are skipped; a row is marked done when its
    last pixel is.
    """
    kept, per_pass = kept_forward(model, items, channel)
    arrays["fused"][...] = kept.output[0].detach().cpu().numpy()
    height, width = image_shape(items)
    device = kept.output.device
    batch = batch_size(per_pass, device, memory)
    if way == "auto":
        way = "vmap"
    replicated = Replicated(model, channel) if way == "replicate" else None
    todo = [(r, c) for r in range(height) if (0, r) not in done for c in range(width)]
    total = height * width
    finished = total - len(todo)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        if replicated is not None:
            grads = replicated.rows(items, chunk)
            if start == 0 and not replicated.agrees(grads, kept, chunk):
                replicated, way = None, "vmap (the batch's images were not independent)"
        if replicated is None:
            grads = vjps(kept.output, kept.leaves, _one_hot(kept, chunk))
        index = torch.arange(len(chunk))
        rows = torch.tensor([p[0] for p in chunk])
        cols = torch.tensor([p[1] for p in chunk])
        for k, grad in enumerate(grads):
            if grad is None:
                continue
            values = grad[index, 0, :, rows, cols].detach().cpu().numpy()  # (b, C)
            arrays[f"guidance_{k}"][:, rows.numpy(), cols.numpy()] = values.T
            if influence:
                magnitude = grad.abs().sum(dim=tuple(range(1, grad.dim())))
                arrays[f"influence_{k}"][rows.numpy(), cols.numpy()] = (
                    magnitude.detach().cpu().numpy()
                )
        del grads
        done.update((0, r) for r, c in chunk if c == width - 1)
        finished += len(chunk)
        saver.after_pass(finished, total, progress, cancel, arrays, done)
    saver.maybe(arrays, done, force=True)
    return (
        f"{'guidance + influence' if influence else 'guidance'}, exact: one vector-Jacobian "
        f"product per pixel, {batch} per batched pass ({device.type}, {way})"
    )


# -- the estimate --------------------------------------------------------------------------------


def z_value(confidence: float, samples: int) -> float:
    """The multiple of the standard error that bounds a mean of ``samples`` probes.

    The error of a mean of n probes of Σ_{p≠q} v_p v_q J_pq (v Rademacher) is sub-Gaussian
    with variance σ²/n (Hoeffding): P(|error| > z σ/√n) ≤ 2 exp(-z²/2). σ is estimated by the
    sample standard deviation, so z is also at least Student's t quantile for n - 1 degrees
    of freedom: z = max(√(2 ln(2 / (1 - confidence))), t_{n-1}((1 + confidence) / 2)).
    """
    from scipy.stats import t as student

    if not 0.0 < confidence < 1.0:
        raise InputError(None, f"confidence must lie in (0, 1), got {confidence}")
    hoeffding = math.sqrt(2.0 * math.log(2.0 / (1.0 - confidence)))
    return max(hoeffding, float(student.ppf((1.0 + confidence) / 2.0, samples - 1)))


def colour_period(
    rows: list[list[torch.Tensor | None]],
    pixels: Sequence[tuple[int, int]],
    probes: int,
    least: int = MIN_SAMPLES,
) -> int:
    """The colouring period s (s × s colours) that makes the estimate's variance smallest.

    With probes zero outside one colour, a pixel's estimate is disturbed only by pixels of
    its own colour: its variance is Σ_{p ≠ q, p ≡ q (mod s)} J_pq² over the probes of its colour,
    probes / s² of them. The exact rows of the sampled pixels stand in for the columns the
    variance sums over; s is the one predicting the least variance with at least ``least``
    probes per colour.
    """
    best, best_variance = 1, math.inf
    period = 1
    while probes // (period * period) >= least:
        energy = 0.0
        for (r, c), row in zip(pixels, rows, strict=True):
            for grad in row:
                if grad is None:
                    continue
                same = grad[:, r % period :: period, c % period :: period]
                own = grad[:, r, c]
                energy += float((same * same).sum() - (own * own).sum())
        variance = energy / (probes // (period * period))
        if variance < best_variance * 0.999:
            best, best_variance = period, variance
        period += 1
    return best


@without_tf32
def estimate_maps(
    model: nn.Module,
    items: tuple[torch.Tensor, ...],
    arrays: dict[str, np.ndarray],
    channel: OutputChannel,
    probes: int = DEFAULT_PROBES,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    memory: int | None = None,
) -> tuple[str, list[np.ndarray], dict[str, object]]:
    """Guidance maps estimated by Hutchinson's diagonal estimator, with error bounds.

    For a Rademacher probe v over the output pixels, one backward pass gives w = vᵀJ, and
    z = v ⊙ w has mean diag(J): z(q) = J_qq + Σ_{p≠q} v_p v_q J_pq. The probes are coloured
    (zero but on pixels ≡ (a, b) mod s, as in probe colouring), which removes the pixels
    nearest to q — usually the largest terms — from its error; s is chosen from the exact
    rows of sampled pixels (:func:`colour_period`). Each pixel's estimate is the mean of the
    n = ``probes`` // s² probes of its colour; its bound is :func:`z_value` times the standard
    error from their sample variance, plus a rounding allowance. The bound is then checked
    against the exact values at the sampled pixels (corners, edge midpoints, the centre and
    random ones); if it fails at one, every bound is widened until it holds there (1.5 × the
    worst ratio) and the result says so.

    Returns
    -------
    method : str
        Starts with ``"ESTIMATE"``.
    bounds : list of numpy.ndarray
        Per input, the (C, H, W) bound.
    check : dict
        ``probes`` (backward passes), ``period`` (s), ``samples`` (n per pixel),
        ``confidence``, ``z``, ``checked`` (pixels), ``held`` (before any widening),
        ``worst`` (largest error / bound seen), ``widened`` (the factor; 1.0: none).
    """
    from fusevis.saliency.maps import Cancelled

    if probes < 2 * MIN_SAMPLES:
        raise InputError(None, f"an estimate needs at least {2 * MIN_SAMPLES} probes, got {probes}")
    kept, per_pass = kept_forward(model, items, channel)
    arrays["fused"][...] = kept.output[0].detach().cpu().numpy()
    height, width = image_shape(items)
    batch = batch_size(per_pass, kept.output.device, memory)
    # exact rows at sampled pixels: to choose the colouring, and to check the bounds
    pixels = sample_pixels((height, width), count=CHECK_PIXELS, seed=seed + 1)
    rows = exact_rows(kept, pixels, batch)
    period = colour_period(rows, pixels, probes)
    samples = probes // (period * period)
    z = z_value(confidence, samples)
    generator = torch.Generator().manual_seed(seed)
    sums = [torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device) for x in items]
    squares = [torch.zeros_like(s) for s in sums]
    used = [False] * len(items)
    plan = [(a, b) for a in range(period) for b in range(period) for _ in range(samples)]
    for start in range(0, len(plan), batch):
        chunk = plan[start : start + batch]
        signs = torch.randint(0, 2, (len(chunk), *kept.output.shape), generator=generator) * 2 - 1
        mask = torch.zeros(signs.shape, dtype=signs.dtype)
        for index, (a, b) in enumerate(chunk):
            mask[index, :, a::period, b::period] = 1
        v = (signs * mask).to(dtype=kept.output.dtype, device=kept.output.device)
        grads = vjps(kept.output, kept.leaves, v)
        for k, grad in enumerate(grads):
            if grad is None:
                continue
            used[k] = True
            found = (grad[:, 0] * v[:, 0, None]).detach().double()  # (b, C, H, W), 0 off colour
            sums[k] += found.sum(dim=0)
            squares[k] += (found * found).sum(dim=0)
        del grads
        if progress is not None:
            progress(start + len(chunk), len(plan))
        if cancel is not None and cancel():
            raise Cancelled("saliency computation cancelled")
    eps = torch.finfo(kept.output.dtype).eps
    means, bounds = [], []
    for k in range(len(items)):
        mean = sums[k] / samples
        variance = ((squares[k] - samples * mean * mean) / (samples - 1)).clamp(min=0.0)
        rms = (squares[k] / samples).sqrt()
        bounds.append(z * (variance / samples).sqrt() + 16 * eps * (mean.abs() + rms))
        means.append(mean)
    worst = 0.0
    for (r, c), row in zip(pixels, rows, strict=True):
        for k, grad in enumerate(row):
            exact = torch.zeros_like(means[k][:, r, c]) if grad is None else grad[:, r, c].double()
            error = (means[k][:, r, c] - exact).abs()
            allowed = bounds[k][:, r, c]
            ratio = torch.where(allowed > 0, error / allowed, torch.where(error > 0, math.inf, 0.0))
            worst = max(worst, float(ratio.max()))
    held = worst <= 1.0
    widened = 1.0 if held else 1.5 * worst
    result_bounds = []
    for k, x in enumerate(items):
        mean = means[k] if used[k] else torch.zeros(x.shape[1:], dtype=torch.float64)
        bound = bounds[k] * widened if used[k] else torch.zeros_like(mean)
        arrays[f"guidance_{k}"][...] = mean.cpu().numpy()
        result_bounds.append(bound.cpu().numpy().astype(arrays[f"guidance_{k}"].dtype))
    check: dict[str, object] = {
        "probes": len(plan),
        "period": period,
        "samples": samples,
        "confidence": confidence,
        "z": z,
        "checked": len(pixels),
        "held": held,
        "worst": worst,
        "widened": widened,
    }
    verdict = (
        f"held at all {len(pixels)} checked pixels (worst error {worst:.2f} of the bound)"
        if held
        else f"failed at a checked pixel (error {worst:.2f} × the bound): bounds widened "
        f"{widened:.2f}×"
    )
    method = (
        f"ESTIMATE, not exact: guidance by Hutchinson's diagonal estimator with coloured "
        f"Rademacher probes ({period}x{period} colours × {samples} probes, one backward pass "
        f"each); per-pixel error bound {z:.2f} standard errors (confidence {confidence}), "
        f"{verdict}"
    )
    return method, result_bounds, check
