"""What the viewer holds for one slice of a volume, and a bounded cache of those slices.

A :class:`SliceView` is one slice's inputs (normalised arrays and the tensors the models
take) and, per model opened on it, its :class:`~fusevis.viewer.hover.ModelSession` (the
fused slice and a prepared :class:`~fusevis.saliency.PixelJacobian`, whose record makes
every hover a backward sweep). :class:`SliceCache` keeps the most recently used views
within a memory budget (least recently used first out), so paging back and forth through
a volume never recomputes a recent slice, and a long session never grows without bound.
:class:`FusedSlices` keeps fused slices computed ahead of the page (the whole axis in view,
while the viewer is otherwise idle), so that a jump across the volume paints at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import torch

from fusevis.io import ImageSet
from fusevis.viewer.hover import ModelSession

DEFAULT_BUDGET_BYTES = 512 * 2**20  # slices kept in memory: inputs, fused, records
MAX_VIEWS = 64  # and never more views than this, however small


@dataclass
class SliceView:
    """One slice (or the 2-D image set) as the viewer shows it.

    Attributes
    ----------
    key : hashable
        ``(axis, index)`` of a volume's slice; None for a 2-D image set.
    image_set : ImageSet
        The slice's inputs as read and normalised.
    tensors : tuple of torch.Tensor
        The inputs as the models take them, (1, C, H, W) each.
    inputs : list of numpy.ndarray
        The inputs as the page shows them, (H, W) in [0, 1].
    sessions : dict of str to ModelSession
        The models opened on this slice so far (fused slice, prepared Jacobian).
    """

    key: Hashable
    image_set: ImageSet
    tensors: tuple[torch.Tensor, ...]
    inputs: list[np.ndarray]
    sessions: dict[str, ModelSession] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """The slice's (H, W)."""
        return int(self.tensors[0].shape[-2]), int(self.tensors[0].shape[-1])

    @property
    def nbytes(self) -> int:
        """Bytes this view holds: inputs, tensors, fused slices and the models' records."""
        total = sum(x.nbytes for x in self.inputs)
        total += sum(t.element_size() * t.nelement() for t in self.tensors)
        for session in self.sessions.values():
            total += session.fused.nbytes + session.jacobian.record_bytes
        return total


class SliceCache:
    """The most recently used slice views, within ``budget_bytes`` and ``max_views``.

    Thread-safe. A view put or got moves to the back; the least recently used ones are
    dropped while the views together hold more than the budget (the latest one always
    stays, whatever its size) or number more than ``max_views``.
    """

    def __init__(
        self, budget_bytes: int = DEFAULT_BUDGET_BYTES, max_views: int = MAX_VIEWS
    ) -> None:
        self.budget_bytes = int(budget_bytes)
        self.max_views = max(1, int(max_views))
        self._views: OrderedDict[Hashable, SliceView] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._views)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._views

    @property
    def keys(self) -> list[Hashable]:
        """The cached keys, least recently used first."""
        with self._lock:
            return list(self._views)

    @property
    def nbytes(self) -> int:
        """Bytes the cached views hold together."""
        with self._lock:
            return sum(view.nbytes for view in self._views.values())

    def get(self, key: Hashable) -> SliceView | None:
        """The view of ``key`` (now the most recently used), or None."""
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
            return view

    def peek(self, key: Hashable) -> SliceView | None:
        """The view of ``key`` without making it recently used."""
        with self._lock:
            return self._views.get(key)

    def put(self, view: SliceView) -> None:
        """Keep ``view`` (again, after models were opened on it) and apply the bounds."""
        with self._lock:
            self._views[view.key] = view
            self._views.move_to_end(view.key)
            self._trim()

    def _trim(self) -> None:
        while len(self._views) > self.max_views:
            self._views.popitem(last=False)
        sizes = {key: view.nbytes for key, view in self._views.items()}
        total = sum(sizes.values())
        while total > self.budget_bytes and len(self._views) > 1:
            key, _ = self._views.popitem(last=False)
            total -= sizes[key]


DEFAULT_FUSED_BUDGET_BYTES = 256 * 2**20  # fused slices computed ahead (a float32 256² is 256 KiB)
FusedKey = tuple[Hashable, str]  # (slice key, model name)


class FusedSlices:
    """Fused slices computed ahead of the page (:meth:`ViewerData.sweep`), within a budget.

    Only the (H, W) fused arrays: a slice opened from here is painted at once and its
    hovers take the cone (no record is made). Thread-safe; least recently used first out.
    """

    def __init__(self, budget_bytes: int = DEFAULT_FUSED_BUDGET_BYTES) -> None:
        self.budget_bytes = int(budget_bytes)
        self._arrays: OrderedDict[FusedKey, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._arrays)

    def __contains__(self, key: FusedKey) -> bool:
        with self._lock:
            return key in self._arrays

    @property
    def nbytes(self) -> int:
        """Bytes the arrays hold together."""
        with self._lock:
            return self._nbytes

    def get(self, key: FusedKey) -> np.ndarray | None:
        """The fused slice of ``(slice key, model)``, now the most recently used, or None."""
        with self._lock:
            array = self._arrays.get(key)
            if array is not None:
                self._arrays.move_to_end(key)
            return array

    def put(self, key: FusedKey, fused: np.ndarray) -> bool:
        """Keep ``fused``; False (and nothing kept) when it alone exceeds the budget."""
        if fused.nbytes > self.budget_bytes:
            return False
        with self._lock:
            old = self._arrays.pop(key, None)
            self._nbytes -= 0 if old is None else old.nbytes
            self._arrays[key] = fused
            self._nbytes += fused.nbytes
            while self._nbytes > self.budget_bytes:
                _, dropped = self._arrays.popitem(last=False)
                self._nbytes -= dropped.nbytes
            return True

    def full(self, adding: int) -> bool:
        """Whether ``adding`` more bytes would push out a slice already held."""
        with self._lock:
            return self._nbytes + adding > self.budget_bytes
