"""A short real training run: the loss falls, checkpoints resume."""

import csv
from pathlib import Path

import torch

from fusevis.models import DeepFuse
from fusevis.training import TrainConfig, sample_batch, train


def blobs(count: int = 6, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    rows = torch.arange(size).float()[:, None]
    cols = torch.arange(size).float()[None, :]
    pairs = []
    for _ in range(count):
        centre = torch.rand(4, generator=generator) * size
        a = torch.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / 40)
        b = torch.exp(-((rows - centre[2]) ** 2 + (cols - centre[3]) ** 2) / 60)
        pairs.append(torch.stack([a, b]))
    return torch.stack(pairs)


def losses(path: Path) -> list[float]:
    with path.open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_short_run_lowers_loss_and_resumes(tmp_path: Path) -> None:
    data = blobs()
    config = TrainConfig(epochs=3, batch_size=4, crop=24, steps_per_epoch=8, lr=0.002, seed=0)
    torch.manual_seed(0)
    model = DeepFuse()
    train(model, data, tmp_path, config)
    history = losses(tmp_path / "loss.csv")
    assert len(history) == 24
    assert sum(history[-4:]) / 4 < sum(history[:4]) / 4
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "loss.png").is_file()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 3

    resumed_model = DeepFuse()
    more = TrainConfig(**{**config.__dict__, "epochs": 4})
    train(resumed_model, data, tmp_path, more, resume=True)
    history_after = losses(tmp_path / "loss.csv")
    assert len(history_after) == 32 and history_after[:24] == history
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 4


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    data = blobs()
    config = TrainConfig(epochs=2, batch_size=2, crop=16, steps_per_epoch=3, seed=5)
    torch.manual_seed(0)
    straight = DeepFuse()
    train(straight, data, tmp_path / "straight", config)
    torch.manual_seed(0)
    interrupted = DeepFuse()
    train(interrupted, data, tmp_path / "split", TrainConfig(**{**config.__dict__, "epochs": 1}))
    train(DeepFuse(), data, tmp_path / "split", config, resume=True)
    assert losses(tmp_path / "split" / "loss.csv") == losses(tmp_path / "straight" / "loss.csv")


def test_batches_are_random_crops_with_flips() -> None:
    data = blobs(count=3, size=20)
    config = TrainConfig(batch_size=5, crop=8)
    batch = sample_batch(data, config, torch.Generator().manual_seed(0))
    assert batch.shape == (5, 2, 8, 8)
