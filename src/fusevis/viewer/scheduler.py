"""The map scheduler: guidance and influence maps of the viewer's models, in the background.

A :class:`MapScheduler` owns one worker thread and a queue of map jobs, at most one per
(model, kind), so the queue is bounded by the models the viewer was started with. Each
job runs :func:`~fusevis.saliency.cached_maps` on a copy of its model, through the on-disk
cache (resumable), and reports to listeners as the maps fill in. It steps aside while the
user hovers (``busy``), so that per-pixel answers stay fast on a 2-core CPU.

It never starts a long computation by itself. Before a job starts, ``prior`` may predict
its duration (for a model that is not local: one full-image backward pass per pixel, the
time of one hover times the number of pixels); while it runs, the passes done so far
predict the rest. A job predicted to take more than ``ask_above_s`` seconds stops (its
passes are kept in the cache's checkpoint) and waits in the state ``"ask"`` until the user
confirms it (:meth:`MapScheduler.request` with ``confirm=True``), or asks for an estimate
where the maps API offers one (:func:`estimates_available`).

For a volume, the scheduler computes the maps of the slice in view (:meth:`MapScheduler.show`):
showing another slice drops the jobs still queued for the previous one and stops the one
running after its current pass (its passes stay in the cache's checkpoint), so the latest
slice wins and the queue never holds more than one job per (model, kind). The maps of the
last :data:`KEPT_SLICES` slices shown stay in memory; older ones come back from the disk
cache when shown again.
"""

from __future__ import annotations

import copy
import inspect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from fusevis.errors import InputError
from fusevis.saliency import Cancelled, MapCache, cached_maps
from fusevis.saliency.maps import influence_shares

MAP_KINDS = ("guidance", "influence")
ASK_ABOVE_S = 120.0  # a job predicted to take longer waits for the user's go
DECIDE_AFTER_PASSES = 2  # passes timed (after the first) before a running job's prediction counts
PROGRESS_INTERVAL_S = 0.5  # least time between two progress events of one job
STATES = ("queued", "running", "paused", "ask", "finished", "error")
KEPT_SLICES = 8  # slices whose maps (finished or partial) stay in memory

Listener = Callable[[str, str, str], None]  # (model, kind, "progress" | "arrays")
Busy = Callable[[], bool]
Prior = Callable[[str, str], float | None]


def estimates_available() -> bool:
    """Whether the maps API can estimate maps (``estimate=True``) instead of computing them.

    The hook for estimated maps of non-local networks: the page offers "estimate" beside
    "compute exact maps" only when this is True. It asks :func:`cached_maps` itself, so
    that an estimate is only ever requested through a cache that keeps it apart from exact
    maps.
    """
    return "estimate" in inspect.signature(cached_maps).parameters


@dataclass
class MapProgress:
    """A map job's state: partial arrays while running, all of them when finished.

    Attributes
    ----------
    state : str
        ``"queued"``, ``"running"``, ``"paused"`` (stepping aside while the user hovers),
        ``"ask"`` (predicted to take long: waits for the user), ``"finished"`` or
        ``"error"``.
    done, total : int
        Passes done and to do (``total`` is 0 until the first pass reports it).
    elapsed_s : float
        Seconds spent computing (pauses for hovering excluded).
    remaining_s : float or None
        Predicted seconds left (None: not known yet).
    predicted_s : float or None
        Predicted seconds of the whole job, before it starts (from ``prior``) or from the
        passes done so far.
    confirmed : bool
        The user asked for this job however long it takes.
    estimate : bool
        The maps are an estimate (asked for explicitly), never shown as exact.
    error_bound : float or None
        For finished estimated maps, the largest bound on |estimate - exact| the maps API
        states for them.
    """

    state: str = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None
    elapsed_s: float = 0.0
    remaining_s: float | None = None
    predicted_s: float | None = None
    confirmed: bool = False
    estimate: bool = False
    error_bound: float | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether every map is complete."""
        return self.state == "finished"

    def header(self) -> dict[str, Any]:
        """The job's state as JSON fields of a frame header."""
        return {
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "finished": self.finished,
            "error": self.error,
            "elapsed_s": round(self.elapsed_s, 3),
            "remaining_s": _rounded(self.remaining_s),
            "predicted_s": _rounded(self.predicted_s),
            "estimate": self.estimate,
            "error_bound": _rounded(self.error_bound),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 3)


class _Clock:
    """Seconds of work, with the pauses for hovering left out."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.paused = 0.0

    def active(self) -> float:
        return time.monotonic() - self.began - self.paused

    def pause_while(self, condition: Callable[[], bool]) -> None:
        start = time.monotonic()
        while condition():
            time.sleep(0.05)
        self.paused += time.monotonic() - start


class MapScheduler:
    """Guidance and influence maps of several models, one job at a time, in the background.

    Parameters
    ----------
    tensors : sequence of torch.Tensor
        The N inputs, (1, C, H, W) each.
    models : mapping of str to nn.Module
        The networks by display name; each job works on a deep copy.
    cache : MapCache, optional
        Where maps are cached (default: $FUSEVIS_CACHE).
    busy : callable() -> bool, optional
        True while the user is hovering: the running job pauses after its current pass.
    prior : callable(model, kind) -> float or None, optional
        A job's predicted seconds before it starts (None: unknown; the first passes tell).
    ask_above_s : float
        Jobs predicted to take longer wait for the user (state ``"ask"``).
    prepare : callable(nn.Module), optional
        Called with each job's copy of its model before the job starts (the viewer traces
        it there, on the engine thread: torch.fx patches torch globally while it traces,
        which must not meet the engine's forward passes; a job per slice means a copy, and
        a trace, per slice).
    """

    def __init__(
        self,
        tensors: Any,
        models: Mapping[str, nn.Module],
        cache: MapCache | None = None,
        busy: Busy | None = None,
        prior: Prior | None = None,
        ask_above_s: float = ASK_ABOVE_S,
        prepare: Callable[[nn.Module], None] | None = None,
    ) -> None:
        self.tensors = tensors
        self.models = dict(models)
        self.cache = cache or MapCache()
        self._prepare = prepare or (lambda model: None)
        self.ask_above_s = float(ask_above_s)
        self._busy = busy or (lambda: False)
        self._prior = prior or (lambda name, kind: None)
        self._progress: dict[tuple[Hashable, str, str], MapProgress] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: deque[tuple[str, str]] = deque()  # at most one per (model, kind)
        self._computing = False  # a job is running (or paused while the user hovers)
        self.current: Hashable = None  # the slice in view (None: a 2-D image set)
        self._shown: OrderedDict[Hashable, None] = OrderedDict({None: None})
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="fusevis-maps", daemon=True)
        self._worker.start()

    # -- what the viewer asks ---------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(model, kind, what)`` on progress (from the worker thread).

        ``what`` is ``"progress"`` (counts, times, state) or ``"arrays"`` (new maps).
        """
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def progress(self, name: str, kind: str, key: Hashable = None) -> MapProgress | None:
        """The job of ``name`` and ``kind`` on slice ``key`` (default: the slice in view).

        None: never requested (or dropped: a slice shown long ago, or left while queued).
        """
        return self._progress.get((self.current if key is None else key, name, kind))

    def arrays(self, name: str, kind: str, key: Hashable = None) -> dict[str, np.ndarray]:
        """The maps of ``name`` and ``kind`` as far as they are computed (may be empty)."""
        found = self.progress(name, kind, key)
        return {} if found is None else found.arrays

    def show(self, key: Hashable, tensors: Any) -> None:
        """Compute the maps of slice ``key`` (its inputs ``tensors``) from now on.

        The jobs queued for the slice shown before are dropped (their progress too, so a
        later request starts them again, from the disk cache), the running one stops after
        its current pass; the maps of the last :data:`KEPT_SLICES` slices shown are kept.
        """
        with self._wake:
            if key == self.current:
                return
            for name, kind in self._jobs:
                self._progress.pop((self.current, name, kind), None)
            self._jobs.clear()
            self.current, self.tensors = key, tensors
            self._shown[key] = None
            self._shown.move_to_end(key)
            while len(self._shown) > KEPT_SLICES:
                old, _ = self._shown.popitem(last=False)
                for found in [k for k in self._progress if k[0] == old]:
                    if self._progress[found].state not in ("running", "paused"):
                        del self._progress[found]

    @property
    def idle(self) -> bool:
        """Whether no job is queued or running: the viewer's work ahead may use the cores."""
        with self._lock:
            return not self._jobs and not self._computing

    @property
    def queued(self) -> list[tuple[str, str]]:
        """The jobs waiting for the worker, in order."""
        with self._lock:
            return list(self._jobs)

    def request(
        self, name: str, kind: str, confirm: bool = False, estimate: bool = False
    ) -> MapProgress:
        """Queue the maps of ``name`` (no-op if queued, running or done).

        Without ``confirm``, a job predicted to take more than ``ask_above_s`` seconds is
        not started (state ``"ask"``). ``confirm=True`` starts (or resumes) it whatever it
        costs; ``estimate=True`` asks for estimated maps instead, where
        :func:`estimates_available`.
        """
        if name not in self.models:
            raise InputError(None, f"unknown model {name!r}")
        if kind not in MAP_KINDS:
            raise InputError(None, f"unknown map kind {kind!r} ({' or '.join(MAP_KINDS)})")
        if estimate and not estimates_available():
            raise InputError(None, "this FuseVis cannot estimate maps yet: compute them exactly")
        with self._wake:
            key = (self.current, name, kind)
            progress = self._progress.get(key)
            new = progress is None
            if progress is None:
                progress = self._progress[key] = MapProgress(predicted_s=self._prior(name, kind))
                start = confirm or estimate or not self._too_long(progress)
            else:
                asked = progress.state in ("ask", "error") or (
                    progress.estimate and not estimate and progress.finished
                )
                start = (confirm or estimate) and asked
            if start:
                if progress.estimate and not estimate:
                    progress.arrays = {}  # an estimate is never shown as the exact maps
                progress.confirmed = progress.confirmed or confirm or estimate
                progress.state, progress.error, progress.estimate = "queued", None, estimate
                if (name, kind) not in self._jobs:
                    self._jobs.append((name, kind))
                self._wake.notify()
            elif new:
                progress.state = "ask"
        if start or new:
            self._emit(name, kind, "progress")
        return progress

    def _too_long(self, progress: MapProgress) -> bool:
        return (
            not progress.confirmed
            and progress.predicted_s is not None
            and progress.predicted_s > self.ask_above_s
        )

    def close(self) -> None:
        """Stop the worker (a running pass finishes first)."""
        with self._wake:
            self._closed = True
            self._jobs.clear()
            self._wake.notify()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout=60)

    # -- the worker -------------------------------------------------------------------
    def _emit(self, name: str, kind: str, what: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(name, kind, what)

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                name, kind = self._jobs.popleft()
                key, tensors = self.current, self.tensors
                progress = self._progress[(key, name, kind)]
                progress.state = "running"
                self._computing = True
            try:
                self._emit(name, kind, "progress")
                self._compute(name, kind, progress, key, tensors)
            finally:
                with self._lock:
                    self._computing = False

    def _compute(
        self, name: str, kind: str, progress: MapProgress, key: Hashable, tensors: Any
    ) -> None:
        clock = _Clock()
        first: list[tuple[int, float]] = []  # (done, seconds) at the first pass reported
        timed = [0]  # passes timed after the first
        last_event = [0.0]

        def report(done: int, total: int) -> None:
            progress.done, progress.total = done, total
            progress.elapsed_s = now = clock.active()
            if not first:
                first.append((done, now))
                passes, seconds = max(done, 1), now  # includes the set-up: pessimistic
            else:
                timed[0] = done - first[0][0]
                passes, seconds = timed[0], now - first[0][1]
            if passes > 0:
                progress.remaining_s = seconds / passes * max(total - done, 0)
                progress.predicted_s = now + progress.remaining_s
            if time.monotonic() - last_event[0] >= PROGRESS_INTERVAL_S:
                last_event[0] = time.monotonic()
                self._emit(name, kind, "progress")

        def publish(arrays: dict[str, np.ndarray]) -> None:
            progress.arrays = _display_arrays(arrays, kind)
            self._emit(name, kind, "arrays")

        def cancel() -> bool:
            if self._closed:
                return True
            if key != self.current:  # another slice is shown: the latest wins
                progress.state = "left"
                return True
            if timed[0] >= DECIDE_AFTER_PASSES and self._too_long(progress):
                progress.state = "ask"  # stops here; the checkpoint keeps the passes done
                return True
            if self._busy():
                progress.state = "paused"
                clock.pause_while(lambda: self._busy() and not self._closed)
                progress.state = "running"
            return self._closed

        options: dict[str, Any] = {"estimate": True} if progress.estimate else {}
        try:
            model = copy.deepcopy(self.models[name])
            self._prepare(model)
            maps = cached_maps(
                model,
                tensors,
                influence=kind == "influence",
                cache=self.cache,
                progress=report,
                cancel=cancel,
                on_partial=publish,
                checkpoint_interval=1.0,
                **options,
            )
        except Cancelled:
            if progress.state == "left":  # requested again when its slice is shown again
                with self._lock:
                    if self._progress.get((key, name, kind)) is progress:
                        del self._progress[(key, name, kind)]
                return
            if progress.state != "ask":
                progress.state = "queued" if self._closed else "ask"
            progress.elapsed_s = clock.active()
            self._emit(name, kind, "progress")
            return
        except Exception as error:  # noqa: BLE001 - reported to the page, never fatal
            progress.state, progress.error = "error", f"{type(error).__name__}: {error}"
            self._emit(name, kind, "progress")
            return
        arrays = {"fused": maps.fused}
        arrays.update({f"guidance_{k}": g for k, g in enumerate(maps.guidance)})
        for k, influence in enumerate(maps.influence or []):
            arrays[f"influence_{k}"] = influence
        progress.arrays = _display_arrays(arrays, kind)
        progress.estimate = bool(getattr(maps, "estimate", False)) or progress.estimate
        bounds = getattr(maps, "error_bound", None)
        if progress.estimate and bounds:
            progress.error_bound = max(float(np.max(bound)) for bound in bounds)
        progress.done = progress.total = max(progress.total, 1)
        progress.elapsed_s, progress.remaining_s = clock.active(), 0.0
        progress.state = "finished"
        self._emit(name, kind, "arrays")


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
