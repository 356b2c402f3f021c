"""Intensity normalisation of single images."""

from __future__ import annotations

from typing import Literal

import numpy as np

from fusevis.errors import InputError

NormalizeMode = Literal["minmax", "percentile", "none"]


def check_finite(values: np.ndarray, source: str) -> None:
    """Raise :class:`InputError` if ``values`` holds NaN or infinite entries."""
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise InputError(source, f"contains {bad} NaN or infinite values")


def normalize(
    values: np.ndarray,
    source: str,
    mode: NormalizeMode = "minmax",
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """Scale an image to [0, 1].

    Parameters
    ----------
    values : numpy.ndarray
        The image (any real dtype).
    source : str
        Name used in error messages.
    mode : {"minmax", "percentile", "none"}
        ``"minmax"`` maps the minimum to 0 and the maximum to 1 (the paper's default);
        ``"percentile"`` clips to the given percentiles first, then scales them to [0, 1];
        ``"none"`` only converts to float32.
    percentiles : tuple of float
        Lower and upper percentile for ``"percentile"`` mode.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.

    Raises
    ------
    InputError
        If the image holds NaN or infinite values, or is constant so that the scale is
        undefined.
    """
    array = np.asarray(values, dtype=np.float64)
    check_finite(array, source)
    if mode == "none":
        return array.astype(np.float32)
    if mode == "minmax":
        low, high = float(array.min()), float(array.max())
    elif mode == "percentile":
        low, high = (float(v) for v in np.percentile(array, percentiles))
        array = np.clip(array, low, high)
    else:
        raise InputError(source, f"unknown normalisation {mode!r} (use minmax, percentile, none)")
    if not high > low:
        raise InputError(source, f"image is constant ({low:g}); cannot scale it to [0, 1]")
    return ((array - low) / (high - low)).astype(np.float32)
