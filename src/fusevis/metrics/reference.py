"""Metrics comparing the fused image with its inputs: MI, CC, PSNR, SSIM, SCD.

Same conventions as :mod:`fusevis.metrics.intensity` (0-255 scale, 256 bins, bits). How a
metric combines the N inputs is stated with each one, because published tables differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.metrics import structural_similarity

from fusevis.metrics.intensity import GREY_LEVELS, quantised, to_8bit_scale


def mutual_information_pair(a: np.ndarray, b: np.ndarray) -> float:
    """MI(A; B) = Σ p(a, b) log2(p(a, b) / (p(a) p(b))) from the 256×256 joint histogram, bits."""
    joint, _, _ = np.histogram2d(
        quantised(a).ravel(), quantised(b).ravel(), bins=256, range=[[0, 256], [0, 256]]
    )
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log2(joint[nonzero] / np.outer(pa, pb)[nonzero])))


def mutual_information(fused: np.ndarray, inputs: Sequence[np.ndarray]) -> float:
    """MI = Σ_k MI(F; X_k), in bits, **summed** over the inputs (the usual fusion MI)."""
    return float(sum(mutual_information_pair(fused, x) for x in inputs))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel() - np.mean(a)
    b = np.asarray(b, np.float64).ravel() - np.mean(b)
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denominator) if denominator > 0 else 0.0


def correlation_coefficient(fused: np.ndarray, inputs: Sequence[np.ndarray]) -> float:
    """CC = mean over inputs of Pearson's r(F, X_k) (0 where an image is constant)."""
    return float(np.mean([_correlation(fused, x) for x in inputs]))


def psnr(fused: np.ndarray, inputs: Sequence[np.ndarray]) -> float:
    """PSNR = 10 log10(255² / MSE), MSE = mean over inputs of mean((F − X_k)²), 0-255 scale.

    The inputs' MSEs are **averaged before** the logarithm; ``inf`` when F equals them all.
    """
    image = to_8bit_scale(fused)
    mse = float(np.mean([np.mean((image - to_8bit_scale(x)) ** 2) for x in inputs]))
    return float("inf") if mse == 0 else float(10 * np.log10(GREY_LEVELS**2 / mse))


def ssim_per_input(fused: np.ndarray, inputs: Sequence[np.ndarray]) -> list[float]:
    """SSIM(F, X_k) per input: scikit-image, 11×11 Gaussian window σ = 1.5, data range 1.

    Wang et al.'s constants (K1 = 0.01, K2 = 0.03) and population covariances, on the
    [0, 1] images; the mean over the valid (unpadded) windows.
    """
    return [
        float(
            structural_similarity(
                np.asarray(fused, np.float64),
                np.asarray(x, np.float64),
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
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
