"""The Explorer in JupyterLab, in Debian's Chromium (Playwright), against a real server.

The test starts JupyterLab on loopback with a token (``tests/notebook/jupyter.py``), opens
a notebook, runs the cell that shows an Explorer on a 64² crop of the demo pair, hovers a
pixel of the fused image and checks the page against the engine and the kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fusevis.io import ImageSet, image_from_array
from fusevis.models.inference import as_tensors
from fusevis.models.specs import load_named_models
from fusevis.saliency import PixelJacobian
from tests.conftest import LAUNCH_ARGS
from tests.notebook.conftest import demo_crop
from tests.notebook.jupyter import RunningLab, jupyterlab, write_notebook

playwright_api = pytest.importorskip("playwright.sync_api")


SIZE = 64
HOVERED = (20, 41)
MOVED = (50, 12)
CELLS = [
    "from fusevis.notebook import Explorer\n"
    "from tests.notebook.conftest import demo_crop\n"
    f"mri, pet = demo_crop({SIZE})\n"
    "w = Explorer('DeepFuse', (mri, pet))\n"
    "w",
    "print('PIXEL', tuple(w.pixel), w.pinned)",
    f"w.pixel = {MOVED}",
    "print('REGION', w.region, int(w.region_mask.sum()))",
]
APP = "window.jupyterapp.shell.currentWidget"
RUN_CELL = f"""async (index) => {{
    const notebook = {APP}.content;
    notebook.deselectAll();  // run this cell only, whatever was selected
    notebook.activeCellIndex = index;
    await window.jupyterapp.commands.execute('notebook:run-cell');
}}"""
OUTPUT = f"""(index) => {{
    const node = {APP}.content.widgets[index].node.querySelector('.jp-OutputArea-output');
    return node ? node.innerText : null;
}}"""
WIDGET = "window.fusevisWidgets && window.fusevisWidgets[0]"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with jupyterlab(tmp_path_factory.mktemp("jupyterlab")) as running:
        # the kernel imports this repository's tests package (demo_crop)
        (running.root / "tests").symlink_to(Path(__file__).parents[1], target_is_directory=True)
        write_notebook(running.root / "explore.ipynb", CELLS)
        yield running


def engine_rows(pixel: tuple[int, int]) -> tuple[list[int], list[np.ndarray]]:
    """DeepFuse's Jacobian rows of ``pixel`` over its window, computed here, not in the kernel."""
    images = ImageSet(
        [image_from_array(x, f"input {k + 1}") for k, x in enumerate(demo_crop(SIZE))]
    )
    tensors = as_tensors(images.stack())
    model = load_named_models(["DeepFuse"], num_inputs=2)["DeepFuse"]
    found = PixelJacobian(model).explain(tensors, pixel)
    window = found.window
    rows = [c.sum(dim=0).detach().numpy() for c in found.cropped()]
    return [window.top, window.bottom, window.left, window.right], rows


def canvas_rgb(page: object, label: str) -> np.ndarray:
    data = page.evaluate(
        """(label) => {
            const c = document.querySelector(`.fusevis-widget canvas[aria-label='${label}']`);
            const rgba = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return [c.height, c.width, Array.from(rgba)];
        }""",
        label,
    )
    height, width, values = data
    return np.array(values, np.uint8).reshape(height, width, 4)[..., :3]


def red_marker_near(rgb: np.ndarray, pixel: tuple[int, int]) -> bool:
    row, col = pixel
    patch = rgb[max(row - 4, 0) : row + 5, max(col - 4, 0) : col + 5].astype(int)
    return bool(np.any((patch[..., 0] == 255) & (patch[..., 1] == 32) & (patch[..., 2] == 32)))


def hover(page: object, canvas: object, pixel: tuple[int, int]) -> None:
    """Move the mouse onto ``pixel`` of ``canvas`` until the page has painted its answer.

    The notebook may still be laying out (the collapsed side bar, the widget's panels), so a
    move that landed elsewhere is made again from off the images.
    """
    row, col = pixel
    for _ in range(3):
        canvas.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        box = canvas.bounding_box()
        scale = box["width"] / SIZE
        page.mouse.move(5, 5)
        page.mouse.move(box["x"] + (col + 0.5) * scale, box["y"] + (row + 0.5) * scale)
        try:
            page.wait_for_function(
                f"{WIDGET}.lastPixel && {WIDGET}.lastPixel.header.pixel.join() === '{row},{col}'",
                timeout=10_000,
            )
            return
        except playwright_api.TimeoutError:
            continue
    raise AssertionError(
        f"hovering {pixel} was not answered: {page.evaluate(WIDGET + '.paintedPixels')}"
    )


@pytest.mark.browser
def test_explorer_in_jupyterlab(lab: RunningLab, chromium_path: Path, artifacts: Path) -> None:
    errors: list[str] = []
    outside: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=LAUNCH_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "request",
                lambda r: (
                    None if r.url.startswith((lab.url, "blob:", "data:")) else outside.append(r.url)
                ),
            )
            page.goto(lab.notebook_url("explore.ipynb"))
            page.wait_for_function(
                f"{APP} && {APP}.sessionContext.session && "
                f"{APP}.sessionContext.session.kernel && "
                f"{APP}.sessionContext.session.kernel.status === 'idle'",
                timeout=60_000,
            )
            page.evaluate("window.jupyterapp.shell.collapseLeft()")
            page.evaluate(RUN_CELL, 0)
            page.wait_for_function(
                f"{WIDGET} && {WIDGET}.ready && {WIDGET}.painted > 0", timeout=60_000
            )

            # hover a known pixel of the fused image
            fused = page.locator(".fusevis-widget canvas[aria-label^='fused']")
            hover(page, fused, HOVERED)
            row, col = HOVERED
            held = page.evaluate(
                f"""() => {{
                    const {{ header, arrays }} = {WIDGET}.lastPixel;
                    const info = header.models.DeepFuse;
                    return {{ window: info.window, jacobian_at_pixel: info.jacobian_at_pixel,
                        rows: [0, 1].map((k) =>
                            Array.from(arrays[`DeepFuse/jacobian_${{k}}`].data)) }};
                }}"""
            )
            # (a) the Jacobian panels are painted: colour inside the pixel's window
            window, rows = engine_rows(HOVERED)
            top, bottom, left, right = window
            for k in (1, 2):
                rgb = canvas_rgb(page, f"J{k} (DeepFuse)")
                inside = rgb[top:bottom, left:right].astype(int).sum(-1)
                assert (inside > 0).mean() > 0.5, f"J{k} is not painted in its window"
                assert red_marker_near(rgb, HOVERED)
            # (b) the values the page holds are the engine's for that pixel
            assert held["window"] == window
            for k, reference in enumerate(rows):
                page_row = np.array(held["rows"][k], np.float32).reshape(reference.shape)
                scale_k = float(np.abs(reference).max())
                np.testing.assert_allclose(page_row, reference, rtol=0, atol=1e-6 * scale_k)
                local = reference[row - top, col - left]
                assert held["jacobian_at_pixel"][k] == pytest.approx(float(local), rel=1e-5)
            # (c) the kernel's w.pixel is the hovered pixel
            page.evaluate(RUN_CELL, 1)
            page.wait_for_function(f"({OUTPUT})(1) !== null", timeout=30_000)
            assert page.evaluate(OUTPUT, 1).strip() == f"PIXEL {HOVERED} False"
            # (d) setting w.pixel from a later cell moves the marker
            page.mouse.move(5, 5)  # off the images: the page must not hover again
            page.evaluate(RUN_CELL, 2)
            page.wait_for_function(  # the answer is painted (synchronously) when it is held
                f"{WIDGET}.lastPixel.header.pixel.join() === '{MOVED[0]},{MOVED[1]}'",
                timeout=30_000,
            )
            rgb = canvas_rgb(page, "fused (DeepFuse)")
            assert red_marker_near(rgb, MOVED) and not red_marker_near(rgb, HOVERED)
            fused.scroll_into_view_if_needed()
            # a shift-drag in the page is w.region in the kernel, for the next cell
            box = fused.bounding_box()
            scale = box["width"] / SIZE
            corners = [(10, 12), (19, 30)]
            points = [
                (box["x"] + (c + 0.5) * scale, box["y"] + (r + 0.5) * scale) for r, c in corners
            ]
            page.keyboard.down("Shift")
            page.mouse.move(*points[0])
            page.mouse.down()
            page.mouse.move(*points[1], steps=4)
            page.mouse.up()
            page.keyboard.up("Shift")
            page.wait_for_function(f"{WIDGET}.selectionCount === {10 * 19}", timeout=10_000)
            page.evaluate(RUN_CELL, 3)
            page.wait_for_function(f"({OUTPUT})(3) !== null", timeout=30_000)
            assert page.evaluate(OUTPUT, 3).strip() == f"REGION (10, 20, 12, 31) {10 * 19}"
            # and hovering still reaches the kernel after cells have run
            hover(page, fused, (33, 7))
            page.evaluate(RUN_CELL, 1)
            page.wait_for_function(f"({OUTPUT})(1).includes('(33, 7)')", timeout=30_000)
            # gamma recolours in the page, without a message to the kernel
            sent = page.evaluate(f"{WIDGET}.sent")
            before = canvas_rgb(page, "J1 (DeepFuse)")
            page.locator(".fusevis-widget .fv-gamma-jacobian").fill("2")
            assert not np.array_equal(canvas_rgb(page, "J1 (DeepFuse)"), before)
            page.locator(".fusevis-widget .fv-gamma-jacobian").fill("0.5")
            np.testing.assert_array_equal(canvas_rgb(page, "J1 (DeepFuse)"), before)
            assert page.evaluate(f"{WIDGET}.sent") == sent
            # export: the view as PNG in the page, its data as .npz from the kernel
            page.locator(".fusevis-widget .fv-export-png").click()
            assert page.evaluate(f"{WIDGET}.lastExport") > 1000
            page.locator(".fusevis-widget .fv-export-npz").click()
            page.wait_for_function(f"{WIDGET}.downloads.length === 1", timeout=30_000)
            download = page.evaluate(f"{WIDGET}.downloads[0]")
            assert download["filename"] == "fusevis-DeepFuse-33-7.npz" and download["bytes"] > 1000
            # the guidance maps streamed into the page while it was hovered
            page.wait_for_function(
                f"({WIDGET}.store.model('DeepFuse').maps.guidance || {{}}).state === 'finished'",
                timeout=90_000,
            )
            assert (
                page.evaluate(
                    f"{WIDGET}.store.model('DeepFuse').maps.guidance.arrays.guidance_1.length"
                )
                == SIZE * SIZE
            )
            # the artefact (docs/notebook.png is a copy of one, for the README)
            page.locator(".fusevis-widget").screenshot(path=str(artifacts / "notebook.png"))
        finally:
            browser.close()
    assert not errors, errors
    assert not outside, f"the page fetched from outside the notebook server: {outside}"
