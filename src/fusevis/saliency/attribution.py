"""Other attribution methods for a fused pixel or a region, all on receptive-field crops.

Each class is built once with the model and explains a target by ``attribute(inputs,
pixel=(row, col))`` or ``attribute(inputs, region=mask)``; a region's target is the sum of
its fused pixels. Results are shaped like the inputs and zero outside the region's field.
Because the target depends only on the inputs inside that field, every method runs on the
crop and gives exactly what it would give on the whole image (noise and baselines are
drawn for the whole image, then cropped).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fusevis.errors import InputError
from fusevis.saliency.field import Window, field_window
from fusevis.saliency.jacobian import PixelJacobian
from fusevis.saliency.tensors import (
    OutputChannel,
    as_input_tuple,
    check_pixel,
    forward_selected,
    frozen_parameters,
)


def region_mask(
    shape: tuple[int, int], pixel: tuple[int, int] | None, region: np.ndarray | torch.Tensor | None
) -> torch.Tensor:
    """A boolean (H, W) mask of the target fused pixels."""
    if (pixel is None) == (region is None):
        raise TypeError("give exactly one of pixel= or region=")
    mask = torch.zeros(shape, dtype=torch.bool)
    if pixel is not None:
        row, col = check_pixel(pixel, shape)
        mask[row, col] = True
        return mask
    given = torch.as_tensor(np.asarray(region)).bool()
    if tuple(given.shape) != shape:
        raise InputError(
            None, f"region mask shape {tuple(given.shape)} differs from the image {shape}"
        )
    if not given.any():
        raise InputError(None, "region mask selects no pixel")
    return given


class CropAttribution:
    """Base class: gradients of a target (pixel or region sum) on the field crop."""

    def __init__(self, model: nn.Module, output_channel: OutputChannel = 0) -> None:
        self.model = model
        self.output_channel = output_channel
        self._jacobian = PixelJacobian(model, output_channel)
        self.last_window: Window | None = None

    def _window(self, items: tuple[torch.Tensor, ...], mask: torch.Tensor) -> Window:
        shape = tuple(mask.shape)
        locality = self._jacobian.locality(items)
        if locality.path == "full":
            return Window(0, shape[0], 0, shape[1])
        rows = mask.any(dim=1).nonzero()[:, 0]
        cols = mask.any(dim=0).nonzero()[:, 0]
        return field_window(
            locality.field,
            (int(rows.min()), int(rows.max()) + 1),
            (int(cols.min()), int(cols.max()) + 1),
            shape,
        )

    def _gradients(
        self, crops: Sequence[torch.Tensor], local_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        leaves = tuple(c.detach().requires_grad_(True) for c in crops)
        output = forward_selected(self.model, leaves, self.output_channel)
        target = (output[0] * local_mask.to(output.dtype)).sum()
        grads = torch.autograd.grad(target, leaves, allow_unused=True)
        return tuple(
            torch.zeros_like(c) if g is None else g for g, c in zip(grads, leaves, strict=True)
        )

    def attribute(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        pixel: tuple[int, int] | None = None,
        region: np.ndarray | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Attribution of the target to every input pixel, one tensor per input."""
        items = as_input_tuple(inputs)
        shape = (int(items[0].shape[-2]), int(items[0].shape[-1]))
        mask = region_mask(shape, pixel, region)
        window = self._window(items, mask)
        self.last_window = window
        rows, cols = window.as_slices()
        with frozen_parameters(self.model):
            local = self._attribute_crop(items, window, mask[rows, cols].to(items[0].device))
        results = []
        for x, value in zip(items, local, strict=True):
            full = torch.zeros_like(x)
            full[..., rows, cols] = value.detach()
            results.append(full)
        return tuple(results)

    def _attribute_crop(
        self, items: tuple[torch.Tensor, ...], window: Window, local_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


def _crop(items: Sequence[torch.Tensor], window: Window) -> tuple[torch.Tensor, ...]:
    rows, cols = window.as_slices()
    return tuple(x[..., rows, cols] for x in items)


class Gradient(CropAttribution):
    """The plain gradient ∂target/∂x_k (for one pixel: its Jacobian row)."""

    def _attribute_crop(self, items, window, local_mask):  # noqa: ANN001, ANN202, D102
        return self._gradients(_crop(items, window), local_mask)


class GradientTimesInput(CropAttribution):
    """Gradient × input."""

    def _attribute_crop(self, items, window, local_mask):  # noqa: ANN001, ANN202, D102
        crops = _crop(items, window)
        return tuple(g * c for g, c in zip(self._gradients(crops, local_mask), crops, strict=True))


class SmoothGrad(CropAttribution):
    """Mean gradient over ``samples`` copies of the inputs with Gaussian noise.

    The noise's standard deviation is ``sigma`` × (max − min) of each input; ``seed`` makes
    it reproducible.
    """

    def __init__(
        self,
        model: nn.Module,
        output_channel: OutputChannel = 0,
        samples: int = 16,
        sigma: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__(model, output_channel)
        self.samples, self.sigma, self.seed = samples, sigma, seed

    def _attribute_crop(self, items, window, local_mask):  # noqa: ANN001, ANN202, D102
        generator = torch.Generator().manual_seed(self.seed)
        total = [torch.zeros_like(c) for c in _crop(items, window)]
        for _ in range(self.samples):
            noisy = []
            for x in items:
                spread = float(x.max() - x.min()) or 1.0
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
                noisy.append(x + self.sigma * spread * noise.to(x.device))
            for acc, g in zip(
                total, self._gradients(_crop(noisy, window), local_mask), strict=True
            ):
                acc += g
        return tuple(t / self.samples for t in total)


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (1, C, H, W) tensor (scipy, reflect mode) as a baseline."""
    from scipy.ndimage import gaussian_filter

    array = x.detach().cpu().numpy()
    smoothed = gaussian_filter(array, sigma=(0, 0, sigma, sigma), mode="reflect")
    return torch.as_tensor(smoothed, dtype=x.dtype, device=x.device)


class IntegratedGradients(CropAttribution):
    """Integrated gradients from a baseline (zeros or a blurred copy of the inputs).

    (x − x') × mean of the gradients at x' + α (x − x') over ``steps`` midpoints α; the
    attributions sum to F(x) − F(x') up to the Riemann-sum error.
    """

    def __init__(
        self,
        model: nn.Module,
        output_channel: OutputChannel = 0,
        steps: int = 32,
        baseline: str = "zero",
        blur_sigma: float = 5.0,
    ) -> None:
        if baseline not in ("zero", "blur"):
            raise InputError(None, f"unknown baseline {baseline!r} (use zero or blur)")
        super().__init__(model, output_channel)
        self.steps, self.baseline, self.blur_sigma = steps, baseline, blur_sigma

    def baselines(self, items: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The baseline of every input (whole image)."""
        if self.baseline == "zero":
            return tuple(torch.zeros_like(x) for x in items)
        return tuple(blurred(x, self.blur_sigma) for x in items)

    def _attribute_crop(self, items, window, local_mask):  # noqa: ANN001, ANN202, D102
        crops = _crop(items, window)
        bases = _crop(self.baselines(items), window)
        total = [torch.zeros_like(c) for c in crops]
        for step in range(self.steps):
            alpha = (step + 0.5) / self.steps
            points = [b + alpha * (c - b) for c, b in zip(crops, bases, strict=True)]
            for acc, g in zip(total, self._gradients(points, local_mask), strict=True):
                acc += g
        return tuple((c - b) * t / self.steps for c, b, t in zip(crops, bases, total, strict=True))


METHODS: dict[str, type[CropAttribution]] = {
    "gradient": Gradient,
    "gradient_x_input": GradientTimesInput,
    "smoothgrad": SmoothGrad,
    "integrated_gradients": IntegratedGradients,
}
