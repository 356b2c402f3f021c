"""Training a volume network on random 3-D crops with the unsupervised loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusevis.errors import FuseVisError
from fusevis.models.volumes import Fuse3D
from fusevis.training.volumes import (
    VolumeTrainConfig,
    sample_volume_batch,
    train_volume_model,
    volume_scores,
)


def _pair() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((16, 18, 14), dtype=np.float32) for _ in range(2)]


def test_batches_are_random_crops_drawn_the_same_for_a_seed() -> None:
    data = torch.from_numpy(np.stack(_pair()))
    config = VolumeTrainConfig(batch_size=3, crop=12)
    first = sample_volume_batch(data, config, torch.Generator().manual_seed(5))
    again = sample_volume_batch(data, config, torch.Generator().manual_seed(5))
    assert first.shape == (3, 2, 12, 12, 12)
    torch.testing.assert_close(first, again)
    values = set(data.flatten().tolist())
    assert set(first.flatten().tolist()) <= values


def test_a_few_steps_change_the_weights_and_scores_are_reported() -> None:
    torch.manual_seed(0)
    model = Fuse3D(width=2)
    before = [p.detach().clone() for p in model.parameters()]
    seen: list[float] = []
    config = VolumeTrainConfig(steps=3, batch_size=1, crop=12, lr=0.01)
    terms = train_volume_model(model, _pair(), config, lambda step, t: seen.append(t["loss"]))
    assert len(seen) == 3 and np.isfinite(terms["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not model.training
    scores = volume_scores(model, _pair())
    assert {"ssim_1", "ssim_2", "mse_1", "mse_2", "loss"} <= set(scores)


def test_crops_smaller_than_the_ssim_window_are_refused() -> None:
    with pytest.raises(FuseVisError, match="smaller than the 11-voxel SSIM window"):
        train_volume_model(Fuse3D(), _pair(), VolumeTrainConfig(crop=8))
