"""Metrics of the fused image alone: entropy, standard deviation, spatial frequency, gradient.

Convention for every FuseVis metric: images come as floats in [0, 1] (as the networks take
and give them) and are measured on the 8-bit scale, F · 255, as most published fusion
tables do. Histogram-based metrics quantise to 256 levels (``uint8``) and count bits. The
keyword arguments reproduce other evaluators' choices (see
:mod:`fusevis.metrics.conventions`); their defaults are FuseVis's own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from skimage.measure import shannon_entropy

GREY_LEVELS = 255.0

SfDivisor = Literal["differences", "pixels"]
AgDifferences = Literal["forward", "central"]
AgDivisor = Literal["values", "(M-1)(N-1)"]
Combine = Literal["sum", "mean"]


def combined(values: Sequence[float], how: Combine) -> float:
    """The per-input values of a metric summed (``"sum"``) or averaged (``"mean"``)."""
    return float(sum(values)) if how == "sum" else float(np.mean(values))


def to_8bit_scale(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as float64 on the 0-255 scale (values outside [0, 1] clipped)."""
    return np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * GREY_LEVELS


def quantised(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as ``uint8`` (rounded): the 256 histogram bins."""
    return np.round(to_8bit_scale(image)).astype(np.uint8)


def entropy(fused: np.ndarray, base: float = 2.0) -> float:
    """EN = −Σ_i p_i log p_i over the 256-level histogram of F; bits with ``base=2``.

    Uses :func:`skimage.measure.shannon_entropy` on the quantised image.
    """
    return float(shannon_entropy(quantised(fused), base=base))


def log_unit(base: float) -> str:
    """The unit of a logarithm to ``base``: bits (2), nats (e), dits (10), else ``log_b``."""
    for unit, known in (("bits", 2.0), ("nats", math.e), ("dits", 10.0)):
        if math.isclose(base, known):
            return unit
    return f"log_{base:g} units"


def standard_deviation(fused: np.ndarray) -> float:
    """SD = sqrt(mean((F − mean F)²)) on the 0-255 scale (population form, ddof = 0)."""
    return float(np.std(to_8bit_scale(fused)))


def spatial_frequency(fused: np.ndarray, divisor: SfDivisor = "differences") -> float:
    """SF = sqrt(RF² + CF²) on the 0-255 scale.

    RF² = Σ over all horizontal neighbours of (F[i, j] − F[i, j−1])², CF² the same
    vertically, each divided by the number of differences that exist, M·(N−1) and (M−1)·N
    (``divisor="differences"``, a mean), or by the pixel count M·N (``"pixels"``, as
    VIFB's toolbox does).
    """
    image = to_8bit_scale(fused)
    rows, columns = np.diff(image, axis=1) ** 2, np.diff(image, axis=0) ** 2
    if divisor == "pixels":
        row_frequency = np.sum(rows) / image.size
        column_frequency = np.sum(columns) / image.size
    else:
        row_frequency, column_frequency = np.mean(rows), np.mean(columns)
    return float(np.sqrt(row_frequency + column_frequency))


def average_gradient(
    fused: np.ndarray, differences: AgDifferences = "forward", divisor: AgDivisor = "values"
) -> float:
    """AG = the mean of sqrt((ΔxF² + ΔyF²) / 2) on the 0-255 scale.

    ``differences="forward"``: F[i, j+1] − F[i, j] and F[i+1, j] − F[i, j] at the
    (M−1)(N−1) pixels that have both. ``"central"``: :func:`numpy.gradient` (MATLAB's
    ``gradient``), half the central difference inside and the one-sided difference at the
    edges, at all M·N pixels. ``divisor="values"`` divides the sum by the number of values
    (a plain mean); ``"(M-1)(N-1)"`` divides it by (M−1)(N−1) whatever the count, as
    VIFB's toolbox does with central differences.
    """
    image = to_8bit_scale(fused)
    if differences == "central":
        dy, dx = np.gradient(image)
    else:
        dx = np.diff(image, axis=1)[:-1, :]
        dy = np.diff(image, axis=0)[:, :-1]
    magnitude = np.sqrt((dx**2 + dy**2) / 2.0)
    if divisor == "(M-1)(N-1)":
        rows, columns = image.shape
        return float(np.sum(magnitude) / ((rows - 1) * (columns - 1)))
    return float(np.mean(magnitude))
