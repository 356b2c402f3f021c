"""Starting the viewer: bind, print the URL with its token, open a browser, serve with uvicorn.

Every viewer has a random token, loopback included (see :mod:`fusevis.viewer.access`): the
URL that is printed and opened carries it as ``?token=``, and the page trades it for an
HttpOnly SameSite=Strict cookie. ``allow_hosts`` (``--allow-host``) names the host names,
besides loopback and the bound address, under which the viewer may be reached.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import uvicorn

from fusevis.errors import FuseVisError
from fusevis.viewer.access import WILDCARD_HOSTS, Access
from fusevis.viewer.app import WS_MAX_SIZE, create_app
from fusevis.viewer.data import ViewerData


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
    """A viewer served from a background thread (tests, benchmarks, notebooks).

    ``url`` is the page's address with ``?token=``; ``origin`` is ``http://host:port``.
    """

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    data: ViewerData
    access: Access
    origin: str

    @property
    def token(self) -> str:
        """The token every request must carry (``?token=`` or the page's cookie)."""
        return self.access.token

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.origin.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Shut the server down and stop the viewer's threads."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.data.close()


def _prepare(
    data: ViewerData, host: str, port: int, token: str | None, allow_hosts: Iterable[str]
) -> tuple[uvicorn.Server, socket.socket, Access, str]:
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    try:
        access = Access.for_server(host, bound_port, token, allow_hosts)
    except FuseVisError:
        sock.close()
        raise
    shown = "127.0.0.1" if host.strip("[]") in WILDCARD_HOSTS else host
    shown = f"[{shown}]" if ":" in shown else shown
    app = create_app(data, access)
    config = uvicorn.Config(
        app,
        log_level="warning",
        ws="websockets-sansio",
        lifespan="off",
        ws_max_size=WS_MAX_SIZE,
        server_header=False,
    )
    return uvicorn.Server(config), sock, access, f"http://{shown}:{bound_port}"


def serve(
    data: ViewerData,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    token: str | None = None,
    allow_hosts: Iterable[str] = (),
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    """Serve the viewer until interrupted.

    The printed (and opened) URL carries a random token (or ``token``); requests without
    it, from another origin or naming a host outside loopback, ``host`` and
    ``allow_hosts`` are refused.
    """
    server, sock, access, origin = _prepare(data, host, port, token, allow_hosts)
    url = f"{origin}/?token={access.token}"
    announce(f"FuseVis viewer: {url}")
    if host.strip("[]") in WILDCARD_HOSTS:
        announce(
            "listening on every interface: from another machine open "
            f"http://<this machine's address>:{sock.getsockname()[1]}/?token=...; "
            "a name other than this machine's own needs --allow-host NAME"
        )
    elif not is_loopback(host):
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
    allow_hosts: Iterable[str] = (),
) -> RunningViewer:
    """Serve the viewer from a daemon thread and return once it accepts connections."""
    server, sock, access, origin = _prepare(data, host, port, token, allow_hosts)
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
    return RunningViewer(f"{origin}/?token={access.token}", server, thread, data, access, origin)
