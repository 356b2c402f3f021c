"""The hover engine: every per-pixel computation of the viewer, on one thread.

A :class:`HoverEngine` holds the models (one :class:`ModelSession` each: the fused image,
a prepared :class:`~fusevis.saliency.PixelJacobian`) and computes, for a fused pixel, each
model's Jacobian rows over the pixel's receptive-field window. All of it runs on a single
thread (:meth:`HoverEngine.submit`): the models are not shared between threads, and the
background map worker (:mod:`fusevis.viewer.scheduler`) works on copies of them and asks
:meth:`HoverEngine.busy` when to step aside.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fusevis.errors import FuseVisError
from fusevis.models.inference import check_input_count
from fusevis.saliency import PixelJacobian
from fusevis.saliency.inputs import check_pixel
from fusevis.saliency.outputs import forward_selected, select_output
from fusevis.saliency.switches import flushed_denormals

QUIET_AFTER_HOVER_S = 0.3


@dataclass
class ModelSession:
    """One model on the image set, as the hover engine holds it.

    Attributes
    ----------
    name : str
        The display name (panel titles, frame keys).
    model : nn.Module
        The network (used on the engine thread only).
    fused : numpy.ndarray
        Its (H, W) fused image.
    jacobian : PixelJacobian
        Prepared on the image set: each hover is a backward sweep where that is fastest.
    radius : int
        The receptive-field radius (0 also for a model that is not local).
    local : bool
        Whether each fused pixel depends on a bounded window of the inputs (False: on the
        whole image, so every hover and every map pass is a full-image backward pass).
    strategy : str
        How the latest hover's rows were computed (``"recorded"``, ``"cone"``, ``"crop"``
        or ``"full"``).
    pixel_seconds : float
        How long the latest hover of this model took (the page's status line, and the
        prediction of a non-local model's maps: one such pass per pixel).
    complete : bool
        False for a session of a model that is not local opened on a fused slice computed
        before (:meth:`HoverEngine.open_fused`): each hover runs a full-image forward
        until :meth:`HoverEngine.complete` keeps one.
    """

    name: str
    model: nn.Module
    fused: np.ndarray
    jacobian: PixelJacobian
    radius: int = 0
    local: bool = True
    strategy: str = ""
    pixel_seconds: float = 0.0
    complete: bool = True


class HoverEngine:
    """Per-pixel Jacobian windows of several models on one image set, on one thread.

    Parameters
    ----------
    tensors : sequence of torch.Tensor
        The N inputs, (1, C, H, W) each, as the models take them.
    models : dict of str to nn.Module
        The networks by display name.
    opened : dict of str to ModelSession, optional
        Sessions of some of ``models`` opened elsewhere (3-D networks on volumes, see
        :mod:`fusevis.viewer.volume3d`), kept as given.

    Raises
    ------
    ModelError
        A model that takes another number of inputs or returns the wrong shape.
    """

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        models: dict[str, nn.Module],
        opened: dict[str, ModelSession] | None = None,
    ) -> None:
        if not models:
            raise FuseVisError("the viewer needs at least one model")
        self.tensors = tuple(tensors)
        self.shape = (int(self.tensors[0].shape[-2]), int(self.tensors[0].shape[-1]))
        for model in models.values():
            check_input_count(model, len(self.tensors))
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="fusevis-hover")
        self._lock = threading.Lock()
        self._running = 0
        self._last_active = 0.0
        self.sessions: dict[str, ModelSession] = {}
        try:
            for name, model in models.items():
                if opened and name in opened:
                    self.sessions[name] = opened[name]
                    continue
                self.sessions[name] = self.submit(self._open, name, model.eval()).result()
        except BaseException:
            self._thread.shutdown(wait=False)
            raise

    def submit(self, function: Callable[..., Any], *args: Any) -> Future:
        """Run ``function(*args)`` on the engine thread (the only thread that uses the models)."""
        return self._thread.submit(self._timed, function, *args)

    def _timed(self, function: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            self._running += 1
        try:
            return function(*args)
        finally:
            with self._lock:
                self._running -= 1
                self._last_active = time.monotonic()

    def busy(self, quiet_s: float = QUIET_AFTER_HOVER_S) -> bool:
        """True while a pixel is computed, or finished less than ``quiet_s`` ago.

        The map worker steps aside while this holds, so that hovering stays fast.
        """
        with self._lock:
            return self._running > 0 or time.monotonic() - self._last_active < quiet_s

    def _open(self, name: str, model: nn.Module) -> ModelSession:
        jacobian = PixelJacobian(model)
        # one full-image forward gives the fused image and the record that makes every
        # hover a backward sweep only; the first pixel then picks the fastest way
        output = jacobian.prepare(self.tensors)  # checks the output's shape (ModelError)
        fused = select_output(output, 0)[0].detach().numpy().astype(np.float32)
        centre = (self.shape[0] // 2, self.shape[1] // 2)
        found = jacobian.explain(self.tensors, centre)
        local = jacobian.locality(self.tensors).local
        radius = int(found.field.radius) if found.field is not None else 0
        session = ModelSession(name, model, fused, jacobian, radius, local, found.strategy)
        if not local:
            # the first call analysed the model; a second one times a hover, which predicts
            # the maps of a model that is not local (one such pass per pixel)
            began = time.perf_counter()
            jacobian.explain(self.tensors, (0, 0))
            session.pixel_seconds = time.perf_counter() - began
        return session

    def open_on(self, name: str, tensors: Sequence[torch.Tensor]) -> ModelSession:
        """Model ``name`` on other inputs of the same model (a volume's slice); engine thread.

        A local model is only run forward (:meth:`open_fused`): its hovers on the slice
        take the cone, exact and a few ms, even where the record was faster on the first
        slice — a record's forward pass costs more than a plain one (the derivative maps of
        its element-wise layers) and cannot be interrupted when the page moves on. A model
        that is not local gets a sibling of the first slice's :class:`PixelJacobian`
        (:meth:`PixelJacobian.sibling`: the model's analysis shared) prepared on the slice:
        its hovers want the kept forward (or the low-rank decomposition).
        """
        base = self.sessions[name]
        if base.local:
            return self.open_fused(name, self.fused_of(name, tensors))
        jacobian = base.jacobian.sibling()
        output = select_output(jacobian.prepare(tuple(tensors)), 0)
        fused = output[0].detach().numpy().astype(np.float32)
        return self._session_like(base, fused, jacobian, complete=True)

    def fused_of(self, name: str, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        """Model ``name``'s fused image of other inputs (a slice): one plain forward."""
        with torch.no_grad(), flushed_denormals():
            output = forward_selected(self.sessions[name].model, tuple(tensors), 0)
        return output[0].detach().numpy().astype(np.float32)

    def open_fused(self, name: str, fused: np.ndarray) -> ModelSession:
        """Model ``name`` on a slice whose fused image ``fused`` was computed before.

        Nothing runs: the session's Jacobian is unprepared. A local model's hovers take
        the cone (or the crop), exact and a few ms even where a record was faster: not
        recording spares a forward pass, which cannot be interrupted, and its memory. A
        model that is not local wants its full-image forward kept (:meth:`complete`).
        """
        base = self.sessions[name]
        complete = base.local
        return self._session_like(base, fused, base.jacobian.sibling(), complete)

    def complete(self, session: ModelSession, tensors: Sequence[torch.Tensor]) -> bool:
        """Keep the full-image forward an incomplete session's hovers want (False: kept)."""
        if session.complete:
            return False
        session.jacobian.prepare(tuple(tensors))
        session.complete = True
        return True

    @staticmethod
    def _session_like(
        base: ModelSession, fused: np.ndarray, jacobian: PixelJacobian, complete: bool
    ) -> ModelSession:
        return ModelSession(
            base.name,
            base.model,
            fused,
            jacobian,
            base.radius,
            base.local,
            base.strategy,
            base.pixel_seconds,
            complete,
        )

    def pixel_frame(
        self,
        names: Sequence[str],
        pixel: tuple[int, int],
        superseded: Callable[[], bool] | None = None,
        tensors: Sequence[torch.Tensor] | None = None,
        sessions: dict[str, ModelSession] | None = None,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """Header and arrays of one hover answer: per model, the Jacobian window.

        Must run on the engine thread (see :meth:`submit`). ``superseded`` is asked between
        models; when it says a newer pixel is wanted, the answer is dropped (None) so that
        the engine moves on to that pixel instead of finishing a stale one. ``tensors`` and
        ``sessions`` name another slice's inputs and models (default: the viewer's own).
        """
        tensors = self.tensors if tensors is None else tuple(tensors)
        sessions = self.sessions if sessions is None else sessions
        shape = (int(tensors[0].shape[-2]), int(tensors[0].shape[-1]))
        row, col = check_pixel(pixel, shape)
        began = time.perf_counter()
        header: dict[str, Any] = {"kind": "pixel", "pixel": [row, col], "models": {}}
        arrays: dict[str, np.ndarray] = {}
        for index, name in enumerate(names):
            if index and superseded is not None and superseded():
                return None
            session = sessions[name]
            start = time.perf_counter()
            found = session.jacobian.explain(tensors, (row, col))
            session.pixel_seconds = time.perf_counter() - start
            session.strategy = found.strategy
            window = found.window
            rows = [c.sum(dim=0).detach().numpy() for c in found.cropped()]
            local = (row - window.top, col - window.left)
            header["models"][name] = {
                "window": [window.top, window.bottom, window.left, window.right],
                "fused": float(session.fused[row, col]),
                "jacobian_at_pixel": [float(r[local]) for r in rows],
                "jacobian_range": float(max(np.abs(r).max() for r in rows)),
                "method": found.strategy,
                "compute_ms": session.pixel_seconds * 1e3,
            }
            for k, values in enumerate(rows):
                arrays[f"{name}/jacobian_{k}"] = values
        header["compute_ms"] = (time.perf_counter() - began) * 1e3
        return header, arrays

    def full_jacobians(
        self,
        name: str,
        pixel: tuple[int, int],
        tensors: Sequence[torch.Tensor] | None = None,
        sessions: dict[str, ModelSession] | None = None,
    ) -> list[np.ndarray]:
        """Image-sized Jacobian rows of one pixel (for exports); engine thread."""
        tensors = self.tensors if tensors is None else tuple(tensors)
        session = (self.sessions if sessions is None else sessions)[name]
        rows = session.jacobian.attribute(tensors, pixel=pixel)
        return [r[0].sum(dim=0).detach().numpy() for r in rows]

    def close(self) -> None:
        """Finish the running pixel and stop the engine thread."""
        self._thread.shutdown(wait=True, cancel_futures=True)
