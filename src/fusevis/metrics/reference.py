"""Metrics comparing the fused image with its inputs: MI, CC, PSNR, SSIM, SCD.

Same conventions as :mod:`fusevis.metrics.intensity` (0-255 scale, 256 bins, bits). How a
metric combines the N inputs is stated with each one, because published tables differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from skimage.metrics import structural_similarity

from fusevis.metrics.intensity import GREY_LEVELS, Combine, combined, quantised, to_8bit_scale

PsnrPeak = Literal["255", "fused max"]
PsnrError = Literal["mse", "rss/pixels"]
SsimWindow = Literal["gaussian", "uniform"]


def minmax_levels(image: np.ndarray) -> np.ndarray:
    """An image min-max rescaled to [0, 1], then to 256 levels rounding halves up.

    VIFB's MI does this to each image of a pair (MATLAB's ``int16(x * 255)`` rounds halves
    away from zero); a constant image becomes all 0.
    """
    values = np.asarray(image, np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.floor((values - low) / (high - low) * GREY_LEVELS + 0.5).astype(np.uint8)


def mutual_information_pair(
    a: np.ndarray, b: np.ndarray, base: float = 2.0, minmax: bool = False
) -> float:
    """MI(A; B) = Σ p(a, b) log(p(a, b) / (p(a) p(b))) from the 256×256 joint histogram.

    In bits with ``base=2`` (natural log: nats). The levels are the images rounded on the
    8-bit scale (values outside [0, 1] clipped), or with ``minmax=True`` each image
    min-max rescaled first (:func:`minmax_levels`).
    """
    levels = minmax_levels if minmax else quantised
    joint, _, _ = np.histogram2d(
        levels(a).ravel(), levels(b).ravel(), bins=256, range=[[0, 256], [0, 256]]
    )
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nonzero = joint > 0
    ratio = joint[nonzero] / np.outer(pa, pb)[nonzero]
    logarithm = np.log2(ratio) if base == 2 else np.log(ratio) / np.log(base)
    return float(np.sum(joint[nonzero] * logarithm))


def mutual_information(
    fused: np.ndarray,
    inputs: Sequence[np.ndarray],
    base: float = 2.0,
    minmax: bool = False,
    combine: Combine = "sum",
) -> float:
    """MI = Σ_k MI(F; X_k), in bits, **summed** over the inputs (the usual fusion MI).

    ``combine="mean"`` averages instead; ``base`` and ``minmax`` as in
    :func:`mutual_information_pair`.
    """
    return combined([mutual_information_pair(fused, x, base, minmax) for x in inputs], combine)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel() - np.mean(a)
    b = np.asarray(b, np.float64).ravel() - np.mean(b)
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denominator) if denominator > 0 else 0.0


def correlation_coefficient(fused: np.ndarray, inputs: Sequence[np.ndarray]) -> float:
    """CC = mean over inputs of Pearson's r(F, X_k) (0 where an image is constant)."""
    return float(np.mean([_correlation(fused, x) for x in inputs]))


def psnr(
    fused: np.ndarray,
    inputs: Sequence[np.ndarray],
    peak: PsnrPeak = "255",
    error: PsnrError = "mse",
) -> float:
    """PSNR = 10 log10(255² / MSE), MSE = mean over inputs of mean((F − X_k)²), 0-255 scale.

    The inputs' MSEs are **averaged before** the logarithm; ``inf`` when F equals them all.
    ``peak="fused max"`` puts max(F)² in place of 255² (CDDFuse's evaluator);
    ``error="rss/pixels"`` puts sqrt(Σ(F − X_k)²) / (M·N) in place of each MSE (what VIFB's
    toolbox computes under the name ``mse``).
    """
    image = to_8bit_scale(fused)
    if error == "rss/pixels":
        errors = [np.sqrt(np.sum((image - to_8bit_scale(x)) ** 2)) / image.size for x in inputs]
    else:
        errors = [np.mean((image - to_8bit_scale(x)) ** 2) for x in inputs]
    mse = float(np.mean(errors))
    top = float(image.max()) if peak == "fused max" else GREY_LEVELS
    return float("inf") if mse == 0 else float(10 * np.log10(top**2 / mse))


def gaussian_window_size(sigma: float) -> int:
    """Taps of scikit-image's Gaussian SSIM window: 2 · int(3.5 σ + 0.5) + 1 (11 for 1.5)."""
    return 2 * int(3.5 * sigma + 0.5) + 1


def ssim_per_input(
    fused: np.ndarray,
    inputs: Sequence[np.ndarray],
    window: SsimWindow = "gaussian",
    size: int = 11,
    sigma: float = 1.5,
    sample_covariance: bool = False,
    data_range: float = 1.0,
) -> list[float]:
    """SSIM(F, X_k) per input: scikit-image, 11×11 Gaussian window σ = 1.5, data range 1.

    Wang et al.'s constants (K1 = 0.01, K2 = 0.03) and population covariances, on the
    [0, 1] images; the mean over the valid (unpadded) windows. ``window="uniform"`` uses a
    ``size``×``size`` box (scikit-image's default is 7×7 with sample covariances); a
    Gaussian window spans 3.5 σ each side (11 taps for σ = 1.5), so ``size`` must agree.
    ``data_range`` is L of C1 = (0.01 L)², C2 = (0.03 L)² on the [0, 1] scale.
    """
    gaussian = window == "gaussian"
    if gaussian and size != gaussian_window_size(sigma):
        raise ValueError(
            f"a Gaussian SSIM window of sigma {sigma:g} has {gaussian_window_size(sigma)} taps"
        )
    return [
        float(
            structural_similarity(
                np.asarray(fused, np.float64),
                np.asarray(x, np.float64),
                data_range=data_range,
                gaussian_weights=gaussian,
                sigma=sigma,
                win_size=None if gaussian else size,
                use_sample_covariance=sample_covariance,
            )
        )
        for x in inputs
    ]


def scd(fused: np.ndarray, inputs: Sequence[np.ndarray]) -> float:
    """SCD (sum of the correlations of differences, Aslantas & Bayram 2015).

    SCD = Σ_k r(F − Σ_{j≠k} X_j, X_k): for two inputs r(F − X2, X1) + r(F − X1, X2).
    """
    images = [to_8bit_scale(x) for x in inputs]
    image = to_8bit_scale(fused)
    total = sum(images)
    return float(sum(_correlation(image - (total - x), x) for x in images))
