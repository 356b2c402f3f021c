"""Exact per-pixel Jacobians: rows of the fusion network's Jacobian, fast enough to hover."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fusevis.saliency.cone import ConeExecutor, ConeUnsupported
from fusevis.saliency.field import ReceptiveField, Window, field_window
from fusevis.saliency.locality import Locality, analyse_locality
from fusevis.saliency.tensors import (
    OutputChannel,
    as_input_tuple,
    check_pixel,
    flushed_denormals,
    forward_selected,
    frozen_parameters,
    select_output,
)

Pixel = tuple[int, int]


class PixelJacobian:
    """Per-pixel saliency maps J_k(p) = ∂F(p)/∂x_k for a fused pixel p, Captum-style.

    The model runs on a crop of the inputs that extends one receptive field around p
    (clipped at the image border, aligned to the network's sampling grid), so the cost does
    not depend on the image size and the result equals the full-image gradient exactly.
    Models that are not local fall back to full-image gradients (``locality.path``).

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(x1, ..., xN)`` on (B, C, H, W) tensors; N ≥ 1.
    output_channel : int or "luminance"
        Which output channel is explained (default 0); ``"luminance"`` for RGB outputs.
    receptive_field : ReceptiveField, optional
        Override the traced or measured field.
    verify : bool
        Check crop results against full-image gradients once per input size (float64).

    Examples
    --------
    >>> pj = PixelJacobian(model)                         # doctest: +SKIP
    >>> j_mri, j_pet = pj.attribute((mri, pet), pixel=(120, 64))  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        output_channel: OutputChannel = 0,
        receptive_field: ReceptiveField | None = None,
        verify: bool = True,
    ) -> None:
        self.model = model
        self.output_channel = output_channel
        self.override = receptive_field
        self.verify = verify
        self._localities: dict[tuple, Locality] = {}
        self.last_window: Window | None = None
        self._method = ""
        self._full_cache: tuple[tuple, tuple[torch.Tensor, ...], torch.Tensor] | None = None
        self._cone: ConeExecutor | None = None
        self._cone_checked = False
        self.use_cone = True

    def _cone_executor(self, num_inputs: int) -> ConeExecutor | None:
        """The cone executor, if the model's graph allows one (built once)."""
        if not self._cone_checked:
            self._cone_checked = True
            try:
                self._cone = ConeExecutor(self.model, num_inputs)
            except ConeUnsupported:
                self._cone = None
        return self._cone if self.use_cone else None

    @property
    def method(self) -> str:
        """How the last call computed: ``"cone"``, ``"crop"`` or ``"full"``."""
        return self._method

    def locality(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> Locality:
        """The (cached) decision of how to compute saliency for inputs of this size."""
        items = as_input_tuple(inputs)
        key = tuple((tuple(x.shape), x.dtype, x.device.type) for x in items)
        if key not in self._localities:
            self._localities[key] = analyse_locality(
                self.model, items, self.output_channel, self.override, self.verify
            )
        return self._localities[key]

    @property
    def receptive_field(self) -> ReceptiveField | None:
        """The field used by the last call (None before the first call or on the full path)."""
        if not self._localities:
            return self.override
        return list(self._localities.values())[-1].field

    def attribute(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        pixel: Pixel | None = None,
        pixels: Sequence[Pixel] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Jacobian rows of one fused pixel (or a batch of pixels) for every input.

        Parameters
        ----------
        inputs : tensor or sequence of tensors
            The N inputs, each (1, C, H, W) (or (C, H, W) / (H, W)).
        pixel : (row, col), optional
            One fused pixel; the result is shaped like each input, zero outside the field.
        pixels : sequence of (row, col), optional
            Several pixels; each result gets a leading axis of length len(pixels).

        Returns
        -------
        tuple of torch.Tensor
            One tensor per input.
        """
        items = as_input_tuple(inputs)
        shape = (int(items[0].shape[-2]), int(items[0].shape[-1]))
        if (pixel is None) == (pixels is None):
            raise TypeError("give exactly one of pixel= or pixels=")
        chosen = [check_pixel(p, shape) for p in ([pixel] if pixel is not None else pixels)]
        locality = self.locality(items)
        with frozen_parameters(self.model), flushed_denormals():
            cone = self._cone_executor(len(items)) if locality.path == "crop" else None
            if locality.path == "full":
                rows = [self._full_row(items, p) for p in chosen]
                self._method = "full"
            elif cone is not None:
                rows = [self._cone_row(cone, items, p) for p in chosen]
                self.last_window = field_window(
                    locality.field,
                    (chosen[-1][0], chosen[-1][0] + 1),
                    (chosen[-1][1], chosen[-1][1] + 1),
                    shape,
                )
                self._method = "cone"
            else:
                rows = self._crop_rows(items, chosen, locality.field, shape)
                self._method = "crop"
        if pixel is not None:
            return tuple(r[None] for r in rows[0])
        return tuple(torch.stack([r[k] for r in rows]) for k in range(len(items)))

    def _crop_rows(
        self,
        items: tuple[torch.Tensor, ...],
        chosen: list[Pixel],
        rf: ReceptiveField,
        shape: tuple[int, int],
    ) -> list[list[torch.Tensor]]:
        windows = [field_window(rf, (r, r + 1), (c, c + 1), shape) for r, c in chosen]
        results: list[list[torch.Tensor] | None] = [None] * len(chosen)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, window in enumerate(windows):
            groups.setdefault(window.shape, []).append(index)
        for indices in groups.values():
            crops = [
                torch.cat(
                    [x[..., windows[i].as_slices()[0], windows[i].as_slices()[1]] for i in indices]
                )
                .detach()
                .requires_grad_(True)
                for x in items
            ]
            output = forward_selected(self.model, crops, self.output_channel)
            targets = torch.stack(
                [
                    output[b, chosen[i][0] - windows[i].top, chosen[i][1] - windows[i].left]
                    for b, i in enumerate(indices)
                ]
            )
            grads = torch.autograd.grad(targets.sum(), crops, allow_unused=True)
            for b, i in enumerate(indices):
                window = windows[i]
                row_slice, col_slice = window.as_slices()
                placed = []
                for x, grad in zip(items, grads, strict=True):
                    full = torch.zeros_like(x[0])
                    if grad is not None:
                        full[..., row_slice, col_slice] = grad[b]
                    placed.append(full)
                results[i] = placed
        self.last_window = windows[-1]
        return results  # type: ignore[return-value]

    def _cone_row(
        self, cone: ConeExecutor, items: tuple[torch.Tensor, ...], pixel: Pixel
    ) -> list[torch.Tensor]:
        value, leaves, spans = cone.run(items, pixel)
        target = select_output(value[0][None, :, None, None], self.output_channel)[0, 0, 0]
        grads = torch.autograd.grad(target, leaves, allow_unused=True)
        rows = []
        for x, grad, span in zip(items, grads, spans, strict=True):
            full = torch.zeros_like(x[0])
            if grad is not None:
                full[..., span.top : span.bottom, span.left : span.right] = grad[0]
            rows.append(full)
        return rows

    def _full_row(self, items: tuple[torch.Tensor, ...], pixel: Pixel) -> list[torch.Tensor]:
        key = tuple((x.data_ptr(), x._version, tuple(x.shape)) for x in items)
        if self._full_cache is None or self._full_cache[0] != key:
            leaves = tuple(x.detach().requires_grad_(True) for x in items)
            output = forward_selected(self.model, leaves, self.output_channel)
            self._full_cache = (key, leaves, output)
        _, leaves, output = self._full_cache
        grads = torch.autograd.grad(
            output[0, pixel[0], pixel[1]], leaves, retain_graph=True, allow_unused=True
        )
        shape = items[0].shape[-2:]
        self.last_window = Window(0, int(shape[0]), 0, int(shape[1]))
        return [
            torch.zeros_like(x[0]) if g is None else g[0]
            for g, x in zip(grads, leaves, strict=True)
        ]
