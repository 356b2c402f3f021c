"""Guidance and influence volumes of the viewer's 3-D networks: computed once, shown by slice.

:class:`VolumeMapScheduler` stands in front of the viewer's
:class:`~fusevis.viewer.scheduler.MapScheduler`: requests, progress and maps of the 2-D
networks go to it unchanged; for a 3-D network (:mod:`fusevis.viewer.volume3d`) a request
starts :func:`~fusevis.saliency.volumetric.volume_maps` on the whole volumes, once per
kind, on a copy of the network in a background thread that steps aside while the user
hovers. Its maps of any slice are the slice of the finished volumes (guidance summed over
the input's channels, or each input's influence share), cut as the viewer cuts slices;
until they are finished a slice has no maps, and the progress says how far the volumes are.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any

import numpy as np

from fusevis.errors import InputError
from fusevis.saliency.maps import influence_shares
from fusevis.saliency.volumetric import volume_maps
from fusevis.viewer.scheduler import MAP_KINDS, Listener, MapProgress, MapScheduler
from fusevis.viewer.volume3d import VolumeNetworks, plane_of

PROGRESS_INTERVAL_S = 0.5  # least time between two progress events of one job


class _Closed(Exception):
    """Raised from the progress callback to stop a job when the viewer closes."""


class VolumeMapScheduler:
    """The viewer's map scheduler, with whole-volume maps for its 3-D networks.

    Parameters
    ----------
    inner : MapScheduler
        The scheduler of the 2-D networks (everything else is delegated to it).
    deep : VolumeNetworks
        The 3-D networks and their volumes.
    busy : callable() -> bool
        True while the user hovers: a running volume job pauses after its current pass.
    """

    def __init__(self, inner: MapScheduler, deep: VolumeNetworks, busy: Callable[[], bool]) -> None:
        self.inner = inner
        self.deep = deep
        self._busy = busy
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], MapProgress] = {}
        self._volumes: dict[tuple[str, str], list[np.ndarray]] = {}
        self._listeners: list[Listener] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    @property
    def idle(self) -> bool:
        """Whether neither the 2-D jobs nor a guidance volume are being computed."""
        with self._lock:
            threads = list(self._threads)
        return self.inner.idle and not any(thread.is_alive() for thread in threads)

    @property
    def models(self) -> dict[str, Any]:
        """The networks whose maps can be asked for: the 2-D ones and the 3-D ones."""
        return {**self.inner.models, **self.deep.models}

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(model, kind, what)`` on progress and maps, 2-D and 3-D."""
        self.inner.add_listener(listener)
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        self.inner.remove_listener(listener)
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, name: str, kind: str, what: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(name, kind, what)

    def request(
        self, name: str, kind: str, confirm: bool = False, estimate: bool = False
    ) -> MapProgress:
        """Queue maps; for a 3-D network, start its volumes of ``kind`` (once).

        A 3-D network's guidance volumes start at once; its influence volumes (many more
        passes) wait in the state ``"ask"`` until requested with ``confirm=True``.
        """
        if name not in self.deep:
            return self.inner.request(name, kind, confirm=confirm, estimate=estimate)
        if kind not in MAP_KINDS:
            raise InputError(None, f"unknown map kind {kind!r} ({' or '.join(MAP_KINDS)})")
        if estimate:
            raise InputError(None, f"{name} is a 3-D network: its maps are computed exactly")
        with self._lock:
            progress = self._jobs.get((name, kind))
            if progress is None and kind == "influence" and not confirm:
                # the field's size cubed in passes (729 for Fuse3D): waits for the user's go
                progress = self._jobs[(name, kind)] = MapProgress(state="ask")
            elif progress is None or (progress.state == "ask" and confirm):
                progress = self._jobs[(name, kind)] = MapProgress(confirmed=True)
                thread = threading.Thread(
                    target=self._compute,
                    args=(name, kind, progress),
                    name=f"fusevis-volume-maps-{name}-{kind}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        self._emit(name, kind, "progress")
        return progress

    def progress(self, name: str, kind: str, key: Hashable = None) -> MapProgress | None:
        """The job's progress, with the arrays of slice ``key`` (default: in view)."""
        if name not in self.deep:
            return self.inner.progress(name, kind, key)
        job = self._jobs.get((name, kind))
        if job is None:
            return None
        arrays: dict[str, np.ndarray] = {}
        volumes = self._volumes.get((name, kind))
        chosen = self.inner.current if key is None else key
        if volumes is not None and chosen is not None:
            label = "guidance" if kind == "guidance" else "influence"
            for k, volume in enumerate(volumes):
                arrays[f"{label}_{k}"] = plane_of(volume, chosen, self.deep.rotate)
        return replace(job, arrays=arrays)

    def arrays(self, name: str, kind: str, key: Hashable = None) -> dict[str, np.ndarray]:
        """The maps of ``name`` and ``kind`` on slice ``key`` as far as computed (may be empty)."""
        found = self.progress(name, kind, key)
        return {} if found is None else found.arrays

    def close(self) -> None:
        """Stop the volume jobs (after their current pass) and the 2-D scheduler."""
        self._closed = True
        for thread in self._threads:
            thread.join(timeout=60)
        self.inner.close()

    def _compute(self, name: str, kind: str, progress: MapProgress) -> None:
        began = time.monotonic()
        paused = [0.0]
        last_event = [0.0]

        def report(done: int, total: int) -> None:
            waited = time.monotonic()
            while self._busy() and not self._closed:
                progress.state = "paused"
                time.sleep(0.05)
            paused[0] += time.monotonic() - waited
            if self._closed:
                raise _Closed
            progress.state = "running"
            progress.done, progress.total = done, total
            progress.elapsed_s = elapsed = time.monotonic() - began - paused[0]
            if done:
                progress.remaining_s = elapsed / done * max(total - done, 0)
                progress.predicted_s = elapsed + progress.remaining_s
            if time.monotonic() - last_event[0] >= PROGRESS_INTERVAL_S:
                last_event[0] = time.monotonic()
                self._emit(name, kind, "progress")

        progress.state = "running"
        try:
            model = copy.deepcopy(self.deep.models[name])
            field = self.deep.jacobian(name).field  # traced when the viewer opened: torch.fx
            found = volume_maps(  # must not trace here, beside the engine's forward passes
                model,
                self.deep.tensors,
                influence=kind == "influence",
                receptive_field=field,
                progress=report,
            )
        except _Closed:
            return
        except Exception as error:  # noqa: BLE001 - reported to the page, never fatal
            progress.state, progress.error = "error", f"{type(error).__name__}: {error}"
            self._emit(name, kind, "progress")
            return
        if kind == "influence":
            volumes = influence_shares([np.asarray(v, np.float32) for v in found.influence or []])
        else:
            volumes = [np.asarray(g, np.float32).sum(axis=0) for g in found.guidance]
        self._volumes[(name, kind)] = [np.asarray(v, np.float32) for v in volumes]
        progress.done = progress.total = max(progress.total, 1)
        progress.elapsed_s = time.monotonic() - began - paused[0]
        progress.remaining_s = 0.0
        progress.state = "finished"
        self._emit(name, kind, "arrays")
