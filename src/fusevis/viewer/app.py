"""The viewer's web application: a route table of thin handlers over :class:`ViewerData`.

Routes
------
``GET /``                    the page (``static/index.html``); sets the token cookie
``GET /static/{path}``       the page's ES modules and CSS, confined to ``static/``
``GET /api/session``         models, image shape, input names (JSON)
``GET /api/export.npz``      the data of the current view: ``?model=&row=&col=``
``WS  /ws``                  binary frames: images, streamed maps, per-hover Jacobians

The messages and frames of ``/ws`` are documented in ``docs/viewer.md``.

Every request and websocket handshake first passes :class:`~fusevis.viewer.access.AccessGuard`
(token, ``Host`` allow-list, ``Origin``; see :mod:`fusevis.viewer.access`).

No request opens a file or a model. The viewer shows the images and networks it was
started with, from the command line or from Python; model specs (``module:Name``,
``file.py:Name``) import and run code, so they are accepted there only. The former
``GET /open?input=...&model=...`` route, which passed a page's ``model=`` to
``resolve_model`` (and so let any web page run code), is removed rather than narrowed:
the page never used it, and a route that reads paths a page names would still let a page
probe the user's files. To look at other inputs, start another viewer.

Each websocket client is bounded: its outgoing frames wait in an :class:`Outbox` that
keeps only the latest pending frame of each kind (images, the maps or the progress of one
model and kind, the pixel answer, the computing notice, an error), so a client that never
reads holds a few frames, not one per message; a message longer than
:data:`MAX_MESSAGE_CHARS` (uvicorn closes the connection beyond :data:`WS_MAX_SIZE` bytes),
a binary message, invalid JSON, NaN or infinite numbers, JSON that is not an object and
unknown message types each get an ``error`` frame and the connection stays open.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from fusevis.errors import FuseVisError, InputError
from fusevis.viewer.access import Access, AccessGuard
from fusevis.viewer.data import ViewerData
from fusevis.viewer.export import export_arrays, npz_bytes
from fusevis.viewer.frames import encode_frame
from fusevis.viewer.scheduler import estimates_available
from fusevis.viewer.slices import SliceView
from fusevis.viewer.state import Change, ViewerState
from fusevis.viewer.volume import BlankSlice, parse_axis

STATIC_DIR = Path(__file__).parent / "static"
MAX_MESSAGE_CHARS = 16 * 1024
WS_MAX_SIZE = 1 << 20
MAX_SEQ = 2**53
COMPUTING_NOTICE_S = 0.15  # a pixel not answered by then is announced ("computing" frame)
AHEAD_POLL_S = 0.5  # how often an idle connection asks whether the axis's fused slices are done
AHEAD_SHARE = 1 / 3  # while maps are computed, the fused slices ahead take at most this share
Build = Callable[[], bytes]


def static_file(relative: str) -> Path | None:
    """The file under ``static/`` that ``relative`` names, or None if it escapes or is missing."""
    if "\\" in relative or any(part in ("..", "") for part in relative.split("/")):
        return None
    root = STATIC_DIR.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def images_frame(
    data: ViewerData, snapshot: dict[str, Any], view: SliceView | None = None
) -> bytes:
    """Inputs and fused images of the models in view (``snapshot``: the page's state).

    ``view`` is the slice shown (default: the viewer's image set); its models in view must
    be open (:meth:`ViewerData.open_view`).
    """
    view = data.base if view is None else view
    arrays: dict[str, np.ndarray] = {f"input_{k}": x for k, x in enumerate(view.inputs)}
    models: dict[str, Any] = {}
    for name in snapshot["in_view"]:
        session = view.sessions[name]
        arrays[f"{name}/fused"] = session.fused
        models[name] = {
            "radius": session.radius,
            "local": session.local,
            "method": session.strategy,
            "pixel_ms": round(session.pixel_seconds * 1e3, 3),
        }
    header = {
        "kind": "images",
        "state": snapshot,
        "inputs": [image.source or f"input {k + 1}" for k, image in enumerate(view.image_set)],
        "models": models,
        "blank": None,
    }
    return encode_frame(header, arrays)


def blank_frame(snapshot: dict[str, Any], message: str) -> bytes:
    """An images frame without images: the slice in view is blank (``message`` says why)."""
    header = {"kind": "images", "state": snapshot, "inputs": [], "models": {}, "blank": message}
    return encode_frame(header, {})


def _maps_header(
    data: ViewerData, frame: str, name: str, kind: str, key: Hashable = None
) -> dict[str, Any]:
    header: dict[str, Any] = {
        "kind": frame,
        "model": name,
        "map_kind": kind,
        "estimates": estimates_available(),
        "slice": None if key is None else list(key),  # type: ignore[call-overload]
    }
    progress = data.maps.progress(name, kind, key)
    if progress is None:
        return {**header, "state": "none", "done": 0, "total": 0, "finished": False}
    return {**header, **progress.header()}


def maps_frame(data: ViewerData, name: str, kind: str, key: Hashable = None) -> bytes:
    """The current (partial or finished) maps of one model on slice ``key``, with progress."""
    header = _maps_header(data, "maps", name, kind, key)
    found = data.maps.arrays(name, kind, key)
    arrays = {f"{name}/{array}": value for array, value in found.items()}
    return encode_frame(header, arrays)


def progress_frame(data: ViewerData, name: str, kind: str, key: Hashable = None) -> bytes:
    """The progress of one model's map job (state, passes, times), without the maps."""
    return encode_frame(_maps_header(data, "progress", name, kind, key), {})


def computing_frame(data: ViewerData, seq: int, names: list[str], pixel: tuple[int, int]) -> bytes:
    """What the engine is computing for this page: the pixel, its models and strategies."""
    models = {}
    for name in names:
        session = data.hover.sessions[name]
        models[name] = {
            "method": session.strategy,
            "local": session.local,
            "expected_ms": round(session.pixel_seconds * 1e3, 3),
        }
    header = {"kind": "computing", "seq": seq, "pixel": list(pixel), "models": models}
    return encode_frame(header, {})


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number this viewer accepts")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def parse_message(text: str) -> tuple[dict[str, Any], int | None]:
    """A page's message as a JSON object and its ``seq`` (if any), or an InputError.

    Refuses messages longer than :data:`MAX_MESSAGE_CHARS`, invalid or deeply nested JSON,
    ``NaN``/``Infinity`` and numbers beyond float range, anything but an object with a
    string ``type``, and a ``seq`` that is not a whole number.
    """
    if len(text) > MAX_MESSAGE_CHARS:
        raise InputError(None, f"message of {len(text)} characters (at most {MAX_MESSAGE_CHARS})")
    try:
        message = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InputError(None, "message nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, our parse hooks, over-long integers
        raise InputError(None, f"message is not valid JSON: {error}") from None
    if not isinstance(message, dict):
        raise InputError(None, f"a message must be a JSON object, not {type(message).__name__}")
    if not isinstance(message.get("type"), str):
        raise InputError(None, "a message needs a string 'type'")
    seq = message.get("seq")
    if seq is not None and (
        isinstance(seq, bool) or not isinstance(seq, int) or not abs(seq) < MAX_SEQ
    ):
        raise InputError(None, f"'seq' must be a whole number below 2**53, not {seq!r}")
    return message, seq


def request_view_maps(data: ViewerData, state: ViewerState) -> list[tuple[str, str]]:
    """The (model, kind) maps the view shows, each asked of the map scheduler.

    Guidance maps are computed only where the viewer computes maps by itself
    (``data.compute_maps``); influence maps are what the page asked for. For a volume,
    the maps of the state's slice are computed from now on (that slice must be open).
    Shared by the viewer's websocket and the notebook widget.
    """
    if not data.show_maps(state.slice_key):
        return []
    shown = []
    for name in state.in_view:
        if name not in data.maps.models:  # a 3-D network: no slice maps (viewer/volume3d)
            continue
        kinds = ["guidance"] + (["influence"] if state.map_kind == "influence" else [])
        for kind in kinds:
            if data.compute_maps or kind == "influence":
                data.maps.request(name, kind)
            shown.append((name, kind))
    return shown


def apply_message(
    message: dict[str, Any],
    state: ViewerState,
    data: ViewerData,
    error: Callable[[str], None],
    queue_maps: Callable[[str, str, str], None],
) -> Change | None:
    """Apply a parsed page message to ``state``; every problem is one line to ``error``.

    A request to compute maps is handed to the map scheduler and its progress queued
    (``queue_maps(name, kind, "progress")``). Returns the change, or None when refused.
    Shared by the viewer's websocket and the notebook widget.
    """
    try:
        change = state.apply(message)
    except KeyError as missing:
        error(f"message {message['type']!r} lacks the field {missing}")
        return None
    except FuseVisError as problem:
        error(str(problem))
        return None
    except (TypeError, ValueError, OverflowError) as problem:
        error(f"message {message['type']!r}: {problem}")
        return None
    if change.compute is not None:
        name, kind, estimate = change.compute
        data.show_maps(state.slice_key)
        try:
            data.maps.request(name, kind, confirm=True, estimate=estimate)
        except FuseVisError as problem:
            error(str(problem))
        queue_maps(name, kind, "progress")
    return change


class Outbox:
    """Frames waiting for one client: at most the latest pending frame of each kind.

    A frame is queued under a key (``("images",)``, ``("maps", model, kind)``,
    ``("progress", model, kind)``, ``("pixel",)``, ``("computing",)``, ``("error",)``) as
    a function that builds it when it is sent; queuing a
    key again replaces the waiting frame and moves it to the back, so frames go out in
    the order of their latest request and the queue never holds more than one frame per
    key, however many messages a client sends without reading.
    """

    def __init__(self) -> None:
        self._pending: dict[Hashable, Build] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, key: Hashable, build: Build) -> None:
        """Queue ``build`` under ``key``, replacing a frame still waiting there."""
        self._pending.pop(key, None)
        self._pending[key] = build
        self._ready.set()

    async def get(self) -> bytes:
        """The oldest waiting frame, built now."""
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        key = next(iter(self._pending))
        return self._pending.pop(key)()


class ViewerApp:
    """Holds the data and the access policy; its methods are the route handlers."""

    def __init__(self, data: ViewerData, access: Access) -> None:
        self.data = data
        self.access = access

    def new_state(self) -> ViewerState:
        """The state a new page starts in."""
        return self.data.new_state()

    async def index(self, request: Request) -> Response:
        """The page; trades the URL's token for an HttpOnly SameSite=Strict cookie."""
        response = FileResponse(
            STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"}
        )
        response.set_cookie(
            self.access.cookie, self.access.token, httponly=True, samesite="strict", path="/"
        )
        return response

    async def static(self, request: Request) -> Response:
        """A file of the front end, never outside ``static/``."""
        path = static_file(request.path_params["path"])
        if path is None:
            return Response("not found", status_code=404, media_type="text/plain")
        media = "text/javascript" if path.suffix == ".js" else None
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    async def session(self, request: Request) -> Response:
        """What the server holds: models, shape, inputs."""
        return JSONResponse(
            {
                "models": self.data.names,
                "shape": list(self.data.shape),
                "inputs": [image.source for image in self.data.image_set],
                "volume": self.new_state().snapshot()["volume"],
            }
        )

    async def export(self, request: Request) -> Response:
        """The data of a view as ``.npz``: inputs, fused, maps, the pixel's Jacobian rows."""
        query = request.query_params
        try:
            name = query.get("model") or self.data.names[0]
            if name not in self.data.hover.sessions:
                raise FuseVisError(f"unknown model {name!r}")
            pixel = (int(query.get("row", "")), int(query.get("col", "")))
            key = self._slice_of(query.get("axis"), query.get("slice"))
            rows, view = await asyncio.wrap_future(
                self.data.hover.submit(self.data.export_rows, name, pixel, key)
            )
        except ValueError:
            return JSONResponse({"error": "row, col and slice must be integers"}, status_code=400)
        except FuseVisError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        where = "" if key is None else f"-{key[0]}-{key[1]}"
        filename = f"fusevis-{name}{where}-{pixel[0]}-{pixel[1]}.npz"
        return Response(
            npz_bytes(export_arrays(self.data, name, pixel, rows, view)),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    def _slice_of(self, axis: str | None, index: str | None) -> tuple[int, int] | None:
        """The export's slice (``?axis=&slice=``; default: the start slice), checked."""
        volume, start = self.data.volume, self.data.start
        if volume is None or start is None:
            if axis is not None or index is not None:
                raise InputError(None, "these inputs are 2-D images: there are no slices")
            return None
        chosen = start[0] if axis is None else parse_axis(int(axis) if axis.isdigit() else axis)
        return volume.check((chosen, start[1] if index is None else int(index)))

    async def websocket(self, socket: WebSocket) -> None:
        """One page (the guard has checked its token, Host and Origin)."""
        await socket.accept()
        await Connection(self.data, self.new_state(), socket).serve()


class Connection:
    """One websocket client; only its latest pending pixel request is ever answered.

    Pixel messages only mark a frame as wanted; :meth:`respond` computes the pixel that
    is wanted when the engine is free, and between the models of one answer it gives up
    an answer that a newer pixel has overtaken. A pixel not answered within
    :data:`COMPUTING_NOTICE_S` is announced with a ``computing`` frame, so that the page
    can say what is being computed with a slow network.
    """

    def __init__(self, data: ViewerData, state: ViewerState, socket: WebSocket) -> None:
        self.data = data
        self.state = state
        self.socket = socket
        self.wanted = asyncio.Event()
        self.seq = 0
        self.outbox = Outbox()
        self.loop = asyncio.get_running_loop()
        self.view_wanted = False
        self.maps_wanted = False

    def on_maps(self, name: str, kind: str, what: str) -> None:
        """Called from the map worker: queue a maps or progress frame if the model is in view."""
        if self.data.maps.current != self.state.slice_key:
            return  # another page's slice
        if name in self.state.in_view and kind in ("guidance", self.state.map_kind):
            self.loop.call_soon_threadsafe(self._queue_maps, name, kind, what)

    def _queue_maps(self, name: str, kind: str, what: str = "arrays") -> None:
        key = self.state.slice_key
        if what == "arrays":
            self.outbox.put(("maps", name, kind), lambda: maps_frame(self.data, name, kind, key))
        else:
            build = lambda: progress_frame(self.data, name, kind, key)  # noqa: E731
            self.outbox.put(("progress", name, kind), build)

    def _queue_computing(self, seq: int, names: list[str], pixel: tuple[int, int]) -> None:
        self.outbox.put(("computing",), lambda: computing_frame(self.data, seq, names, pixel))

    def error(self, message: str) -> None:
        """Queue an error frame for the page (the latest one, if it is not reading)."""
        frame = encode_frame({"kind": "error", "message": message}, {})
        self.outbox.put(("error",), lambda: frame)

    async def serve(self) -> None:
        """Run the reader, the pixel responder and the sender until the page goes away."""
        self.data.maps.add_listener(self.on_maps)
        self.send_view()
        tasks = [
            asyncio.create_task(self.read()),
            asyncio.create_task(self.respond()),
            asyncio.create_task(self.send()),
            asyncio.create_task(self.work_ahead()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            self.data.maps.remove_listener(self.on_maps)
        for task in done:  # a bug, not the page leaving: uvicorn logs it and closes (1011)
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def send_view(self) -> None:
        """Want images, the maps of every model in view and a pixel frame (in that order)."""
        self.view_wanted = True
        self.wanted.set()

    async def open_view(self) -> bool:
        """Open the slice in view on the engine thread and queue its images.

        Its maps are requested once its first pixel is answered (:meth:`request_maps`).

        False when there is no pixel to answer: the slice is blank (the page shows why),
        or another view was asked for meanwhile (opened next).
        """
        self.view_wanted = False
        key, names = self.state.slice_key, self.state.in_view
        snapshot = self.state.snapshot()
        hover = self.data.hover
        try:
            view = await asyncio.wrap_future(hover.submit(self.data.open_view, key, names))
        except BlankSlice as blank:
            why = blank.problem
            self.outbox.put(("images",), lambda: blank_frame(snapshot, why))
            return False
        except FuseVisError as error:
            self.error(str(error))
            return False
        if self.view_wanted:
            return False
        self.outbox.put(("images",), lambda: images_frame(self.data, snapshot, view))
        self.maps_wanted = True  # once the first pixel is answered
        return True

    def request_maps(self) -> None:
        """Request the maps of the view in view (after its images and first pixel)."""
        if self.maps_wanted and not self.view_wanted:
            self.maps_wanted = False
            for name, kind in request_view_maps(self.data, self.state):
                self._queue_maps(name, kind)

    async def read(self) -> None:
        """Apply each message to the state; pixel changes only mark a frame as wanted."""
        while True:
            try:
                event = await self.socket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if event["type"] == "websocket.disconnect":
                return
            text = event.get("text")
            if text is None:
                self.error("binary messages are not accepted: send JSON text")
                continue
            try:
                message, seq = parse_message(text)
            except FuseVisError as error:
                self.error(str(error))
                continue
            change = apply_message(message, self.state, self.data, self.error, self._queue_maps)
            if change is None:
                continue
            if seq is not None:
                self.seq = seq
            if change.view:
                self.send_view()
            elif change.pixel:
                self.wanted.set()

    async def respond(self) -> None:
        """Answer the latest wanted pixel; requests that arrived meanwhile collapse into one."""
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            if self.view_wanted and not await self.open_view():
                continue
            if self.view_wanted:  # another slice or model meanwhile: its images first
                continue
            seq, names, pixel = self.seq, self.state.in_view, self.state.pixel
            key = self.state.slice_key
            notice = self.loop.call_later(
                COMPUTING_NOTICE_S, self._queue_computing, seq, names, pixel
            )
            hover = self.data.hover
            try:
                answer = await asyncio.wrap_future(
                    hover.submit(self.data.pixel_frame, names, pixel, self.wanted.is_set, key)
                )
            except FuseVisError as error:
                self.error(str(error))
                answer = None
            finally:
                notice.cancel()
            if answer is not None:
                header, arrays = answer
                header.update(seq=seq, pinned=self.state.pinned)
                self.outbox.put(("pixel",), lambda h=header, a=arrays: encode_frame(h, a))
            self.request_maps()  # a new view's maps come after its images and first pixel
            if answer is None:  # an error, or overtaken: the newer pixel is next
                continue
            if key is not None and not self.wanted.is_set():  # the slices beside, meanwhile
                prefetch = hover.submit(self.data.prefetch, key, names, self.wanted.is_set)
                try:
                    await asyncio.wrap_future(prefetch)
                except Exception:  # noqa: BLE001 - a neighbour is opened again when shown
                    pass

    def _ahead_superseded(self) -> bool:
        return self.wanted.is_set() or self.view_wanted

    async def work_ahead(self) -> None:
        """While the page and the hover engine are idle: the fused slices of the axis in view.

        Polls every :data:`AHEAD_POLL_S`. With no map job, :meth:`ViewerData.sweep` runs
        until the page wants something or a job is queued; while maps are computed, it
        takes turns with them, at most :data:`AHEAD_SHARE` of the time (the map worker
        steps aside while the engine works, after its current pass).
        """
        data = self.data
        began, spent = time.monotonic(), 0.0
        while True:
            await asyncio.sleep(AHEAD_POLL_S)
            key, names = self.state.slice_key, list(self.state.in_view)
            if key is None or data.swept(key, names) or self._ahead_superseded():
                continue
            if data.hover.busy():
                continue
            start = time.monotonic()
            if data.maps.idle:
                superseded = lambda: self._ahead_superseded() or not data.maps.idle  # noqa: E731
            elif spent < AHEAD_SHARE * (start - began):
                turn = start + (start - began) * AHEAD_SHARE - spent  # stop when used up
                superseded = lambda t=turn: self._ahead_superseded() or time.monotonic() > t  # noqa: E731
            else:
                continue
            sweep = data.hover.submit(data.sweep, key, names, superseded)
            try:
                await asyncio.wrap_future(sweep)
            except Exception:  # noqa: BLE001 - a slice is computed again when shown
                pass
            spent += time.monotonic() - start

    async def send(self) -> None:
        """Write queued frames to the socket in order (waiting while the client is slow)."""
        try:
            while True:
                await self.socket.send_bytes(await self.outbox.get())
        except (WebSocketDisconnect, RuntimeError, OSError):
            return


def create_app(data: ViewerData, access: Access | None = None) -> FastAPI:
    """The FastAPI application serving ``data`` behind ``access``.

    Without ``access``: loopback host names only and a new random token, which
    ``app.state.viewer.access.token`` holds.
    """
    access = access or Access()
    viewer = ViewerApp(data, access)
    routes = [
        Route("/", viewer.index),
        Route("/static/{path:path}", viewer.static),
        Route("/api/session", viewer.session),
        Route("/api/export.npz", viewer.export),
        WebSocketRoute("/ws", viewer.websocket),
    ]
    app = FastAPI(title="FuseVis viewer", routes=routes, docs_url=None, redoc_url=None)
    app.state.viewer = viewer
    app.add_middleware(AccessGuard, access=access)
    return app
