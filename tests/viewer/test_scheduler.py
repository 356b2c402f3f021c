"""MapScheduler: maps stream in and are exact; long ones wait for the user's go."""

import io
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from fusevis.errors import InputError
from fusevis.saliency import MapCache, influence_maps
from fusevis.viewer.access import Access
from fusevis.viewer.app import create_app
from fusevis.viewer.data import ViewerData
from fusevis.viewer.scheduler import estimates_available
from tests.viewer.slow import SlowAttention, SlowLocal, small_set

pytestmark = pytest.mark.filterwarnings("ignore:For backward hooks to be called")


def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_influence_maps_stream_in_and_equal_the_batch_computation(tmp_path: Path) -> None:
    model = SlowLocal()  # a 3x3 convolution: 9 influence passes
    data = ViewerData(small_set(40), {"net": model}, MapCache(tmp_path), compute_maps=False)
    events: list[tuple] = []
    data.maps.add_listener(lambda *event: events.append(event))
    try:
        data.maps.request("net", "influence")
        progress = data.maps.progress("net", "influence")
        wait_until(lambda: progress.finished)
        assert events[-1] == ("net", "influence", "arrays")
        assert ("net", "influence", "progress") in events
        assert progress.done == progress.total > 1 and progress.remaining_s == 0
        expected = influence_maps(model, data.tensors)
        for k, share in enumerate(expected.share):
            np.testing.assert_allclose(progress.arrays[f"influence_{k}"], share, atol=1e-6)
            np.testing.assert_allclose(
                progress.arrays[f"guidance_{k}"], expected.guidance_2d(k), atol=1e-6
            )
        data.maps.request("net", "influence")  # done: not queued again
        assert data.maps.queued == [] and progress.finished
    finally:
        data.close()


def exact_guidance(model: torch.nn.Module, tensors: tuple) -> list[np.ndarray]:
    """The Jacobian's diagonal per input, from torch's own full Jacobian (float64)."""
    model = model.double()
    inputs = tuple(t.double() for t in tensors)
    jacobians = torch.autograd.functional.jacobian(lambda *x: model(*x), inputs)
    size = inputs[0].numel()
    return [
        j.reshape(size, size).diagonal().reshape(inputs[0].shape[-2:]).numpy() for j in jacobians
    ]


def test_a_long_map_of_a_non_local_model_waits_for_the_users_go(tmp_path: Path) -> None:
    model = SlowAttention()
    data = ViewerData(small_set(8), {"slow": model}, MapCache(tmp_path), ask_above_s=1.0)
    try:
        model.delay.seconds = 0.05  # each full-image backward pass: one hover, one map pass
        data.hover.submit(data.pixel_frame, ["slow"], (4, 4)).result()
        predicted = data.predicted_seconds("slow", "guidance")
        assert predicted == pytest.approx(64 * 0.05, rel=0.5)
        progress = data.maps.request("slow", "guidance")
        assert progress.state == "ask" and progress.predicted_s == predicted
        time.sleep(0.5)
        assert data.maps.queued == [] and progress.done == 0, "it started by itself"
        data.maps.request("slow", "guidance")  # asked again without a go: still waits
        assert progress.state == "ask" and data.maps.queued == []
        data.maps.request("slow", "guidance", confirm=True)
        assert progress.confirmed
        wait_until(lambda: progress.state in ("finished", "error"), timeout=60)
        assert progress.state == "finished", progress.error
        assert not progress.estimate
        model.delay.seconds = 0.0
        for k, expected in enumerate(exact_guidance(model, data.tensors)):
            np.testing.assert_allclose(progress.arrays[f"guidance_{k}"], expected, atol=1e-5)
    finally:
        data.close()


def test_a_local_map_predicted_long_from_its_first_passes_stops_and_resumes(
    tmp_path: Path,
) -> None:
    model = SlowLocal()
    data = ViewerData(small_set(16), {"conv": model}, MapCache(tmp_path), ask_above_s=0.6)
    events: list[tuple] = []
    data.maps.add_listener(lambda *event: events.append(event))
    try:
        assert data.hover.sessions["conv"].local and data.predicted_seconds("conv", "x") is None
        model.delay.seconds = 0.25  # each of the 4 colour passes
        progress = data.maps.request("conv", "guidance")
        assert progress.state == "queued"  # nothing predicted it: it starts
        wait_until(lambda: progress.state in ("ask", "finished", "error"), timeout=60)
        assert progress.state == "ask", "a job predicted to take long went on by itself"
        assert 0 < progress.done < progress.total == 4
        assert progress.predicted_s > 0.6 and progress.remaining_s > 0
        assert events[-1] == ("conv", "guidance", "progress")
        stopped_at = progress.done
        data.maps.request("conv", "guidance", confirm=True)
        wait_until(lambda: progress.state in ("finished", "error"), timeout=60)
        assert progress.state == "finished", progress.error
        model.delay.seconds = 0.0
        for k, expected in enumerate(exact_guidance(model, data.tensors)):
            np.testing.assert_allclose(progress.arrays[f"guidance_{k}"], expected, atol=1e-5)
        assert stopped_at >= 1
    finally:
        data.close()


def test_maps_pause_while_the_user_hovers(tmp_path: Path) -> None:
    model = SlowLocal()
    hovering = threading.Event()
    hovering.set()
    data = ViewerData(small_set(16), {"conv": model}, MapCache(tmp_path), compute_maps=False)
    data.maps._busy = hovering.is_set  # the engine's busy(), held on by the test
    try:
        model.delay.seconds = 0.05
        progress = data.maps.request("conv", "guidance")
        wait_until(lambda: progress.state == "paused", timeout=30)
        done = progress.done
        time.sleep(0.6)
        assert progress.done == done and progress.state == "paused"
        hovering.clear()
        wait_until(lambda: progress.finished, timeout=30)
        assert progress.elapsed_s < 0.6 + 2.0  # the pause is not counted as work
    finally:
        data.close()


def test_an_estimate_is_refused_where_the_maps_api_has_none(tmp_path: Path) -> None:
    data = ViewerData(small_set(8), {"net": SlowLocal()}, MapCache(tmp_path), compute_maps=False)
    try:
        if estimates_available():
            progress = data.maps.request("net", "guidance", estimate=True)
            assert progress.estimate and progress.state in ("queued", "running", "finished")
        else:
            with pytest.raises(InputError, match="cannot estimate"):
                data.maps.request("net", "guidance", estimate=True)
        with pytest.raises(InputError, match="unknown model"):
            data.maps.request("other", "guidance")
        with pytest.raises(InputError, match="unknown map kind"):
            data.maps.request("net", "colour")
    finally:
        data.close()


def test_an_estimate_is_labelled_and_never_exported_as_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the maps API estimates (here a stand-in), the viewer says so everywhere."""
    import fusevis.viewer.scheduler as scheduler

    asked: list[bool] = []

    def cached_maps(model, tensors, influence=False, estimate=False, **options):  # noqa: ANN001, ANN003, ANN202
        asked.append(estimate)
        shape = tensors[0].shape[-2:]
        return SimpleNamespace(
            fused=np.zeros(shape, np.float32),
            guidance=[np.full((1, *shape), 0.25, np.float32) for _ in tensors],
            influence=None,
            estimate=estimate,
            error_bound=[np.full((1, *shape), 0.01, np.float32) for _ in tensors],
        )

    monkeypatch.setattr(scheduler, "cached_maps", cached_maps)
    assert estimates_available()
    model = SlowAttention()
    data = ViewerData(small_set(8), {"slow": model}, MapCache(tmp_path), ask_above_s=0.0)
    try:
        progress = data.maps.request("slow", "guidance")
        assert progress.state == "ask"
        data.maps.request("slow", "guidance", estimate=True)
        wait_until(lambda: progress.finished, timeout=30)
        assert asked == [True] and progress.estimate
        assert progress.header()["estimate"] and progress.header()["error_bound"] == 0.01
        header, _ = data.hover.submit(data.pixel_frame, ["slow"], (2, 3)).result()
        info = header["models"]["slow"]
        assert info["guidance_estimate"] and info["guidance_at_pixel"] == [0.25, 0.25]
        client = TestClient(
            create_app(data, Access("token-of-this-test")), base_url="http://localhost"
        )
        response = client.get("/api/export.npz?token=token-of-this-test&model=slow&row=2&col=3")
        assert response.status_code == 200
        with np.load(io.BytesIO(response.content)) as saved:
            assert "estimated_guidance_0" in saved.files and "guidance_0" not in saved.files
        data.maps.request("slow", "guidance", confirm=True)  # now the exact maps
        assert not progress.estimate  # the estimate is dropped, not shown as exact
        wait_until(lambda: progress.finished and not progress.estimate, timeout=30)
        assert asked == [True, False]
    finally:
        data.close()
