"""The kernel side of the notebook widget: the viewer's state, engine and maps behind a send.

A :class:`NotebookSession` does for a widget what the viewer's websocket
:class:`~fusevis.viewer.app.Connection` does for a page, with threads instead of asyncio and
widget messages instead of websocket frames: the page's messages change one
:class:`~fusevis.viewer.state.ViewerState` (:meth:`NotebookSession.handle`); only the
latest wanted pixel is computed, on the :class:`~fusevis.viewer.hover.HoverEngine`'s
thread; the maps stream from the :class:`~fusevis.viewer.scheduler.MapScheduler` with their
progress; every frame is the viewer's binary frame (:mod:`fusevis.viewer.frames`), sent as
one widget buffer through :class:`LatestOutbox`, which holds at most the latest pending
frame of each kind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from fusevis.errors import FuseVisError, InputError
from fusevis.saliency.inputs import check_pixel
from fusevis.viewer.app import (
    COMPUTING_NOTICE_S,
    apply_message,
    blank_frame,
    computing_frame,
    images_frame,
    maps_frame,
    parse_message,
    progress_frame,
    request_view_maps,
)
from fusevis.viewer.data import ViewerData
from fusevis.viewer.export import export_arrays, npz_bytes
from fusevis.viewer.frames import encode_frame
from fusevis.viewer.volume import BlankSlice

Send = Callable[[dict[str, Any], list[bytes]], None]
Build = Callable[[], tuple[dict[str, Any], list[bytes]]]


class LatestOutbox:
    """Messages waiting for the page: at most the latest pending one per key, sent in order.

    The thread-based counterpart of :class:`fusevis.viewer.app.Outbox`: putting a key again
    replaces the waiting message (built only when it is sent) and moves it to the back.
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: dict[Hashable, Build] = {}
        self._ready = threading.Condition()
        self._closed = False
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="fusevis-widget-send", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        with self._ready:
            return len(self._pending)

    def put(self, key: Hashable, build: Build) -> None:
        """Queue ``build`` under ``key``, replacing a message still waiting there."""
        with self._ready:
            self._pending.pop(key, None)
            self._pending[key] = build
            self._ready.notify()

    def close(self) -> None:
        """Stop sending (a message being sent finishes)."""
        with self._ready:
            self._closed = True
            self._pending.clear()
            self._ready.notify()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                key = next(iter(self._pending))
                build = self._pending.pop(key)
            try:
                content, buffers = build()
                self._send(content, buffers)
                self.sent += 1
            except Exception as error:  # noqa: BLE001 - reported to the page, never fatal
                message = f"{type(error).__name__}: {error}".splitlines()[0]
                frame = encode_frame({"kind": "error", "message": message}, {})
                self._send({"frame": True}, [frame])


def _frame(build: Callable[[], bytes]) -> Build:
    return lambda: ({"frame": True}, [build()])


class NotebookSession:
    """One widget's state, its pixel responder and its map listener.

    Parameters
    ----------
    data : ViewerData
        The image set, models, hover engine and map scheduler (closed by :meth:`close`).
    send : callable(content, buffers)
        Sends one widget message to the page (any thread).

    Attributes
    ----------
    state : ViewerState
        What the page is looking at (the page's messages change it through
        :meth:`ViewerState.apply`, Python through :meth:`set_pixel`).
    last_answer : (header, arrays) or None
        The latest pixel answer sent to the page.
    """

    def __init__(self, data: ViewerData, send: Send) -> None:
        self.data = data
        self.state = data.new_state()
        self.outbox = LatestOutbox(send)
        self.seq = 0
        self.last_answer: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None
        self._wanted = threading.Event()
        self._received = time.perf_counter()  # when the latest page message arrived
        self._closed = False
        self._view_wanted = False
        self._maps_wanted = False
        self._lock = threading.Lock()
        self.answered = threading.Condition(self._lock)
        self.answers = 0
        data.maps.add_listener(self._on_maps)
        self._responder = threading.Thread(
            target=self._respond, name="fusevis-widget-pixels", daemon=True
        )
        self._responder.start()

    # -- from the page --------------------------------------------------------------------
    def handle(self, message: object) -> None:
        """Apply one message from the page (as the viewer does); errors go back to the page.

        Besides the viewer's messages (docs/viewer.md), the widget sends ``ready`` (a view
        was rendered: images, maps and the pixel are sent) and ``export_npz``.
        """
        try:
            found, seq = parse_message(json.dumps(message, allow_nan=False))
        except (TypeError, ValueError):
            self.error("a message must be a JSON object of finite numbers")
            return
        except FuseVisError as error:
            self.error(str(error))
            return
        if seq is not None:
            self.seq = seq
        self._received = time.perf_counter()
        if found["type"] == "ready":
            self.send_view()
            return
        if found["type"] == "export_npz":
            self.outbox.put(("npz",), self._npz_message)
            return
        change = apply_message(found, self.state, self.data, self.error, self._queue_maps)
        if change is None:
            return
        if change.view:
            self.send_view()
        elif change.pixel:
            self._wanted.set()

    # -- from Python ----------------------------------------------------------------------
    def set_pixel(self, pixel: tuple[int, int]) -> tuple[int, int]:
        """Move the explained pixel (pinned or not); the page's marker follows its answer."""
        self._received = time.perf_counter()
        self.state.pixel = check_pixel(pixel, self.state.shape)
        self._wanted.set()
        return self.state.pixel

    def set_slice(self, axis: object = None, index: object = None) -> None:
        """Show another slice or axis of a volume (as the page's ``slice`` message does).

        Raises
        ------
        FuseVisError
            One line: a 2-D image set, an unknown axis, a slice outside the volume.
        """
        self._received = time.perf_counter()
        if self.state.set_slice(axis, index):
            self.send_view()

    def error(self, message: str) -> None:
        """Show a one-line error in the page (the latest one, if several wait)."""
        frame = encode_frame({"kind": "error", "message": message}, {})
        self.outbox.put(("error",), lambda: ({"frame": True}, [frame]))

    def send_view(self) -> None:
        """Want images, the maps of every model in view and the pixel's answer (in order)."""
        self._view_wanted = True
        self._wanted.set()

    def _open_view(self) -> bool:
        """Open the slice in view (engine thread) and queue its images.

        Its maps are requested once its first pixel is answered (:meth:`_request_maps`).

        False when no pixel is to be answered now: a blank slice (the page says why) or
        another view asked for meanwhile.
        """
        self._view_wanted = False
        key, names = self.state.slice_key, self.state.in_view
        snapshot = self.state.snapshot()
        try:
            view = self.data.hover.submit(self.data.open_view, key, names).result()
        except BlankSlice as blank:
            why = blank.problem
            self.outbox.put(("images",), _frame(lambda: blank_frame(snapshot, why)))
            return False
        except FuseVisError as error:
            self.error(str(error))
            return False
        if self._view_wanted:
            return False
        self.outbox.put(("images",), _frame(lambda: images_frame(self.data, snapshot, view)))
        self._maps_wanted = True  # once the first pixel is answered
        return True

    def _request_maps(self) -> None:
        """Request the maps of the view in view (after its images and first pixel)."""
        if self._maps_wanted and not self._view_wanted:
            self._maps_wanted = False
            for name, kind in request_view_maps(self.data, self.state):
                self._queue_maps(name, kind)

    def export_npz(self, name: str | None = None) -> tuple[str, bytes]:
        """The ``.npz`` of the current pixel and model (as the viewer's export): name, bytes."""
        name = name or self.state.in_view[0]
        if name not in self.data.hover.sessions:
            raise InputError(None, f"unknown model {name!r}; this explorer has {self.data.names}")
        pixel, key = self.state.pixel, self.state.slice_key
        found = self.data.hover.submit(self.data.export_rows, name, pixel, key)
        rows, view = found.result()
        where = "" if key is None else f"-{key[0]}-{key[1]}"
        filename = f"fusevis-{name}{where}-{pixel[0]}-{pixel[1]}.npz"
        return filename, npz_bytes(export_arrays(self.data, name, pixel, rows, view))

    def _npz_message(self) -> tuple[dict[str, Any], list[bytes]]:
        filename, content = self.export_npz()
        return {"download": filename}, [content]

    # -- workers --------------------------------------------------------------------------
    def _on_maps(self, name: str, kind: str, what: str) -> None:
        if self.data.maps.current != self.state.slice_key:
            return  # maps of another slice
        if name in self.state.in_view and kind in ("guidance", self.state.map_kind):
            self._queue_maps(name, kind, what)

    def _queue_maps(self, name: str, kind: str, what: str = "arrays") -> None:
        key = self.state.slice_key
        if what == "arrays":
            build = _frame(lambda: maps_frame(self.data, name, kind, key))
            self.outbox.put(("maps", name, kind), build)
        else:
            build = _frame(lambda: progress_frame(self.data, name, kind, key))
            self.outbox.put(("progress", name, kind), build)

    def _respond(self) -> None:
        """Answer the latest wanted pixel; requests that arrive meanwhile collapse into one."""
        while True:
            self._wanted.wait()
            if self._closed:
                return
            self._wanted.clear()
            try:
                if self._view_wanted and not self._open_view():
                    continue
                if self._view_wanted:  # another slice or model meanwhile: its images first
                    continue
            except RuntimeError:  # the engine was shut down: the widget is closing
                return
            seq, names, pixel = self.seq, self.state.in_view, self.state.pixel
            key = self.state.slice_key
            received = self._received
            notice = threading.Timer(
                COMPUTING_NOTICE_S,
                lambda s=seq, n=names, p=pixel: self.outbox.put(
                    ("computing",), _frame(lambda: computing_frame(self.data, s, n, p))
                ),
            )
            notice.daemon = True
            notice.start()
            hover = self.data.hover
            try:
                answer = hover.submit(
                    self.data.pixel_frame, names, pixel, self._wanted.is_set, key
                ).result()
            except FuseVisError as error:
                self.error(str(error))
                answer = None
            except RuntimeError:  # the engine was shut down: the widget is closing
                return
            finally:
                notice.cancel()
            if answer is None:  # an error, or overtaken: the newer pixel is next
                self._request_maps()
                continue
            header, arrays = answer
            header.update(seq=seq, pinned=self.state.pinned)

            def build(h: dict[str, Any] = header, a: dict = arrays, r: float = received) -> bytes:
                h["kernel_ms"] = (time.perf_counter() - r) * 1e3  # message in to frame out
                return encode_frame(h, a)

            self.outbox.put(("pixel",), _frame(build))
            with self.answered:
                self.last_answer = answer
                self.answers += 1
                self.answered.notify_all()
            self._request_maps()  # a new view's maps come after its images and first pixel
            if key is not None and not self._wanted.is_set():  # the slices beside, meanwhile
                try:
                    hover.submit(self.data.prefetch, key, names, self._wanted.is_set).result()
                except RuntimeError:  # the engine was shut down: the widget is closing
                    return
                except Exception:  # noqa: BLE001 - a neighbour is opened again when shown
                    pass

    def close(self) -> None:
        """Stop the responder and the sender, then the map worker and the engine."""
        self._closed = True
        self._wanted.set()
        self.data.maps.remove_listener(self._on_maps)
        self.outbox.close()
        self.data.close()
        self._responder.join(timeout=10)
