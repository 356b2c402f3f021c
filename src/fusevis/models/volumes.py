"""Fusion networks for volumes (3-D convolutions)."""

from __future__ import annotations

import torch
from torch import nn


class Fuse3D(nn.Module):
    """A small 3-D MRI-PET fusion network: shared encoder, max fusion, decoder, sigmoid.

    Each input volume goes through the same encoder (3×3×3 convolutions 1→8→8, zero
    'same' padding, ReLU); the two feature volumes are fused by their voxel-wise maximum;
    a decoder (3×3×3 convolutions 8→8 with ReLU, 8→1) and a sigmoid give the fused volume
    in (0, 1). 3,913 parameters; receptive field 9×9×9 voxels. Called as
    ``model(mri, pet)`` on (B, 1, X, Y, Z) tensors.
    """

    num_inputs = 2

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv3d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Conv3d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(width, 1, 3, padding=1),
        )

    def forward(self, mri: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
        """Fuse an MRI and a PET volume."""
        features = torch.maximum(self.encoder(mri), self.encoder(pet))
        return torch.sigmoid(self.decoder(features))
