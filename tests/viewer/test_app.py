"""The server through a test client: routes, static files, token, errors, websocket frames."""

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fusevis.cli.view import opener_for
from fusevis.viewer.app import create_app
from fusevis.viewer.engine import ViewerData
from fusevis.viewer.frames import decode_frame


@pytest.fixture(scope="module")
def client(demo_data: ViewerData, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    cache = tmp_path_factory.mktemp("open-cache")
    return TestClient(create_app(demo_data, opener=opener_for("gray", "minmax", cache)))


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


def test_token_is_required_when_set(demo_data: ViewerData) -> None:
    guarded = TestClient(create_app(demo_data, token="s3cret"))
    assert guarded.get("/").status_code == 403
    assert guarded.get("/api/session").status_code == 403
    assert guarded.get("/static/js/main.js").status_code == 403
    assert guarded.get("/?token=wrong").status_code == 403
    with pytest.raises(Exception):  # noqa: B017 - the socket is closed before accepting
        with guarded.websocket_connect("/ws") as socket:
            socket.receive_bytes()
    page = guarded.get("/?token=s3cret")
    assert page.status_code == 200
    assert guarded.cookies.get("fusevis_token") == "s3cret"
    assert guarded.get("/static/js/main.js").status_code == 200  # the cookie carries it now
    with guarded.websocket_connect("/ws?token=s3cret") as socket:
        header, _ = decode_frame(socket.receive_bytes())
        assert header["kind"] == "images"


def test_bad_input_path_or_model_gets_an_error_page(client: TestClient, tmp_path: Path) -> None:
    missing = client.get(
        "/open", params={"input": ["/no/such.png", "/no/b.png"], "model": "DeepFuse"}
    )
    assert missing.status_code == 400 and "text/html" in missing.headers["content-type"]
    assert "/no/such.png: no such file" in missing.text
    from fusevis.io import export_demo

    pair = [str(p) for p in export_demo("mri-pet", tmp_path)]
    unknown = client.get("/open", params={"input": pair, "model": "NoSuchNet"})
    assert unknown.status_code == 400 and "unknown model &#x27;NoSuchNet&#x27;" in unknown.text
    assert client.get("/api/session").status_code == 200  # still serving
    assert client.get("/api/export.npz", params={"row": 999, "col": 0}).status_code == 400
    assert "outside" in client.get("/api/export.npz", params={"row": 999, "col": 0}).json()["error"]


def test_hover_answers_with_the_engines_jacobian_window(
    client: TestClient, demo_data: ViewerData
) -> None:
    with client.websocket_connect("/ws") as socket:
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
        session = demo_data.sessions["DeepFuse"]
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
        full = demo_data.sessions["MaskNet"].jacobian.attribute(demo_data.tensors, pixel=(5, 250))
        np.testing.assert_allclose(data["jacobian_1"], full[1][0, 0].numpy(), atol=1e-7)
