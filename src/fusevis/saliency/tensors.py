"""Helpers for the tensors the saliency code passes around."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from fusevis.errors import FuseVisError, InputError, ModelError
from fusevis.models.inference import run_model

OutputChannel = int | str  # an index, or "luminance" for RGB outputs

LUMA = (0.299, 0.587, 0.114)


_FINITE_CHECKED: dict[int, tuple[weakref.ref, int]] = {}


def _all_finite(tensor: torch.Tensor) -> bool:
    """``isfinite(tensor).all()``, remembered while the tensor lives and is not modified.

    A viewer asks for many pixels of the same inputs; checking a 1024² pair costs more than
    computing one pixel, so a tensor checked before (same object, same version counter,
    which every in-place change bumps) is not checked again.
    """
    entry = _FINITE_CHECKED.get(id(tensor))
    if entry is not None and entry[0]() is tensor and entry[1] == tensor._version:
        return True
    if not bool(torch.isfinite(tensor).all()):
        return False
    if len(_FINITE_CHECKED) > 256:
        for key in [k for k, (ref, _) in _FINITE_CHECKED.items() if ref() is None]:
            del _FINITE_CHECKED[key]
        if len(_FINITE_CHECKED) > 256:
            _FINITE_CHECKED.clear()
    _FINITE_CHECKED[id(tensor)] = (weakref.ref(tensor), tensor._version)
    return True


def as_input_tuple(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Normalise inputs to a tuple of (1, C, H, W) tensors of one shape (H, W)."""
    items = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    if not items:
        raise InputError(None, "no inputs given")
    shaped = []
    for index, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            raise InputError(f"input {index + 1}", f"expected a tensor, got {type(item).__name__}")
        tensor = item
        while tensor.dim() < 4:
            tensor = tensor.unsqueeze(0)
        if tensor.dim() != 4 or tensor.shape[0] != 1:
            raise InputError(
                f"input {index + 1}",
                f"expected (1, C, H, W), (C, H, W) or (H, W), got {tuple(item.shape)}",
            )
        if not _all_finite(item):
            raise InputError(f"input {index + 1}", "contains NaN or infinite values")
        shaped.append(tensor)
    size = shaped[0].shape[-2:]
    for index, tensor in enumerate(shaped[1:], start=2):
        if tensor.shape[-2:] != size:
            raise InputError(
                f"input {index}",
                f"size {tuple(tensor.shape[-2:])} differs from input 1 {tuple(size)}",
            )
    return tuple(shaped)


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


@contextmanager
def frozen_parameters(
    model: nn.Module, parameters: Sequence[torch.Tensor] | None = None
) -> Iterator[None]:
    """Switch off parameter gradients for the duration, restoring each flag afterwards.

    ``parameters`` (the model's, listed once by a caller that runs many times) saves
    walking the module tree on every call.
    """
    listed = list(model.parameters()) if parameters is None else parameters
    flags = [(p, p.requires_grad) for p in listed]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on the CPU for the duration.

    Trained ReLU networks produce values below 1e-38 whose arithmetic is about ten times
    slower on x86 CPUs (measured: DeepPedestrian's per-pixel Jacobian 215 ms → 24 ms).
    Flushing changes results by less than 1e-38. PyTorch has no getter for the flag; it is
    off by default and switched off again afterwards.
    """
    switched = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if switched:
            torch.set_flush_denormal(False)


_ONEDNN_SWITCH = threading.RLock()


@contextmanager
def onednn_convolutions(enabled: bool) -> Iterator[None]:
    """Let PyTorch use oneDNN (mkldnn) for CPU convolutions, or not, for the duration.

    Forward and backward both read the switch when they run, so it must span both. For the
    small windows of one pixel's cone, PyTorch's own im2col convolution is often faster
    than oneDNN's (measured: DeepFuse 2.6 → 2.0 ms per pixel), for wide 3×3 layers it is
    slower (DeepPedestrian 5.0 → 5.7 ms); :class:`PixelJacobian` times both once.

    The switch is global: a lock keeps two threads from interleaving their switch and
    restore (which could leave it off). Either backend gives the same values up to float
    rounding, so other threads' convolutions stay correct while it is flipped.
    """
    with _ONEDNN_SWITCH:
        before = torch.backends.mkldnn.enabled
        if before == enabled:
            yield
            return
        torch.backends.mkldnn.enabled = enabled
        try:
            yield
        finally:
            torch.backends.mkldnn.enabled = before


def check_pixel(pixel: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """Validate a (row, col) pixel against an image shape."""
    try:
        row, col = int(pixel[0]), int(pixel[1])
    except (TypeError, ValueError, IndexError):
        raise InputError(None, f"pixel must be (row, col), got {pixel!r}") from None
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise InputError(None, f"pixel ({row}, {col}) is outside the {shape[0]}x{shape[1]} image")
    return row, col


class Cancelled(FuseVisError):
    """A long computation was cancelled by its caller."""
