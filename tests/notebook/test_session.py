"""The widget's kernel side, driven as the page drives it, without a browser."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from fusevis.io import ImageSet, image_from_array
from fusevis.notebook.session import LatestOutbox, NotebookSession
from fusevis.saliency import MapCache
from fusevis.viewer.data import ViewerData
from fusevis.viewer.frames import decode_frame
from tests.notebook.conftest import TinyFusion, random_pair
from tests.viewer.slow import SlowAttention, small_set


class Page:
    """What the page receives: decoded frames (and other messages), in order."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, object]] = []
        self.lock = threading.Lock()

    def send(self, content: dict, buffers: list[bytes]) -> None:
        with self.lock:
            if content.get("frame"):
                self.received.append(decode_frame(buffers[0]))
            else:
                self.received.append((content, buffers))

    def headers(self, kind: str) -> list[dict]:
        with self.lock:
            return [h for h, _ in self.received if h.get("kind") == kind]

    def wait(self, condition: object, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, [h.get("kind") for h, _ in self.received]
            time.sleep(0.01)


@pytest.fixture
def tiny(tmp_path: object) -> Iterator[tuple[NotebookSession, Page]]:
    a, b = random_pair(20)
    images = ImageSet([image_from_array(a, "a"), image_from_array(b, "b")])
    data = ViewerData(images, {"Tiny": TinyFusion()}, MapCache(tmp_path), compute_maps=False)
    page = Page()
    session = NotebookSession(data, page.send)
    yield session, page
    session.close()


def test_a_hover_is_answered_with_the_engines_frame_for_that_pixel(tiny) -> None:
    session, page = tiny
    session.handle({"type": "ready"})
    page.wait(lambda: page.headers("images") and page.headers("pixel"))
    session.handle({"type": "hover", "row": 3, "col": 17, "seq": 5})
    page.wait(lambda: any(h["pixel"] == [3, 17] for h in page.headers("pixel")))
    header, arrays = next(
        (h, a) for h, a in page.received if h.get("kind") == "pixel" and h["pixel"] == [3, 17]
    )
    assert header["seq"] == 5 and session.state.pixel == (3, 17)
    data = session.data
    expected_header, expected = data.hover.submit(data.pixel_frame, ["Tiny"], (3, 17)).result()
    assert header["models"]["Tiny"]["window"] == expected_header["models"]["Tiny"]["window"]
    for key, values in expected.items():
        np.testing.assert_array_equal(arrays[key], values.astype(np.float32))


def test_python_moves_the_pixel_and_the_page_gets_its_answer(tiny) -> None:
    session, page = tiny
    session.set_pixel((0, 19))
    page.wait(lambda: any(h["pixel"] == [0, 19] for h in page.headers("pixel")))
    assert session.last_answer[0]["pixel"] == [0, 19]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("hover", "a message must be a JSON object, not str"),
        ({"type": "hover", "row": 1}, "message 'hover' lacks the field 'col'"),
        ({"type": "hover", "row": 99, "col": 0}, "pixel (99, 0) is outside the 20x20 image"),
        ({"type": "fly"}, "unknown message type 'fly'"),
        ({"type": "hover", "row": float("nan"), "col": 0}, "JSON object of finite numbers"),
    ],
)
def test_bad_messages_get_one_line_errors_in_the_page(tiny, message, error) -> None:
    session, page = tiny
    session.handle(message)
    page.wait(lambda: page.headers("error"))
    (shown,) = page.headers("error")
    assert error in shown["message"] and "\n" not in shown["message"]


def test_the_npz_export_holds_the_pixels_full_jacobian_rows(tiny) -> None:
    session, page = tiny
    session.set_pixel((4, 5))
    session.handle({"type": "export_npz"})
    page.wait(lambda: any("download" in c for c, _ in page.received))
    content, buffers = next((c, b) for c, b in page.received if "download" in c)
    assert content["download"] == "fusevis-Tiny-4-5.npz"
    saved = np.load(io.BytesIO(buffers[0]))
    rows = session.data.hover.submit(session.data.hover.full_jacobians, "Tiny", (4, 5)).result()
    np.testing.assert_array_equal(saved["jacobian_1"], rows[1])
    assert list(saved["pixel"]) == [4, 5]


def test_the_outbox_keeps_only_the_latest_message_of_each_kind() -> None:
    release = threading.Event()
    sent: list[tuple[dict, list[bytes]]] = []

    def send(content: dict, buffers: list[bytes]) -> None:
        release.wait(5)
        sent.append((content, buffers))

    outbox = LatestOutbox(send)
    outbox.put(("first",), lambda: ({"n": 0}, []))  # taken by the sender, which now waits
    time.sleep(0.1)
    for n in range(1, 50):
        outbox.put(("pixel",), lambda n=n: ({"n": n}, []))
        outbox.put(("maps", "A"), lambda n=n: ({"maps": n}, []))
    assert len(outbox) == 2
    release.set()
    deadline = time.monotonic() + 5
    while len(sent) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    outbox.close()
    assert [c for c, _ in sent] == [{"n": 0}, {"n": 49}, {"maps": 49}]


@pytest.mark.filterwarnings("ignore:For backward hooks to be called")
def test_hovers_during_a_slow_pixel_collapse_into_the_latest(tmp_path) -> None:
    model = SlowAttention()
    data = ViewerData(small_set(12), {"Attention": model}, MapCache(tmp_path), compute_maps=False)
    page = Page()
    session = NotebookSession(data, page.send)
    try:
        session.handle({"type": "ready"})
        page.wait(lambda: page.headers("pixel"))
        model.delay.seconds = 0.3
        pixels = [(1, 1), (2, 3), (4, 5), (7, 8), (9, 10), (11, 2)]
        for seq, (row, col) in enumerate(pixels, start=1):
            session.handle({"type": "hover", "row": row, "col": col, "seq": seq})
        page.wait(lambda: any(h["pixel"] == [11, 2] for h in page.headers("pixel")))
        answered = [h["pixel"] for h in page.headers("pixel")][1:]
        assert len(answered) <= 2 and answered[-1] == [11, 2], answered
        assert page.headers("computing"), "a 0.3 s pixel was not announced"
    finally:
        model.delay.seconds = 0.0
        session.close()


def test_maps_stream_to_the_page_with_their_progress(tmp_path) -> None:
    a, b = random_pair(16)
    images = ImageSet([image_from_array(a, "a"), image_from_array(b, "b")])
    data = ViewerData(images, {"Tiny": TinyFusion()}, MapCache(tmp_path), compute_maps=True)
    page = Page()
    session = NotebookSession(data, page.send)
    try:
        session.handle({"type": "ready"})
        page.wait(lambda: any(h.get("finished") for h in page.headers("maps")), timeout=60)
        states = [h["state"] for h in page.headers("maps") + page.headers("progress")]
        assert "finished" in states and set(states) <= {"queued", "running", "paused", "finished"}
        header, arrays = next(
            (h, a) for h, a in page.received if h.get("kind") == "maps" and h["finished"]
        )
        expected = data.maps.arrays("Tiny", "guidance")
        np.testing.assert_array_equal(arrays["Tiny/guidance_1"], expected["guidance_1"])
    finally:
        session.close()
