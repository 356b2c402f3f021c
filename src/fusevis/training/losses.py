"""The FuseVis paper's unsupervised fusion loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_msssim import ssim
from torch.nn import functional


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms: λ between SSIM and MSE, γ between the two inputs.

    ``range_weight`` (ρ) weighs :func:`range_penalty`, the mean distance of the fused image
    from [0, 1]; 0 (the default) is the paper's loss. ``clip_ssim`` takes SSIM of the fused
    image clipped at 0 (see :func:`ssim_index`); with a range term that stops inversion the
    clip can go, and SSIM then also pulls values below 0 up.
    """

    lam: float = 0.99
    gamma_ssim: float = 0.5
    gamma_l2: float = 0.5
    range_weight: float = 0.0
    clip_ssim: bool = True


def ssim_index(fused: torch.Tensor, reference: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Mean SSIM of the fused image clipped at 0 (pytorch-msssim, 11×11 window, range 1).

    SSIM is the product of a luminance and a contrast-structure term. For an output that is
    the *negative* of an input both terms are negative and their product is high: an
    unbounded network (DeepPedestrian has no output activation) minimises the plain loss by
    inverting the image (we saw it happen). Images are non-negative, so the fused image is
    clipped at 0 before SSIM; an inverted image then scores about 0, and the MSE term still
    pulls negative outputs up. ``clip=False`` compares the fused image as it is.
    """
    shown = fused.clamp(min=0) if clip else fused
    return ssim(shown, reference, data_range=1.0, size_average=True)


def range_penalty(fused: torch.Tensor) -> torch.Tensor:
    """Mean distance of each fused value from [0, 1]: mean(max(−F, 0) + max(F − 1, 0)).

    Zero for a valid image. Without it nothing in the paper's loss stops a network from
    putting the background below 0 (SSIM is taken of the image clipped at 0, and the MSE
    term's weight is 0.01): saved min-max scaled, as ``fusevis fuse`` writes and as the
    authors published their images, such an output has a grey background and low contrast.
    The L1 form keeps a constant pull on values just outside the range, where a squared
    penalty would vanish.
    """
    return (functional.relu(-fused) + functional.relu(fused - 1)).mean()


def fusion_loss(
    fused: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, weights: LossWeights = LossWeights()
) -> tuple[torch.Tensor, dict[str, float]]:
    """Return the paper's loss and its terms.

    L = λ·[γ_ssim·(1−SSIM(F, x1)) + (1−γ_ssim)·(1−SSIM(F, x2))]
        + (1−λ)·[γ_l2·MSE(F, x1) + (1−γ_l2)·MSE(F, x2)] + ρ·range(F)

    with ρ = ``weights.range_weight`` and range(F) the :func:`range_penalty` (ρ = 0: the
    paper's loss).

    Parameters
    ----------
    fused, x1, x2 : torch.Tensor
        (B, 1, H, W) tensors with H, W ≥ 11 (the SSIM window).
    weights : LossWeights
        λ, γ_ssim, γ_l2, ρ (defaults 0.99, 0.5, 0.5, 0).

    Returns
    -------
    tuple
        The scalar loss and a dict with ``loss``, ``ssim1``, ``ssim2``, ``mse1``, ``mse2``,
        ``range``.
    """
    s1 = ssim_index(fused, x1, weights.clip_ssim)
    s2 = ssim_index(fused, x2, weights.clip_ssim)
    m1, m2 = functional.mse_loss(fused, x1), functional.mse_loss(fused, x2)
    w = weights
    loss = w.lam * (w.gamma_ssim * (1 - s1) + (1 - w.gamma_ssim) * (1 - s2)) + (1 - w.lam) * (
        w.gamma_l2 * m1 + (1 - w.gamma_l2) * m2
    )
    outside = range_penalty(fused)
    if w.range_weight:
        loss = loss + w.range_weight * outside
    terms = {
        "loss": loss.item(),
        "ssim1": s1.item(),
        "ssim2": s2.item(),
        "mse1": m1.item(),
        "mse2": m2.item(),
        "range": outside.item(),
    }
    return loss, terms


#: Default weight of the SSIM term of :func:`truth_loss` (Zhao et al.'s SSIM + L1 mix).
TRUTH_LAMBDA = 0.84


def truth_loss(
    fused: torch.Tensor, truth: torch.Tensor, lam: float = TRUTH_LAMBDA
) -> tuple[torch.Tensor, dict[str, float]]:
    """The supervised loss against a known fused image (synthetic tasks).

    L = λ·(1 − SSIM(F, T)) + (1 − λ)·mean|F − T|, SSIM as in :func:`ssim_index` but on the
    fused image as it is: not clipped at 0, so an output below 0 (which the saved image
    would show as a grey background after min-max scaling) costs in both terms. Inverting
    the image does not pay against a known truth, so the clip is not needed here; with it,
    a network trained on dark crops put them at −1, where tanh passes no L1 gradient back.

    Returns
    -------
    tuple
        The scalar loss and a dict with ``loss``, ``ssim_truth``, ``l1_truth``.
    """
    s = ssim(fused, truth, data_range=1.0, size_average=True)
    l1 = functional.l1_loss(fused, truth)
    loss = lam * (1 - s) + (1 - lam) * l1
    return loss, {"loss": loss.item(), "ssim_truth": s.item(), "l1_truth": l1.item()}
