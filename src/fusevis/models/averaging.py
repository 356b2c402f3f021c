"""Weighted averaging, the paper's non-learned baseline."""

from __future__ import annotations

import torch
from torch import nn


class WeightedAverage(nn.Module):
    """Per-pixel weighted average with intensity-proportional weights.

    w_k = x_k / Σ_j x_j at every pixel (1/N where Σ_j x_j = 0, that is where all inputs are
    zero), fused = Σ_k w_k · x_k. The weights are computed from the inputs but treated as
    constants when differentiating, as in the paper, so ∂fused(p)/∂x_k(p) = w_k(p) and the
    guidance maps are exactly the weights. Works for any number of inputs and channels.
    """

    num_inputs = None

    def weights(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Return the (detached) per-pixel weights, one tensor per input."""
        stacked = torch.stack([x.detach() for x in inputs])
        total = stacked.sum(dim=0)
        uniform = torch.full_like(total, 1.0 / len(inputs))
        safe_total = torch.where(total == 0, torch.ones_like(total), total)
        return [torch.where(total == 0, uniform, x / safe_total) for x in stacked]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Fuse any number of same-shape images."""
        return sum(w * x for w, x in zip(self.weights(*inputs), inputs, strict=True))
