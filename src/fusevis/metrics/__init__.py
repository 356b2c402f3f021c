"""Fusion quality metrics, each documenting its formula and conventions.

All take float images in [0, 1] and measure them on the 8-bit scale (× 255); histogram
metrics use 256 levels and bits. :func:`fusion_metrics` computes the whole table, under
FuseVis's convention or another evaluator's (:mod:`fusevis.metrics.conventions`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fusevis.errors import InputError
from fusevis.metrics.conventions import (
    CONVENTIONS,
    DEFAULT_CONVENTION,
    MetricConvention,
    convention_table,
    get_convention,
)
from fusevis.metrics.intensity import (
    GREY_LEVELS,
    average_gradient,
    combined,
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


def fusion_metrics(
    fused: np.ndarray,
    inputs: Sequence[np.ndarray],
    convention: str | MetricConvention = DEFAULT_CONVENTION,
) -> dict[str, float]:
    """Every metric of a fused image and its inputs, under a named convention.

    Parameters
    ----------
    fused : numpy.ndarray
        The fused image, (H, W) grey or (H, W, 3) RGB, floats in [0, 1].
    inputs : sequence of numpy.ndarray
        The input images, each (H, W) or (H, W, 3) of the fused image's (H, W).
    convention : str or MetricConvention
        A preset of :data:`~fusevis.metrics.conventions.CONVENTIONS` (``"fusevis"``,
        ``"cddfuse"``, ``"vifb"``) or a convention of one's own.

    Returns
    -------
    dict of str to float
        ``EN, SD, SF, AG, MI, SSIM`` (combined over the inputs as the convention says) and
        ``SSIM_k`` per input, ``QABF, VIF, SCD, CC, PSNR``. Under ``"fusevis"``: MI and
        VIF summed, SSIM the mean over the inputs.

    Raises
    ------
    InputError
        For an unknown convention, no inputs, mismatched shapes, NaN or infinite values,
        or images smaller than the SSIM window.
    """
    chosen = get_convention(convention)
    fused = np.asarray(fused, np.float64)
    images = [np.asarray(x, np.float64) for x in inputs]
    if not images:
        raise InputError(None, "metrics need at least one input image")
    for name, x in [("fused image", fused)] + [(f"input {k}", x) for k, x in enumerate(images, 1)]:
        if not (x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3)):
            raise InputError(name, f"expected an (H, W) grey or (H, W, 3) RGB image, not {x.shape}")
    for k, x in enumerate(images, start=1):
        if x.shape[:2] != fused.shape[:2]:
            raise InputError(f"input {k}", f"shape {x.shape} differs from the fused {fused.shape}")
    for name, x in [("fused image", fused)] + [(f"input {k}", x) for k, x in enumerate(images, 1)]:
        if not np.isfinite(x).all():
            raise InputError(name, "contains NaN or infinite values")
    if min(fused.shape[:2]) < chosen.ssim_size:
        raise InputError(
            "fused image",
            f"{fused.shape[0]}x{fused.shape[1]} is smaller than the "
            f"{chosen.ssim_size}x{chosen.ssim_size} SSIM window",
        )
    tables = [_metric_table(f, xs, chosen) for f, xs in chosen.planes(fused, images)]
    if len(tables) == 1:
        return tables[0]
    return {key: float(np.mean([table[key] for table in tables])) for key in tables[0]}


def _metric_table(
    fused: np.ndarray, images: list[np.ndarray], convention: MetricConvention
) -> dict[str, float]:
    """The metrics of one grey plane of the fused image and its inputs."""
    c = convention
    per_input = ssim_per_input(
        fused,
        images,
        window=c.ssim_window,
        size=c.ssim_size,
        sigma=c.ssim_sigma,
        sample_covariance=c.ssim_sample_covariance,
        data_range=c.ssim_data_range / GREY_LEVELS,
    )
    values = {
        "EN": entropy(fused, c.entropy_base),
        "SD": standard_deviation(fused),
        "SF": spatial_frequency(fused, c.sf_divisor),
        "AG": average_gradient(fused, c.ag_differences, c.ag_divisor),
        "MI": mutual_information(fused, images, c.mi_base, c.mi_minmax, c.mi_combine),
        "SSIM": combined(per_input, c.ssim_combine),
        "QABF": q_abf(fused, images, c.qabf_borders),
        "VIF": vif(fused, images, c.vif_borders, c.vif_combine),
        "SCD": scd(fused, images),
        "CC": correlation_coefficient(fused, images),
        "PSNR": psnr(fused, images, c.psnr_peak, c.psnr_error),
    }
    values.update({f"SSIM_{k + 1}": s for k, s in enumerate(per_input)})
    return values


__all__ = [
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "METRIC_NAMES",
    "MetricConvention",
    "average_gradient",
    "convention_table",
    "correlation_coefficient",
    "entropy",
    "fusion_metrics",
    "get_convention",
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
