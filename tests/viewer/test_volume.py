"""Volumes in the viewer: slices as a 2-D run reads them, and the page's slice messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusevis.errors import InputError
from fusevis.io import load_images
from fusevis.viewer.app import apply_message, parse_message
from fusevis.viewer.state import ViewerState
from fusevis.viewer.volume import AXES, BlankSlice, VolumeSet, parse_axis
from tests.viewer.volumes import write_pair


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_pair(tmp_path_factory.mktemp("volumes"))


@pytest.fixture(scope="module")
def volume(paths: list[Path]) -> VolumeSet:
    return VolumeSet.read(paths)


def volume_state(volume: VolumeSet) -> ViewerState:
    shapes = tuple(volume.slice_shape(axis) for axis in range(3))
    return ViewerState(
        volume.slice_shape(2), ["net"], depths=volume.depths, slice_shapes=shapes, axis=2, index=3
    )


@pytest.mark.parametrize("key", [(2, 3), (1, 4), (0, 7)])
def test_a_slice_is_what_a_2d_run_of_that_slice_reads(
    volume: VolumeSet, paths: list[Path], key: tuple[int, int]
) -> None:
    axis, index = key
    shown = volume.image_set(key)
    read = load_images(paths, slice_index=index, axis=axis)
    assert shown.shape == volume.slice_shape(axis) == read.shape
    for ours, theirs in zip(shown, read, strict=True):
        np.testing.assert_array_equal(ours.data, theirs.data)


def test_a_blank_slice_says_so_in_one_line(volume: VolumeSet) -> None:
    with pytest.raises(BlankSlice) as blank:
        volume.image_set((2, 0))
    message = str(blank.value)
    assert "axial slice 0 is constant in input 2" in message and "\n" not in message
    with pytest.raises(InputError, match="outside the volume"):
        volume.image_set((2, 6))


def test_axes_by_name_or_number() -> None:
    assert [parse_axis(name) for name in AXES] == [0, 1, 2] == [parse_axis(i) for i in range(3)]
    for bad in ("Axial", 3, -1, True, 2.0, None, [2]):
        with pytest.raises(InputError, match="unknown axis"):
            parse_axis(bad)


def test_slice_and_axis_change_the_state(volume: VolumeSet) -> None:
    state = volume_state(volume)
    assert state.slice_key == (2, 3) and state.snapshot()["volume"]["depths"] == [12, 10, 6]
    change = state.apply({"type": "slice", "index": 5})
    assert change.view and change.pixel and state.slice_key == (2, 5)
    assert not state.apply({"type": "slice", "index": 5}).view  # the same slice: nothing to do
    state.apply({"type": "slice", "axis": "coronal"})  # its middle slice, the pixel centred
    assert state.slice_key == (1, 5) and state.shape == volume.slice_shape(1) == (6, 12)
    assert state.pixel == (3, 6)
    state.apply({"type": "slice", "index": 9})
    state.apply({"type": "slice", "axis": 2})  # back where the axial slices were left
    assert state.slice_key == (2, 5) and state.shape == (10, 12)


BAD_MESSAGES = [
    ({"type": "slice"}, "needs an 'axis' or an 'index'"),
    ({"type": "slice", "index": 6}, "slice 6 is outside the volume (axial slices 0-5)"),
    ({"type": "slice", "index": -1}, "outside the volume"),
    ({"type": "slice", "index": 10**40}, "outside the volume"),
    ({"type": "slice", "index": "3"}, "'index' must be a whole number"),
    ({"type": "slice", "index": 3.0}, "'index' must be a whole number"),
    ({"type": "slice", "index": True}, "'index' must be a whole number"),
    ({"type": "slice", "index": [3]}, "'index' must be a whole number"),
    ({"type": "slice", "axis": "oblique"}, "unknown axis 'oblique'"),
    ({"type": "slice", "axis": 3}, "unknown axis 3"),
    ({"type": "slice", "axis": {"__class__": "x"}}, "unknown axis"),
    ({"type": "slice", "axis": 0, "index": 12}, "sagittal slices 0-11"),
]


@pytest.mark.parametrize(("message", "expected"), BAD_MESSAGES)
def test_bad_slice_messages_are_one_line_errors_and_change_nothing(
    volume: VolumeSet, message: dict, expected: str
) -> None:
    import json

    state = volume_state(volume)
    before = state.snapshot()
    parsed, _ = parse_message(json.dumps(message))
    errors: list[str] = []
    change = apply_message(parsed, state, None, errors.append, None)  # type: ignore[arg-type]
    assert change is None and len(errors) == 1 and "\n" not in errors[0]
    assert expected in errors[0]
    assert state.snapshot() == before


def test_a_2d_viewer_has_no_slices() -> None:
    state = ViewerState((8, 8), ["net"])
    errors: list[str] = []
    change = apply_message({"type": "slice", "index": 0}, state, None, errors.append, None)  # type: ignore[arg-type]
    assert change is None and errors == ["these inputs are 2-D images: there are no slices"]
    assert state.snapshot()["volume"] is None


def test_the_demo_opens_the_demo_volumes_at_their_middle_axial_slice() -> None:
    from fusevis.cli.demo import demo_volumes
    from fusevis.io.demo import demo_volume_arrays

    image_set, volume, start = demo_volumes()
    arrays, _ = demo_volume_arrays()
    assert volume.depths == arrays["mri"].shape and start == (2, arrays["mri"].shape[2] // 2)
    assert image_set.shape == volume.slice_shape(2) == arrays["mri"].shape[1::-1]
    expected = np.rot90(arrays["pet"][:, :, start[1]])  # anterior up, as NIfTI is shown
    np.testing.assert_allclose(image_set[1].data, (expected - expected.min()) / np.ptp(expected))
