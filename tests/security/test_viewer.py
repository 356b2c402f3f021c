"""Attacks on the viewer, against a real uvicorn on loopback with raw Host and Origin headers.

The viewer runs as the README starts it (``fusevis view a.png b.png --model ...`` in its own
process, loopback, printed URL) or from :func:`fusevis.viewer.server.start_in_thread`. Each
test reproduces one attack of issue 11 and measures the harm: a marker file that code run
by a request would write, the HTTP status and the frames a hostile page's websocket gets,
the peak resident memory of the server process under a client that never reads, and
whether a connection still answers after malformed messages.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import select
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from fusevis.viewer.frames import decode_frame

GIB = 1 << 30
MIB = 1 << 20
EVIL = "evil.example"
PROBE_MODULE = "fusevis_evil_probe"
PROBE_CODE = """
from pathlib import Path
Path({marker!r}).write_text("imported")


def Build():
    Path({marker!r}).write_text("called")
    return None
"""


@dataclass
class Viewer:
    """A ``fusevis view`` server process and what it printed."""

    process: subprocess.Popen
    url: str
    port: int
    token: str
    inputs: list[Path]

    @property
    def own_origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def memory_kib(self, field: str) -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for the server")

    def ws_url(self, token: str | None = None) -> str:
        given = self.token if token is None else token
        return f"ws://127.0.0.1:{self.port}/ws" + (f"?token={given}" if given else "")


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (3 * GIB, 3 * GIB))


def write_pair(folder: Path, size: int) -> list[Path]:
    rng = np.random.default_rng(11)
    paths = []
    for k in range(2):
        path = folder / f"input{k + 1}.png"
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def start_viewer(folder: Path, size: int = 32) -> Viewer:
    """``python -m fusevis view`` on a random pair with WeightedAverage; waits for its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = write_pair(folder, size)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "fusevis", "view", *map(str, inputs)]
    command += ["--model", "WeightedAverage", "--no-browser", "--port", "0"]
    command += ["--cache", str(folder / "cache")]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=(folder / "server.err").open("wb"),
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=folder,
        preexec_fn=_cap_memory,  # noqa: PLW1509
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if "FuseVis viewer:" in line:
                url = line.split("FuseVis viewer:", 1)[1].strip()
                parts = urllib.parse.urlsplit(url)
                token = urllib.parse.parse_qs(parts.query).get("token", [""])[0]
                return Viewer(process, url, int(parts.port or 80), token, inputs)
        if process.poll() is not None:
            break
    process.kill()
    process.wait()
    raise AssertionError(f"the viewer did not start: {(folder / 'server.err').read_text()}")


def stop_viewer(viewer: Viewer) -> None:
    viewer.process.terminate()
    try:
        viewer.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        viewer.process.kill()
        viewer.process.wait()
    viewer.process.stdout.close()


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    running = start_viewer(tmp_path_factory.mktemp("viewer"))
    yield running
    stop_viewer(running)


def request(
    viewer: Viewer,
    path: str,
    host: str | None = None,
    headers: dict[str, str | bytes] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A raw HTTP request to the viewer with the given Host (default: the right one)."""
    connection = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host or f"127.0.0.1:{viewer.port}")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def with_token(viewer: Viewer, path: str, token: str | None = None) -> str:
    given = viewer.token if token is None else token
    joiner = "&" if "?" in path else "?"
    return f"{path}{joiner}token={given}" if given else path


def ws_handshake(
    viewer: Viewer, host: str | None, origin: str | None, token: str | None = None
) -> tuple[int, bytes]:
    """A raw websocket handshake: the status and whatever bytes follow within a second."""
    path = with_token(viewer, "/ws", token)
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{viewer.port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", viewer.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        deadline = time.monotonic() + 3
        while b"\r\n\r\n" not in received and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head else 0
        sock.settimeout(1.0)
        try:
            while len(rest) < 1 << 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return status, rest


def receive_until(
    socket_: ClientConnection, wanted: Callable[[dict], bool], timeout: float = 30
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no such frame arrived"
        header, _ = decode_frame(socket_.recv(timeout=left))
        if wanted(header):
            return header


# -- no request imports or runs code -------------------------------------------------------
def test_open_with_a_foreign_host_never_runs_a_model_file(viewer: Viewer, tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    payload = tmp_path / "payload.py"
    payload.write_text(PROBE_CODE.format(marker=str(marker)))
    query = urllib.parse.urlencode(
        [("input", str(viewer.inputs[0])), ("input", str(viewer.inputs[1]))]
        + [("model", f"{payload}:Build")]
    )
    # what an <img src="http://127.0.0.1:port/open?..."> on a rebound evil.example sends
    headers = {"Origin": f"http://{EVIL}", "Referer": f"http://{EVIL}/"}
    statuses = [
        request(viewer, path, host=f"{EVIL}:{viewer.port}", headers=headers)[0]
        for path in (f"/open?{query}", with_token(viewer, f"/open?{query}"))
    ]
    time.sleep(0.5)
    assert not marker.exists(), "a request ran code from a .py file"
    assert statuses == [403, 403]


def test_no_request_imports_a_module_even_with_the_token(viewer: Viewer) -> None:
    folder = viewer.inputs[0].parent  # on the server's PYTHONPATH
    marker = folder / "module-ran.txt"
    (folder / f"{PROBE_MODULE}.py").write_text(PROBE_CODE.format(marker=str(marker)))
    fields = [("input", str(p)) for p in viewer.inputs] + [("model", f"{PROBE_MODULE}:Build")]
    query = urllib.parse.urlencode(fields)
    statuses = [request(viewer, with_token(viewer, f"/open?{query}"))[0]]
    statuses.append(
        request(
            viewer,
            with_token(viewer, "/open"),
            method="POST",
            headers={
                "Origin": viewer.own_origin,
                "Content-Type": "application/x-www-form-urlencoded",
            },
            body=query.encode(),
        )[0]
    )
    for spec in ("os:getpid", f"{PROBE_MODULE}:Build"):
        statuses.append(request(viewer, with_token(viewer, f"/open?model={spec}"))[0])
    time.sleep(0.5)
    assert not marker.exists(), "a request imported a module named in it"
    assert all(status in (400, 403, 404, 405) for status in statuses), statuses


# -- Host, Origin, token ------------------------------------------------------------------
ROUTES = ["/", "/api/session", "/api/export.npz?row=3&col=4", "/static/js/main.js"]


@pytest.mark.parametrize("path", ROUTES)
def test_a_foreign_host_is_refused_even_with_the_token(viewer: Viewer, path: str) -> None:
    for host in (EVIL, f"{EVIL}:{viewer.port}", "127.0.0.1.evil.example", "localhost.evil"):
        status, _, body = request(viewer, with_token(viewer, path), host=host)
        assert status == 403, (host, status)
        assert str(viewer.inputs[0]).encode() not in body
    status, _, body = request(viewer, with_token(viewer, path))
    assert status == 200


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST"]
)
def test_the_loopback_names_are_allowed(viewer: Viewer, host: str) -> None:
    status, _, body = request(
        viewer, with_token(viewer, "/api/session"), host=host.format(port=viewer.port)
    )
    assert status == 200 and json.loads(body)["models"] == ["WeightedAverage"]


@pytest.mark.parametrize("path", ROUTES)
def test_a_token_is_required_on_loopback(viewer: Viewer, path: str) -> None:
    assert "?token=" in viewer.url and len(viewer.token) >= 32
    assert request(viewer, path)[0] == 403
    assert request(viewer, with_token(viewer, path, "wrong"))[0] == 403
    assert request(viewer, with_token(viewer, path, viewer.token[:-1]))[0] == 403
    assert request(viewer, with_token(viewer, path))[0] == 200


@pytest.mark.parametrize(
    "token", ["%C3%A9t%C3%A9", "%FF%FE", "%00", "%E2%80%8B{token}", "{token}%C3%A9", "a" * 5000]
)
def test_a_non_ascii_or_malformed_query_token_is_a_403(viewer: Viewer, token: str) -> None:
    status, _, _ = request(
        viewer, with_token(viewer, "/api/session", token.format(token=viewer.token))
    )
    assert status == 403


@pytest.mark.parametrize(
    "cookie",
    [
        "fusevis_token=\xe9t\xe9".encode("latin-1"),
        b"fusevis_token=\xc3\xa9",
        b"fusevis_token",
        b"=; ;;==",
        b"fusevis_token=\xff; other=1",
    ],
)
def test_a_non_ascii_or_malformed_cookie_is_a_403(viewer: Viewer, cookie: bytes) -> None:
    status, _, _ = request(viewer, "/api/session", headers={"Cookie": cookie})
    assert status == 403
    # the cookie the page receives, mangled the same way
    status, headers, _ = request(viewer, with_token(viewer, "/"))
    name = headers["set-cookie"].split("=", 1)[0]
    for value in (b"\xc3\xa9", b"\xff" * 40, viewer.token.encode() + b"\xe9"):
        status, _, _ = request(
            viewer, "/api/session", headers={"Cookie": name.encode() + b"=" + value}
        )
        assert status == 403


def test_the_page_trades_the_token_for_a_strict_httponly_cookie(viewer: Viewer) -> None:
    status, headers, body = request(viewer, with_token(viewer, "/"))
    assert status == 200 and b'<script type="module"' in body
    cookie = headers["set-cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes
    pair = cookie.split(";", 1)[0]
    assert pair.split("=", 1)[1] == viewer.token
    assert request(viewer, "/api/session", headers={"Cookie": pair})[0] == 200
    assert request(viewer, "/api/session", host=EVIL, headers={"Cookie": pair})[0] == 403
    # an <img> on a page from another local port: same site for SameSite, so the cookie
    # goes along; the browser marks it, and the cookie alone is then not enough
    other_port = {"Cookie": pair, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"}
    assert request(viewer, "/api/export.npz?row=1&col=1", headers=other_port)[0] == 403


def test_a_foreign_origin_is_refused_on_http(viewer: Viewer) -> None:
    for origin in (f"http://{EVIL}", "null", f"http://127.0.0.1:{viewer.port + 1}"):
        status, _, _ = request(
            viewer, with_token(viewer, "/api/session"), headers={"Origin": origin}
        )
        assert status == 403, origin
    status, _, _ = request(
        viewer, with_token(viewer, "/api/session"), headers={"Origin": viewer.own_origin}
    )
    assert status == 200


def test_a_cross_origin_websocket_receives_no_frame(viewer: Viewer) -> None:
    own_host = f"127.0.0.1:{viewer.port}"
    refused = [
        (own_host, f"http://{EVIL}", None),  # any page in any tab, right token or not
        (own_host, f"http://{EVIL}", ""),
        (f"{EVIL}:{viewer.port}", f"http://{EVIL}:{viewer.port}", None),  # DNS rebinding
        (own_host, "null", None),
        (own_host, viewer.own_origin, ""),  # no token
        (own_host, viewer.own_origin, "%C3%A9"),
    ]
    for host, origin, token in refused:
        status, rest = ws_handshake(viewer, host, origin, token)
        assert status == 403, (host, origin, token, status)  # no upgrade: no frame
    status, rest = ws_handshake(viewer, own_host, viewer.own_origin)
    assert status == 101 and len(rest) > 0  # the right page gets its images
    with pytest.raises(InvalidStatus) as refusal:
        with connect(viewer.ws_url(), origin=f"http://{EVIL}", proxy=None) as socket_:
            socket_.recv(timeout=5)
    assert refusal.value.response.status_code == 403


def test_allow_host_admits_a_named_host_only(tmp_path: Path) -> None:
    from fusevis.io import load_images
    from fusevis.viewer.data import build_viewer_data
    from fusevis.viewer.server import start_in_thread

    pair = write_pair(tmp_path, 32)
    data = build_viewer_data(load_images(pair), ["WeightedAverage"], cache=tmp_path / "cache")
    running = start_in_thread(data, allow_hosts=["fusevis.lan"])
    try:
        parts = urllib.parse.urlsplit(running.url)
        token = urllib.parse.parse_qs(parts.query)["token"][0]
        assert token == running.token
        viewer = Viewer(None, running.url, int(parts.port), token, pair)  # type: ignore[arg-type]
        path = with_token(viewer, "/api/session")
        assert request(viewer, path, host=f"fusevis.lan:{viewer.port}")[0] == 200
        assert request(viewer, path, host="FuseVis.LAN")[0] == 200
        assert request(viewer, path, host="other.lan")[0] == 403
        status, _ = ws_handshake(
            viewer, f"fusevis.lan:{viewer.port}", f"http://fusevis.lan:{viewer.port}"
        )
        assert status == 101
        status, _ = ws_handshake(viewer, f"fusevis.lan:{viewer.port}", f"http://{EVIL}")
        assert status == 403
    finally:
        running.stop()


# -- bounded clients ----------------------------------------------------------------------
def test_a_client_that_never_reads_cannot_grow_the_servers_memory(tmp_path: Path) -> None:
    running = start_viewer(tmp_path / "flood", size=128)
    try:
        with connect(
            running.ws_url(), proxy=None, max_queue=2, max_size=None, ping_interval=None
        ) as socket_:
            receive_until(socket_, lambda h: h["kind"] == "pixel")
            time.sleep(0.5)
            before = running.memory_kib("VmHWM")
            for _ in range(1000):
                socket_.send('{"type": "maps", "kind": "guidance"}')
                socket_.send('{"type": "maps", "kind": "influence"}')
            socket_.send('{"type": "hover", "row": 5, "col": 6, "seq": 424242}')
            # the server reads every message while this client reads nothing; wait until
            # it has stopped growing (the old unbounded queue grew by ~0.5 MB a message)
            last, steady, deadline = -1, 0, time.monotonic() + 60
            while steady < 6 and time.monotonic() < deadline:
                time.sleep(0.25)
                now = running.memory_kib("VmRSS")
                steady = steady + 1 if abs(now - last) < 256 else 0
                last = now
            answer = receive_until(socket_, lambda h: h.get("seq") == 424242, timeout=120)
            assert answer["kind"] == "pixel" and answer["pixel"] == [5, 6]
        peak = running.memory_kib("VmHWM")
        assert running.process.poll() is None, "the server died"
    finally:
        stop_viewer(running)
    growth_mib = (peak - before) / 1024
    print(f"peak RSS growth under the flood: {growth_mib:.1f} MiB")
    assert growth_mib < 100, f"the server's peak RSS grew by {growth_mib:.0f} MiB"


BAD_MESSAGES: list[str | bytes] = [
    "not json",
    b"\x00\x01 a binary frame",
    '{"type": "hover", "row": NaN, "col": 1}',
    '{"type": "gamma", "kind": "guidance", "value": Infinity}',
    '{"type": "hover", "row": 1e400, "col": 1}',
    '{"type": "hover", "row": 1, "col": 1, "seq": "abc"}',
    '{"type": "move", "drow": -1e400, "dcol": 0}',
    '{"type": "move", "drow": "far", "dcol": 0}',
    "[1, 2, 3]",
    '"hover"',
    "null",
    '{"type": "dance"}',
    '{"type": ["hover"]}',
    '{"type": "hover", "row": [1], "col": {"a": 1}}',
    "[" * 5000 + "]" * 5000,
    json.dumps({"type": "hover", "row": 1, "col": 1, "pad": "x" * 200_000}),
]


def test_malformed_messages_get_an_error_frame_and_the_connection_stays(viewer: Viewer) -> None:
    with connect(viewer.ws_url(), proxy=None, max_size=None) as socket_:
        receive_until(socket_, lambda h: h["kind"] == "pixel")
        for seq, message in enumerate(BAD_MESSAGES, start=1):
            socket_.send(message)
            error = receive_until(socket_, lambda h: h["kind"] == "error", timeout=10)
            assert error["message"], message
            row, col = seq % 32, (3 * seq) % 32
            socket_.send(json.dumps({"type": "hover", "row": row, "col": col, "seq": seq}))
            answer = receive_until(socket_, lambda h, s=seq: h.get("seq") == s, timeout=10)
            assert answer["kind"] == "pixel" and answer["pixel"] == [row, col], message
    assert viewer.process.poll() is None
