"""Metrics of the fused image alone: entropy, standard deviation, spatial frequency, gradient.

Convention for every FuseVis metric: images come as floats in [0, 1] (as the networks take
and give them) and are measured on the 8-bit scale, F · 255, as most published fusion
tables do. Histogram-based metrics quantise to 256 levels (``uint8``) and count bits.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import shannon_entropy

GREY_LEVELS = 255.0


def to_8bit_scale(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as float64 on the 0-255 scale (values outside [0, 1] clipped)."""
    return np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * GREY_LEVELS


def quantised(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as ``uint8`` (rounded): the 256 histogram bins."""
    return np.round(to_8bit_scale(image)).astype(np.uint8)


def entropy(fused: np.ndarray) -> float:
    """EN = −Σ_i p_i log2 p_i over the 256-level histogram of F, in bits.

    Uses :func:`skimage.measure.shannon_entropy` on the quantised image.
    """
    return float(shannon_entropy(quantised(fused), base=2))


def standard_deviation(fused: np.ndarray) -> float:
    """SD = sqrt(mean((F − mean F)²)) on the 0-255 scale (population form, ddof = 0)."""
    return float(np.std(to_8bit_scale(fused)))


def spatial_frequency(fused: np.ndarray) -> float:
    """SF = sqrt(RF² + CF²) on the 0-255 scale.

    RF² = mean over all horizontal neighbours of (F[i, j] − F[i, j−1])², CF² the same
    vertically (each a mean over the differences that exist, M·(N−1) and (M−1)·N).
    """
    image = to_8bit_scale(fused)
    row_frequency = np.mean(np.diff(image, axis=1) ** 2)
    column_frequency = np.mean(np.diff(image, axis=0) ** 2)
    return float(np.sqrt(row_frequency + column_frequency))


def average_gradient(fused: np.ndarray) -> float:
    """AG = mean over (M−1)(N−1) pixels of sqrt((ΔxF² + ΔyF²) / 2), forward differences, 0-255."""
    image = to_8bit_scale(fused)
    dx = np.diff(image, axis=1)[:-1, :]
    dy = np.diff(image, axis=0)[:, :-1]
    return float(np.mean(np.sqrt((dx**2 + dy**2) / 2.0)))
