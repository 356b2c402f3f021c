"""The saliency tests' zoo: every network as a :class:`Case` (model, inputs, output) and its
float64 reference Jacobian (``torch.autograd.functional.jacobian``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fusevis.models import DeepFuse, DeepPedestrian, FunFuseAn, MaskNet, WeightedAverage

from . import networks


@dataclass
class Case:
    name: str
    model: nn.Module
    inputs: tuple[torch.Tensor, ...]
    output_channel: object = 0
    local: bool = True


def _randomise_batchnorm(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def make_case(name: str, size: tuple[int, int] | None = None) -> Case:
    torch.manual_seed(0)
    builders = {
        "FunFuseAn": (FunFuseAn, (28, 30), 2, 1),
        "MaskNet": (MaskNet, (22, 20), 2, 1),
        "DeepFuse": (DeepFuse, (30, 28), 2, 1),
        "DeepPedestrian": (DeepPedestrian, (38, 37), 2, 1),
        "WeightedAverage": (WeightedAverage, (12, 14), 2, 1),
        "Dilated": (networks.DilatedNet, (30, 31), 2, 1),
        "EncoderDecoder": (networks.EncoderDecoder, (64, 60), 2, 1),
        "ThreeInputs": (networks.ThreeInputs, (16, 18), 3, 1),
        "Colour": (networks.ColourNet, (12, 13), 2, 3),
        "Denoiser": (networks.Denoiser, (14, 12), 1, 1),
        "DataDependent": (networks.DataDependent, (18, 20), 2, 1),
        "GlobalPool": (networks.GlobalPoolNet, (10, 11), 2, 1),
        "SelfAttention": (networks.SelfAttentionNet, (8, 9), 2, 1),
    }
    builder, default_size, count, channels = builders[name]
    model = builder()
    _randomise_batchnorm(model)
    model = model.double().eval()
    height, width = size or default_size
    generator = torch.Generator().manual_seed(1)
    inputs = tuple(
        torch.rand(1, channels, height, width, generator=generator, dtype=torch.float64)
        for _ in range(count)
    )
    if name == "FunFuseAn":  # keep h1 + h2 away from 0 so float64 stays well conditioned
        inputs = tuple(x * 0.5 + 0.5 for x in inputs)
    channel = "luminance" if name == "Colour" else 0
    return Case(name, model, inputs, channel, local=name not in ("GlobalPool", "SelfAttention"))


LOCAL = [
    "FunFuseAn",
    "MaskNet",
    "DeepFuse",
    "DeepPedestrian",
    "WeightedAverage",
    "Dilated",
    "EncoderDecoder",
    "ThreeInputs",
    "Colour",
    "Denoiser",
    "DataDependent",
]
NONLOCAL = ["GlobalPool", "SelfAttention"]
ALL = LOCAL + NONLOCAL


def selected(output: torch.Tensor, channel: object) -> torch.Tensor:
    if channel == "luminance":
        return 0.299 * output[0, 0] + 0.587 * output[0, 1] + 0.114 * output[0, 2]
    return output[0, int(channel)]


def reference_jacobian(case: Case) -> tuple[torch.Tensor, ...]:
    """torch.autograd.functional.jacobian of the selected output: (H, W, C, H, W) per input."""

    def fused(*xs: torch.Tensor) -> torch.Tensor:
        return selected(case.model(*xs), case.output_channel)

    pixels = case.inputs[0].shape[-1] * case.inputs[0].shape[-2]
    # vectorised (vmap) Jacobians hold every output's backward at once: only for small ones
    jac = torch.autograd.functional.jacobian(fused, case.inputs, vectorize=pixels <= 400)
    return tuple(j[:, :, 0] for j in jac)


class ReferenceRows:
    """Float64 Jacobian rows of a case by full-image autograd, computed when first asked for.

    One forward pass, then one ``autograd.grad`` per pixel: for the tests that need a few
    rows, not the whole Jacobian (DeepPedestrian's took minutes on the 2-core CI machine).
    ``rows(pixel)`` is, per input, the (C, H, W) row of the selected output at ``pixel``.
    """

    def __init__(self, case: Case) -> None:
        self._leaves = tuple(x.clone().requires_grad_(True) for x in case.inputs)
        self._fused = selected(case.model(*self._leaves), case.output_channel)
        self._rows: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}

    def __call__(self, pixel: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        pixel = (int(pixel[0]), int(pixel[1]))
        if pixel not in self._rows:
            grads = torch.autograd.grad(
                self._fused[pixel], self._leaves, retain_graph=True, allow_unused=True
            )
            self._rows[pixel] = tuple(
                torch.zeros_like(x[0]) if g is None else g[0]
                for g, x in zip(grads, self._leaves, strict=True)
            )
        return self._rows[pixel]


_ROWS: dict[str, tuple[Case, ReferenceRows]] = {}


def case_and_rows(name: str) -> tuple[Case, ReferenceRows]:
    """The case ``name`` and its reference rows (one per process, like the Jacobians)."""
    if name not in _ROWS:
        case = make_case(name)
        _ROWS[name] = (case, ReferenceRows(case))
    return _ROWS[name]


_CACHE: dict[str, tuple[Case, tuple[torch.Tensor, ...]]] = {}


# influence needs field-width² passes: in float64 the biggest paper fields take minutes,
# so MaskNet stands for the paper networks there
INFLUENCE = [n for n in ALL if n not in ("DeepPedestrian", "DeepFuse", "FunFuseAn")]


def case_and_reference(name: str) -> tuple[Case, tuple[torch.Tensor, ...]]:
    if name not in _CACHE:
        case = make_case(name)
        _CACHE[name] = (case, reference_jacobian(case))
    return _CACHE[name]
