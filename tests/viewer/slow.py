"""Networks that are slow on purpose: a hover or a map pass takes as long as a test says.

:class:`SlowAttention` is a global softmax attention over all pixels (not local, and not
low rank: every fused pixel depends on every input pixel through its own weights), so
each hover and each map pass is a full-image backward pass; a backward hook makes each of
those last ``seconds``. :class:`SlowLocal` is a 3x3 convolution whose backward passes
sleep, so its maps take long while its hovers (which never call the module) stay fast.
Both start with ``seconds = 0`` so that the analysis at open is quick; a test then sets
``model.delay.seconds``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from fusevis.io import image_from_array
from fusevis.io.loading import ImageSet


class Delay(nn.Identity):
    """The identity, whose backward pass sleeps ``seconds``."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self.register_full_backward_hook(lambda module, grad_in, grad_out: module.wait())

    def wait(self) -> None:
        if self.seconds:
            time.sleep(self.seconds)


class SlowAttention(nn.Module):
    """F(p) = x1(p)/2 + Σ_q softmax_q(4 x1(p) x2(q)) x2(q): global attention."""

    num_inputs = 2

    def __init__(self) -> None:
        super().__init__()
        self.delay = Delay()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n, c, h, w = a.shape
        query = a.flatten(2).transpose(1, 2)
        weights = torch.softmax(query @ b.flatten(2) * 4.0, dim=-1)
        attended = (weights @ b.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, c, h, w)
        return self.delay(0.5 * a + attended)


class SlowLocal(nn.Module):
    """A 3x3 convolution of both inputs (local: radius 1) with slow backward passes."""

    num_inputs = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 1, 3, padding=1)
        self.delay = Delay()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.delay(self.conv(torch.cat([a, b], dim=1)))


def small_set(size: int = 16, seed: int = 0) -> ImageSet:
    """Two random grey images of ``size`` x ``size``."""
    generator = np.random.default_rng(seed)
    return ImageSet([image_from_array(generator.random((size, size)), f"x{k}") for k in range(2)])
