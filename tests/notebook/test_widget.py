"""The Explorer's Python side: traits both ways, tensors, one-line errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from fusevis.errors import FuseVisError
from fusevis.notebook import Explorer, ExplorerError
from fusevis.saliency import PixelJacobian
from fusevis.viewer.frames import decode_frame
from tests.notebook.conftest import TinyFusion, demo_crop, random_pair


@pytest.fixture(scope="module")
def demo_explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    """DeepFuse on a 32² crop of the demo pair (no maps unless asked)."""
    cache = tmp_path_factory.mktemp("notebook-cache")
    widget = Explorer("DeepFuse", demo_crop(32), cache=cache, compute_maps=False)
    yield widget
    widget.close()


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Explorer]:
    widget = Explorer(TinyFusion(), random_pair(20), cache=tmp_path, compute_maps=False)
    yield widget
    widget.close()


def wait_answer(widget: Explorer, pixel: tuple[int, int], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = widget._session.last_answer
        if answer is not None and tuple(answer[0]["pixel"]) == pixel:
            return answer[0]
        time.sleep(0.01)
    raise AssertionError(f"no answer for {pixel}")


def test_the_jacobian_is_pixeljacobians_rows_for_the_pixel(demo_explorer: Explorer) -> None:
    demo_explorer.pixel = (7, 25)
    found = demo_explorer.jacobian
    assert list(found) == ["DeepFuse"]
    model = demo_explorer._session.data.hover.sessions["DeepFuse"].model
    expected = PixelJacobian(model).attribute(demo_explorer.inputs, pixel=(7, 25))
    assert len(found["DeepFuse"]) == len(expected) == 2
    for row, reference in zip(found["DeepFuse"], expected, strict=True):
        assert row.shape == reference.shape == (1, 1, 32, 32)
        scale = float(reference.abs().max())
        assert scale > 0
        torch.testing.assert_close(row, reference, rtol=0, atol=1e-6 * scale)
    # and the page's window values are the same numbers
    header = wait_answer(demo_explorer, (7, 25))
    at_pixel = header["models"]["DeepFuse"]["jacobian_at_pixel"]
    for value, reference in zip(at_pixel, expected, strict=True):
        assert value == pytest.approx(float(reference[0, :, 7, 25].sum()), rel=1e-5, abs=1e-9)


def test_the_fused_image_is_the_models_output(demo_explorer: Explorer) -> None:
    fused = demo_explorer.fused["DeepFuse"]
    model = demo_explorer._session.data.hover.sessions["DeepFuse"].model
    with torch.no_grad():
        output = model(*demo_explorer.inputs)[0, 0]
    assert fused.shape == (32, 32)
    torch.testing.assert_close(fused, output, rtol=0, atol=1e-6)


def test_a_hover_in_the_page_sets_pixel_and_observers_see_it(tiny: Explorer) -> None:
    seen = []
    tiny.observe(lambda change: seen.append(change["new"]), names="pixel")
    tiny._on_page_message(tiny, {"type": "hover", "row": 2, "col": 9, "seq": 1}, [])
    assert tiny.pixel == (2, 9) and seen == [(2, 9)]
    tiny._on_page_message(tiny, {"type": "pin", "row": 5, "col": 6, "seq": 2}, [])
    assert tiny.pixel == (5, 6) and tiny.pinned
    tiny._on_page_message(tiny, {"type": "hover", "row": 1, "col": 1, "seq": 3}, [])
    assert tiny.pixel == (5, 6)  # pinned: hovering is ignored
    tiny._on_page_message(tiny, {"type": "unpin"}, [])
    assert not tiny.pinned


def test_setting_pixel_in_python_sends_the_page_that_pixels_answer(tiny: Explorer) -> None:
    tiny.pixel = (19, 0)
    assert tiny._session.state.pixel == (19, 0)
    header = wait_answer(tiny, (19, 0))
    assert header["models"]["TinyFusion"]["window"][0] <= 19


def test_region_is_validated_and_gives_a_mask(tiny: Explorer) -> None:
    assert not tiny.region_mask.any()
    tiny.region = (2, 5, 10, 20)
    mask = tiny.region_mask
    assert mask.shape == (20, 20) and int(mask.sum()) == 3 * 10 and bool(mask[2, 10])
    tiny.region = None
    assert tiny.region is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("pixel", (20, 0)), "pixel (20, 0) is outside the 20x20 image"),
        (("region", (5, 5, 0, 3)), "region (5, 5, 0, 3) is not a rectangle inside"),
        (("region", ("a", 1, 2, 3)), "region must be (top, bottom, left, right)"),
    ],
)
def test_bad_traits_are_one_line_errors(tiny: Explorer, change: tuple, message: str) -> None:
    name, value = change
    before = getattr(tiny, name)
    with pytest.raises(ExplorerError) as raised:
        setattr(tiny, name, value)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert getattr(tiny, name) == before


@pytest.mark.parametrize(
    ("models", "inputs", "message"),
    [
        ("NoSuchNet", random_pair(), "unknown model 'NoSuchNet'"),
        (TinyFusion(), (random_pair()[0],), "a fusion needs two or more inputs, got 1"),
        (TinyFusion(), random_pair()[0], "give the inputs as a tuple"),
        (TinyFusion(), (np.eye(4), np.eye(5)[:, :4]), "shape 5x4 differs"),
        (TinyFusion(), (np.zeros((2, 3, 4)), np.zeros((4, 4))), "expected one 2-D grey image"),
        (TinyFusion(), ("missing.png", np.eye(4)), "missing.png"),
        (TinyFusion(), ({"a": 1}, np.eye(4)), "not dict"),
        (42, random_pair(), "a model, a network's name, or a list"),
        ([TinyFusion(), 3.5], random_pair(), "not float"),
        ({"T": "DeepFuse"}, random_pair(), "model 'T' is a str, not an nn.Module"),
    ],
)
def test_bad_input_is_one_line(models: object, inputs: object, message: str) -> None:
    with pytest.raises(ExplorerError) as raised:
        Explorer(models, inputs, compute_maps=False)
    assert message in str(raised.value)
    assert isinstance(raised.value, FuseVisError)
    assert raised.value._render_traceback_() == [f"ExplorerError: {raised.value}"]
    assert "\n" not in str(raised.value)


def test_inputs_as_tensors_arrays_and_files(tmp_path: Path) -> None:
    a, b = random_pair(16)
    path = tmp_path / "b.png"
    PILImage.fromarray((b * 255).astype(np.uint8)).save(path)
    widget = Explorer(
        {"one": TinyFusion(), "two": TinyFusion()},
        (torch.from_numpy(a)[None, None], path),
        compute_maps=False,
    )
    try:
        assert widget.names == ["one", "two"] and widget.shape == (16, 16)
        assert set(widget.jacobian) == {"one", "two"}
    finally:
        widget.close()


def test_maps_are_guidance_and_influence_tensors(tiny: Explorer) -> None:
    maps = tiny.maps["TinyFusion"]
    assert [m.shape for m in maps["guidance"]] == [(20, 20), (20, 20)]
    shares = torch.stack(maps["influence"])
    torch.testing.assert_close(shares.sum(0), torch.ones(20, 20))


def test_export_npz(tiny: Explorer, tmp_path: Path) -> None:
    tiny.pixel = (3, 4)
    saved = np.load(tiny.export_npz(tmp_path / "view.npz"))
    assert list(saved["pixel"]) == [3, 4]
    expected = tiny.jacobian["TinyFusion"]
    np.testing.assert_allclose(saved["jacobian_0"], expected[0][0].sum(0).numpy(), atol=1e-7)
    with pytest.raises(ExplorerError, match="unknown model 'X'"):
        tiny.export_npz(tmp_path / "x.npz", model="X")


def test_a_region_drawn_in_the_page_is_w_region(tiny: Explorer) -> None:
    seen = []
    tiny.observe(lambda change: seen.append(change["new"]), names="region")
    tiny._on_page_message(tiny, {"type": "region", "region": [3, 9, 4, 12]}, [])
    assert tiny.region == (3, 9, 4, 12) and seen == [(3, 9, 4, 12)]
    shown = []
    tiny._session.outbox._send = lambda content, buffers: shown.append(buffers)
    tiny._on_page_message(tiny, {"type": "region", "region": [3, 99, 4, 12]}, [])
    assert tiny.region == (3, 9, 4, 12)  # refused, with a one-line error in the page
    deadline = time.monotonic() + 5
    while not shown and time.monotonic() < deadline:
        time.sleep(0.01)
    header, _ = decode_frame(shown[0][0])
    assert (
        header["kind"] == "error"
        and "is not a rectangle inside the 20x20 image" in header["message"]
    )
