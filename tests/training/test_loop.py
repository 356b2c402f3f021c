"""The parts of the training loop used for pairs made on the fly: truth loss, BatchNorm."""

from pathlib import Path

import torch
from torch import nn

from fusevis.training.loop import TrainConfig, train
from fusevis.training.losses import truth_loss


def test_truth_loss_is_zero_at_the_truth_and_sees_negative_output() -> None:
    truth = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    loss, terms = truth_loss(truth, truth)
    assert float(loss) < 1e-6 and terms["ssim_truth"] > 0.9999
    _, at_zero = truth_loss(torch.zeros_like(truth), truth)
    _, below = truth_loss(torch.full_like(truth, -0.2), truth)
    assert below["ssim_truth"] < at_zero["ssim_truth"]  # not clipped at 0
    assert below["l1_truth"] > at_zero["l1_truth"]


class Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(torch.cat([a, b], 1))).mean(1, keepdim=True)


def test_frozen_batchnorm_keeps_its_statistics_and_trains_its_affine(tmp_path: Path) -> None:
    def sampler(step: int) -> torch.Tensor:
        inputs = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(step)) * 3
        return torch.cat([inputs, inputs.mean(1, keepdim=True)], 1)

    torch.manual_seed(0)
    model = Normed()
    config = TrainConfig(
        epochs=1, steps_per_epoch=3, batch_size=2, target="truth", freeze_batchnorm=True
    )
    train(model, None, tmp_path, config, sampler=sampler)
    assert torch.equal(model.norm.running_mean, torch.zeros(3))
    assert torch.equal(model.norm.running_var, torch.ones(3))
    assert not torch.equal(model.norm.weight.detach(), torch.ones(3))  # gamma trained
    unfrozen = Normed()
    train(
        unfrozen,
        None,
        tmp_path / "b",
        TrainConfig(**{**config.__dict__, "freeze_batchnorm": False}),
        sampler=sampler,
    )
    assert not torch.equal(unfrozen.norm.running_mean, torch.zeros(3))


def test_training_from_a_sampler_against_the_truth(tmp_path: Path) -> None:
    def sampler(step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(step)
        inputs = torch.rand(2, 2, 16, 16, generator=generator)
        return torch.cat([inputs, inputs.mean(1, keepdim=True)], 1)  # truth: the mean

    config = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=2, target="truth")
    summary = train(Normed(), None, tmp_path, config, sampler=sampler)
    assert set(summary["last"]) == {"loss", "ssim_truth", "l1_truth"}
    header = (tmp_path / "loss.csv").read_text().splitlines()[0]
    assert header == "epoch,step,loss,ssim_truth,l1_truth"
