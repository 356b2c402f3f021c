"""The server through a test client: routes, static files, token, errors, websocket frames.

The attacks themselves (foreign Host and Origin, missing or mangled tokens, clients that
never read, malformed messages) are tested against a real server in
``tests/security/test_viewer.py``.
"""

import asyncio
import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fusevis.errors import InputError
from fusevis.saliency import MapCache
from fusevis.viewer.access import Access
from fusevis.viewer.app import MAX_MESSAGE_CHARS, Outbox, create_app, parse_message
from fusevis.viewer.data import ViewerData
from fusevis.viewer.frames import decode_frame
from fusevis.viewer.scheduler import estimates_available
from tests.viewer.slow import SlowAttention, small_set

TOKEN = "s3cret-token-of-the-tests"


@pytest.fixture(scope="module")
def client(demo_data: ViewerData) -> TestClient:
    """A client that opened the page with the token, so that it holds the cookie."""
    authorised = TestClient(create_app(demo_data, Access(TOKEN)), base_url="http://localhost")
    assert authorised.get(f"/?token={TOKEN}").status_code == 200
    return authorised


def test_page_modules_and_session(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module"' in page.text
    for module in ("data.js", "views.js", "main.js"):
        response = client.get(f"/static/js/{module}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").status_code == 200
    session = client.get("/api/session").json()
    assert session["models"] == ["DeepFuse", "MaskNet"] and session["shape"] == [256, 256]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/%2E%2E%2Fapp.py",
        "/static/js/%2e%2e/%2e%2e/app.py",
        "/static/..%5capp.py",
        "/static/js/../../../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/",
        "/static/nothing.js",
    ],
)
def test_static_files_never_escape_their_folder(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "import" not in response.text and "root:" not in response.text


def test_token_is_required_and_traded_for_a_cookie(demo_data: ViewerData) -> None:
    guarded = TestClient(create_app(demo_data, Access(TOKEN)), base_url="http://localhost")
    assert guarded.get("/").status_code == 403
    assert guarded.get("/api/session").status_code == 403
    assert guarded.get("/static/js/main.js").status_code == 403
    assert guarded.get("/?token=wrong").status_code == 403
    assert guarded.get("/?token=%C3%A9").status_code == 403
    with pytest.raises(Exception):  # noqa: B017 - the handshake is refused
        with guarded.websocket_connect("ws://localhost/ws") as socket:
            socket.receive_bytes()
    page = guarded.get(f"/?token={TOKEN}")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert guarded.cookies.get("fusevis_token") == TOKEN
    assert guarded.get("/static/js/main.js").status_code == 200  # the cookie carries it now
    with guarded.websocket_connect(f"ws://localhost/ws?token={TOKEN}") as socket:
        header, _ = decode_frame(socket.receive_bytes())
        assert header["kind"] == "images"


def test_host_and_origin_are_checked(client: TestClient) -> None:
    assert client.get("/api/session", headers={"Host": "evil.example"}).status_code == 403
    assert client.get("/api/session", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/api/session", headers={"Origin": "http://localhost"}).status_code == 200
    with pytest.raises(Exception):  # noqa: B017 - a cross-origin handshake is refused
        with client.websocket_connect(
            f"ws://localhost/ws?token={TOKEN}", headers={"Origin": "http://evil.example"}
        ) as ws:
            ws.receive_bytes()


def test_no_route_opens_files_or_models(client: TestClient) -> None:
    query = {"input": ["/etc/passwd", "/etc/hosts"], "model": "os:getpid"}
    assert client.get("/open", params=query).status_code == 404
    posted = client.post("/open", data=query, headers={"Origin": "http://localhost"})
    assert posted.status_code in (404, 405)
    assert client.post("/open", data=query).status_code == 403  # no Origin: refused first
    assert client.get("/api/export.npz", params={"row": 999, "col": 0}).status_code == 400
    assert "outside" in client.get("/api/export.npz", params={"row": 999, "col": 0}).json()["error"]
    assert client.get("/api/session").status_code == 200  # still serving


def test_outbox_keeps_the_latest_frame_of_each_kind() -> None:
    async def run() -> list[bytes]:
        outbox = Outbox()
        for index in range(2000):
            outbox.put(("maps", "A", "guidance"), lambda i=index: b"A%d" % i)
            outbox.put(("maps", "B", "guidance"), lambda i=index: b"B%d" % i)
        outbox.put(("images",), lambda: b"images")
        outbox.put(("maps", "A", "guidance"), lambda: b"A-last")
        assert len(outbox) == 3
        return [await outbox.get() for _ in range(3)]

    assert asyncio.run(run()) == [b"B1999", b"images", b"A-last"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid JSON"),
        ('{"type": "hover", "row": NaN}', "not valid JSON"),
        ('{"type": "hover", "row": -Infinity}', "not valid JSON"),
        ('{"type": "hover", "row": 1e999}', "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"row": 1}', "string 'type'"),
        ('{"type": "hover", "seq": 1.5}', "'seq'"),
        ('{"type": "hover", "seq": true}', "'seq'"),
        ("[" * 3000 + "]" * 3000, "nested"),
        ('{"type": "x", "pad": "' + "x" * MAX_MESSAGE_CHARS + '"}', "at most"),
    ],
)
def test_malformed_messages_are_input_errors(text: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        parse_message(text)


def test_a_valid_message_and_its_seq() -> None:
    assert parse_message('{"type": "hover", "row": 1, "col": 2.5, "seq": 7}') == (
        {"type": "hover", "row": 1, "col": 2.5, "seq": 7},
        7,
    )


def test_hover_answers_with_the_engines_jacobian_window(
    client: TestClient, demo_data: ViewerData
) -> None:
    with client.websocket_connect(f"ws://localhost/ws?token={TOKEN}") as socket:
        kinds = []
        while "pixel" not in kinds:  # images, maps, then the first pixel frame
            header, _ = decode_frame(socket.receive_bytes())
            kinds.append(header["kind"])
        assert kinds[0] == "images"
        socket.send_json({"type": "hover", "row": 100, "col": 90, "seq": 7})
        while True:
            header, arrays = decode_frame(socket.receive_bytes())
            if header["kind"] == "pixel" and header["seq"] == 7:
                break
        assert header["pixel"] == [100, 90]
        info = header["models"]["DeepFuse"]
        top, bottom, left, right = info["window"]
        session = demo_data.hover.sessions["DeepFuse"]
        full = session.jacobian.attribute(demo_data.tensors, pixel=(100, 90))
        for k in range(2):
            expected = full[k][0, 0, top:bottom, left:right].numpy()
            np.testing.assert_allclose(arrays[f"DeepFuse/jacobian_{k}"], expected, atol=1e-7)
            assert info["jacobian_at_pixel"][k] == pytest.approx(float(full[k][0, 0, 100, 90]))
        socket.send_json({"type": "dance"})
        while True:
            header, _ = decode_frame(socket.receive_bytes())
            if header["kind"] == "error":
                break
        assert "unknown message type 'dance'" in header["message"]


def test_export_npz_holds_the_pixels_jacobians(client: TestClient, demo_data: ViewerData) -> None:
    response = client.get("/api/export.npz", params={"model": "MaskNet", "row": 5, "col": 250})
    assert response.status_code == 200
    with np.load(io.BytesIO(response.content)) as data:
        assert {"input_0", "input_1", "fused", "jacobian_0", "jacobian_1", "pixel"} <= set(
            data.files
        )
        assert data["jacobian_0"].shape == (256, 256)
        full = demo_data.hover.sessions["MaskNet"].jacobian.attribute(
            demo_data.tensors, pixel=(5, 250)
        )
        np.testing.assert_allclose(data["jacobian_1"], full[1][0, 0].numpy(), atol=1e-7)


@pytest.fixture(scope="module")
def slow_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, object]]:
    """A viewer of a global-attention network whose every pixel takes 0.4 s."""
    model = SlowAttention()
    cache = MapCache(tmp_path_factory.mktemp("slow-cache"))
    data = ViewerData(small_set(12), {"Attention": model}, cache, ask_above_s=30)
    model.delay.seconds = 0.4
    data.hover.submit(data.pixel_frame, ["Attention"], (0, 0)).result()  # times one hover
    client = TestClient(create_app(data, Access(TOKEN)), base_url="http://localhost")
    assert client.get(f"/?token={TOKEN}").status_code == 200
    yield client, data
    model.delay.seconds = 0.0
    data.close()


def frames_until(socket: object, wanted: object, limit: int = 200) -> list[dict]:
    """Headers of the frames received up to and including the first one ``wanted`` accepts."""
    seen = []
    for _ in range(limit):
        header, _ = decode_frame(socket.receive_bytes())
        seen.append(header)
        if wanted(header):
            return seen
    raise AssertionError(f"no such frame among {[h['kind'] for h in seen]}")


@pytest.mark.filterwarnings("ignore:For backward hooks to be called")
def test_a_slow_pixel_is_announced_and_overtaken_hovers_are_never_computed(
    slow_client: tuple[TestClient, ViewerData],
) -> None:
    client, data = slow_client
    with client.websocket_connect(f"ws://localhost/ws?token={TOKEN}") as socket:
        first = frames_until(socket, lambda h: h["kind"] == "pixel")
        computing = [h for h in first if h["kind"] == "computing"]
        assert computing, "a 0.4 s pixel was not announced"
        info = computing[-1]["models"]["Attention"]
        assert computing[-1]["pixel"] == [6, 6] and info["method"] == "full" and not info["local"]
        assert info["expected_ms"] == pytest.approx(400, abs=250)
        began = time.perf_counter()
        pixels = [(1, 1), (2, 3), (4, 5), (7, 8), (9, 10), (11, 2)]
        for seq, (row, col) in enumerate(pixels, start=1):
            socket.send_json({"type": "hover", "row": row, "col": col, "seq": seq})
        seen = frames_until(socket, lambda h: h["kind"] == "pixel" and h["seq"] == len(pixels))
        took = time.perf_counter() - began
        answered = [h["seq"] for h in seen if h["kind"] == "pixel"]
        # the pixel in flight when the burst began may finish; no other stale one is computed
        assert answered[-1] == len(pixels) and len(answered) <= 2, answered
        assert seen[-1]["pixel"] == [11, 2]
        assert took < 3 * 0.4 + 1.5, f"{took:.2f} s for the latest of {len(pixels)} hovers"


@pytest.mark.filterwarnings("ignore:For backward hooks to be called")
def test_long_maps_wait_for_the_pages_go(slow_client: tuple[TestClient, ViewerData]) -> None:
    client, data = slow_client
    with client.websocket_connect(f"ws://localhost/ws?token={TOKEN}") as socket:
        seen = frames_until(
            socket, lambda h: h["kind"] in ("maps", "progress") and h["state"] == "ask"
        )
        asked = seen[-1]
        assert asked["model"] == "Attention" and asked["map_kind"] == "guidance"
        assert asked["predicted_s"] == pytest.approx(144 * 0.4, rel=0.6) and asked["done"] == 0
        assert asked["estimates"] is estimates_available()
        assert data.maps.queued == [] and data.maps.progress("Attention", "guidance").done == 0
        socket.send_json({"type": "compute_maps", "model": "Attention", "kind": "guidance"})
        frames_until(
            socket,
            lambda h: h["kind"] in ("maps", "progress") and h["state"] in ("queued", "running"),
        )
        assert data.maps.progress("Attention", "guidance").confirmed
        socket.send_json({"type": "compute_maps", "model": "Nobody", "kind": "guidance"})
        error = frames_until(socket, lambda h: h["kind"] == "error")[-1]
        assert "unknown model 'Nobody'" in error["message"]
