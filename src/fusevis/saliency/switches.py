"""Settings switched for the duration of a computation, each restored to what it was.

Nothing here changes state that other threads see:

* :func:`frozen_parameters` turns parameter gradients off. The flags belong to the model,
  so threads that use one model share them: the first to enter freezes, the last to leave
  restores, under one lock.
* :func:`flushed_denormals` turns flush-to-zero on. The flag lives in the CPU's control
  register (MXCSR on x86), which is per thread: other threads are not affected, so no lock
  is needed; the value found on entry is restored. (Threads *created* while it is on
  inherit it, as Linux copies the register into a new thread.)
* There is no switch for the convolution backend: :mod:`fusevis.saliency.convolution`
  chooses it per call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

_FROZEN_LOCK = threading.Lock()
_FROZEN: dict[int, list] = {}  # id(model) -> [users, [(parameter, flag found), ...]]


@contextmanager
def frozen_parameters(
    model: nn.Module, parameters: Sequence[torch.Tensor] | None = None
) -> Iterator[None]:
    """Switch off parameter gradients for the duration, restoring each flag afterwards.

    ``parameters`` (the model's, listed once by a caller that runs many times) saves
    walking the module tree on every call. Nested and concurrent uses of one model are
    counted: the flags are restored when the last one ends.
    """
    key = id(model)
    with _FROZEN_LOCK:
        entry = _FROZEN.get(key)
        if entry is None:
            listed = list(model.parameters()) if parameters is None else parameters
            flags = [(p, p.requires_grad) for p in listed]
            for parameter, _ in flags:
                parameter.requires_grad_(False)
            entry = _FROZEN[key] = [0, flags]
        entry[0] += 1
    try:
        yield
    finally:
        with _FROZEN_LOCK:
            entry[0] -= 1
            if entry[0] == 0:
                del _FROZEN[key]
                for parameter, flag in entry[1]:
                    parameter.requires_grad_(flag)


_DENORMAL = np.float32(1e-39)
_TWO = np.float32(2)


def flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero now.

    PyTorch has no getter for the flag, so it is read by computing with a denormal float:
    flushed, 1e-39 × 2 is 0.
    """
    return bool(_DENORMAL * _TWO == 0)


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Flush denormal floats to zero on this thread's CPU for the duration.

    Trained ReLU networks produce values below 1e-38 whose arithmetic is about ten times
    slower on x86 CPUs (measured: DeepPedestrian's per-pixel Jacobian 215 ms → 24 ms).
    Flushing changes results by less than 1e-38. The flag is per thread (see the module's
    notes); whatever it was on entry is restored on exit.
    """
    if flushing_denormals() or not torch.set_flush_denormal(True):
        yield  # already on (a caller's choice, or an enclosing call), or unsupported
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
