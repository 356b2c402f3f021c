"""Checking the inputs a caller passes, and recognising them when they come again."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch

from fusevis.errors import InputError

Pixel = tuple[int, int]


def owner(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor that owns ``tensor``'s memory: its base for a view, itself otherwise."""
    return tensor if tensor._base is None else tensor._base


def layout(tensor: torch.Tensor) -> tuple:
    """Address, shape, strides and version counter: what must not have changed."""
    return (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor._version)


class Stamp:
    """Which tensors something was made from, to tell whether it serves given tensors again.

    Given tensors match when they are the same tensors (or views of the same bases: inputs
    reshaped by :func:`as_input_tuple` are new views on every call) with the same layout
    and version counter, which every in-place change bumps; a freed tensor whose memory
    was reused does not match. The tensors are not kept alive.
    """

    __slots__ = ("layouts", "owners")

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        self.owners = tuple(weakref.ref(owner(x)) for x in tensors)
        self.layouts = tuple(layout(x) for x in tensors)

    def matches(self, tensors: Sequence[torch.Tensor]) -> bool:
        """Whether ``tensors`` are the stamped tensors, unmodified since."""
        return (
            len(tensors) == len(self.owners)
            and all(ref() is owner(x) for ref, x in zip(self.owners, tensors, strict=True))
            and tuple(layout(x) for x in tensors) == self.layouts
        )


_FINITE: dict[tuple, Stamp] = {}


def _all_finite(tensor: torch.Tensor) -> bool:
    """``isfinite(tensor).all()``, remembered while the tensor lives and is not modified.

    A viewer asks for many pixels of the same inputs; checking a 1024² pair costs more than
    computing one pixel, so a tensor checked before (see :class:`Stamp`) is not checked
    again.
    """
    key = (id(owner(tensor)), *layout(tensor)[:3])
    stamp = _FINITE.get(key)
    if stamp is not None and stamp.matches((tensor,)):
        return True
    if not bool(torch.isfinite(tensor).all()):
        return False
    if len(_FINITE) > 256:
        for old in [k for k, s in _FINITE.items() if s.owners[0]() is None]:
            del _FINITE[old]
        if len(_FINITE) > 256:
            _FINITE.clear()
    _FINITE[key] = Stamp((tensor,))
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


def image_shape(items: Sequence[torch.Tensor]) -> tuple[int, int]:
    """(H, W) of the first input."""
    return int(items[0].shape[-2]), int(items[0].shape[-1])


def check_pixel(pixel: Pixel, shape: tuple[int, int]) -> Pixel:
    """Validate a (row, col) pixel against an image shape."""
    try:
        row, col = int(pixel[0]), int(pixel[1])
    except (TypeError, ValueError, IndexError):
        raise InputError(None, f"pixel must be (row, col), got {pixel!r}") from None
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise InputError(None, f"pixel ({row}, {col}) is outside the {shape[0]}x{shape[1]} image")
    return row, col
