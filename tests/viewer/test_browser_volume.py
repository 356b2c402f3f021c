"""Moving through a volume in the viewer, in Debian's Chromium (Playwright), on a tiny pair."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fusevis.io import load_images
from fusevis.models.inference import as_tensors
from fusevis.saliency import MapCache, PixelJacobian
from fusevis.viewer.data import ViewerData
from fusevis.viewer.server import RunningViewer, start_in_thread
from fusevis.viewer.volume import VolumeSet
from tests.notebook.conftest import TinyFusion
from tests.viewer.browser import chromium, viewer_page
from tests.viewer.volumes import write_pair

playwright_api = pytest.importorskip("playwright.sync_api")

SHAPE = (32, 32, 6)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_pair(tmp_path_factory.mktemp("volumes"), SHAPE)


@pytest.fixture(scope="module")
def server(paths: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningViewer]:
    volume = VolumeSet.read(paths)
    start = (2, 3)
    data = ViewerData(
        volume.image_set(start),
        {"Tiny": TinyFusion()},
        MapCache(tmp_path_factory.mktemp("maps")),
        ask_above_s=math.inf,
        volume=volume,
        start=start,
    )
    running = start_in_thread(data)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(chromium_path: Path, server: RunningViewer) -> Iterator[object]:
    with chromium(chromium_path) as browser, viewer_page(browser, server.url) as opened:
        yield opened


def engine_slice(paths: list[Path], axis: int, index: int) -> tuple[torch.Tensor, ...]:
    """The slice's inputs as a 2-D run of it reads them."""
    return tuple(as_tensors(load_images(paths, slice_index=index, axis=axis).stack()))


def wait_for_slice(page: object, key: str) -> None:
    page.wait_for_function(
        f"window.fusevis.slice === '{key}' && "
        f"document.getElementById('panels').dataset.slice === '{key}'",
        timeout=15_000,
    )


def shown_fused(page: object) -> np.ndarray:
    values, shape = page.evaluate(
        "[Array.from(window.fusevis.store.model('Tiny').fused), window.fusevis.store.shape]"
    )
    return np.array(values, np.float32).reshape(shape)


def hover(page: object, row: int, col: int) -> dict:
    """Hover image pixel (row, col) of the fused panel; the painted answer's header."""
    height, width = page.evaluate("window.fusevis.store.shape")
    box = page.locator("canvas[aria-label^='fused']").bounding_box()
    x = box["x"] + (col + 0.5) * box["width"] / width
    y = box["y"] + (row + 0.5) * box["height"] / height
    page.mouse.move(x, y)
    page.wait_for_function(
        "window.fusevis.lastPixel && "
        f"window.fusevis.lastPixel.header.pixel.join() === '{row},{col}' && "
        "window.fusevis.lastPixel.header.slice.join() === window.fusevis.slice",
        timeout=15_000,
    )
    return page.evaluate(
        """() => { const f = window.fusevis.lastPixel; const info = f.header.models.Tiny;
            return {slice: f.header.slice, window: info.window, fused: info.fused,
                    j0: Array.from(f.arrays['Tiny/jacobian_0'].data),
                    j1: Array.from(f.arrays['Tiny/jacobian_1'].data)}; }"""
    )


def test_the_slider_shows_the_slice_and_hovers_explain_it(page: object, paths: list[Path]) -> None:
    assert page.locator("#slice-controls").is_visible()
    assert page.locator("#slice").get_attribute("max") == "5"
    assert page.locator("#slice").input_value() == "3"
    page.locator("#slice").fill("4")
    wait_for_slice(page, "2,4")
    tensors = engine_slice(paths, 2, 4)
    with torch.no_grad():
        fused = TinyFusion()(*tensors)[0, 0].numpy()
    np.testing.assert_allclose(shown_fused(page), fused, atol=1e-6)
    answer = hover(page, 10, 20)
    assert answer["slice"] == [2, 4] and answer["fused"] == pytest.approx(fused[10, 20], abs=1e-6)
    top, bottom, left, right = answer["window"]
    rows = PixelJacobian(TinyFusion()).attribute(tensors, pixel=(10, 20))
    for k in range(2):
        expected = rows[k][0, 0, top:bottom, left:right].numpy()
        got = np.array(answer[f"j{k}"], np.float32).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, atol=1e-6)
    # the slice's guidance maps stream in after: G_k(p) is the diagonal of its Jacobian
    page.wait_for_function(
        "window.fusevis.store.model('Tiny').maps.guidance?.finished === true", timeout=30_000
    )
    guidance = page.evaluate("Array.from(window.fusevis.store.shownMaps('Tiny')[0])")
    assert guidance[10 * 32 + 20] == pytest.approx(float(rows[0][0, 0, 10, 20]), abs=1e-5)


def test_page_keys_step_slices_and_a_blank_slice_says_why(page: object) -> None:
    page.locator("canvas[aria-label^='fused']").hover()
    start = int(page.evaluate("window.fusevis.store.state.volume.index"))
    page.keyboard.press("PageUp")
    wait_for_slice(page, f"2,{start + 1}")
    page.keyboard.press("PageDown")
    page.keyboard.press("PageDown")
    wait_for_slice(page, f"2,{start - 1}")
    page.keyboard.press("Alt+ArrowDown")
    wait_for_slice(page, f"2,{start - 2}")
    for _ in range(start - 2):
        page.keyboard.press("PageDown")
    wait_for_slice(page, "2,0")  # constant in input 2: no panels, the reason instead
    assert not page.locator("#panels").is_visible()
    assert "axial slice 0 is constant in input 2" in page.locator("#message").inner_text()
    assert page.locator("#slice").input_value() == "0"
    page.keyboard.press("PageUp")
    wait_for_slice(page, "2,1")
    assert page.locator("#panels").is_visible() and page.locator("#message").inner_text() == ""


def test_another_axis_shows_its_middle_slice(page: object, paths: list[Path]) -> None:
    page.locator("#axis").select_option("1")
    wait_for_slice(page, "1,16")
    assert page.evaluate("window.fusevis.store.shape") == [6, 32]
    assert page.locator("#slice").get_attribute("max") == "31"
    with torch.no_grad():
        fused = TinyFusion()(*engine_slice(paths, 1, 16))[0, 0].numpy()
    np.testing.assert_allclose(shown_fused(page), fused, atol=1e-6)
    assert hover(page, 2, 7)["slice"] == [1, 16]
    times = page.evaluate("window.fusevis.sliceTimes")
    assert times and all(t["images"] <= t["pixel"] for t in times)
