"""Scoring a trained network on a test pair (the figures stored in weights metadata)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fusevis.io.loading import ImageSet
from fusevis.io.writers import to_uint8
from fusevis.models.inference import as_tensors, minmax, run_model
from fusevis.training.losses import ssim_index


def saved_image(fused: np.ndarray) -> np.ndarray:
    """The fused image as ``fusevis fuse`` saves it: min-max scaled, 8 bits, back in [0, 1].

    The authors published their fused images the same way, so scores of this image compare
    with scores of theirs.
    """
    return to_uint8(minmax(fused)).astype(np.float32) / 255.0


def image_ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of two 2-D images in [0, 1] with the loss's SSIM (11×11 Gaussian, σ 1.5)."""
    image_tensor, reference_tensor = as_tensors(np.stack([image, reference]))
    return float(ssim_index(image_tensor, reference_tensor))


@torch.no_grad()
def ssim_scores(model: nn.Module, image_set: ImageSet) -> dict[str, float]:
    """SSIM of the fused image to each input, as the loss sees it and as saved (4 decimals).

    ``ssim_k``: the fused image as the network returns it (no rescaling, clipped at 0 as in
    the loss); ``saved_ssim_k``: the image as saved (:func:`saved_image`); ``range``: the
    fused image's minimum and maximum. The same SSIM (11×11 Gaussian window, σ 1.5) for both.
    """
    model.eval()
    inputs = as_tensors(image_set.stack())
    fused = run_model(model, inputs)[:, :1]
    saved = saved_image(fused[0, 0].numpy())
    scores: dict[str, float] = {}
    for k, x in enumerate(inputs):
        scores[f"ssim_{k + 1}"] = round(float(ssim_index(fused, x)), 4)
    for k, x in enumerate(inputs):
        scores[f"saved_ssim_{k + 1}"] = round(image_ssim(saved, x[0, 0].numpy()), 4)
    scores["min"] = round(float(fused.min()), 4)
    scores["max"] = round(float(fused.max()), 4)
    return scores
