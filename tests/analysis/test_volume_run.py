"""Every slice of a volume on Dask: each slice as its 2-D run, on the input's grid, resumable.

Tiny volumes (20x24x6) and WeightedAverage (guidance = the per-pixel weights, exactly); the
Dask worker is one thread of this process here (the saliency engine is not thread-safe);
tests/cli/test_all_slices.py runs two worker processes.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fusevis.analysis.volume_run import (
    VolumeSettings,
    VolumeWarning,
    run_volume,
    slice_file,
    store_path,
)
from fusevis.io import load_images
from fusevis.models import get_model
from fusevis.models.inference import as_tensors
from fusevis.models.specs import ModelSpec
from fusevis.saliency import influence_maps

SHAPE = (20, 24, 6)
LPS = np.array([[-2.0, 0, 0, 21], [0, -2.0, 0, 25], [0, 0, 3.0, -7], [0, 0, 0, 1]])
SETTINGS = VolumeSettings(ModelSpec("WeightedAverage"), influence=True)


def make_pair(folder: Path, affine: np.ndarray = LPS) -> list[Path]:
    """Two random volumes, constant (background) in slice 0 along every axis's start."""
    rng = np.random.default_rng(3)
    paths = []
    for name in ("a", "b"):
        data = rng.random(SHAPE).astype(np.float32) + 0.1
        data[:, :, 0] = 0.0  # an empty axial slice
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units("mm", "sec")
        paths.append(folder / f"{name}.nii.gz")
        nib.save(image, str(paths[-1]))
    return paths


def volumes(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    return {key: np.asarray(nib.load(str(p)).dataobj) for key, p in paths.items()}


@pytest.fixture(scope="module")
def guidance_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, Path]]:
    folder = tmp_path_factory.mktemp("volume")
    inputs = make_pair(folder)
    result = run_volume(inputs, folder / "out.nii.gz", SETTINGS, workers=1, processes=False)
    assert result.computed == [1, 2, 3, 4, 5] and result.background == [0]
    assert not store_path(folder / "out.nii.gz").exists()  # removed once assembled
    return inputs, result.paths


def test_outputs_lie_on_the_inputs_canonical_grid(guidance_run) -> None:  # noqa: ANN001
    inputs, paths = guidance_run
    canonical = nib.as_closest_canonical(nib.load(str(inputs[0])))
    assert sorted(p.name for p in paths.values()) == [
        "out.nii.gz",
        "out_guidance-1.nii.gz",
        "out_guidance-2.nii.gz",
        "out_share-1.nii.gz",
        "out_share-2.nii.gz",
    ]
    for path in paths.values():
        image = nib.load(str(path))
        assert image.shape == SHAPE
        assert np.array_equal(image.affine, canonical.affine)
        assert image.header.get_xyzt_units()[0] == "mm"
        assert image.header.get_zooms() == canonical.header.get_zooms()


def test_each_slice_is_the_2d_run_of_that_slice(guidance_run) -> None:  # noqa: ANN001
    inputs, paths = guidance_run
    arrays = volumes(paths)
    model = get_model("WeightedAverage")
    for k in (1, 4):
        image_set = load_images(inputs, slice_index=k, axis=2)  # the 2-D command's loading
        maps = influence_maps(model, as_tensors(image_set.stack()))
        for i in range(2):
            # the 2-D slice is shown anterior-up: turn it back into the volume's (x, y)
            expected = np.rot90(maps.guidance_2d(i), k=-1)
            np.testing.assert_array_equal(arrays[f"guidance_{i}"][:, :, k], expected)
            share = np.rot90(maps.share[i], k=-1)
            np.testing.assert_array_equal(arrays[f"share_{i}"][:, :, k], share)
        np.testing.assert_array_equal(arrays["fused"][:, :, k], np.rot90(maps.fused, k=-1))
    for array in arrays.values():  # the background slice: zeros, no NaN
        assert np.all(array[:, :, 0] == 0) and np.all(np.isfinite(array))
    assert np.all(arrays["share_0"] >= 0) and arrays["share_0"].max() > 0.5


def test_non_canonical_input_lines_up_in_world_space(guidance_run) -> None:  # noqa: ANN001
    from nilearn.image import resample_to_img

    inputs, paths = guidance_run
    source = nib.load(str(inputs[0]))
    guidance = nib.load(str(paths["guidance_0"]))
    back = resample_to_img(
        guidance, source, interpolation="nearest", force_resample=True, copy_header=True
    ).get_fdata()
    # WeightedAverage's guidance is a/(a+b) of the slice-normalised inputs, voxel by voxel:
    # computed here in the LPS file's own voxel order, it must match voxel for voxel
    a, b = (np.asarray(nib.load(str(p)).dataobj, np.float64) for p in inputs)
    for k in range(1, SHAPE[2]):
        an = (a[:, :, k] - a[:, :, k].min()) / np.ptp(a[:, :, k])
        bn = (b[:, :, k] - b[:, :, k].min()) / np.ptp(b[:, :, k])
        total = an + bn
        expected = np.where(total == 0, 0.5, an / np.where(total == 0, 1, total))
        np.testing.assert_allclose(back[:, :, k], expected, atol=1e-6)


def test_resume_computes_only_the_missing_slices(tmp_path: Path) -> None:
    inputs = make_pair(tmp_path)
    out = tmp_path / "part.nii.gz"
    first = run_volume(
        inputs, out, SETTINGS, workers=1, processes=False, indices=[2, 3], assemble=False
    )
    assert first.computed == [2, 3]  # as if interrupted after two slices
    stored = slice_file(store_path(out), 2)
    with np.load(stored) as arrays:
        marked = dict(arrays)
    marked["fused"] = np.full_like(marked["fused"], 7.0)  # a stored slice is not recomputed
    np.savez(stored, **marked)
    second = run_volume(inputs, out, SETTINGS, workers=1, processes=False)
    assert second.computed == [1, 4, 5] and second.reused == [2, 3]
    assert second.background == [0]
    assert not store_path(out).exists()
    resumed = volumes(second.paths)
    assert np.all(resumed["fused"][:, :, 2] == 7.0)
    fresh = run_volume(inputs, tmp_path / "two.nii.gz", SETTINGS, workers=1, processes=False)
    fresh = volumes(fresh.paths)
    resumed["fused"][:, :, 2] = fresh["fused"][:, :, 2]
    for key in ("fused", "guidance_0", "guidance_1", "share_0", "share_1"):
        np.testing.assert_array_equal(resumed[key], fresh[key])


def test_store_of_other_settings_is_discarded(tmp_path: Path) -> None:
    inputs = make_pair(tmp_path)
    out = tmp_path / "o.nii.gz"
    run_volume(inputs, out, SETTINGS, workers=1, processes=False, indices=[1], assemble=False)
    fuse_only = VolumeSettings(ModelSpec("WeightedAverage"), mode="fuse")
    with pytest.warns(VolumeWarning, match="other inputs or settings; starting afresh"):
        result = run_volume(inputs, out, fuse_only, workers=1, processes=False, indices=[1, 2])
    assert result.computed == [1, 2] and list(result.paths) == ["fused"]
    fused = np.asarray(nib.load(str(out)).dataobj)
    assert np.all(fused[:, :, 3:] == 0) and np.all(fused[:, :, 1:3] > 0)


def test_a_folder_of_other_files_is_not_taken_for_the_slice_store(tmp_path: Path) -> None:
    from fusevis.errors import InputError

    inputs = make_pair(tmp_path)
    store_path(tmp_path / "x.nii.gz").mkdir()
    (store_path(tmp_path / "x.nii.gz") / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"x.slices: holds files FuseVis did not write \(notes"):
        run_volume(inputs, tmp_path / "x.nii.gz", SETTINGS, workers=1, processes=False)
    assert (store_path(tmp_path / "x.nii.gz") / "notes.txt").read_text() == "mine"


def test_sagittal_slices_turn_back_into_the_volume(tmp_path: Path) -> None:
    inputs = make_pair(tmp_path)
    settings = VolumeSettings(ModelSpec("WeightedAverage"), axis=0)
    result = run_volume(
        inputs, tmp_path / "x.nii.gz", settings, workers=1, processes=False, indices=[3, 11]
    )
    assert result.computed == [3, 11]
    guidance = np.asarray(nib.load(str(result.paths["guidance_0"])).dataobj)
    model = get_model("WeightedAverage")
    for k in (3, 11):
        image_set = load_images(inputs, slice_index=k, axis=0)
        maps = influence_maps(model, as_tensors(image_set.stack()))
        np.testing.assert_array_equal(guidance[k], np.rot90(maps.guidance_2d(0), k=-1))
    assert np.all(guidance[4] == 0)  # not asked for: zeros
