"""Which output of the fusion network is explained: one channel, or the luminance of RGB."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fusevis.errors import ModelError
from fusevis.models.inference import run_model

OutputChannel = int | str  # an index, or "luminance" for RGB outputs

LUMA = (0.299, 0.587, 0.114)


def select_output(output: torch.Tensor, channel: OutputChannel) -> torch.Tensor:
    """Reduce a (B, C, H, W) output to the (B, H, W) image whose saliency is wanted."""
    if channel == "luminance":
        if output.shape[1] == 1:
            return output[:, 0]
        if output.shape[1] != 3:
            raise ModelError(f"luminance needs a 1- or 3-channel output, got {output.shape[1]}")
        weights = torch.tensor(LUMA, dtype=output.dtype, device=output.device)
        return (output * weights[None, :, None, None]).sum(dim=1)
    if not isinstance(channel, int) or not 0 <= channel < output.shape[1]:
        raise ModelError(
            f"output channel {channel!r} does not exist "
            f"(the model returns {output.shape[1]} channels)"
        )
    return output[:, channel]


def forward_selected(
    model: nn.Module, inputs: Sequence[torch.Tensor], channel: OutputChannel
) -> torch.Tensor:
    """Run the model (with its shape checks) and select the output channel."""
    return select_output(run_model(model, list(inputs)), channel)
