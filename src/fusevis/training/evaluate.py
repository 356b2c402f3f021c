"""Scoring a trained network on a test pair (the figures stored in weights metadata)."""

from __future__ import annotations

import torch
from torch import nn

from fusevis.io.loading import ImageSet
from fusevis.models.inference import as_tensors, run_model
from fusevis.training.losses import ssim_index


@torch.no_grad()
def ssim_scores(model: nn.Module, image_set: ImageSet) -> dict[str, float]:
    """SSIM of the fused image to each input, rounded to 4 decimals (``ssim_1``, ...).

    The fused image is compared as the network returns it (no rescaling), with the same
    SSIM as the training loss.
    """
    model.eval()
    inputs = as_tensors(image_set.stack())
    fused = run_model(model, inputs)[:, :1]
    return {f"ssim_{k + 1}": round(float(ssim_index(fused, x)), 4) for k, x in enumerate(inputs)}
