"""What an attribution method returns for one target, as a value."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fusevis.saliency.field import ReceptiveField, Window

Part = tuple[Window, "torch.Tensor | None"]  # values (C, h, w) over a window; None: all zero


@dataclass(frozen=True)
class Explanation:
    """One fused pixel's Jacobian rows (or a region's attributions) and how they were found.

    Attributes
    ----------
    rows : tuple of (Window, torch.Tensor or None)
        Per input, the window its values are stored over and the (C, h, w) values there
        (None: zero everywhere, an input the target does not depend on). Zero outside.
    window : Window
        The rectangle outside which every row is zero (the target's receptive-field
        window; the whole image for a model that is not local).
    strategy : str
        How the rows were computed: ``"recorded"``, ``"cone"``, ``"crop"`` or ``"full"``
        (see :class:`~fusevis.saliency.PixelJacobian`).
    field : ReceptiveField or None
        The receptive field used (None on the full path).
    shape : (int, int)
        The image size.
    channels : tuple of int
        Channels of each input.
    pixel : (int, int) or None
        The fused pixel explained (None for a region).
    method : str
        The attribution method (a key of ``fusevis.saliency.METHODS``).
    """

    rows: tuple[Part, ...]
    window: Window
    strategy: str
    field: ReceptiveField | None
    shape: tuple[int, int]
    channels: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    pixel: tuple[int, int] | None = None
    method: str = "jacobian"

    def dense(self) -> tuple[torch.Tensor, ...]:
        """Per input, an image-sized (1, C, H, W) tensor, zero outside :attr:`window`."""
        maps = []
        for channels, (window, values) in zip(self.channels, self.rows, strict=True):
            full = torch.zeros((1, channels, *self.shape), dtype=self.dtype, device=self.device)
            if values is not None:
                full[0, :, window.top : window.bottom, window.left : window.right] = values
            maps.append(full)
        return tuple(maps)

    def cropped(self) -> tuple[torch.Tensor, ...]:
        """Per input, a (C, h, w) tensor over :attr:`window` (what a viewer sends per hover)."""
        window = self.window
        crops = []
        for channels, (part, values) in zip(self.channels, self.rows, strict=True):
            if values is not None and part == window:
                crops.append(values)
                continue
            crop = torch.zeros((channels, *window.shape), dtype=self.dtype, device=self.device)
            if values is not None:
                crop[
                    :,
                    part.top - window.top : part.bottom - window.top,
                    part.left - window.left : part.right - window.left,
                ] = values
            crops.append(crop)
        return tuple(crops)
