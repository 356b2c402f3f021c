"""Slices of a volume in the viewer: opened on the engine, prefetched, cached within bounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fusevis.io import load_images
from fusevis.models.inference import as_tensors
from fusevis.saliency import MapCache, PixelJacobian
from fusevis.viewer.data import ViewerData, nearest_first
from fusevis.viewer.slices import FusedSlices, SliceCache, SliceView
from fusevis.viewer.volume import BlankSlice, VolumeSet
from tests.notebook.conftest import TinyFusion
from tests.viewer.volumes import write_pair


def fake_view(key: int, nbytes: int) -> SliceView:
    """A view holding ``nbytes`` bytes of inputs (no models)."""
    values = np.zeros(nbytes // 4, np.float32)
    return SliceView(key, None, (torch.zeros(1),), [values])  # type: ignore[arg-type]


def test_the_cache_keeps_the_latest_views_within_its_budget() -> None:
    view_bytes = fake_view(0, 4000).nbytes
    cache = SliceCache(budget_bytes=3 * view_bytes, max_views=10)
    for key in range(5):
        cache.put(fake_view(key, 4000))
    assert cache.keys == [2, 3, 4] and cache.nbytes <= 3 * view_bytes
    assert cache.get(2) is not None  # now the most recently used
    cache.put(fake_view(5, 4000))
    assert cache.keys == [4, 2, 5] and 3 not in cache
    cache.put(fake_view(6, 40_000))  # over the budget alone: kept, the others go
    assert cache.keys == [6]
    counted = SliceCache(budget_bytes=10**9, max_views=2)
    for key in range(4):
        counted.put(fake_view(key, 40))
    assert counted.keys == [2, 3]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_pair(tmp_path_factory.mktemp("volumes"))


@pytest.fixture
def data(paths: list[Path], tmp_path: Path) -> Iterator[ViewerData]:
    volume = VolumeSet.read(paths)
    start = (2, 3)
    viewer = ViewerData(
        volume.image_set(start),
        {"Tiny": TinyFusion()},
        MapCache(tmp_path),
        compute_maps=False,
        volume=volume,
        start=start,
    )
    yield viewer
    viewer.close()


def on_engine(data: ViewerData, function: object, *args: object) -> object:
    return data.hover.submit(function, *args).result()


def test_a_slice_is_fused_and_explained_as_a_2d_run_of_it(
    data: ViewerData, paths: list[Path]
) -> None:
    view = on_engine(data, data.open_view, (1, 4), ["Tiny"])
    tensors = as_tensors(load_images(paths, slice_index=4, axis=1).stack())
    model = data.hover.sessions["Tiny"].model
    with torch.no_grad():
        fused = model(*tensors)[0, 0].numpy()
    np.testing.assert_allclose(view.sessions["Tiny"].fused, fused, atol=1e-6)
    header, arrays = on_engine(data, data.pixel_frame, ["Tiny"], (2, 5), None, (1, 4))
    assert header["slice"] == [1, 4] and header["pixel"] == [2, 5]
    top, bottom, left, right = header["models"]["Tiny"]["window"]
    rows = PixelJacobian(TinyFusion()).attribute(tensors, pixel=(2, 5))
    for k in range(2):
        expected = rows[k][0, 0, top:bottom, left:right].numpy()
        np.testing.assert_allclose(arrays[f"Tiny/jacobian_{k}"], expected, atol=1e-6)


def test_neighbours_are_prefetched_until_the_page_wants_something(data: ViewerData) -> None:
    assert on_engine(data, data.prefetch, (2, 3), ["Tiny"], lambda: True) == 0
    assert on_engine(data, data.prefetch, (2, 3), ["Tiny"], lambda: False) == 2
    assert (2, 2) in data.slices and (2, 4) in data.slices
    assert on_engine(data, data.prefetch, (2, 3), ["Tiny"], lambda: False) == 0  # held
    assert on_engine(data, data.prefetch, (2, 1), ["Tiny"], lambda: False) == 0  # 2 held, 0 blank
    assert (2, 0) not in data.slices
    with pytest.raises(BlankSlice):
        on_engine(data, data.open_view, (2, 0), ["Tiny"])


def test_paging_through_every_slice_stays_within_the_budget(data: ViewerData) -> None:
    one = on_engine(data, data.open_view, (0, 0), ["Tiny"]).nbytes
    data.slices.budget_bytes = 3 * one
    for index in range(12):
        on_engine(data, data.open_view, (0, index), ["Tiny"])
    assert len(data.slices) == 3 and data.slices.keys[-1] == (0, 11)
    assert data.slices.nbytes <= 3 * one


def test_showing_another_slice_drops_the_maps_queued_for_the_last(data: ViewerData) -> None:
    scheduler = data.maps
    scheduler.close()  # no worker: what is queued stays visible
    on_engine(data, data.open_view, (2, 4), ["Tiny"])
    assert scheduler.current == (2, 3)
    scheduler._closed = False
    scheduler.request("Tiny", "guidance")
    scheduler.request("Tiny", "influence")
    assert scheduler.queued == [("Tiny", "guidance"), ("Tiny", "influence")]
    assert data.show_maps((2, 4)) and scheduler.current == (2, 4)
    assert scheduler.queued == [] and scheduler.progress("Tiny", "guidance", (2, 3)) is None
    scheduler.request("Tiny", "guidance")
    assert scheduler.queued == [("Tiny", "guidance")]
    assert scheduler.progress("Tiny", "guidance").state == "queued"
    assert not data.show_maps((2, 5))  # not open: nothing is computed for it
    scheduler._closed = True


def direct_fused(paths: list[Path], axis: int, index: int) -> np.ndarray:
    """The fused slice of a 2-D run on that slice (the reference for the viewer's)."""
    tensors = as_tensors(load_images(paths, slice_index=index, axis=axis).stack())
    with torch.no_grad():
        return TinyFusion()(*tensors)[0, 0].numpy()


def test_fused_slices_keep_the_most_recent_within_their_budget() -> None:
    one = np.zeros((8, 8), np.float32)
    store = FusedSlices(budget_bytes=3 * one.nbytes)
    for index in range(4):
        assert store.put(((2, index), "A"), one.copy())
    assert ((2, 0), "A") not in store and len(store) == 3 and store.nbytes == 3 * one.nbytes
    assert store.get(((2, 1), "A")) is not None  # now the most recently used
    store.put(((2, 4), "A"), one.copy())
    assert ((2, 1), "A") in store and ((2, 2), "A") not in store
    assert store.full(1) and not FusedSlices(10 * one.nbytes).full(one.nbytes)
    assert not store.put(((2, 5), "A"), np.zeros((64, 64), np.float32))  # alone over budget
    assert nearest_first(2, 6) == [3, 1, 4, 0, 5]


def test_the_axis_is_swept_and_a_jump_there_runs_no_forward(
    data: ViewerData, paths: list[Path]
) -> None:
    assert on_engine(data, data.sweep, (2, 3), ["Tiny"], lambda: True) == 0
    assert not data.swept((2, 3), ["Tiny"])
    assert on_engine(data, data.sweep, (2, 3), ["Tiny"], lambda: False) == 5  # 0 is blank
    assert data.swept((2, 3), ["Tiny"]) and not data.swept((1, 3), ["Tiny"])
    for index in range(1, 6):
        swept = data.fused_slices.get(((2, index), "Tiny"))
        np.testing.assert_allclose(swept, direct_fused(paths, 2, index), atol=1e-6)
    assert on_engine(data, data.sweep, (2, 3), ["Tiny"], lambda: False) == 0  # all held
    session = data.hover.sessions["Tiny"]
    session.strategy = "recorded"  # as for a model whose hovers are fastest from a record
    calls: list[int] = []
    handle = session.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        view = on_engine(data, data.open_view, (2, 5), ["Tiny"])  # a jump
        header, arrays = on_engine(data, data.pixel_frame, ["Tiny"], (4, 6), None, (2, 5))
        on_engine(data, data.prefetch, (2, 5), ["Tiny"], lambda: False)  # neighbours: swept
    finally:
        handle.remove()
    assert calls == [], "the jump, its hover or the prefetch ran the model forward"
    assert view.sessions["Tiny"].complete and view.sessions["Tiny"].jacobian.record_bytes == 0
    assert header["models"]["Tiny"]["method"] == "cone"
    tensors = as_tensors(load_images(paths, slice_index=5, axis=2).stack())
    top, bottom, left, right = header["models"]["Tiny"]["window"]
    rows = PixelJacobian(TinyFusion()).attribute(tensors, pixel=(4, 6))
    for k in range(2):
        expected = rows[k][0, 0, top:bottom, left:right].numpy()
        np.testing.assert_allclose(arrays[f"Tiny/jacobian_{k}"], expected, atol=1e-6)
    session.local = False  # as for a model that is not local: its forward is kept after all
    view = on_engine(data, data.open_view, (2, 2), ["Tiny"])
    assert not view.sessions["Tiny"].complete
    on_engine(data, data.prefetch, (2, 2), ["Tiny"], lambda: False)
    assert view.sessions["Tiny"].complete and view.sessions["Tiny"].jacobian.record_bytes > 0


def test_the_sweep_stops_when_told_and_keeps_the_nearest_within_the_budget(
    data: ViewerData,
) -> None:
    calls = iter([False] * 4 + [True])  # asked before each slice and each model: two slices
    assert on_engine(data, data.sweep, (0, 6), ["Tiny"], lambda: next(calls)) == 2
    assert not data.swept((0, 6), ["Tiny"])
    data.fused_slices = FusedSlices()
    one = on_engine(data, data.open_view, (0, 6), ["Tiny"]).sessions["Tiny"].fused.nbytes
    data.fused_slices = FusedSlices(budget_bytes=3 * one)
    assert on_engine(data, data.sweep, (0, 6), ["Tiny"], lambda: False) == 3
    assert {key[1] for key, _ in data.fused_slices._arrays} == {5, 6, 7}
    assert data.swept((0, 6), ["Tiny"])  # full: the far slices are left to be computed when shown
