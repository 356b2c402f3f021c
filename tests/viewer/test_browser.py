"""The viewer in Debian's Chromium, driven by Playwright, against a real loopback server."""

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fusevis.saliency import MapCache
from fusevis.viewer.data import ViewerData
from fusevis.viewer.scheduler import estimates_available
from fusevis.viewer.server import RunningViewer, start_in_thread
from tests.viewer.browser import chromium, viewer_page
from tests.viewer.slow import SlowAttention, small_set

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(demo_data: ViewerData) -> Iterator[RunningViewer]:
    running = start_in_thread(demo_data)
    yield running
    running.server.should_exit = True
    running.thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[object]:
    with chromium(chromium_path) as launched:
        yield launched


@pytest.fixture
def page(browser: object, server: RunningViewer) -> Iterator[object]:
    with viewer_page(browser, server.url) as opened:
        yield opened


def fused_canvas_point(page: object, row: int, col: int) -> tuple[float, float]:
    """Whole-number screen coordinates inside an image pixel of the fused panel.

    Chromium reports mouse positions in whole CSS pixels, so the point is rounded up to one
    that still falls inside the wanted image pixel (the panel shows one pixel per CSS px).
    """
    box = page.locator("canvas[aria-label^='fused']").bounding_box()
    assert box["width"] == 256 and box["height"] == 256
    return math.ceil(box["x"] + col), math.ceil(box["y"] + row)


def hover(page: object, row: int, col: int) -> dict:
    before = page.evaluate("window.fusevis.painted")
    page.mouse.move(*fused_canvas_point(page, row, col))
    page.wait_for_function(
        f"window.fusevis.painted > {before} && "
        f"window.fusevis.store.state.pixel.join() === '{row},{col}'",
        timeout=15_000,
    )
    return page.evaluate("window.fusevis.store.state")


def canvas_pixels(page: object, label: str) -> np.ndarray:
    data = page.evaluate(
        """(label) => {
            const c = document.querySelector(`canvas[aria-label='${label}']`);
            return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
        }""",
        label,
    )
    return np.array(data, np.uint8).reshape(256, 256, 4)


def test_hover_draws_the_jacobians_the_engine_computes(page: object, demo_data: ViewerData) -> None:
    state = hover(page, 120, 100)
    assert state["pixel"] == [120, 100] and not state["pinned"]
    held = page.evaluate(
        """() => {
            const f = window.fusevis.lastPixel;
            const info = f.header.models['DeepFuse'];
            return {window: info.window, j0: Array.from(f.arrays['DeepFuse/jacobian_0'].data),
                    j1: Array.from(f.arrays['DeepFuse/jacobian_1'].data)};
        }"""
    )
    top, bottom, left, right = held["window"]
    rows = demo_data.hover.sessions["DeepFuse"].jacobian.attribute(
        demo_data.tensors, pixel=(120, 100)
    )
    for k in range(2):
        expected = rows[k][0, 0, top:bottom, left:right].numpy()
        got = np.array(held[f"j{k}"], np.float32).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, atol=1e-7, rtol=0)
    panel = canvas_pixels(page, "J1 (DeepFuse)")
    inside = panel[top:bottom, left:right, :3].astype(int).sum()
    assert inside > 0, "the Jacobian window was not drawn"
    outside = panel[:, :, :3].astype(int).copy()
    outside[top - 3 : bottom + 3, left - 3 : right + 3] = 0
    assert outside.sum() == 0, "the J panel shows values outside the receptive field"
    readout = page.locator("#readout").inner_text()
    assert "pixel (row 120, col 100)" in readout and "DeepFuse: fused" in readout


def test_panels_stay_put_when_the_readout_and_progress_bars_change(page: object) -> None:
    fused = page.locator("canvas[aria-label^='fused']")
    before = fused.bounding_box()
    hover(page, 70, 70)  # the readout grows from one line to several
    assert fused.bounding_box() == before
    page.evaluate(
        """() => {
            document.getElementById('readout').textContent = 'line\\n'.repeat(5);
            document.getElementById('progress').innerHTML =
                '<div class="bar">maps <progress></progress></div>'.repeat(8);
        }"""
    )
    assert fused.bounding_box() == before


def test_gamma_slider_recolours_without_a_server_message(page: object) -> None:
    hover(page, 60, 130)
    frames_sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", frames_sent.append))
    sent_before = page.evaluate("window.fusevis.sent")
    before = canvas_pixels(page, "J1 (DeepFuse)")
    page.locator("#gamma-jacobian").fill("0.3")
    page.wait_for_function("document.querySelector('#gamma-jacobian-value').textContent === '0.30'")
    after = canvas_pixels(page, "J1 (DeepFuse)")
    assert np.abs(after.astype(int) - before.astype(int)).sum() > 0
    assert page.evaluate("window.fusevis.sent") == sent_before
    assert frames_sent == []


def test_pin_and_arrow_key_move_the_pixel_by_one(page: object) -> None:
    hover(page, 80, 80)
    x, y = fused_canvas_point(page, 80, 80)
    page.mouse.click(x, y)
    page.wait_for_function("window.fusevis.store.state.pinned === true")
    before = page.evaluate("window.fusevis.painted")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"window.fusevis.painted > {before} && window.fusevis.store.state.pixel.join() === '80,81'"
    )
    page.keyboard.press("ArrowDown")
    page.wait_for_function("window.fusevis.store.state.pixel.join() === '81,81'")
    page.mouse.move(x + 40, y + 40)  # pinned: hovering elsewhere changes nothing
    page.wait_for_timeout(300)
    assert page.evaluate("window.fusevis.store.state.pixel") == [81, 81]


def test_region_and_brush_selections_link_images_and_scatter(page: object) -> None:
    hover(page, 127, 126)
    page.wait_for_function(
        "window.fusevis.store.shownMaps('DeepFuse')[0] !== null", timeout=120_000
    )
    x0, y0 = fused_canvas_point(page, 100, 100)
    x1, y1 = fused_canvas_point(page, 109, 104)
    page.keyboard.down("Shift")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert page.evaluate("window.fusevis.selectionCount") == 10 * 5
    box = page.locator("canvas.scatter").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2)
    page.mouse.up()
    assert page.evaluate("window.fusevis.selectionCount") > 1000


def test_side_by_side_and_screenshot_of_the_whole_tool(page: object, artifacts: Path) -> None:
    page.wait_for_function(
        "window.fusevis.store.model('DeepFuse').maps.guidance?.finished === true", timeout=240_000
    )
    hover(page, 110, 92)
    page.screenshot(path=str(artifacts / "viewer.png"), full_page=True)
    page.locator("#compare-boxes input[value='DeepFuse']").check()
    page.locator("#compare-boxes input[value='MaskNet']").check()
    page.wait_for_function("window.fusevis.store.state.in_view.length === 2")
    page.wait_for_function("Object.keys(window.fusevis.lastPixel.header.models).length === 2")
    assert page.locator("canvas[aria-label='MaskNet J2']").count() == 1
    page.screenshot(path=str(artifacts / "viewer-side-by-side.png"), full_page=True)
    assert (artifacts / "viewer.png").stat().st_size > 50_000


def test_export_buttons_download_the_view_and_its_data(page: object, artifacts: Path) -> None:
    hover(page, 90, 140)
    with page.expect_download() as png:
        page.locator("#export-png").click()
    saved = artifacts / "viewer-export.png"
    png.value.save_as(saved)
    from PIL import Image

    with Image.open(saved) as image:
        assert image.width >= 3 * 256 and image.height >= 3 * 256
    with page.expect_download() as npz:
        page.locator("#export-npz").click()
    data_path = artifacts / "viewer-export.npz"
    npz.value.save_as(data_path)
    with np.load(data_path) as data:
        assert list(data["pixel"]) == [90, 140]
        assert data["jacobian_0"].shape == (256, 256)


def test_the_token_leaves_the_address_bar_and_the_cookie_keeps_the_page_working(
    page: object, server: RunningViewer
) -> None:
    assert "?token=" in server.url
    assert "token" not in page.url and page.url.rstrip("/") == server.origin
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    page.reload()
    page.wait_for_function("window.fusevis && window.fusevis.ready", timeout=30_000)
    hover(page, 40, 50)


def test_a_page_from_another_origin_gets_no_websocket(
    browser: object, server: RunningViewer
) -> None:
    """A real page at http://evil.example that knows even the token gets no frame."""
    context = browser.new_context()
    try:
        context.route(
            "http://evil.example/",
            lambda route: route.fulfill(content_type="text/html", body="<title>evil</title>"),
        )
        evil = context.new_page()
        evil.goto("http://evil.example/")
        outcome = evil.evaluate(
            """(url) => new Promise((resolve) => {
                const socket = new WebSocket(url);
                let frames = 0;
                socket.onmessage = () => { frames += 1; };
                socket.onclose = () => resolve({frames});
                setTimeout(() => resolve({frames, timeout: true}), 5000);
            })""",
            f"ws://127.0.0.1:{server.port}/ws?token={server.token}",
        )
        assert outcome["frames"] == 0 and not outcome.get("timeout"), outcome
    finally:
        context.close()


# -- a slow network: what is computed, latest pixel wins, the prompt before long maps ------
SLOW_SIZE = 32
SLOW_SECONDS = 0.3


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningViewer]:
    """A global-attention network whose every pixel takes 0.3 s; maps over 60 s ask first."""
    model = SlowAttention()
    cache = MapCache(tmp_path_factory.mktemp("slow-cache"))
    data = ViewerData(small_set(SLOW_SIZE), {"Attention": model}, cache, ask_above_s=60)
    model.delay.seconds = SLOW_SECONDS
    data.hover.submit(data.pixel_frame, ["Attention"], (0, 0)).result()  # times one hover
    running = start_in_thread(data)
    yield running
    model.delay.seconds = 0.0  # a map job the test started ends quickly
    running.stop()


def slow_point(page: object, row: int, col: int) -> tuple[float, float]:
    """The centre of image pixel (row, col) of the fused panel (8 CSS px per pixel here)."""
    box = page.locator("canvas[aria-label^='fused']").bounding_box()
    scale = box["width"] / SLOW_SIZE
    return box["x"] + (col + 0.5) * scale, box["y"] + (row + 0.5) * scale


@pytest.mark.filterwarnings("ignore:For backward hooks to be called")
def test_a_slow_network_says_what_it_computes_and_the_latest_pixel_wins(
    browser: object, slow_server: RunningViewer
) -> None:
    context = browser.new_context(viewport={"width": 1300, "height": 1150})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(slow_server.url)
        page.wait_for_function("window.fusevis && window.fusevis.painted > 0", timeout=30_000)
        page.mouse.move(*slow_point(page, 5, 7))
        page.wait_for_function(
            "document.getElementById('activity').textContent.includes('row 5, col 7')",
            timeout=10_000,
        )
        activity = page.locator("#activity").inner_text()
        assert "computing pixel (row 5, col 7): Attention [full image" in activity
        assert "a pixel" in activity  # the expected time per pixel, from the last hover
        page.wait_for_function("window.fusevis.store.state.pixel.join() === '5,7'", timeout=10_000)
        page.wait_for_function("document.getElementById('activity').textContent === ''")
        assert "[full, 0.3 s]" in page.locator("#readout").inner_text()
        painted_before = page.evaluate("window.fusevis.paintedPixels.length")
        path = [slow_point(page, *pixel) for pixel in [(8, 8), (9, 10), (11, 12), (20, 21)]]
        page.evaluate(  # four mouse moves within a millisecond, well inside one 0.3 s pixel
            """(points) => {
                const canvas = document.querySelector("canvas[aria-label^='fused']");
                for (const [x, y] of points) {
                    canvas.dispatchEvent(new MouseEvent('mousemove', {clientX: x, clientY: y}));
                }
            }""",
            path,
        )
        page.wait_for_function(
            "window.fusevis.store.state.pixel.join() === '20,21'", timeout=10_000
        )
        painted = page.evaluate("window.fusevis.paintedPixels")[painted_before:]
        # latest wins: the last pixel, and at most the one already in flight before it (which
        # one depends on how the browser batched the four events on a loaded machine)
        assert painted[-1] == "20,21" and len(painted) <= 2, f"stale pixels computed: {painted}"
        assert set(painted) <= {"8,8", "9,10", "11,12", "20,21"}, painted
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.filterwarnings("ignore:For backward hooks to be called")
def test_long_maps_are_offered_not_started(browser: object, slow_server: RunningViewer) -> None:
    context = browser.new_context(viewport={"width": 1300, "height": 1150})
    try:
        page = context.new_page()
        page.goto(slow_server.url)
        page.wait_for_function("window.fusevis && window.fusevis.ready", timeout=30_000)
        exact = page.locator("#progress button.compute-exact")
        exact.wait_for(timeout=15_000)
        # the page shows the scheduler's prediction (one timed hover per pixel, so at least the
        # network's sleep per pixel; more on a loaded machine, never less)
        predicted_s = page.evaluate(
            "window.fusevis.store.model('Attention').maps.guidance.predicted_s"
        )
        assert predicted_s >= SLOW_SIZE * SLOW_SIZE * SLOW_SECONDS, predicted_s
        minutes = math.floor(predicted_s / 60 + 0.5)  # as the page rounds (half up)
        assert exact.inner_text() == f"compute exact maps (~{minutes} min)"
        line = page.locator("#progress .bar[data-state='ask']").inner_text()
        assert line.startswith("guidance maps Attention would take ~")
        estimate = page.locator("#progress button.compute-estimate")
        assert estimate.is_disabled() is not estimates_available()
        data = slow_server.data
        assert data.maps.progress("Attention", "guidance").done == 0, "it started by itself"
        sent = page.evaluate("window.fusevis.sent")
        exact.click()
        page.wait_for_function(
            "['queued', 'running', 'paused', 'finished']"
            ".includes(window.fusevis.store.model('Attention').maps.guidance.state)",
            timeout=10_000,
        )
        assert page.evaluate("window.fusevis.sent") == sent + 1
        assert data.maps.progress("Attention", "guidance").confirmed
        assert page.locator("#progress button.compute-exact").count() == 0
    finally:
        context.close()
