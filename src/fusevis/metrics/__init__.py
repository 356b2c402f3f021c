"""Fusion quality metrics, each documenting its formula and conventions.

All take float images in [0, 1] and measure them on the 8-bit scale (× 255); histogram
metrics use 256 levels and bits. :func:`fusion_metrics` computes the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fusevis.errors import InputError
from fusevis.metrics.intensity import (
    average_gradient,
    entropy,
    spatial_frequency,
    standard_deviation,
)
from fusevis.metrics.perceptual import q_abf, vif, vif_pixel
from fusevis.metrics.reference import (
    correlation_coefficient,
    mutual_information,
    mutual_information_pair,
    psnr,
    scd,
    ssim_per_input,
)

METRIC_NAMES = ["EN", "SD", "SF", "AG", "MI", "SSIM", "QABF", "VIF", "SCD", "CC", "PSNR"]


def fusion_metrics(fused: np.ndarray, inputs: Sequence[np.ndarray]) -> dict[str, float]:
    """Every metric of a fused image and its inputs (same (H, W) shape, [0, 1] floats).

    Returns ``EN, SD, SF, AG, MI, SSIM`` (mean over inputs) and ``SSIM_k`` per input,
    ``QABF, VIF, SCD, CC, PSNR``.
    """
    fused = np.asarray(fused, np.float64)
    images = [np.asarray(x, np.float64) for x in inputs]
    if not images:
        raise InputError(None, "metrics need at least one input image")
    for k, x in enumerate(images, start=1):
        if x.shape != fused.shape:
            raise InputError(f"input {k}", f"shape {x.shape} differs from the fused {fused.shape}")
    for name, x in [("fused image", fused)] + [(f"input {k}", x) for k, x in enumerate(images, 1)]:
        if not np.isfinite(x).all():
            raise InputError(name, "contains NaN or infinite values")
    per_input = ssim_per_input(fused, images)
    values = {
        "EN": entropy(fused),
        "SD": standard_deviation(fused),
        "SF": spatial_frequency(fused),
        "AG": average_gradient(fused),
        "MI": mutual_information(fused, images),
        "SSIM": float(np.mean(per_input)),
        "QABF": q_abf(fused, images),
        "VIF": vif(fused, images),
        "SCD": scd(fused, images),
        "CC": correlation_coefficient(fused, images),
        "PSNR": psnr(fused, images),
    }
    values.update({f"SSIM_{k + 1}": s for k, s in enumerate(per_input)})
    return values


__all__ = [
    "METRIC_NAMES",
    "average_gradient",
    "correlation_coefficient",
    "entropy",
    "fusion_metrics",
    "mutual_information",
    "mutual_information_pair",
    "psnr",
    "q_abf",
    "scd",
    "spatial_frequency",
    "ssim_per_input",
    "standard_deviation",
    "vif",
    "vif_pixel",
]
