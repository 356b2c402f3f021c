"""The attribution methods: the Jacobian row and others, for a fused pixel or a region.

:data:`METHODS` names them all. Each class is built once with the model (and the output
channel) and explains a target by ``attribute(inputs, pixel=(row, col))`` — tensors shaped
like the inputs, zero outside the target's field — or by ``explain(...)``, which returns an
:class:`~fusevis.saliency.explanation.Explanation` (the values over their window, the
window, the strategy and the field). Besides :class:`~fusevis.saliency.PixelJacobian`, the
methods here also take ``region=mask``, whose target is the sum of its fused pixels.
Because the target depends only on the inputs inside its field, every method runs on the
field's crop and gives exactly what it would give on the whole image (noise and baselines
are drawn for the whole image, then cropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from fusevis.errors import InputError
from fusevis.saliency.crop import KeptForward, cut_inputs
from fusevis.saliency.explanation import Explanation
from fusevis.saliency.field import Window, field_window
from fusevis.saliency.inputs import as_input_tuple, check_pixel, image_shape
from fusevis.saliency.jacobian import PixelJacobian
from fusevis.saliency.locality import Locality
from fusevis.saliency.outputs import OutputChannel
from fusevis.saliency.precision import without_tf32
from fusevis.saliency.switches import frozen_parameters


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

    name: ClassVar[str] = ""

    def __init__(self, model: nn.Module, output_channel: OutputChannel = 0) -> None:
        self.model = model
        self.output_channel = output_channel
        self._jacobian = PixelJacobian(model, output_channel)  # its analysis, per input size

    @staticmethod
    def _window(locality: Locality, mask: torch.Tensor) -> Window:
        shape = tuple(mask.shape)
        if not locality.local:
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
        kept = KeptForward(self.model, crops, self.output_channel)
        target = (kept.output[0] * local_mask.to(kept.output.dtype)).sum()
        grads = kept.along(target, keep=False)
        return tuple(
            torch.zeros_like(c) if g is None else g for g, c in zip(grads, kept.leaves, strict=True)
        )

    @without_tf32
    def explain(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        pixel: tuple[int, int] | None = None,
        region: np.ndarray | torch.Tensor | None = None,
    ) -> Explanation:
        """Attribution of the target to every input pixel, over the target's window."""
        items = as_input_tuple(inputs)
        shape = image_shape(items)
        mask = region_mask(shape, pixel, region)
        locality = self._jacobian.locality(items)
        window = self._window(locality, mask)
        rows, cols = window.as_slices()
        with frozen_parameters(self.model), torch.enable_grad():
            local = self._attributecut_inputs(items, window, mask[rows, cols].to(items[0].device))
        return Explanation(
            tuple((window, value[0].detach()) for value in local),
            window,
            "crop" if locality.local else "full",
            locality.field,
            shape,
            tuple(int(x.shape[1]) for x in items),
            items[0].dtype,
            items[0].device,
            None if pixel is None else check_pixel(pixel, shape),
            self.name,
        )

    @without_tf32
    def attribute(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        pixel: tuple[int, int] | None = None,
        region: np.ndarray | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Attribution of the target to every input pixel, one tensor per input."""
        return self.explain(inputs, pixel, region).dense()

    def _attributecut_inputs(
        self, items: tuple[torch.Tensor, ...], window: Window, local_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


class Gradient(CropAttribution):
    """The plain gradient ∂target/∂x_k (for one pixel: its Jacobian row)."""

    name = "gradient"

    def _attributecut_inputs(self, items, window, local_mask):  # noqa: ANN001, ANN202, D102
        return self._gradients(cut_inputs(items, window), local_mask)


class GradientTimesInput(CropAttribution):
    """Gradient × input."""

    name = "gradient_x_input"

    def _attributecut_inputs(self, items, window, local_mask):  # noqa: ANN001, ANN202, D102
        crops = cut_inputs(items, window)
        return tuple(g * c for g, c in zip(self._gradients(crops, local_mask), crops, strict=True))


class SmoothGrad(CropAttribution):
    """Mean gradient over ``samples`` copies of the inputs with Gaussian noise.

    The noise's standard deviation is ``sigma`` × (max − min) of each input; ``seed`` makes
    it reproducible.
    """

    name = "smoothgrad"

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

    def _attributecut_inputs(self, items, window, local_mask):  # noqa: ANN001, ANN202, D102
        generator = torch.Generator().manual_seed(self.seed)
        total = [torch.zeros_like(c) for c in cut_inputs(items, window)]
        for _ in range(self.samples):
            noisy = []
            for x in items:
                spread = float(x.max() - x.min()) or 1.0
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
                noisy.append(x + self.sigma * spread * noise.to(x.device))
            for acc, g in zip(
                total, self._gradients(cut_inputs(noisy, window), local_mask), strict=True
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

    name = "integrated_gradients"

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

    def _attributecut_inputs(self, items, window, local_mask):  # noqa: ANN001, ANN202, D102
        crops = cut_inputs(items, window)
        bases = cut_inputs(self.baselines(items), window)
        total = [torch.zeros_like(c) for c in crops]
        for step in range(self.steps):
            alpha = (step + 0.5) / self.steps
            points = [b + alpha * (c - b) for c, b in zip(crops, bases, strict=True)]
            for acc, g in zip(total, self._gradients(points, local_mask), strict=True):
                acc += g
        return tuple((c - b) * t / self.steps for c, b, t in zip(crops, bases, total, strict=True))


METHODS: dict[str, type[PixelJacobian] | type[CropAttribution]] = {
    method.name: method
    for method in (PixelJacobian, Gradient, GradientTimesInput, SmoothGrad, IntegratedGradients)
}
