"""A volume over the websocket and the export route: slice messages, blank slices, refusals."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fusevis.saliency import MapCache
from fusevis.viewer.access import Access
from fusevis.viewer.app import create_app
from fusevis.viewer.data import ViewerData
from fusevis.viewer.frames import decode_frame
from fusevis.viewer.volume import VolumeSet
from tests.notebook.conftest import TinyFusion
from tests.viewer.volumes import write_pair

TOKEN = "s3cret-token-of-the-volume-tests"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    paths = write_pair(tmp_path_factory.mktemp("volumes"))
    volume = VolumeSet.read(paths)
    data = ViewerData(
        volume.image_set((2, 3)),
        {"Tiny": TinyFusion()},
        MapCache(tmp_path_factory.mktemp("maps")),
        compute_maps=False,
        ask_above_s=math.inf,
        volume=volume,
        start=(2, 3),
    )
    client = TestClient(create_app(data, Access(TOKEN)), base_url="http://localhost")
    assert client.get(f"/?token={TOKEN}").status_code == 200
    yield client
    data.close()


def frames_until(socket: object, done: Callable[[dict], bool]) -> list[tuple[dict, dict]]:
    seen = []
    while True:
        header, arrays = decode_frame(socket.receive_bytes())
        seen.append((header, arrays))
        if done(header):
            return seen


def test_slice_messages_over_the_websocket(client: TestClient) -> None:
    assert client.get("/api/session").json()["volume"]["depths"] == [12, 10, 6]
    with client.websocket_connect(f"ws://localhost/ws?token={TOKEN}") as socket:
        first = frames_until(socket, lambda h: h["kind"] == "pixel")
        assert first[0][0]["kind"] == "images" and first[0][0]["state"]["volume"]["index"] == 3
        for bad in ({"index": 6}, {"index": "2"}, {"axis": "up"}, {"index": 1.5}):
            socket.send_json({"type": "slice", **bad})
            error = frames_until(socket, lambda h: h["kind"] == "error")[-1][0]
            assert "\n" not in error["message"]
        socket.send_json({"type": "slice", "index": 4, "seq": 5})
        seen = frames_until(socket, lambda h: h["kind"] == "pixel" and h["seq"] == 5)
        images = [(h, a) for h, a in seen if h["kind"] == "images"]
        assert images and images[-1][0]["state"]["volume"]["index"] == 4
        assert seen[-1][0]["slice"] == [2, 4]
        # its maps only after its images and its first pixel
        assert not [h for h, _ in seen if h["kind"] == "maps" and h["slice"] == [2, 4]]
        maps = frames_until(socket, lambda h: h["kind"] in ("maps", "progress"))[-1][0]
        assert maps["slice"] == [2, 4]
        assert images[-1][1]["input_0"].shape == (10, 12)
        socket.send_json({"type": "slice", "index": 0})
        seen = frames_until(socket, lambda h: h["kind"] == "images")
        blank = seen[-1][0]
        assert "constant in input 2" in blank["blank"] and blank["state"]["volume"]["index"] == 0
        socket.send_json({"type": "hover", "row": 1, "col": 1, "seq": 9})  # nothing to explain
        error = frames_until(socket, lambda h: h["kind"] == "error")[-1][0]
        assert "constant in input 2" in error["message"]


def test_the_export_names_its_slice(client: TestClient) -> None:
    query = {"model": "Tiny", "row": 2, "col": 3, "axis": "coronal", "slice": 4}
    response = client.get("/api/export.npz", params=query)
    assert response.status_code == 200
    with np.load(io.BytesIO(response.content)) as data:
        assert list(data["slice"]) == [1, 4] and data["fused"].shape == (6, 12)
    for bad in ({"slice": 99}, {"axis": "up"}, {"slice": "x"}, {"axis": "axial", "slice": 0}):
        refused = client.get("/api/export.npz", params={**query, **bad})
        assert refused.status_code == 400 and "error" in refused.json()


def test_an_idle_page_has_the_axis_fused_ahead(client: TestClient) -> None:
    data = client.app.state.viewer.data
    with client.websocket_connect(f"ws://localhost/ws?token={TOKEN}") as socket:
        frames_until(socket, lambda h: h["kind"] == "pixel")
        socket.send_json({"type": "slice", "axis": "coronal", "index": 5, "seq": 3})
        frames_until(socket, lambda h: h["kind"] == "pixel" and h["seq"] == 3)
        deadline = time.monotonic() + 20
        while not data.swept((1, 5), ["Tiny"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert data.swept((1, 5), ["Tiny"]), "the idle page's axis was not swept"
    assert all(((1, index), "Tiny") in data.fused_slices for index in range(10))
