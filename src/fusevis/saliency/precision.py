"""Full float32 precision on CUDA while saliency is computed (no TF32).

PyTorch lets cuDNN convolutions use TF32 by default: float32 inputs rounded to a 10-bit
mantissa inside the convolution. For a fused image that is harmless; for a Jacobian it is
not: the rounding moves values by about 1e-3 relative, which flips the branch a ReLU, a max
or a max-pool takes wherever two candidates are that close, and a flipped branch sends the
whole gradient elsewhere. Measured on an H100 (docs/gpu.md): the shipped 3-D network's
guidance volumes differed from the CPU's by up to 22 % of their largest value with TF32, and
by 6e-7 without. Every entry point of the engine therefore runs under :func:`exact_float32`,
which turns TF32 off for the duration and restores the user's settings afterwards (the
last of several concurrent computations to finish restores them).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch

_lock = threading.Lock()
_active = 0
_saved: tuple[bool, bool] = (False, False)

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def exact_float32() -> Iterator[None]:
    """Run the block with TF32 off for cuDNN convolutions and CUDA matrix products."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = _saved


def without_tf32(function: Callable[P, R]) -> Callable[P, R]:
    """Decorate ``function`` to run under :func:`exact_float32`."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with exact_float32():
            return function(*args, **kwargs)

    return wrapper
