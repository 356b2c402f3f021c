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
