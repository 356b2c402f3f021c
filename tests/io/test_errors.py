"""Every bad input gets a one-line InputError naming the file and the problem."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from fusevis.errors import FuseVisError, InputError
from fusevis.io import load_image, load_images


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert isinstance(error.value, FuseVisError)
    return message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_image(tmp_path / "absent.png")
    assert one_line(error) == f"{tmp_path / 'absent.png'}: file not found"


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not a PNG at all")
    with pytest.raises(InputError) as error:
        load_image(path)
    assert one_line(error).startswith(f"{path}: cannot read PNG file")


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError) as error:
        load_image(path)
    assert one_line(error).startswith(f"{path}: cannot read PNG file")


def test_truncated_nifti(tmp_path: Path) -> None:
    path = tmp_path / "cut.nii"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4)), str(path))
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(InputError) as error:
        load_image(path)
    assert one_line(error).startswith(f"{path}: cannot read NIfTI file")


def test_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "image.xyz"
    path.write_bytes(b"data")
    with pytest.raises(InputError) as error:
        load_image(path)
    assert one_line(error) == f"{path}: unsupported image format '.xyz'"


def test_shapes_differ(tmp_path: Path) -> None:
    PILImage.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "a.png")
    PILImage.fromarray(np.arange(72, dtype=np.uint8).reshape(8, 9)).save(tmp_path / "b.png")
    with pytest.raises(InputError) as error:
        load_images([tmp_path / "a.png", tmp_path / "b.png"])
    assert (
        one_line(error)
        == f"{tmp_path / 'b.png'}: shape 8x9 differs from {tmp_path / 'a.png'} (8x8)"
    )


def test_constant_image(tmp_path: Path) -> None:
    path = tmp_path / "flat.png"
    PILImage.fromarray(np.full((8, 8), 7, np.uint8)).save(path)
    with pytest.raises(InputError) as error:
        load_image(path)
    assert one_line(error) == f"{path}: image is constant (7); cannot scale it to [0, 1]"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_infinite_values(tmp_path: Path, bad: float) -> None:
    values = np.ones((6, 6), np.float32)
    values[2, 3] = bad
    values[0, 0] = 0
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, values)
    with pytest.raises(InputError) as error:
        load_image(path)
    assert one_line(error) == f"{path}: contains 1 NaN or infinite values"


def test_slice_outside_volume(tmp_path: Path) -> None:
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 5)), np.eye(4)), str(path))
    with pytest.raises(InputError) as error:
        load_image(path, slice_index=5)
    assert one_line(error) == f"{path}: slice 5 is outside the volume (axis 2 has 5 slices)"
