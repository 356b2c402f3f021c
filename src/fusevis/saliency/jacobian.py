"""Exact per-pixel Jacobians: rows of the fusion network's Jacobian, fast enough to hover."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from fusevis.models.inference import check_output, run_model
from fusevis.saliency.cone import ConeExecutor, ConeUnsupported
from fusevis.saliency.field import ReceptiveField, Window, field_window
from fusevis.saliency.locality import Locality, analyse_locality
from fusevis.saliency.recorded import (
    DEFAULT_RECORD_LIMIT,
    ForwardRecord,
    backward_row,
    record_forward,
)
from fusevis.saliency.tensors import (
    OutputChannel,
    as_input_tuple,
    check_pixel,
    flushed_denormals,
    forward_selected,
    frozen_parameters,
    onednn_convolutions,
    select_output,
)

Pixel = tuple[int, int]
SparseRow = tuple[Window, "torch.Tensor | None"]  # a gradient and the window it covers


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
    record_limit : int
        Bytes :meth:`prepare` may keep (ReLU sign patterns, inputs of other element-wise
        operations); above it, pixels are computed without a record.

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
        record_limit: int = DEFAULT_RECORD_LIMIT,
    ) -> None:
        self.model = model
        self.record_limit = record_limit
        self._record: ForwardRecord | None = None
        self._parameters = list(model.parameters())
        self.output_channel = output_channel
        self.override = receptive_field
        self.verify = verify
        self._localities: dict[tuple, Locality] = {}
        self._last_locality: Locality | None = None
        self.last_window: Window | None = None
        self._method = ""
        self._full_cache: tuple[tuple, tuple[torch.Tensor, ...], torch.Tensor] | None = None
        self._cone: ConeExecutor | None = None
        self._cone_checked = False
        # per dtype, device and record presence: (use the record, use oneDNN)
        self._ways: dict[tuple, tuple[bool, bool]] = {}
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
        """How the last call computed: ``"recorded"``, ``"cone"``, ``"crop"`` or ``"full"``.

        ``"recorded"``: a backward sweep over the pixel's cone from :meth:`prepare`'s record;
        ``"cone"``: forward and backward over the cone; ``"crop"``: the model on a
        receptive-field crop; ``"full"``: full-image gradients (a model that is not local).
        """
        return self._method

    def prepare(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Run the model once over the whole image and keep what later pixels need.

        After this, every pixel of these inputs (same tensors, unmodified) costs a backward
        sweep over its cone only, about half of a forward and backward over it. The record
        holds one byte per ReLU activation (a 48-channel ReLU at 1024² is 48 MB) and the
        inputs of other element-wise operations; above ``record_limit`` bytes, for models
        the cone does not cover, or when the first pixel shows that the cone's own forward
        and backward are faster for this model, nothing is kept and pixels are computed as
        before.

        Returns
        -------
        torch.Tensor
            The model's (1, C, H, W) output for the inputs.
        """
        items = as_input_tuple(inputs)
        locality = self.locality(items)
        with frozen_parameters(self.model, self._parameters), flushed_denormals():
            cone = self._cone_executor(len(items)) if locality.path == "crop" else None
            self._record = None
            if cone is not None:
                self._record = record_forward(cone, items, self.record_limit)
            if self._record is not None:
                check_output(self.model, self._record.output, items[0])
                return self._record.output
            with torch.no_grad():
                return run_model(self.model, list(items))

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
        return self.override if self._last_locality is None else self._last_locality.field

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
        sparse = self._sparse_rows(items, chosen)
        rows = [[_placed(x[0], part) for x, part in zip(items, row, strict=True)] for row in sparse]
        if pixel is not None:
            return tuple(r[None] for r in rows[0])
        return tuple(torch.stack([r[k] for r in rows]) for k in range(len(items)))

    def attribute_window(
        self, inputs: torch.Tensor | Sequence[torch.Tensor], pixel: Pixel
    ) -> tuple[Window, tuple[torch.Tensor, ...]]:
        """Jacobian rows of one fused pixel, cut to the pixel's receptive-field window.

        The same values as :meth:`attribute`, without building image-sized maps: what a
        viewer sends per hover.

        Returns
        -------
        (Window, tuple of torch.Tensor)
            The window in image coordinates and, per input, a (C, h, w) tensor over it.
        """
        items = as_input_tuple(inputs)
        shape = (int(items[0].shape[-2]), int(items[0].shape[-1]))
        chosen = check_pixel(pixel, shape)
        row = self._sparse_rows(items, [chosen])[0]
        window = self.last_window
        assert window is not None
        crops = []
        for x, (part_window, grad) in zip(items, row, strict=True):
            crop = x.new_zeros((x.shape[1], *window.shape))
            if grad is not None:
                crop[
                    :,
                    part_window.top - window.top : part_window.bottom - window.top,
                    part_window.left - window.left : part_window.right - window.left,
                ] = grad
            crops.append(crop)
        return window, tuple(crops)

    def _sparse_rows(
        self, items: tuple[torch.Tensor, ...], chosen: list[Pixel]
    ) -> list[list[SparseRow]]:
        """Per pixel, per input: the window the gradient covers and the gradient there."""
        shape = (int(items[0].shape[-2]), int(items[0].shape[-1]))
        locality = self._last_locality = self.locality(items)
        with frozen_parameters(self.model, self._parameters), flushed_denormals():
            cone = self._cone_executor(len(items)) if locality.path == "crop" else None
            if locality.path == "full":
                self._method = "full"
                return [self._full_row(items, p) for p in chosen]
            if cone is not None:
                record = self._record
                if record is not None and not record.made_from(items):
                    record = None
                use_record, onednn = self._fastest_way(cone, record, items, chosen[0])
                if record is not None and not use_record:
                    record = self._record = None  # slower than the cone: free its memory
                self._method = "cone" if record is None else "recorded"
                with onednn_convolutions(onednn):
                    rows = [self._cone_row(cone, record, items, p) for p in chosen]
                last = field_window(
                    locality.field,
                    (chosen[-1][0], chosen[-1][0] + 1),
                    (chosen[-1][1], chosen[-1][1] + 1),
                    shape,
                )
                self.last_window = _union([last, *(w for w, _ in rows[-1])])
                return rows
            self._method = "crop"
            return self._crop_rows(items, chosen, locality.field, shape)

    def _fastest_way(
        self,
        cone: ConeExecutor,
        record: ForwardRecord | None,
        items: tuple[torch.Tensor, ...],
        pixel: Pixel,
    ) -> tuple[bool, bool]:
        """Whether to use the record and oneDNN convolutions for this model (timed once).

        Every way gives the same gradients up to float rounding; which is fastest depends
        on the layers and the CPU (a backward sweep from the record skips the cone's
        forward, but differentiating element-wise layers from stored values has overheads
        of its own; oneDNN is not always faster on small windows). So the first pixel is
        computed three times each way (the first run of each warms it up) and the fastest
        is kept.
        """
        key = (items[0].dtype, items[0].device.type, record is not None)
        if key not in self._ways:
            usable = (
                torch.backends.mkldnn.is_available()
                and torch.backends.mkldnn.enabled
                and key[:2] == (torch.float32, "cpu")
            )
            backends = (True, False) if usable else (torch.backends.mkldnn.enabled,)
            ways = [(r, b) for r in ((True, False) if record else (False,)) for b in backends]
            best: dict[tuple[bool, bool], float] = {}
            for use_record, onednn in ways * 3 if len(ways) > 1 else ():
                with onednn_convolutions(onednn):
                    start = time.perf_counter()
                    self._cone_row(cone, record if use_record else None, items, pixel)
                    elapsed = time.perf_counter() - start
                best[(use_record, onednn)] = min(best.get((use_record, onednn), elapsed), elapsed)
            self._ways[key] = min(best, key=best.__getitem__) if best else ways[0]
        return self._ways[key]

    def _crop_rows(
        self,
        items: tuple[torch.Tensor, ...],
        chosen: list[Pixel],
        rf: ReceptiveField,
        shape: tuple[int, int],
    ) -> list[list[SparseRow]]:
        windows = [field_window(rf, (r, r + 1), (c, c + 1), shape) for r, c in chosen]
        results: list[list[SparseRow] | None] = [None] * len(chosen)
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
                results[i] = [(windows[i], None if grad is None else grad[b]) for grad in grads]
        self.last_window = windows[-1]
        return results  # type: ignore[return-value]

    def _cone_row(
        self,
        cone: ConeExecutor,
        record: ForwardRecord | None,
        items: tuple[torch.Tensor, ...],
        pixel: Pixel,
    ) -> list[SparseRow]:
        """One pixel over its cone: a backward sweep from the record, or forward and back."""
        if record is not None:
            spans, grads = backward_row(cone, record, pixel, self.output_channel)
        else:
            value, leaves, spans = cone.run(items, pixel)
            target = select_output(value[0][None, :, None, None], self.output_channel)[0, 0, 0]
            grads = torch.autograd.grad(target, leaves, allow_unused=True)
        return [
            (Window(span.top, span.bottom, span.left, span.right), None if g is None else g[0])
            for g, span in zip(grads, spans, strict=True)
        ]

    def _full_row(self, items: tuple[torch.Tensor, ...], pixel: Pixel) -> list[SparseRow]:
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
        return [(self.last_window, None if g is None else g[0]) for g in grads]


def _placed(like: torch.Tensor, part: SparseRow) -> torch.Tensor:
    """An image-sized map, zero except for the gradient placed at its window."""
    window, grad = part
    full = torch.zeros_like(like)
    if grad is not None:
        full[..., window.top : window.bottom, window.left : window.right] = grad
    return full


def _union(windows: list[Window]) -> Window:
    """The smallest window holding all of ``windows``."""
    return Window(
        min(w.top for w in windows),
        max(w.bottom for w in windows),
        min(w.left for w in windows),
        max(w.right for w in windows),
    )
