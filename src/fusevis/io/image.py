"""The array-with-metadata type that every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Image:
    """A single 2-D image ready for fusion.

    Attributes
    ----------
    data : numpy.ndarray
        float32 array of shape (H, W), normalised as requested (usually to [0, 1]).
    source : str
        Where the image came from (a path, optionally with a slice description).
    value_range : tuple of float
        Minimum and maximum of the grey (or Y) values before normalisation.
    spacing : tuple of float or None
        Pixel spacing (row, column) in millimetres where the file states it.
    chroma : numpy.ndarray or None
        For colour inputs read in ``"ycbcr"`` mode, the (2, H, W) float32 Cb and Cr planes
        in [0, 1] (0.5 is neutral), used to recolour a fused Y channel.
    """

    data: np.ndarray
    source: str
    value_range: tuple[float, float]
    spacing: tuple[float, float] | None = None
    chroma: np.ndarray | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """The (H, W) shape of the image."""
        return (int(self.data.shape[0]), int(self.data.shape[1]))

    @property
    def is_color(self) -> bool:
        """Whether the image carries colour (Cb/Cr) planes."""
        return self.chroma is not None
