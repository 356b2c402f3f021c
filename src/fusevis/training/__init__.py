"""Losses and the training loop."""

from fusevis.training.loop import TrainConfig, plot_history, sample_batch, stack_pairs, train
from fusevis.training.losses import LossWeights, fusion_loss, ssim_index

__all__ = [
    "LossWeights",
    "TrainConfig",
    "fusion_loss",
    "plot_history",
    "sample_batch",
    "ssim_index",
    "stack_pairs",
    "train",
]
