"""HoverEngine: windows equal the engine's rows; a slow answer gives way to a newer pixel."""

import threading
import time

import numpy as np
import pytest
import torch

from fusevis.errors import ModelError
from fusevis.models import DeepFuse
from fusevis.models.inference import as_tensors
from fusevis.viewer.hover import HoverEngine
from tests.viewer.slow import SlowAttention, small_set

pytestmark = pytest.mark.filterwarnings("ignore:For backward hooks to be called")


def engine(models: dict, size: int = 40) -> HoverEngine:
    return HoverEngine(as_tensors(small_set(size).stack()), models)


def test_pixel_frame_holds_the_window_rows_and_values() -> None:
    torch.manual_seed(0)
    hover = engine({"net": DeepFuse().eval()})
    try:
        header, arrays = hover.submit(hover.pixel_frame, ["net"], (0, 39)).result()
        info = header["models"]["net"]
        top, bottom, left, right = info["window"]
        assert top == 0 and right == 40
        session = hover.sessions["net"]
        assert session.local and session.radius > 0 and info["method"] == session.strategy
        rows = session.jacobian.attribute(hover.tensors, pixel=(0, 39))
        for k in range(2):
            np.testing.assert_allclose(
                arrays[f"net/jacobian_{k}"], rows[k][0, 0, top:bottom, left:right].numpy(), atol=0
            )
        assert info["fused"] == pytest.approx(float(session.fused[0, 39]))
        with pytest.raises(Exception, match=r"outside"):
            hover.submit(hover.pixel_frame, ["net"], (40, 0)).result()
    finally:
        hover.close()


def test_a_model_with_the_wrong_input_count_is_refused() -> None:
    class ThreeInputs(torch.nn.Module):
        num_inputs = 3

        def forward(self, a, b, c):  # noqa: ANN001, ANN201
            return a + b + c

    with pytest.raises(ModelError):
        engine({"three": ThreeInputs()})


def test_a_slow_answer_is_dropped_between_models_once_a_newer_pixel_is_wanted() -> None:
    slow = {"A": SlowAttention(), "B": SlowAttention()}
    hover = engine(slow, size=12)
    try:
        assert not hover.sessions["A"].local and hover.sessions["A"].radius == 0
        for model in slow.values():
            model.delay.seconds = 0.4
        began = time.perf_counter()
        dropped = hover.submit(hover.pixel_frame, ["A", "B"], (3, 4), lambda: True).result()
        took = time.perf_counter() - began
        assert dropped is None, "an overtaken answer was finished"
        assert 0.4 <= took < 0.75, f"{took:.2f} s: the second model was computed anyway"
        header, _ = hover.submit(hover.pixel_frame, ["A", "B"], (3, 4), lambda: False).result()
        assert set(header["models"]) == {"A", "B"}
        assert header["models"]["A"]["method"] == "full"
        assert hover.sessions["A"].pixel_seconds == pytest.approx(0.4, abs=0.15)
    finally:
        hover.close()


def test_busy_while_a_pixel_runs_and_shortly_after() -> None:
    model = SlowAttention()
    hover = engine({"A": model}, size=12)
    try:
        assert not hover.busy(quiet_s=0.0)
        model.delay.seconds = 0.3
        started = threading.Event()
        future = hover.submit(lambda: (started.set(), hover.pixel_frame(["A"], (1, 1)))[1])
        started.wait(5)
        assert hover.busy(quiet_s=0.0)
        future.result()
        assert hover.busy(quiet_s=5.0) and not hover.busy(quiet_s=0.0)
    finally:
        hover.close()
