"""A 3-D network in the viewer, in Debian's Chromium (Playwright): a voxel's three planes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fusevis.saliency.volumetric import VoxelJacobian, row_planes, volume_maps
from fusevis.viewer.server import RunningViewer, start_in_thread
from fusevis.viewer.volume3d import plane_of, voxel_of
from tests.viewer.browser import chromium, viewer_page
from tests.viewer.test_volume3d import tiny_volume_data

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningViewer]:
    data, _ = tiny_volume_data(tmp_path_factory.mktemp("volumes3d"), maps=True)
    running = start_in_thread(data)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(chromium_path: Path, server: RunningViewer) -> Iterator[object]:
    with chromium(chromium_path) as browser, viewer_page(browser, server.url) as opened:
        yield opened


def test_hovering_a_voxel_paints_its_three_planes(page: object, server: RunningViewer) -> None:
    assert page.evaluate("window.fusevis.store.state.active") == "Deep"
    height, width = page.evaluate("window.fusevis.store.shape")
    row, col = 4, 6
    box = page.locator("canvas[aria-label^='fused']").first.bounding_box()
    page.mouse.move(
        box["x"] + (col + 0.5) * box["width"] / width,
        box["y"] + (row + 0.5) * box["height"] / height,
    )
    page.wait_for_function(
        f"window.fusevis.lastPixel?.header.pixel.join() === '{row},{col}' && "
        "document.querySelectorAll('#planes figure').length === 6",
        timeout=15_000,
    )
    assert page.locator("#planes").is_visible()
    figures = page.evaluate(
        """() => [...document.querySelectorAll('#planes figure')].map((f) => {
            const c = f.querySelector('canvas');
            const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0;
            for (let i = 0; i < pixels.length; i += 4) lit += pixels[i] + pixels[i + 2] > 30;
            return {input: +f.dataset.input, plane: f.dataset.plane, value: +f.dataset.value,
                    lit, caption: f.querySelector('figcaption').textContent}; })"""
    )
    data = server.data
    voxel = voxel_of((2, 5), (row, col), data.volume.depths, True)
    rows = VoxelJacobian(data.deep.models["Deep"], data.deep.tensors).row(voxel)
    names = ["axial", "coronal", "sagittal"]
    for figure in figures:
        row_k = rows[figure["input"]]
        planes = row_planes(row_k, voxel)
        assert figure["value"] == pytest.approx(float(row_k[voxel]), rel=1e-5, abs=1e-9)
        assert figure["lit"] > 20  # the field's non-zero values are painted
        assert np.count_nonzero(planes[names.index(figure["plane"])]) > 20
        assert figure["plane"] in figure["caption"]
    assert sorted((f["input"], f["plane"]) for f in figures) == sorted(
        (k, n) for k in range(2) for n in names
    )

    # the guidance volumes, computed once in the background, show the slice in view
    page.wait_for_function(
        "window.fusevis.store.model('Deep').maps.guidance?.finished === true", timeout=30_000
    )
    shown = page.evaluate("Array.from(window.fusevis.store.shownMaps('Deep')[0])")
    guidance = volume_maps(data.deep.models["Deep"], data.deep.tensors).guidance[0].sum(axis=0)
    expected = plane_of(guidance, (2, 5), rotate=True)
    np.testing.assert_allclose(np.reshape(shown, expected.shape), expected, atol=1e-6)
