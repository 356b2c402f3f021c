"""A 3-D network in the viewer: fused slices from the fused volume, a voxel's row on planes."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from fusevis.errors import InputError
from fusevis.io.loading import volume_slice
from fusevis.models.volumes import Fuse3D
from fusevis.saliency.volumetric import VoxelJacobian, row_planes, volume_maps
from fusevis.viewer.access import Access
from fusevis.viewer.app import create_app
from fusevis.viewer.data import ViewerData
from fusevis.viewer.volume import VolumeSet
from fusevis.viewer.volume3d import mark_in_plane, plane_of, voxel_of
from tests.notebook.conftest import TinyFusion
from tests.viewer.test_volume_app import frames_until
from tests.viewer.volumes import write_pair

TOKEN = "token-of-the-3d-network-tests"
SHAPE = (12, 14, 10)


def tiny_volume_data(folder: Path, maps: bool = False) -> tuple[ViewerData, VolumeSet]:
    """A 12x14x10 NIfTI pair, seeded Fuse3D beside a 2-D network, at axial slice 5."""
    volume = VolumeSet.read(write_pair(folder, SHAPE))
    torch.manual_seed(0)
    models = {"Deep": Fuse3D(), "Tiny": TinyFusion()}
    data = ViewerData(
        volume.image_set((2, 5)), models, compute_maps=maps, ask_above_s=math.inf,
        volume=volume, start=(2, 5),
    )  # fmt: skip
    return data, volume


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ViewerData, VolumeSet]]:
    data, volume = tiny_volume_data(tmp_path_factory.mktemp("volumes3d"))
    yield data, volume
    data.close()


@pytest.mark.parametrize("rotate", [True, False])
def test_pixels_map_back_to_the_voxels_volume_slice_shows(rotate: bool) -> None:
    codes = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    from fusevis.io.readers import RawArray

    for axis in range(3):
        shown = volume_slice(RawArray(codes, None, rotate_slices=rotate), Path("v"), 3, axis)
        assert np.array_equal(plane_of(codes, (axis, 3), rotate), shown.pixels)
        for pixel in [(0, 0), (shown.pixels.shape[0] - 1, 1), (2, shown.pixels.shape[1] - 1)]:
            voxel = voxel_of((axis, 3), pixel, SHAPE, rotate)
            assert codes[voxel] == shown.pixels[pixel]
            mark = mark_in_plane(voxel, axis, SHAPE, rotate)
            assert mark == pixel


def test_hover_answer_equals_the_engines_row_planes(viewer: tuple[ViewerData, VolumeSet]) -> None:
    data, volume = viewer
    client = TestClient(create_app(data, Access(TOKEN)), base_url="http://localhost")
    assert client.get(f"/?token={TOKEN}").status_code == 200
    engine = VoxelJacobian(data.deep.models["Deep"], data.deep.tensors)
    with client.websocket_connect(f"ws://localhost/ws?token={TOKEN}") as socket:
        images = frames_until(socket, lambda h: h["kind"] == "images")[-1]
        fused = data.deep.fused("Deep")
        shown = plane_of(fused, (2, 5), rotate=True)
        assert np.allclose(images[1]["Deep/fused"], shown)
        socket.send_json({"type": "compare", "names": ["Deep", "Tiny"], "seq": 1})
        frames_until(socket, lambda h: h["kind"] == "pixel" and h["seq"] == 1)
        socket.send_json({"type": "hover", "row": 3, "col": 7, "seq": 2})
        header, arrays = frames_until(socket, lambda h: h["kind"] == "pixel" and h["seq"] == 2)[-1]
        voxel = voxel_of((2, 5), (3, 7), volume.depths, True)
        info = header["models"]["Deep"]
        assert info["voxel"] == list(voxel) and "Tiny" in header["models"]
        rows = engine.row(voxel)
        for k, row in enumerate(rows):
            planes = row_planes(row, voxel)
            for j, plane in enumerate(planes):
                assert np.array_equal(arrays[f"Deep/plane_{k}_{j}"], plane.astype(np.float32))
                assert plane[tuple(info["planes"]["marks"][j])] == row[voxel]
            assert np.array_equal(arrays[f"Deep/jacobian_{k}"], planes[0])  # axial in view
            assert info["jacobian_at_pixel"][k] == pytest.approx(float(row[voxel]))
        assert np.abs(arrays["Deep/plane_0_1"]).max() > 0
        export = client.get("/api/export.npz?model=Deep&row=3&col=7&axis=2&slice=5")
        with np.load(io.BytesIO(export.content)) as saved:
            for k, row in enumerate(rows):
                np.testing.assert_array_equal(saved[f"jacobian_{k}"], row_planes(row, voxel)[0])
            assert saved["fused"].shape == (14, 12)
        # another slice and axis: the voxel follows
        socket.send_json({"type": "slice", "axis": "coronal", "index": 4, "seq": 3})
        header, arrays = frames_until(socket, lambda h: h["kind"] == "pixel" and h["seq"] == 3)[-1]
        voxel = voxel_of((1, 4), tuple(header["pixel"]), volume.depths, True)
        assert header["models"]["Deep"]["voxel"] == list(voxel) and voxel[1] == 4
        planes = row_planes(engine.row(voxel)[1], voxel)
        assert np.array_equal(arrays["Deep/plane_1_2"], planes[2].astype(np.float32))
        assert np.array_equal(arrays["Deep/jacobian_1"], planes[1].astype(np.float32))
        for bad in ({"row": 14, "col": 0}, {"row": -1, "col": 2}, {"row": "x", "col": 1}):
            socket.send_json({"type": "hover", **bad})
            error = frames_until(socket, lambda h: h["kind"] == "error")[-1][0]
            assert "\n" not in error["message"]


def test_a_3d_network_needs_volumes(viewer: tuple[ViewerData, VolumeSet]) -> None:
    _, volume = viewer
    with pytest.raises(InputError, match="fuses volumes"):
        ViewerData(volume.image_set((2, 5)), {"Deep": Fuse3D()}, compute_maps=False)


def test_guidance_volumes_are_shown_a_slice_at_a_time(
    viewer: tuple[ViewerData, VolumeSet],
) -> None:
    data, _ = viewer
    seen: list[tuple[str, str, str]] = []
    data.maps.add_listener(lambda *event: seen.append(event))
    assert "Deep" in data.maps.models and data.maps.progress("Deep", "guidance") is None
    progress = data.maps.request("Deep", "guidance")
    for _ in range(600):
        if progress.finished or progress.state == "error":
            break
        time.sleep(0.05)
    assert progress.finished, progress.error
    assert ("Deep", "guidance", "arrays") in seen
    engine = volume_maps(data.deep.models["Deep"], data.deep.tensors)
    for key in [(2, 5), (0, 3)]:
        shown = data.maps.arrays("Deep", "guidance", key)
        for k, guidance in enumerate(engine.guidance):
            expected = plane_of(guidance.sum(axis=0), key, rotate=True)
            np.testing.assert_allclose(shown[f"guidance_{k}"], expected, atol=1e-6)
    # the hover answer carries the guidance at the pixel, as for a 2-D network
    header, _ = data.hover.submit(data.pixel_frame, ["Deep"], (2, 3), None, (2, 5)).result()
    expected = plane_of(engine.guidance[1].sum(axis=0), (2, 5), rotate=True)[2, 3]
    assert header["models"]["Deep"]["guidance_at_pixel"][1] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(InputError, match="unknown map kind"):
        data.maps.request("Deep", "shares")
    assert data.maps.request("Deep", "influence").state == "ask"  # long: the user's go
    assert data.maps.progress("Deep", "influence").state == "ask"
