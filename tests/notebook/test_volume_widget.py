"""The Explorer on a volume pair: ``w.slice`` and ``w.axis`` both ways, tensors of the slice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fusevis.io import load_images
from fusevis.models.inference import as_tensors
from fusevis.notebook import Explorer, ExplorerError
from tests.notebook.conftest import TinyFusion
from tests.viewer.volumes import write_pair


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_pair(tmp_path_factory.mktemp("volumes"))


@pytest.fixture
def explorer(paths: list[Path], tmp_path: Path) -> Iterator[Explorer]:
    widget = Explorer(TinyFusion(), paths, slice=2, cache=tmp_path, compute_maps=False)
    yield widget
    widget.close()


def wait_answer_on(widget: Explorer, key: list[int], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = widget._session.last_answer
        if answer is not None and answer[0]["slice"] == key:
            return answer[0]
        time.sleep(0.01)
    raise AssertionError(f"no answer on slice {key}")


def test_setting_the_slice_in_python_shows_it(explorer: Explorer, paths: list[Path]) -> None:
    assert (explorer.axis, explorer.slice) == ("axial", 2) and explorer.shape == (10, 12)
    explorer.slice = 4
    assert explorer._session.state.slice_key == (2, 4)
    assert wait_answer_on(explorer, [2, 4])["pixel"] == list(explorer.pixel)
    tensors = as_tensors(load_images(paths, slice_index=4, axis=2).stack())
    for ours, theirs in zip(explorer.inputs, tensors, strict=True):
        torch.testing.assert_close(ours, theirs)
    with torch.no_grad():
        expected = TinyFusion()(*tensors)[0, 0]
    torch.testing.assert_close(explorer.fused["TinyFusion"], expected, rtol=0, atol=1e-6)
    explorer.axis = "sagittal"  # its middle slice, the shape of a sagittal slice
    assert (explorer.axis, explorer.slice) == ("sagittal", 6) and explorer.shape == (6, 10)
    assert explorer.pixel == (3, 5)
    assert wait_answer_on(explorer, [0, 6])
    assert explorer.jacobian["TinyFusion"][0].shape == (1, 1, 6, 10)


def test_the_pages_slice_messages_set_the_traits(explorer: Explorer) -> None:
    seen: list[int] = []
    explorer.observe(lambda change: seen.append(change["new"]), names="slice")
    explorer._on_page_message(explorer, {"type": "slice", "index": 5, "seq": 1}, [])
    assert explorer.slice == 5 and seen == [5]
    explorer._on_page_message(explorer, {"type": "slice", "axis": "coronal"}, [])
    assert (explorer.axis, explorer.slice) == ("coronal", 5)
    explorer._on_page_message(explorer, {"type": "slice", "index": 99}, [])  # refused
    assert explorer.slice == 5


def test_bad_slices_and_axes_are_one_line_errors(explorer: Explorer) -> None:
    with pytest.raises(ExplorerError, match=r"slice 6 is outside the volume \(axial slices 0-5\)"):
        explorer.slice = 6
    with pytest.raises(ExplorerError, match="unknown axis 'oblique'"):
        explorer.axis = "oblique"
    assert (explorer.axis, explorer.slice) == ("axial", 2)


def test_a_2d_explorer_has_no_slice(tmp_path: Path) -> None:
    generator = np.random.default_rng(0)
    pair = (generator.random((12, 12)), generator.random((12, 12)))
    widget = Explorer(TinyFusion(), pair, cache=tmp_path, compute_maps=False)
    try:
        assert widget.slice is None and widget.axis is None
        with pytest.raises(ExplorerError, match="2-D images"):
            widget.slice = 1
    finally:
        widget.close()
