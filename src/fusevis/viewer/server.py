"""Starting the viewer: bind, print the URL, open a browser, serve with uvicorn."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from fusevis.errors import FuseVisError
from fusevis.viewer.app import Opener, create_app
from fusevis.viewer.engine import ViewerData


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free port), or a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise FuseVisError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    return sock


@dataclass
class RunningViewer:
    """A viewer served from a background thread (tests, benchmarks, notebooks)."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    data: ViewerData

    def stop(self) -> None:
        """Shut the server down and stop the viewer's threads."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.data.close()


def _prepare(
    data: ViewerData, host: str, port: int, token: str | None, opener: Opener | None
) -> tuple[uvicorn.Server, socket.socket, str]:
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}/" + (f"?token={token}" if token else "")
    app = create_app(data, token=token, opener=opener)
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="off")
    return uvicorn.Server(config), sock, url


def serve(
    data: ViewerData,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    token: str | None = None,
    opener: Opener | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the viewer until interrupted.

    A non-loopback ``host`` gets a random token, which the printed URL carries; requests
    without it are refused.
    """
    server, sock, url = _prepare(data, host, port, token, opener)
    announce(f"FuseVis viewer: {url}")
    if not is_loopback(host):
        announce("listening beyond this machine: only URLs with the token are answered")
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        data.close()


def start_in_thread(
    data: ViewerData,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    opener: Opener | None = None,
) -> RunningViewer:
    """Serve the viewer from a daemon thread and return once it accepts connections."""
    server, sock, url = _prepare(data, host, port, token, opener)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fusevis-server", daemon=True
    )
    thread.start()
    for _ in range(500):
        if server.started:
            break
        thread.join(timeout=0.02)
    if not server.started:
        raise FuseVisError("the viewer server did not start")
    return RunningViewer(url, server, thread, data)
