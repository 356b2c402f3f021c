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


class NaNEveryOtherCall(torch.nn.Module):
    """A BatchNorm network whose output is NaN on every second forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(1)
        self.calls = 0

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x = torch.cat([a, b], 1)
        if self.calls % 2 == 0:
            x = x * float("nan")
        return torch.tanh(self.norm(self.conv(x)))


def test_skipped_nonfinite_steps_leave_batchnorm_statistics_finite(tmp_path: Path) -> None:
    config = TrainConfig(
        epochs=1, batch_size=2, crop=16, steps_per_epoch=6, seed=0, skip_nonfinite=True
    )
    model = NaNEveryOtherCall()
    result = train(model, blobs(), tmp_path, config)
    assert result["skipped_steps"] == 3
    for name, buffer in model.named_buffers():
        assert torch.isfinite(buffer.float()).all(), name
    assert int(model.norm.num_batches_tracked) == 3


def test_batches_are_random_crops_with_flips() -> None:
    data = blobs(count=3, size=20)
    config = TrainConfig(batch_size=5, crop=8)
    batch = sample_batch(data, config, torch.Generator().manual_seed(0))
    assert batch.shape == (5, 2, 8, 8)
