"""Training a volume fusion network on random 3-D crops with the paper's unsupervised loss.

The loss is :func:`fusevis.training.losses.fusion_loss` as it is: pytorch-msssim's SSIM
takes (B, C, D, H, W) tensors and then filters with a separable 11-voxel Gaussian along
all three axes, so the 3-D loss is the 2-D one with a 3-D SSIM window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fusevis.errors import FuseVisError
from fusevis.training.losses import LossWeights, fusion_loss


@dataclass(frozen=True)
class VolumeTrainConfig:
    """Options of a volume training run (recorded in the weights' metadata).

    Attributes
    ----------
    steps : int
        Optimiser steps, each on one batch of random crops.
    batch_size : int
        Crops per step.
    crop : int
        Edge of the cubic crops in voxels (at least 11, the SSIM window).
    lr : float
        Adam's learning rate (cosine decay to 0 over the steps).
    flips : bool
        Flip each crop along each axis with probability 1/2.
    seed : int
        Seeds the crops and the initialisation.
    """

    steps: int = 400
    batch_size: int = 2
    crop: int = 32
    lr: float = 0.01
    flips: bool = True
    seed: int = 0


def sample_volume_batch(
    data: torch.Tensor, config: VolumeTrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """A (B, N, c, c, c) batch of random crops of an (N, X, Y, Z) stack of volumes."""
    sizes = data.shape[1:]
    crop = min(config.crop, *sizes)
    patches = []
    for _ in range(config.batch_size):
        starts = [int(torch.randint(n - crop + 1, (1,), generator=generator)) for n in sizes]
        patch = data[:, starts[0] : starts[0] + crop, starts[1] : starts[1] + crop]
        patch = patch[..., starts[2] : starts[2] + crop]
        if config.flips:
            axes = [a + 1 for a in range(3) if torch.rand(1, generator=generator) < 0.5]
            if axes:
                patch = patch.flip(axes)
        patches.append(patch)
    return torch.stack(patches)


def train_volume_model(
    model: nn.Module,
    volumes: Sequence[np.ndarray],
    config: VolumeTrainConfig = VolumeTrainConfig(),
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Train a two-input volume network in place; return the last step's loss terms.

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(a, b)`` on (B, 1, c, c, c) crops.
    volumes : sequence of numpy.ndarray
        The two (X, Y, Z) input volumes, values in [0, 1].
    config : VolumeTrainConfig
        Steps, batch, crop, learning rate, flips, seed.
    log : callable(step, terms), optional
        Called after every step with the loss terms.
    """
    if len(volumes) != 2:
        raise FuseVisError(f"the unsupervised loss fuses two volumes, got {len(volumes)}")
    if config.crop < 11:
        raise FuseVisError(f"crop {config.crop} is smaller than the 11-voxel SSIM window")
    data = torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32) for v in volumes]))
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    model.train()
    terms: dict[str, float] = {}
    for step in range(config.steps):
        batch = sample_volume_batch(data, config, generator)
        a, b = batch[:, :1], batch[:, 1:]
        loss, terms = fusion_loss(model(a, b), a, b, LossWeights())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if log is not None:
            log(step, terms)
    model.eval()
    return terms


@torch.no_grad()
def volume_scores(model: nn.Module, volumes: Sequence[np.ndarray]) -> dict[str, float]:
    """The loss terms of the whole fused volume: 3-D SSIM and MSE against each input."""
    a, b = (torch.from_numpy(np.asarray(v, dtype=np.float32))[None, None] for v in volumes)
    start = time.perf_counter()
    fused = model.eval()(a, b)
    seconds = time.perf_counter() - start
    _, terms = fusion_loss(fused, a, b, LossWeights())
    return {
        "ssim_1": round(terms["ssim1"], 4),
        "ssim_2": round(terms["ssim2"], 4),
        "mse_1": round(terms["mse1"], 5),
        "mse_2": round(terms["mse2"], 5),
        "loss": round(terms["loss"], 4),
        "fused_min": round(float(fused.min()), 4),
        "fused_max": round(float(fused.max()), 4),
        "fuse_seconds": round(seconds, 2),
    }
