"""ViewerData: windows equal the engine's rows; maps stream in and equal the batch result."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fusevis.io import image_from_array
from fusevis.io.loading import ImageSet
from fusevis.models import DeepFuse
from fusevis.saliency import MapCache, influence_maps
from fusevis.viewer.engine import ViewerData


def small_set(size: int = 40) -> ImageSet:
    generator = np.random.default_rng(0)
    images = [image_from_array(generator.random((size, size)), f"x{k}") for k in range(2)]
    return ImageSet(images)


def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_influence_maps_stream_in_and_equal_the_batch_computation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DeepFuse().eval()
    data = ViewerData(small_set(), {"net": model}, MapCache(tmp_path), compute_maps=False)
    events: list[dict] = []
    seen = threading.Event()

    def listener(name: str, kind: str, event: dict) -> None:
        events.append({"name": name, "kind": kind, **event})
        seen.set()

    data.add_listener(listener)
    try:
        data.request_maps("net", "influence")
        progress = data.sessions["net"].maps["influence"]
        wait_until(lambda: progress.finished)
        assert events[-1] == {"name": "net", "kind": "influence", "finished": True}
        expected = influence_maps(model, data.tensors)
        for k, share in enumerate(expected.share):
            np.testing.assert_allclose(progress.arrays[f"influence_{k}"], share, atol=1e-6)
            np.testing.assert_allclose(
                progress.arrays[f"guidance_{k}"], expected.guidance_2d(k), atol=1e-6
            )
        data.request_maps("net", "influence")  # done: not queued again
        assert data._jobs == []
    finally:
        data.close()


def test_pixel_frame_holds_the_window_rows_and_values(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DeepFuse().eval()
    data = ViewerData(small_set(), {"net": model}, MapCache(tmp_path), compute_maps=False)
    try:
        header, arrays = data.submit(data.pixel_frame, ["net"], (0, 39)).result()
        info = header["models"]["net"]
        top, bottom, left, right = info["window"]
        assert top == 0 and right == 40
        rows = data.sessions["net"].jacobian.attribute(data.tensors, pixel=(0, 39))
        for k in range(2):
            np.testing.assert_allclose(
                arrays[f"net/jacobian_{k}"], rows[k][0, 0, top:bottom, left:right].numpy(), atol=0
            )
        assert info["fused"] == pytest.approx(float(data.sessions["net"].fused[0, 39]))
        with pytest.raises(Exception, match=r"outside"):
            data.submit(data.pixel_frame, ["net"], (40, 0)).result()
    finally:
        data.close()


def test_a_model_with_the_wrong_input_count_is_refused(tmp_path: Path) -> None:
    from fusevis.errors import ModelError

    class ThreeInputs(torch.nn.Module):
        num_inputs = 3

        def forward(self, a, b, c):  # noqa: ANN001, ANN201
            return a + b + c

    with pytest.raises(ModelError):
        ViewerData(small_set(), {"three": ThreeInputs()}, MapCache(tmp_path))
