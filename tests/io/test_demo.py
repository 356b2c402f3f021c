from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fusevis.errors import InputError
from fusevis.io import DEMO_SETS, export_demo, load_demo
from fusevis.io.demo import _mni_volumes, simulate_fdg_pet


@pytest.mark.parametrize("name", list(DEMO_SETS))
def test_demo_sets_are_256_and_normalised(name: str) -> None:
    image_set = load_demo(name)
    assert len(image_set) == 2 and image_set.shape == (256, 256)
    for image in image_set:
        assert image.data.dtype == np.float32
        assert image.data.min() == 0.0 and image.data.max() == 1.0


def test_pet_model_grey_matter_about_four_times_white_matter() -> None:
    volumes = _mni_volumes()
    gm, wm = volumes["gm"][:, :, 90], volumes["wm"][:, :, 90]
    pet = simulate_fdg_pet(gm, wm, fwhm_mm=0.01, noise=0.0)
    ratio = pet[gm > 0.95].mean() / pet[wm > 0.95].mean()
    assert 3.5 < ratio < 4.5


def test_lesion_halves_uptake_inside_the_disc() -> None:
    volumes = _mni_volumes()
    gm, wm = volumes["gm"][:, :, 90], volumes["wm"][:, :, 90]
    healthy = simulate_fdg_pet(gm, wm, noise=0.0)
    lesion = simulate_fdg_pet(gm, wm, noise=0.0, lesion=(60, 90, 14))
    assert lesion[60, 90] < 0.6 * healthy[60, 90]
    assert lesion[150, 90] == pytest.approx(healthy[150, 90])


def test_multifocus_inputs_are_complementary() -> None:
    from fusevis.io import demo_arrays

    arrays = demo_arrays("multifocus-camera")
    sharp = arrays["reference"]
    assert np.allclose(arrays["near"][:, :100], sharp[:, :100])
    assert np.allclose(arrays["far"][:, 160:], sharp[:, 160:])
    assert not np.allclose(arrays["near"][:, 160:], sharp[:, 160:])


def test_export_writes_png_files(tmp_path: Path) -> None:
    written = export_demo("mri-pet", tmp_path)
    assert sorted(p.name for p in written) == ["mri.png", "pet.png"]
    assert np.asarray(PILImage.open(written[0])).shape == (256, 256)


def test_unknown_demo_set() -> None:
    with pytest.raises(InputError, match="unknown demo set 'nope'"):
        load_demo("nope")


def test_demo_dataset_is_a_paired_dataset(tmp_path) -> None:  # noqa: ANN001
    from fusevis.errors import InputError
    from fusevis.io import export_demo_dataset
    from fusevis.io.dataset import PairedDataset

    root = export_demo_dataset(tmp_path / "ds", count=3, size=32)
    dataset = PairedDataset(root, ["mri", "pet"])
    assert dataset.names == ["case0", "case1", "case2"]
    assert dataset[2][0].shape == (32, 32)
    import pytest

    with pytest.raises(InputError, match="crop size 999 does not fit"):
        export_demo_dataset(tmp_path / "bad", count=1, size=999)


def test_demo_volumes_are_small_ras_unit_float32() -> None:
    import nibabel as nib

    from fusevis.io.demo import demo_volume_arrays

    arrays, affine = demo_volume_arrays()
    assert sorted(arrays) == ["mri", "pet"]
    for array in arrays.values():
        assert array.dtype == np.float32 and array.ndim == 3
        assert array.shape[0] <= 128 and array.shape[1] <= 128 and array.shape[2] <= 96
        assert array.min() == 0.0 and array.max() == 1.0
    assert arrays["mri"].shape == arrays["pet"].shape
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    assert np.allclose(np.diag(affine)[:3], 2.0)
    # the coarse grid's voxel centres are the centres of the 1 mm blocks they average
    from fusevis.io.demo import _nilearn_file

    fine = nib.load(str(_nilearn_file("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))).affine
    assert np.allclose(affine @ [3, 4, 5, 1], fine @ [6.5, 8.5, 10.5, 1])
    # the PET follows the tissue: brighter in grey matter than in the background
    volumes = _mni_volumes()
    assert arrays["pet"][arrays["mri"] > 0.5].mean() > 5 * arrays["pet"][:3, :3, :3].mean()
    copy, _ = demo_volume_arrays()
    copy["mri"][...] = 0
    assert demo_volume_arrays()[0]["mri"].max() == 1.0  # callers get copies
    assert volumes["t1"].ndim == 3


def test_export_demo_volumes_reads_back(tmp_path: Path) -> None:
    import nibabel as nib

    from fusevis.io import load_image
    from fusevis.io.demo import demo_volume_arrays, export_demo_volumes

    arrays, affine = demo_volume_arrays()
    written = export_demo_volumes(tmp_path)
    assert written == [tmp_path / "mri.nii.gz", tmp_path / "pet.nii.gz"]
    for path, key in zip(written, ("mri", "pet"), strict=True):
        image = nib.load(str(path))
        assert isinstance(image, nib.Nifti1Image)
        assert np.array_equal(image.affine, affine)
        assert image.header.get_xyzt_units()[0] == "mm"
        assert np.array_equal(np.asarray(image.dataobj), arrays[key])
    k = 50
    axial = load_image(written[0], slice_index=k, axis=2).data
    plane = arrays["mri"][:, :, k]
    # anterior up: row 0 holds the largest y (the (x, y) plane turned a quarter to the left)
    assert axial.shape == (plane.shape[1], plane.shape[0])
    expected = np.rot90(plane)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert np.allclose(axial, expected, atol=1e-6)
    # row r, column c is voxel (x=c, y=Y-1-r): anterior (large y) up, right (large x) right
    x, y = 40, 90
    assert axial[plane.shape[1] - 1 - y, x] == pytest.approx(expected[plane.shape[1] - 1 - y, x])
    assert expected[plane.shape[1] - 1 - y, x] > 0 and not np.allclose(axial, np.flipud(axial))
