"""Result volumes on their inputs' grid: naming, grid checks, affine and units written."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fusevis.errors import InputError
from fusevis.io.readers import read_nifti
from fusevis.io.volumes import check_same_grid, save_volume, volume_output_paths

LPS = np.array([[-2.0, 0, 0, 30], [0, -2.5, 0, 40], [0, 0, 3, -9], [0, 0, 0, 1]])


def write(path: Path, data: np.ndarray, affine: np.ndarray, units: str = "mm") -> Path:
    image = nib.Nifti1Image(data.astype(np.float32), affine)
    image.header.set_xyzt_units(units, "sec")
    nib.save(image, str(path))
    return path


def test_output_names_from_one_output(tmp_path: Path) -> None:
    paths = volume_output_paths(tmp_path / "run.nii.gz", 2, maps=True, shares=True)
    assert {key: p.name for key, p in paths.items()} == {
        "fused": "run.nii.gz",
        "guidance_0": "run_guidance-1.nii.gz",
        "share_0": "run_share-1.nii.gz",
        "guidance_1": "run_guidance-2.nii.gz",
        "share_1": "run_share-2.nii.gz",
    }
    assert list(volume_output_paths(tmp_path / "f.nii", 3, False, False).values()) == [
        tmp_path / "f.nii"
    ]
    with pytest.raises(InputError, match="must be .nii.gz or .nii"):
        volume_output_paths(tmp_path / "f.png", 2, True, False)


def test_grids_must_agree(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((4, 5, 3))
    a = read_nifti(write(tmp_path / "a.nii.gz", data, LPS))
    shifted = LPS.copy()
    shifted[0, 3] += 1.0
    b = read_nifti(write(tmp_path / "b.nii.gz", data, shifted))
    c = read_nifti(write(tmp_path / "c.nii.gz", data[:, :, :2], LPS))
    check_same_grid([a, a], [tmp_path / "a.nii.gz"] * 2)
    with pytest.raises(InputError, match=r"b.nii.gz: affine differs from .*a.nii.gz's by up to 1"):
        check_same_grid([a, b], [tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"])
    with pytest.raises(InputError, match=r"c.nii.gz: volume of 4x5x2 voxels differs"):
        check_same_grid([a, c], [tmp_path / "a.nii.gz", tmp_path / "c.nii.gz"])


def test_saved_volume_has_the_canonical_affine_and_the_units(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((4, 5, 3))
    source = write(tmp_path / "a.nii.gz", data, LPS, units="micron")
    raw = read_nifti(source)
    out = save_volume(raw.pixels * 2, tmp_path / "out.nii.gz", raw)
    saved = nib.load(str(out))
    canonical = nib.as_closest_canonical(nib.load(str(source)))
    assert np.array_equal(saved.affine, canonical.affine)
    assert saved.header.get_xyzt_units() == ("micron", "sec")
    assert saved.header.get_zooms() == canonical.header.get_zooms()
    np.testing.assert_allclose(np.asarray(saved.dataobj), 2 * canonical.get_fdata(), rtol=1e-6)
    with pytest.raises(InputError, match="not on its inputs' grid"):
        save_volume(np.zeros((2, 2, 2)), tmp_path / "bad.nii.gz", raw)
