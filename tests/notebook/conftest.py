"""Notebook fixtures: a tiny local fusion network and small image pairs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fusevis.io import load_demo


class TinyFusion(nn.Module):
    """Two 3x3 convolutions over both inputs (local: radius 2), fixed weights."""

    num_inputs = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(2, 3, 3, padding=1)
        self.second = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.second(torch.tanh(self.first(torch.cat([a, b], 1)))))


def random_pair(size: int = 24, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two random (size, size) images."""
    generator = np.random.default_rng(seed)
    return generator.random((size, size)), generator.random((size, size))


def demo_crop(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The demo MRI/PET pair cropped to its central ``size`` x ``size``."""
    pair = load_demo("mri-pet")
    top = (pair.shape[0] - size) // 2
    left = (pair.shape[1] - size) // 2
    mri, pet = (image.data[top : top + size, left : left + size] for image in pair)
    return mri, pet
