"""The viewer's web application: a route table of thin handlers over :mod:`engine`.

Routes
------
``GET /``                    the page (``static/index.html``)
``GET /static/{path}``       the page's ES modules and CSS, confined to ``static/``
``GET /api/session``         models, image shape, input names (JSON)
``GET /api/export.npz``      the data of the current view: ``?model=&row=&col=``
``GET /open``                load other inputs/models: ``?input=...&input=...&model=...``
``WS  /ws``                  binary frames: images, streamed maps, per-hover Jacobians

With a token (non-loopback hosts), every request must carry ``?token=`` or the cookie the
page receives on its first authorised load.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from fusevis.errors import FuseVisError
from fusevis.viewer.engine import ViewerData
from fusevis.viewer.frames import encode_frame
from fusevis.viewer.state import ViewerState

STATIC_DIR = Path(__file__).parent / "static"
TOKEN_COOKIE = "fusevis_token"
Opener = Callable[[list[str], list[str]], ViewerData]


def error_page(message: str, status: int = 400) -> HTMLResponse:
    """A small HTML page stating one error."""
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>FuseVis: error</title></head>"
        f"<body><h1>FuseVis could not do that</h1><p class='error'>{html.escape(message)}</p>"
        "<p><a href='/'>back to the viewer</a></p></body></html>"
    )
    return HTMLResponse(body, status_code=status)


def static_file(relative: str) -> Path | None:
    """The file under ``static/`` that ``relative`` names, or None if it escapes or is missing."""
    if "\\" in relative or any(part in ("..", "") for part in relative.split("/")):
        return None
    root = STATIC_DIR.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def images_frame(data: ViewerData, state: ViewerState) -> bytes:
    """Inputs, fused images and whatever maps exist for the models in view."""
    arrays: dict[str, np.ndarray] = {f"input_{k}": x for k, x in enumerate(data.inputs)}
    models: dict[str, Any] = {}
    for name in state.in_view:
        session = data.sessions[name]
        arrays[f"{name}/fused"] = session.fused
        models[name] = {"radius": session.radius, "method": session.strategy}
    header = {
        "kind": "images",
        "state": state.snapshot(),
        "inputs": [image.source or f"input {k + 1}" for k, image in enumerate(data.image_set)],
        "models": models,
    }
    return encode_frame(header, arrays)


def maps_frame(data: ViewerData, name: str, kind: str) -> bytes:
    """The current (partial or finished) maps of one model."""
    progress = data.sessions[name].maps.get(kind)
    header: dict[str, Any] = {"kind": "maps", "model": name, "map_kind": kind}
    if progress is None:
        return encode_frame({**header, "done": 0, "total": 0, "finished": False}, {})
    header.update(
        done=progress.done, total=progress.total, finished=progress.finished, error=progress.error
    )
    arrays = {f"{name}/{key}": value for key, value in progress.arrays.items()}
    return encode_frame(header, arrays)


class ViewerApp:
    """Holds the data and the token; its methods are the route handlers."""

    def __init__(
        self, data: ViewerData, token: str | None = None, opener: Opener | None = None
    ) -> None:
        self.data = data
        self.token = token
        self.opener = opener

    def authorised(self, query: Any, cookies: dict[str, str]) -> bool:
        """True when no token is needed or the request carries the right one."""
        if self.token is None:
            return True
        given = query.get("token") or cookies.get(TOKEN_COOKIE) or ""
        return secrets.compare_digest(given, self.token)

    def new_state(self) -> ViewerState:
        """The state a new page starts in."""
        return ViewerState(self.data.shape, list(self.data.sessions))

    async def index(self, request: Request) -> Response:
        """The page; sets the token cookie so that module and API requests pass."""
        response = FileResponse(STATIC_DIR / "index.html", media_type="text/html")
        if self.token is not None:
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
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
                "models": list(self.data.sessions),
                "shape": list(self.data.shape),
                "inputs": [image.source for image in self.data.image_set],
            }
        )

    async def export(self, request: Request) -> Response:
        """The data of a view as ``.npz``: inputs, fused, maps, the pixel's Jacobian rows."""
        query = request.query_params
        try:
            name = query.get("model") or next(iter(self.data.sessions))
            if name not in self.data.sessions:
                raise FuseVisError(f"unknown model {name!r}")
            pixel = (int(query.get("row", "")), int(query.get("col", "")))
            rows = await asyncio.wrap_future(
                self.data.submit(self.data.full_jacobians, name, pixel)
            )
        except ValueError:
            return JSONResponse({"error": "row and col must be integers"}, status_code=400)
        except FuseVisError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        session = self.data.sessions[name]
        arrays = {f"input_{k}": x for k, x in enumerate(self.data.inputs)}
        arrays["fused"] = session.fused
        arrays["pixel"] = np.array(pixel)
        for kind, progress in session.maps.items():
            if progress.finished:
                arrays.update({k: v for k, v in progress.arrays.items() if k.startswith(kind)})
        arrays.update({f"jacobian_{k}": r for k, r in enumerate(rows)})
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        filename = f"fusevis-{name}-{pixel[0]}-{pixel[1]}.npz"
        return Response(
            buffer.getvalue(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def open(self, request: Request) -> Response:
        """Load other inputs and models; a bad path or model name gets an error page."""
        if self.opener is None:
            return error_page("this viewer was started without the ability to open files", 403)
        inputs = request.query_params.getlist("input")
        models = request.query_params.getlist("model")
        if not inputs or not models:
            return error_page("give at least one input= and one model=")
        try:
            data = await asyncio.to_thread(self.opener, inputs, models)
        except FuseVisError as error:
            return error_page(str(error))
        old, self.data = self.data, data
        old.close()
        return HTMLResponse(
            "<!doctype html><meta http-equiv='refresh' content='0; url=/'>opened", status_code=200
        )

    async def websocket(self, socket: WebSocket) -> None:
        """One page: apply its messages, answer the latest pixel, forward map progress."""
        if not self.authorised(socket.query_params, socket.cookies):
            await socket.close(code=1008, reason="missing or wrong token")
            return
        await socket.accept()
        await Connection(self.data, self.new_state(), socket).serve()


class Connection:
    """One websocket client; only its latest pending pixel request is ever answered."""

    def __init__(self, data: ViewerData, state: ViewerState, socket: WebSocket) -> None:
        self.data = data
        self.state = state
        self.socket = socket
        self.wanted = asyncio.Event()
        self.seq = 0
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()

    def on_maps(self, name: str, kind: str, event: dict[str, Any]) -> None:
        """Called from the map worker: queue a maps frame if the model is in view."""
        if name in self.state.in_view and kind in ("guidance", self.state.map_kind):
            self.loop.call_soon_threadsafe(self._queue_maps, name, kind)

    def _queue_maps(self, name: str, kind: str) -> None:
        self.outbox.put_nowait(maps_frame(self.data, name, kind))

    async def serve(self) -> None:
        """Run the reader, the pixel responder and the sender until the page goes away."""
        self.data.add_listener(self.on_maps)
        await self.send_view()
        tasks = [
            asyncio.create_task(self.read()),
            asyncio.create_task(self.respond()),
            asyncio.create_task(self.send()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            self.data.remove_listener(self.on_maps)

    async def send_view(self) -> None:
        """Send images and the maps of every model in view."""
        await self.outbox.put(images_frame(self.data, self.state))
        for name in self.state.in_view:
            kinds = ["guidance"] + (["influence"] if self.state.map_kind == "influence" else [])
            for kind in kinds:
                if self.data.compute_maps or kind == "influence":
                    self.data.request_maps(name, kind)
                await self.outbox.put(maps_frame(self.data, name, kind))
        self.wanted.set()

    async def read(self) -> None:
        """Apply each message to the state; pixel changes only mark a frame as wanted."""
        try:
            while True:
                message = json.loads(await self.socket.receive_text())
                try:
                    change = self.state.apply(message)
                except (FuseVisError, KeyError, TypeError, ValueError) as error:
                    await self.outbox.put(
                        encode_frame({"kind": "error", "message": str(error)}, {})
                    )
                    continue
                if "seq" in message:
                    self.seq = int(message["seq"])
                if change.view:
                    await self.send_view()
                elif change.pixel:
                    self.wanted.set()
        except (WebSocketDisconnect, RuntimeError):
            return

    async def respond(self) -> None:
        """Answer the latest wanted pixel; requests that arrived meanwhile collapse into one."""
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            seq, names, pixel = self.seq, self.state.in_view, self.state.pixel
            header, arrays = await asyncio.wrap_future(
                self.data.submit(self.data.pixel_frame, names, pixel)
            )
            header.update(seq=seq, pinned=self.state.pinned)
            await self.outbox.put(encode_frame(header, arrays))

    async def send(self) -> None:
        """Write queued frames to the socket in order."""
        try:
            while True:
                await self.socket.send_bytes(await self.outbox.get())
        except (WebSocketDisconnect, RuntimeError):
            return


def create_app(data: ViewerData, token: str | None = None, opener: Opener | None = None) -> FastAPI:
    """The FastAPI application serving ``data``; ``token`` guards every route."""
    viewer = ViewerApp(data, token, opener)
    routes = [
        Route("/", viewer.index),
        Route("/static/{path:path}", viewer.static),
        Route("/api/session", viewer.session),
        Route("/api/export.npz", viewer.export),
        Route("/open", viewer.open),
        WebSocketRoute("/ws", viewer.websocket),
    ]
    app = FastAPI(title="FuseVis viewer", routes=routes, docs_url=None, redoc_url=None)
    app.state.viewer = viewer

    @app.middleware("http")
    async def require_token(request: Request, call_next: Callable) -> Response:
        if not viewer.authorised(request.query_params, request.cookies):
            return Response("missing or wrong token", status_code=403, media_type="text/plain")
        return await call_next(request)

    return app
