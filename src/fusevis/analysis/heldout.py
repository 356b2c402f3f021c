"""Scores of a network on the held-out synthetic sets, against their ground truth.

The held-out sets are those of :mod:`fusevis.io.tasks` (made from scikit-image pictures that
:mod:`fusevis.training.pairs` never trains on by default). For every set:

* **fusion quality** — PSNR (dB, 255 peak on the 8-bit scale) and SSIM (11×11 Gaussian
  window, σ = 1.5) of the fused image against the truth image (the sharp picture; the
  scene), with :mod:`fusevis.metrics`. The fused image is clipped to [0, 1] first: the
  image a user gets from a network meant to output one;
* **saliency against the truth** (optional, minutes) — :func:`fusevis.analysis.truth.score_pair`
  on a ``crop``² window chosen where the truth is most mixed (both focus classes, or the
  exposure quality changing most), because exact influence maps of a whole 256² set take
  minutes per network: the AUC of input 1's influence share (multi-focus) or the Spearman
  correlation of the shares with the relative well-exposedness (multi-exposure), and the
  guidance's.

The exposure networks fuse two inputs, so the three-exposure ``multiexposure-coffee`` is
scored as a two-exposure pair of the same picture and recipe (stops 0 and +3),
``multiexposure-coffee-2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fusevis.io.tasks import TaskPair, task_pair, task_sets

#: Sizes at which the stored scores were computed, and the check a test repeats.
SALIENCY_CROP = 64
CHECK_CROP = 32
CHECK_SETS = {"multi-focus": "multifocus-camera", "multi-exposure": "multiexposure-astronaut"}


def heldout_pairs(task: str) -> list[TaskPair]:
    """The two-input held-out sets of ``task`` (see the module text for the coffee pair)."""
    from fusevis.io import tasks

    pairs = [task_pair(name) for name in task_sets(task)]
    kept = [p for p in pairs if len(p.inputs) == 2 and p.has_truth]
    if task == "multi-exposure":
        kept.append(
            tasks._multiexposure(
                "multiexposure-coffee-2",
                "coffee",
                (0.0, 3.0),
                ("under", "over"),
                "scikit-image 'coffee' (grey) as an 8-stop scene: exposures at 0 and +3 stops",
            )
        )
    return kept


@torch.no_grad()
def fuse_pair(model: nn.Module, pair: TaskPair) -> np.ndarray:
    """The (H, W) float64 image ``model`` fuses from the pair's inputs (as they are)."""
    from fusevis.models.inference import as_tensors, run_model

    model.eval()
    output = run_model(model, as_tensors(np.stack(pair.inputs)))
    return output[0, 0].double().numpy()


def quality_scores(fused: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM of ``fused`` (clipped to [0, 1]) against ``truth``; 4 decimals."""
    from fusevis.metrics.reference import psnr, ssim_per_input

    image = np.clip(fused, 0.0, 1.0)
    return {
        "psnr": round(psnr(image, [truth]), 4),
        "ssim": round(ssim_per_input(image, [truth])[0], 4),
    }


def mixed_crop(pair: TaskPair, size: int, stride: int = 8) -> tuple[int, int]:
    """Top-left corner of the ``size``² window where the truth is most mixed.

    Multi-focus: the window whose scored pixels (outside the boundary band) are closest to
    half in focus in input 1; multi-exposure: the one where input 1's relative quality
    varies most. The first such window in row order on a ``stride`` grid.
    """
    from fusevis.analysis.truth import FOCUS_BAND, _shares, boundary_band

    rows, cols = pair.shape
    corners = [
        (t, le)
        for t in range(0, rows - size + 1, stride)
        for le in range(0, cols - size + 1, stride)
    ]
    if pair.truth_mask is not None:

        def merit(top: int, left: int) -> float:
            mask = pair.truth_mask[top : top + size, left : left + size]  # type: ignore[index]
            kept = ~boundary_band(mask, FOCUS_BAND)
            return -abs(float(mask[kept].mean()) - 0.5) if kept.any() else -1.0
    else:
        relative = _shares([np.clip(q, 0.0, None) for q in pair.quality or ()])[0]

        def merit(top: int, left: int) -> float:
            return float(relative[top : top + size, left : left + size].std())

    return max(corners, key=lambda c: merit(*c))


def saliency_scores(model: nn.Module, pair: TaskPair, size: int) -> dict[str, Any]:
    """:func:`~fusevis.analysis.truth.score_pair` on the pair's :func:`mixed_crop` window."""
    from fusevis.analysis.truth import score_pair

    top, left = mixed_crop(pair, size)
    score = score_pair(model, pair.crop(top, left, size))
    key = "auc" if score.statistic == "AUC" else "spearman"
    return {
        f"share_{key}": round(float(score.share), 4),  # type: ignore[arg-type]
        f"guidance_{key}": round(float(score.guidance), 4),
        "crop": [top, left, size],
    }


def check_scores(model: nn.Module, task: str) -> dict[str, Any]:
    """The small check a test repeats: quality on the whole check set, saliency at 32²."""
    pair = next(p for p in heldout_pairs(task) if p.name == CHECK_SETS[task])
    return {
        "set": pair.name,
        **quality_scores(fuse_pair(model, pair), pair.truth_image),  # type: ignore[arg-type]
        **saliency_scores(model, pair, CHECK_CROP),
    }


def heldout_scores(
    model: nn.Module, task: str, saliency: bool = True, size: int = SALIENCY_CROP
) -> dict[str, Any]:
    """Scores of ``model`` on every held-out set of ``task``, their means and the check.

    Returns
    -------
    dict
        ``sets`` (per set: ``psnr``, ``ssim`` and, with ``saliency``, the share and guidance
        statistics and the crop), ``mean`` (the mean of each number over the sets),
        ``check`` (:func:`check_scores`, with ``saliency``) and ``protocol`` (one line).
    """
    sets: dict[str, dict[str, Any]] = {}
    for pair in heldout_pairs(task):
        row: dict[str, Any] = quality_scores(fuse_pair(model, pair), pair.truth_image)  # type: ignore[arg-type]
        if saliency:
            row |= saliency_scores(model, pair, size)
        sets[pair.name] = row
    numbers = [k for k, v in next(iter(sets.values())).items() if isinstance(v, float)]
    mean = {k: round(float(np.mean([row[k] for row in sets.values()])), 4) for k in numbers}
    result: dict[str, Any] = {
        "sets": sets,
        "mean": mean,
        "protocol": "whole 256x256 held-out sets of fusevis.io.tasks: PSNR (255 peak) and "
        "SSIM (11x11 gaussian, sigma 1.5) of the fused image clipped to [0, 1] against the "
        "truth image"
        + (
            f"; saliency against truth (analysis.truth.score_pair, influence) on the "
            f"{size}x{size} window where the truth is most mixed"
            if saliency
            else ""
        ),
    }
    if saliency:
        result["check"] = check_scores(model, task)
    return result
