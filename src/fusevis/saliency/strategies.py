"""The ways of computing Jacobian rows, behind one interface.

Every strategy gives, for each fused pixel, the window outside which its rows are zero and
per input the gradient over a window — the full-image gradient exactly; they differ only in
cost and in what they need:

========== ================================================================================
recorded   a backward sweep over the pixel's cone from a recorded full-image forward
           (:mod:`~fusevis.saliency.recorded`); needs a cone and a record
cone       forward and backward over the pixel's cone (:mod:`~fusevis.saliency.cone`);
           needs a graph the cone runs (stride-1 convolutions, element-wise operations)
crop       the model on a receptive-field crop around the pixel; needs a local model
lowrank    the row of the network with its global quantities held fixed, plus a low-rank
           term (:mod:`~fusevis.saliency.lowrank`); needs a model that is local but for a
           few global quantities (channel attention, transposed attention, min-max)
full       one kept full-image forward, a backward pass per pixel; any model
========== ================================================================================

:class:`~fusevis.saliency.PixelJacobian` chooses among them (``strategy="auto"``) or runs
the one named.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from fusevis.saliency.cone import Cone
from fusevis.saliency.convolution import Convolve
from fusevis.saliency.crop import KeptForward, cut_inputs
from fusevis.saliency.explanation import Part
from fusevis.saliency.field import ReceptiveField, Window, field_window
from fusevis.saliency.inputs import Pixel, Stamp, image_shape
from fusevis.saliency.outputs import OutputChannel, select_output
from fusevis.saliency.recorded import ForwardRecord, backward_rows

NAMES = ("recorded", "cone", "crop", "lowrank", "full")

PixelRows = tuple[Window, list[Part]]  # the pixel's window, and per input its part


class Strategy(ABC):
    """One way of computing Jacobian rows; see the module's table."""

    name: ClassVar[str]

    @abstractmethod
    def rows(self, items: tuple[torch.Tensor, ...], pixels: Sequence[Pixel]) -> list[PixelRows]:
        """Per pixel: the window outside which its rows are zero, and per input its part."""


class _ConeRows(Strategy):
    """What the cone and the recorded strategies share: a cone, a field, a convolution."""

    def __init__(
        self, cone: Cone, field: ReceptiveField, channel: OutputChannel, conv: Convolve
    ) -> None:
        self.cone, self.field, self.channel, self.conv = cone, field, channel, conv

    def rows(self, items: tuple[torch.Tensor, ...], pixels: Sequence[Pixel]) -> list[PixelRows]:  # noqa: D102
        shape = image_shape(items)
        found = []
        for pixel in pixels:
            windows, grads = self.gradients(items, pixel)
            window = field_window(
                self.field, (pixel[0], pixel[0] + 1), (pixel[1], pixel[1] + 1), shape
            )
            for part in windows:
                window = window.union(part)
            parts = [(w, None if g is None else g[0]) for w, g in zip(windows, grads, strict=True)]
            found.append((window, parts))
        return found

    def gradients(
        self, items: tuple[torch.Tensor, ...], pixel: Pixel
    ) -> tuple[list[Window], Sequence[torch.Tensor | None]]:
        """Per input, the window its gradient covers and the (1, C, h, w) gradient."""
        raise NotImplementedError


class ConeStrategy(_ConeRows):
    """Forward and backward over the pixel's cone."""

    name = "cone"

    def gradients(  # noqa: D102
        self, items: tuple[torch.Tensor, ...], pixel: Pixel
    ) -> tuple[list[Window], Sequence[torch.Tensor | None]]:
        value, leaves, windows = self.cone.run(items, pixel, self.conv)
        target = select_output(value[0][None, :, None, None], self.channel)[0, 0, 0]
        if not target.requires_grad:  # the pixel reads only constants (padding)
            return windows, [None] * len(leaves)
        return windows, torch.autograd.grad(target, leaves, allow_unused=True)


class RecordedStrategy(_ConeRows):
    """A backward sweep over the pixel's cone from a recorded full-image forward."""

    name = "recorded"

    def __init__(
        self,
        cone: Cone,
        record: ForwardRecord,
        field: ReceptiveField,
        channel: OutputChannel,
        conv: Convolve,
    ) -> None:
        super().__init__(cone, field, channel, conv)
        self.record = record

    def gradients(  # noqa: D102
        self, items: tuple[torch.Tensor, ...], pixel: Pixel
    ) -> tuple[list[Window], Sequence[torch.Tensor | None]]:
        return backward_rows(self.cone, self.record, pixel, self.channel, self.conv)


class CropStrategy(Strategy):
    """The model on a receptive-field crop around each pixel (same-sized crops batched)."""

    name = "crop"

    def __init__(self, model: nn.Module, field: ReceptiveField, channel: OutputChannel) -> None:
        self.model, self.field, self.channel = model, field, channel

    def rows(self, items: tuple[torch.Tensor, ...], pixels: Sequence[Pixel]) -> list[PixelRows]:  # noqa: D102
        shape = image_shape(items)
        windows = [field_window(self.field, (r, r + 1), (c, c + 1), shape) for r, c in pixels]
        found: list[PixelRows | None] = [None] * len(pixels)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, window in enumerate(windows):
            groups.setdefault(window.shape, []).append(index)
        for indices in groups.values():
            crops = [torch.cat([cut_inputs((x,), windows[i])[0] for i in indices]) for x in items]
            kept = KeptForward(self.model, crops, self.channel)
            targets = torch.stack(
                [
                    kept.output[b, pixels[i][0] - windows[i].top, pixels[i][1] - windows[i].left]
                    for b, i in enumerate(indices)
                ]
            )
            grads = kept.along(targets.sum(), keep=False)
            for b, i in enumerate(indices):
                found[i] = (windows[i], [(windows[i], None if g is None else g[b]) for g in grads])
        return found  # type: ignore[return-value]


class FullStrategy(Strategy):
    """One full-image forward, kept while the inputs are unchanged; a backward pass per pixel."""

    name = "full"

    def __init__(self, model: nn.Module, channel: OutputChannel) -> None:
        self.model, self.channel = model, channel
        self._kept: tuple[Stamp, KeptForward] | None = None

    def keep(self, items: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Run the full-image forward for these inputs now (once) and return the model's output."""
        return self._kept_for(items).full_output

    def _kept_for(self, items: tuple[torch.Tensor, ...]) -> KeptForward:
        if self._kept is None or not self._kept[0].matches(items):
            self._kept = None  # free the old forward first
            self._kept = (Stamp(items), KeptForward(self.model, items, self.channel))
        return self._kept[1]

    def rows(self, items: tuple[torch.Tensor, ...], pixels: Sequence[Pixel]) -> list[PixelRows]:  # noqa: D102
        kept = self._kept_for(items)
        height, width = image_shape(items)
        whole = Window(0, height, 0, width)
        return [
            (whole, [(whole, None if g is None else g[0]) for g in kept.at(pixel)])
            for pixel in pixels
        ]
