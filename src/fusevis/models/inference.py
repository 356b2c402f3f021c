"""Running a fusion network on an image set."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fusevis.errors import ModelError


def as_tensors(
    arrays: np.ndarray, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> list[torch.Tensor]:
    """Turn an (N, H, W) array into N tensors of shape (1, 1, H, W)."""
    return [torch.as_tensor(a, dtype=dtype, device=device)[None, None] for a in arrays]


def check_input_count(model: nn.Module, count: int) -> None:
    """Raise :class:`ModelError` if ``model`` declares a different number of inputs."""
    expected = getattr(model, "num_inputs", None)
    if expected is not None and expected != count:
        raise ModelError(f"{type(model).__name__} fuses {expected} inputs, got {count}")


def run_model(model: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Call ``model(*inputs)`` and check it returned one (B, C, H, W) image of finite values."""
    check_input_count(model, len(inputs))
    try:
        output = model(*inputs)
    except Exception as error:  # noqa: BLE001 - a user model failing gets one line
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
        raise ModelError(f"{type(model).__name__} failed on inputs {shapes}: {error}") from None
    check_output(model, output, inputs[0])
    return output


def check_output(model: nn.Module, output: object, reference: torch.Tensor) -> None:
    """Raise :class:`ModelError` unless ``output`` is one image shaped like ``reference``."""
    if (
        not isinstance(output, torch.Tensor)
        or output.dim() != 4
        or output.shape[0] != reference.shape[0]
        or output.shape[-2:] != reference.shape[-2:]
    ):
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelError(
            f"{type(model).__name__} returned {got}; a fusion model must return "
            f"(B, C, {reference.shape[-2]}, {reference.shape[-1]}) like its inputs"
        )


@torch.no_grad()
def fuse(model: nn.Module, arrays: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Fuse an (N, H, W) stack of images and return the (H, W) fused image as float32.

    Multi-channel outputs are reduced to their first channel. The raw network output is
    returned (for the paper's networks roughly in [-1, 1]); scale it for display.
    """
    model = model.to(device).eval()
    output = run_model(model, as_tensors(arrays, device))
    fused = output[0, 0].detach().cpu().numpy().astype(np.float32)
    if not np.all(np.isfinite(fused)):
        raise ModelError(f"{type(model).__name__} produced NaN or infinite values")
    return fused


def minmax(image: np.ndarray) -> np.ndarray:
    """Scale an image to [0, 1] (a constant image maps to zeros)."""
    low, high = float(image.min()), float(image.max())
    return ((image - low) / (high - low) if high > low else np.zeros_like(image)).astype(np.float32)
