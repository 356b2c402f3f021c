"""What the viewer computes: fused images, per-pixel Jacobian windows, streamed maps.

A :class:`ViewerData` holds one image set and the models to compare. Per-pixel work runs
on a single engine thread (the models are not shared between threads); guidance and
influence maps are computed on a background thread from deep copies of the models,
through the on-disk cache, and pause while the user is hovering so that hovering stays
fast on a 2-core CPU.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from fusevis.errors import FuseVisError
from fusevis.io import ImageSet
from fusevis.models.inference import as_tensors, check_input_count, minmax
from fusevis.saliency import MapCache, PixelJacobian, cached_maps
from fusevis.saliency.maps import influence_shares
from fusevis.saliency.tensors import Cancelled, check_pixel, select_output

Listener = Callable[[str, str, dict[str, Any]], None]
QUIET_AFTER_HOVER_S = 0.3


@dataclass
class MapProgress:
    """A map computation's state: partial arrays while running, all of them when done."""

    done: int = 0
    total: int = 0
    finished: bool = False
    error: str | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ModelSession:
    """One model on the image set: its fused image, Jacobian engine and map progress."""

    name: str
    model: nn.Module
    fused: np.ndarray
    jacobian: PixelJacobian
    maps: dict[str, MapProgress] = field(default_factory=dict)
    radius: int = 0  # the receptive-field radius (0: the model is computed on the full image)
    strategy: str = ""  # how the last hover's rows were computed (PixelJacobian's strategies)


class ViewerData:
    """An image set, its models, and the work the viewer asks of them.

    Parameters
    ----------
    image_set : ImageSet
        The registered inputs (grey, as the models take them).
    models : dict of str to nn.Module
        The networks to show, by display name (2-4 can be compared side by side).
    cache : MapCache, optional
        Where guidance and influence maps are cached (default: $FUSEVIS_CACHE).
    compute_maps : bool
        Compute the guidance maps of the models in view in the background (False: only on
        request, per-pixel Jacobians only).
    """

    def __init__(
        self,
        image_set: ImageSet,
        models: dict[str, nn.Module],
        cache: MapCache | None = None,
        compute_maps: bool = True,
    ) -> None:
        if not models:
            raise FuseVisError("the viewer needs at least one model")
        self.image_set = image_set
        self.tensors = as_tensors(image_set.stack())
        self.inputs = [minmax(x[0, 0].numpy()) for x in self.tensors]
        self.shape = (int(self.tensors[0].shape[-2]), int(self.tensors[0].shape[-1]))
        self.cache = cache or MapCache()
        self.compute_maps = compute_maps
        for model in models.values():
            check_input_count(model, len(self.tensors))
        self._engine = ThreadPoolExecutor(1, thread_name_prefix="fusevis-engine")
        self.sessions: dict[str, ModelSession] = {}
        try:
            for name, model in models.items():
                self.sessions[name] = self._run(self._open_session, name, model.eval())
        except BaseException:
            self._engine.shutdown(wait=False)
            raise
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._jobs: list[tuple[str, str]] = []
        self._wake = threading.Condition(self._lock)
        self._last_hover = 0.0
        self._closed = False
        self._worker = threading.Thread(target=self._map_worker, name="fusevis-maps", daemon=True)
        self._worker.start()

    # -- per-pixel work ---------------------------------------------------------------
    def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return self._engine.submit(function, *args).result()

    def submit(self, function: Callable[..., Any], *args: Any) -> Future:
        """Run ``function`` on the engine thread (for the server's async handlers)."""
        return self._engine.submit(function, *args)

    def _open_session(self, name: str, model: nn.Module) -> ModelSession:
        jacobian = PixelJacobian(model)
        # one full-image forward gives the fused image and the record that makes every
        # hover a backward sweep only; the first pixel then picks the fastest way
        output = jacobian.prepare(self.tensors)  # checks the output's shape (ModelError)
        fused = select_output(output, 0)[0].detach().numpy().astype(np.float32)
        found = jacobian.explain(self.tensors, (self.shape[0] // 2, self.shape[1] // 2))
        radius = 0 if found.field is None else int(found.field.radius)
        return ModelSession(name, model, fused, jacobian, radius=radius, strategy=found.strategy)

    def pixel_frame(self, names: list[str], pixel: tuple[int, int]) -> tuple[dict, dict]:
        """Header and arrays of one hover answer: per model, the Jacobian window.

        Must run on the engine thread (see :meth:`submit`).
        """
        row, col = check_pixel(pixel, self.shape)
        began = self._last_hover = time.monotonic()
        header: dict[str, Any] = {"kind": "pixel", "pixel": [row, col], "models": {}}
        arrays: dict[str, np.ndarray] = {}
        for name in names:
            session = self.sessions[name]
            found = session.jacobian.explain(self.tensors, (row, col))
            window, crops, session.strategy = found.window, found.cropped(), found.strategy
            rows = [c.sum(dim=0).detach().numpy() for c in crops]
            local = (row - window.top, col - window.left)
            guidance = session.maps.get("guidance", MapProgress()).arrays
            header["models"][name] = {
                "window": [window.top, window.bottom, window.left, window.right],
                "fused": float(session.fused[row, col]),
                "jacobian_at_pixel": [float(r[local]) for r in rows],
                "jacobian_range": float(max(np.abs(r).max() for r in rows)),
                "guidance_at_pixel": [
                    _value_at(guidance.get(f"guidance_{k}"), row, col) for k in range(len(rows))
                ],
                "method": found.strategy,
            }
            for k, values in enumerate(rows):
                arrays[f"{name}/jacobian_{k}"] = values
        self._last_hover = time.monotonic()
        header["compute_ms"] = (self._last_hover - began) * 1e3
        return header, arrays

    def full_jacobians(self, name: str, pixel: tuple[int, int]) -> list[np.ndarray]:
        """Image-sized Jacobian rows of one pixel (for exports); engine thread."""
        rows = self.sessions[name].jacobian.attribute(self.tensors, pixel=pixel)
        return [r[0].sum(dim=0).detach().numpy() for r in rows]

    # -- maps in the background -------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(model, kind, event)`` on map progress (from the worker thread)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def request_maps(self, name: str, kind: str) -> None:
        """Queue the guidance or influence maps of ``name`` (no-op if queued or done)."""
        session = self.sessions[name]
        with self._wake:
            if kind in session.maps or (name, kind) in self._jobs:
                return
            session.maps[kind] = MapProgress()
            self._jobs.append((name, kind))
            self._wake.notify()

    def close(self) -> None:
        """Stop the background worker and the engine thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout=60)  # a running pass finishes, then it stops
        self._engine.shutdown(wait=True, cancel_futures=True)

    def _emit(self, name: str, kind: str, event: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(name, kind, event)

    def _yield_to_hover(self) -> bool:
        """Wait while the user is hovering; True if the viewer is closing."""
        while not self._closed and time.monotonic() - self._last_hover < QUIET_AFTER_HOVER_S:
            time.sleep(0.05)
        return self._closed

    def _map_worker(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                name, kind = self._jobs.pop(0)
            self._compute(name, kind)

    def _compute(self, name: str, kind: str) -> None:
        session = self.sessions[name]
        progress = session.maps[kind]
        model = copy.deepcopy(session.model)

        def report(done: int, total: int) -> None:
            progress.done, progress.total = done, total

        def publish(arrays: dict[str, np.ndarray]) -> None:
            progress.arrays = _display_arrays(arrays, kind)
            self._emit(name, kind, {"partial": True})

        try:
            maps = cached_maps(
                model,
                self.tensors,
                influence=kind == "influence",
                cache=self.cache,
                progress=report,
                cancel=self._yield_to_hover,
                on_partial=publish,
                checkpoint_interval=1.0,
            )
        except Cancelled:
            return
        except Exception as error:  # noqa: BLE001 - reported to the page, never fatal
            progress.error = f"{type(error).__name__}: {error}"
            self._emit(name, kind, {"error": progress.error})
            return
        arrays = {"fused": maps.fused}
        arrays.update({f"guidance_{k}": g for k, g in enumerate(maps.guidance)})
        for k, influence in enumerate(maps.influence or []):
            arrays[f"influence_{k}"] = influence
        progress.arrays = _display_arrays(arrays, kind)
        progress.finished = True
        progress.done = progress.total = max(progress.total, 1)
        self._emit(name, kind, {"finished": True})


def _display_arrays(arrays: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    """The (H, W) float32 maps the page shows: guidance summed over channels, or shares."""
    shown = {}
    for key, value in arrays.items():
        if key.startswith("guidance_"):
            shown[key] = np.asarray(value, np.float32).reshape(-1, *value.shape[-2:]).sum(0)
        elif key.startswith("influence_") and kind == "influence":
            shown[key] = np.asarray(value, np.float32)
    if kind == "influence":
        keys = sorted(k for k in shown if k.startswith("influence_"))
        if keys:
            shares = influence_shares([shown[k] for k in keys])
            shown.update(zip(keys, shares, strict=True))
    return shown


def _value_at(array: np.ndarray | None, row: int, col: int) -> float | None:
    if array is None:
        return None
    value = float(array[row, col])
    return value if np.isfinite(value) else None
