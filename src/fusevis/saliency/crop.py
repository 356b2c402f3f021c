"""Gradients of the network run on a window of the inputs (the whole image is one window).

The one way every autograd-based part of the engine computes a Jacobian row or a weighted
sum of rows: the crop strategy (a receptive-field crop per pixel), the full-image strategy
and the per-pixel loop of non-local maps (one kept full-image forward, one backward pass per
pixel), probe colouring (one backward pass per colour), field measurement and
verification, and the attribution methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fusevis.models.inference import run_model
from fusevis.saliency.field import Window
from fusevis.saliency.outputs import OutputChannel, select_output


def cut_inputs(inputs: Sequence[torch.Tensor], window: Window) -> tuple[torch.Tensor, ...]:
    """Every input cut to ``window`` (views)."""
    rows, cols = window.as_slices()
    return tuple(x[..., rows, cols] for x in inputs)


class KeptForward:
    """One forward pass of the model (on crops or whole images), kept for backward passes.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    inputs : sequence of torch.Tensor
        What it runs on, (B, C, h, w) each; detached copies become the leaves.
    channel : int or "luminance"
        Which output is differentiated.

    Attributes
    ----------
    leaves : tuple of torch.Tensor
        The inputs as leaves requiring grad.
    output : torch.Tensor
        The selected (B, h, w) output.
    full_output : torch.Tensor
        The model's whole (B, C, h, w) output, detached.
    """

    def __init__(
        self, model: nn.Module, inputs: Sequence[torch.Tensor], channel: OutputChannel
    ) -> None:
        self.leaves = tuple(x.detach().requires_grad_(True) for x in inputs)
        with torch.enable_grad():
            full = run_model(model, list(self.leaves))
            self.output = select_output(full, channel)
        self.full_output = full.detach()

    def along(
        self, target: torch.Tensor, probe: torch.Tensor | None = None, keep: bool = True
    ) -> tuple[torch.Tensor | None, ...]:
        """Gradients of ``target`` (a function of :attr:`output`, weighted by ``probe``).

        None for an input the target does not depend on. ``keep`` keeps the forward for
        further passes.
        """
        return torch.autograd.grad(target, self.leaves, probe, retain_graph=keep, allow_unused=True)

    def at(self, pixel: tuple[int, int], batch: int = 0) -> tuple[torch.Tensor | None, ...]:
        """The Jacobian row of one output pixel (of batch element ``batch``), per input."""
        return self.along(self.output[batch, pixel[0], pixel[1]])

    def probed(self, probe: torch.Tensor, keep: bool = True) -> tuple[torch.Tensor | None, ...]:
        """Σ_p probe(p) × the Jacobian row of p: one backward pass."""
        return self.along(self.output, probe, keep)


def crop_rows(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    pixel: tuple[int, int],
    window: Window,
    channel: OutputChannel,
) -> list[torch.Tensor]:
    """Jacobian row of ``pixel`` computed on the crop ``window``, as (C, h, w) per input.

    An input the pixel does not depend on gets zeros.
    """
    kept = KeptForward(model, cut_inputs(inputs, window), channel)
    grads = kept.along(kept.output[0, pixel[0] - window.top, pixel[1] - window.left], keep=False)
    return [
        torch.zeros_like(leaf[0]) if g is None else g[0]
        for g, leaf in zip(grads, kept.leaves, strict=True)
    ]
