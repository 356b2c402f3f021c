"""Colour handling: luminance for grey fusion, YCbCr split and recolouring.

Conventions
-----------
* Grey by luminance uses 0.2989 R + 0.5870 G + 0.1140 B, as the FuseVis paper did.
* YCbCr is the full-range ITU-R BT.601 (JPEG) transform on values scaled to [0, 1]:
  Y in [0, 1], Cb and Cr in [0, 1] with 0.5 neutral. It is exactly invertible in floating
  point, so splitting an image and recolouring its own Y returns the image.
"""

from __future__ import annotations

import numpy as np

LUMINANCE_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])

_RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Return the paper's luminance of an (H, W, 3) RGB array as float64 (same scale)."""
    return np.asarray(rgb[..., :3], dtype=np.float64) @ LUMINANCE_WEIGHTS


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Convert an (H, W, 3) RGB array in [0, 1] to (3, H, W) Y, Cb, Cr planes in [0, 1]."""
    ycc = np.asarray(rgb[..., :3], dtype=np.float64) @ _RGB_TO_YCBCR.T
    ycc[..., 1:] += 0.5
    return np.moveaxis(ycc, -1, 0)


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Convert Y, Cb, Cr planes in [0, 1] to an (H, W, 3) RGB array clipped to [0, 1]."""
    ycc = np.stack(
        [np.asarray(y, np.float64), np.asarray(cb, np.float64) - 0.5, np.asarray(cr) - 0.5],
        axis=-1,
    )
    return np.clip(ycc @ _YCBCR_TO_RGB.T, 0.0, 1.0)


def recolor(fused_y: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Recolour a fused Y channel with the Cb/Cr planes of a colour input.

    Parameters
    ----------
    fused_y : numpy.ndarray
        (H, W) luminance in [0, 1].
    chroma : numpy.ndarray
        (2, H, W) Cb and Cr planes as stored in :attr:`fusevis.io.Image.chroma`.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) float RGB image in [0, 1].
    """
    return ycbcr_to_rgb(fused_y, chroma[0], chroma[1])
