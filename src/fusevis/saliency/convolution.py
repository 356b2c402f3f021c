"""Convolutions over a pixel's window: the two CPU backends, chosen per call.

For the small windows of one pixel's cone, PyTorch's own im2col convolution is often
faster than oneDNN's (measured: DeepFuse 2.6 → 2.0 ms per pixel), for wide 3×3 layers it
is slower (DeepPedestrian 5.0 → 5.7 ms); :class:`~fusevis.saliency.PixelJacobian` times
both once per model. The choice is made per call, by calling the im2col kernels
(``thnn_conv2d``, ``slow_conv_dilated2d``) directly — the kernels PyTorch itself runs when
``torch.backends.mkldnn.enabled`` is off — so no global switch is ever flipped and other
threads' convolutions are untouched. Their autograd formulas are PyTorch's own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

Convolve = Callable[..., torch.Tensor]  # functional.conv2d's signature

BACKENDS = ("onednn", "im2col")


def im2col_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: tuple[int, int] | int = 1,
    padding: tuple[int, int] | int = 0,
    dilation: tuple[int, int] | int = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``functional.conv2d`` by PyTorch's im2col kernels, whatever the oneDNN switch says.

    Bit for bit what ``functional.conv2d`` computes on the CPU with
    ``torch.backends.mkldnn.enabled = False``, and for ``groups == 1`` its gradient too
    (groups are run one after the other, as PyTorch does for these kernels; their float32
    gradient can differ from PyTorch's in the last bits, as it sums in another order).
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    kernel = (int(weight.shape[-2]), int(weight.shape[-1]))
    if groups == 1:
        return _im2col(x, weight, kernel, bias, stride, padding, dilation)
    # as PyTorch does: both operands in one layout (channels-last if either is), then groups
    layout = (
        torch.channels_last
        if x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
        or weight.is_contiguous(memory_format=torch.channels_last)
        and not weight.is_contiguous()
        else torch.contiguous_format
    )
    x, weight = x.contiguous(memory_format=layout), weight.contiguous(memory_format=layout)
    inputs_per_group = x.shape[1] // groups
    outputs_per_group = weight.shape[0] // groups
    parts = []
    for g in range(groups):
        part = _im2col(
            x.narrow(1, g * inputs_per_group, inputs_per_group).contiguous(memory_format=layout),
            weight.narrow(0, g * outputs_per_group, outputs_per_group).contiguous(
                memory_format=layout
            ),
            kernel,
            None if bias is None else bias.narrow(0, g * outputs_per_group, outputs_per_group),
            stride,
            padding,
            dilation,
        )
        parts.append(part)
    return torch.cat(parts, 1)


def _im2col(
    x: torch.Tensor,
    weight: torch.Tensor,
    kernel: tuple[int, int],
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    if dilation == (1, 1):
        return torch._C._nn.thnn_conv2d(x, weight, kernel, bias, stride, padding)
    return torch._C._nn.slow_conv_dilated2d(x, weight, kernel, bias, stride, padding, dilation)


def _pair(value: tuple[int, ...] | int) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def convolve_with(backend: str) -> Convolve:
    """The convolution function of a backend: ``"onednn"`` or ``"im2col"``.

    ``"onednn"`` is PyTorch's own dispatch (oneDNN where it applies and
    ``torch.backends.mkldnn.enabled`` allows it), ``"im2col"`` PyTorch's im2col kernels.
    """
    if backend == "im2col":
        return im2col_conv2d
    if backend == "onednn":
        return functional.conv2d
    raise ValueError(f"unknown convolution backend {backend!r}; use {' or '.join(BACKENDS)}")


def backends_to_time(dtype: torch.dtype, device: torch.device | str) -> tuple[str, ...]:
    """The backends worth timing for tensors of ``dtype`` on ``device``.

    Both for float32 on a CPU where oneDNN is available and enabled; PyTorch's own
    dispatch alone otherwise (oneDNN does not convolve float64, and GPUs have their own).
    """
    usable = (
        torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and dtype == torch.float32
        and torch.device(device).type == "cpu"
    )
    return BACKENDS if usable else ("onednn",)


class ConvWeights:
    """Convolution weights in channels-last layout, copied once per weight version.

    Channels-last weights make every activation of a cone channels-last, which oneDNN
    convolves about 15 % faster on these small windows; the copies are detached (only input
    gradients are wanted) and re-made whenever a weight changes (address, version, dtype
    or device).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bool], tuple[tuple, torch.Tensor]] = {}

    def get(self, name: str, conv: nn.Conv2d, adjoint: bool = False) -> torch.Tensor:
        """The weight of ``conv`` (module path ``name``); with ``adjoint``, its adjoint's.

        The adjoint convolution's weight has input and output channels swapped within each
        group and the kernel flipped, so that a 'full' convolution with it sends an output
        gradient back to the input.
        """
        weight = conv.weight
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cached = self._cache.get((name, adjoint))
        if cached is None or cached[0] != key:
            value = weight.detach()
            if adjoint:
                out_channels, in_per_group, *kernel = value.shape
                groups = conv.groups
                value = (
                    value.reshape(groups, out_channels // groups, in_per_group, *kernel)
                    .transpose(1, 2)
                    .reshape(groups * in_per_group, out_channels // groups, *kernel)
                    .flip(-2, -1)
                )
            cached = (key, value.contiguous(memory_format=torch.channels_last))
            self._cache[(name, adjoint)] = cached
        return cached[1]
