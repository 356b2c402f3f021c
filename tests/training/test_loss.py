import pytest
import torch
from pytorch_msssim import ssim

from fusevis.training import LossWeights, fusion_loss


def test_loss_is_the_papers_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    x1, x2, fused = (torch.rand(2, 1, 24, 24, generator=generator) for _ in range(3))
    weights = LossWeights(lam=0.7, gamma_ssim=0.3, gamma_l2=0.6)
    loss, terms = fusion_loss(fused, x1, x2, weights)
    s1 = ssim(fused, x1, data_range=1.0)
    s2 = ssim(fused, x2, data_range=1.0)
    m1, m2 = ((fused - x1) ** 2).mean(), ((fused - x2) ** 2).mean()
    expected = 0.7 * (0.3 * (1 - s1) + 0.7 * (1 - s2)) + 0.3 * (0.6 * m1 + 0.4 * m2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["ssim1"] == pytest.approx(s1.item())


def test_identical_inputs_and_output_give_zero_loss() -> None:
    x = torch.rand(1, 1, 16, 16)
    loss, _ = fusion_loss(x, x, x)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_defaults_are_the_papers() -> None:
    assert LossWeights() == LossWeights(lam=0.99, gamma_ssim=0.5, gamma_l2=0.5)


def test_an_inverted_image_does_not_score_high() -> None:
    from fusevis.training import ssim_index

    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    assert ssim_index(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim_index(-x, x).item() < 0.01
    loss_inverted, _ = fusion_loss(-x, x, x)
    loss_identity, _ = fusion_loss(x, x, x)
    assert loss_inverted.item() > 0.9 > loss_identity.item()


def test_range_penalty_is_the_mean_distance_from_the_unit_interval() -> None:
    from fusevis.training.losses import range_penalty

    fused = torch.tensor([[[[-0.5, 0.0], [0.5, 1.25]]]])
    assert range_penalty(fused).item() == pytest.approx((0.5 + 0.25) / 4)
    assert range_penalty(torch.rand(1, 1, 8, 8)).item() == 0.0


def test_range_weight_adds_the_penalty_and_zero_keeps_the_papers_loss() -> None:
    generator = torch.Generator().manual_seed(1)
    x1, x2 = (torch.rand(1, 1, 24, 24, generator=generator) for _ in range(2))
    fused = torch.rand(1, 1, 24, 24, generator=generator) * 1.6 - 0.3  # partly outside [0, 1]
    plain, terms = fusion_loss(fused, x1, x2)
    weighted, _ = fusion_loss(fused, x1, x2, LossWeights(range_weight=2.0))
    assert terms["range"] > 0
    assert weighted.item() == pytest.approx(plain.item() + 2.0 * terms["range"], rel=1e-6)
    fused.requires_grad_(True)
    loss, _ = fusion_loss(fused, x1, x2, LossWeights(range_weight=1.0))
    loss.backward()
    below = fused.detach() < 0
    # below 0 the SSIM term (clipped at 0) passes no gradient: only MSE and the range term pull up
    assert (fused.grad[below] < 0).all()
