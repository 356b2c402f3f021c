"""Task sets: the ground truth reproduces; infrared-visible dataset layouts are read."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fusevis.errors import InputError
from fusevis.io import PairedDataset, export_demo, export_demo_dataset, load_demo
from fusevis.io.demo import DEMO_SETS
from fusevis.io.tasks import (
    TASK_SETS,
    camera_response,
    inverse_camera_response,
    oracle_clipped,
    oracle_fusion,
    task_pair,
    task_sets,
)

FOCUS = task_sets("multi-focus")
EXPOSURE = task_sets("multi-exposure")


def test_sets_are_listed_by_task() -> None:
    assert {"multifocus-camera", "multifocus-astronaut"} <= set(FOCUS) and len(FOCUS) >= 4
    assert len(EXPOSURE) >= 2
    assert {len(task_pair(n).inputs) for n in EXPOSURE} == {2, 3}
    assert task_sets("medical") == ["mri-pet", "mri-pet-lesion", "mri-fmri"]
    assert task_sets("infrared-visible") == []
    assert set(task_sets()) == set(TASK_SETS) | set(DEMO_SETS)
    with pytest.raises(InputError, match="unknown task 'nope'; choose from multi-focus"):
        task_sets("nope")
    with pytest.raises(InputError, match="unknown image set 'nope'"):
        task_pair("nope")


@pytest.mark.parametrize("name", FOCUS)
def test_in_focus_oracle_gives_the_sharp_image_exactly(name: str) -> None:
    pair = task_pair(name)
    mask = pair.truth_mask
    assert mask.dtype == bool and 0.2 < mask.mean() < 0.8, "both inputs own a real region"
    assert np.array_equal(oracle_fusion(pair), pair.truth_image)
    near, far = pair.inputs
    # defocus happened: each input differs from the sharp image where it is out of focus
    assert np.abs(near - pair.truth_image)[~mask].mean() > 0.005
    assert np.abs(far - pair.truth_image)[mask].mean() > 0.005
    assert np.array_equal(near[mask], pair.truth_image[mask])


@pytest.mark.parametrize("name", EXPOSURE)
def test_inverse_crf_of_the_best_exposed_input_gives_the_scene(name: str) -> None:
    pair = task_pair(name)
    clipped = oracle_clipped(pair)
    assert clipped.mean() < 0.001
    recovered = oracle_fusion(pair)
    np.testing.assert_allclose(recovered[~clipped], pair.truth_image[~clipped], atol=1e-9)
    for x in pair.inputs:  # every exposure spans exactly [0, 1]: min-max leaves it as it is
        assert x.min() == 0.0 and x.max() == 1.0
    for darker, brighter in zip(pair.inputs, pair.inputs[1:], strict=False):
        assert np.all(brighter >= darker) and np.mean(brighter > darker) > 0.5
    for x, q in zip(pair.inputs, pair.quality, strict=True):
        assert np.all(q[x >= 1.0] == 0.0), "a saturated pixel has no quality"
        assert q.max() > 0.99


def test_crf_inverts() -> None:
    s = np.linspace(0, 1, 101)
    np.testing.assert_allclose(inverse_camera_response(camera_response(s)), s, atol=1e-12)


def test_crop_cuts_the_truth_alike() -> None:
    pair = task_pair("multiexposure-coffee")
    crop = pair.crop(10, 20, 32)
    assert crop.shape == (32, 32) and crop.quality[2].shape == (32, 32)
    assert np.array_equal(crop.inputs[1], pair.inputs[1][10:42, 20:52])
    np.testing.assert_allclose(oracle_fusion(crop), pair.truth_image[10:42, 20:52], atol=1e-9)
    image_set = crop.image_set()
    assert len(image_set) == 3
    np.testing.assert_allclose(image_set[0].data, crop.inputs[0], atol=1e-7)
    with pytest.raises(InputError, match="crop does not fit the 256x256 images"):
        pair.crop(250, 0, 32)
    assert not crop.inputs[0].flags.writeable


def test_exported_files_keep_the_truth(tmp_path: Path) -> None:
    written = {p.name: p for p in export_demo("multifocus-coins", tmp_path)}
    assert set(written) == {"near.png", "far.png", "reference.png", "mask.png"}
    near, far, sharp, mask = (
        np.asarray(PILImage.open(written[f"{k}.png"])) for k in ("near", "far", "reference", "mask")
    )
    assert set(np.unique(mask)) == {0, 255}
    assert np.array_equal(np.where(mask > 0, near, far), sharp)  # exact in 8 bits too
    exposures = {p.name for p in export_demo("multiexposure-astronaut", tmp_path / "e")}
    assert exposures == {"under.png", "over.png", "reference.png", "quality1.png", "quality2.png"}


def test_demo_loads_exposures_unchanged_and_keeps_old_names() -> None:
    pair = task_pair("multiexposure-astronaut")
    image_set = load_demo("multiexposure-astronaut")
    np.testing.assert_allclose(image_set[1].data, pair.inputs[1], atol=1e-7)
    assert DEMO_SETS["multifocus-camera"].modalities == ("near", "far")
    assert "multiexposure-coffee" not in DEMO_SETS  # three inputs: tasks only


def test_task_dataset_carries_the_truth(tmp_path: Path) -> None:
    root = export_demo_dataset(tmp_path / "ds", count=2, size=32, name="multifocus-camera")
    dataset = PairedDataset(root, ["near", "far", "mask"])
    assert dataset.names == ["case0", "case1"]
    assert [p.parent.name for p in dataset.paths(1)] == ["near", "far", "mask"]


def _layout(root: Path, folders: dict[str, list[str]]) -> Path:
    for folder, stems in folders.items():
        (root / folder).mkdir(parents=True)
        for stem in stems:
            PILImage.fromarray(np.full((8, 8), 7, np.uint8)).save(root / folder / f"{stem}.png")
    return root


@pytest.mark.parametrize(
    "folders",
    [("ir", "vi"), ("Inf", "Vis"), ("infrared", "visible"), ("IR", "VI"), ("Ir", "Vis")],
)
def test_infrared_visible_layouts(tmp_path: Path, folders: tuple[str, str]) -> None:
    root = _layout(tmp_path, {folders[0]: ["00001D", "2"], folders[1]: ["2", "00001D"]})
    dataset = PairedDataset(root, ("ir", "vi"))
    assert dataset.names == ["00001D", "2"]  # natural order: 1 < 2
    assert [p.parent.name for p in dataset.paths(0)] == list(folders)


def test_infrared_visible_errors_are_one_line(tmp_path: Path) -> None:
    root = _layout(tmp_path / "a", {"Inf": ["1", "2"], "Vis": ["1", "3"]})
    with pytest.raises(InputError, match=r"Inf: 1 file\(s\) have no partner .*: 2$"):
        PairedDataset(root, ("ir", "vi"))
    root = _layout(tmp_path / "b", {"infrared": ["1"]})
    with pytest.raises(InputError, match=r"b/vi: modality folder not found \(nor vis, visible"):
        PairedDataset(root, ("ir", "vi"))
    root = _layout(tmp_path / "c", {"IR": ["1"], "ir2": ["1"], "Ir": ["1"], "vi": ["1"]})
    with pytest.raises(InputError, match="c/ir: ambiguous modality folder: IR, Ir"):
        PairedDataset(root, ("ir", "vi"))
