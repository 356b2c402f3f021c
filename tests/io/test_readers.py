from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from fusevis.io import load_image, load_images, luminance
from fusevis.io.color import LUMINANCE_WEIGHTS

from .dicom_files import write_dicom_series, write_multiframe_dicom

RNG = np.random.default_rng(0)


def minmax(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min())


@pytest.fixture
def grey8() -> np.ndarray:
    return RNG.integers(0, 256, (20, 30), dtype=np.uint8)


@pytest.fixture
def rgb8() -> np.ndarray:
    return RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".gif", ".tif", ".bmp"])
def test_grey_lossless_formats(tmp_path: Path, grey8: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"grey{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, grey8)
    else:
        PILImage.fromarray(grey8).save(path)
    image = load_image(path)
    assert image.data.dtype == np.float32 and image.shape == (20, 30)
    np.testing.assert_allclose(image.data, minmax(grey8), atol=1e-6)
    assert image.value_range == (float(grey8.min()), float(grey8.max()))


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_rgb_formats_use_paper_luminance(tmp_path: Path, rgb8: np.ndarray, suffix: str) -> None:
    path = tmp_path / f"rgb{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, rgb8)
    else:
        PILImage.fromarray(rgb8).save(path)
    expected = minmax(rgb8.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140]))
    np.testing.assert_allclose(load_image(path).data, expected, atol=1e-6)


def test_palette_gif_is_expanded_through_its_palette(tmp_path: Path, rgb8: np.ndarray) -> None:
    palette_image = PILImage.fromarray(rgb8).quantize(colors=64)
    path = tmp_path / "palette.gif"
    palette_image.save(path)
    rgb = np.asarray(PILImage.open(path).convert("RGB"))
    np.testing.assert_allclose(load_image(path).data, minmax(luminance(rgb)), atol=1e-6)


def test_jpeg_reads_what_pillow_decodes(tmp_path: Path, rgb8: np.ndarray) -> None:
    path = tmp_path / "photo.jpg"
    PILImage.fromarray(rgb8).save(path, quality=95)
    decoded = np.asarray(PILImage.open(path).convert("RGB"))
    np.testing.assert_allclose(load_image(path).data, minmax(luminance(decoded)), atol=1e-6)


def test_float_tiff_and_percentile_normalisation(tmp_path: Path) -> None:
    values = np.linspace(0, 100, 101 * 3, dtype=np.float32).reshape(101, 3)
    path = tmp_path / "float.tiff"
    tifffile.imwrite(path, values)
    clipped = load_image(path, normalize="percentile", percentiles=(10, 90)).data
    low, high = np.percentile(values, (10, 90))
    np.testing.assert_allclose(
        clipped, (np.clip(values, low, high) - low) / (high - low), atol=1e-6
    )
    raw = load_image(path, normalize="none").data
    np.testing.assert_array_equal(raw, values)


def test_luminance_weights_are_the_papers() -> None:
    np.testing.assert_array_equal(LUMINANCE_WEIGHTS, [0.2989, 0.5870, 0.1140])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_known_slice(tmp_path: Path, suffix: str) -> None:
    volume = RNG.random((12, 14, 9)).astype(np.float32)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    path = tmp_path / f"vol{suffix}"
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    image = load_image(path, slice_index=4, axis=2, normalize="none")
    np.testing.assert_allclose(image.data, np.rot90(volume[:, :, 4]), atol=1e-6)
    assert image.spacing == pytest.approx((0.9, 0.8))
    middle = load_image(path, axis=0, normalize="none")
    np.testing.assert_allclose(middle.data, np.rot90(volume[6]), atol=1e-6)


def test_nifti_reoriented_to_ras(tmp_path: Path) -> None:
    volume = RNG.random((6, 7, 5)).astype(np.float32)
    flipped_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    path = tmp_path / "las.nii.gz"
    nib.save(nib.Nifti1Image(volume, flipped_x), str(path))
    image = load_image(path, slice_index=2, normalize="none")
    np.testing.assert_allclose(image.data, np.rot90(volume[::-1, :, 2]), atol=1e-6)


def test_dicom_series_folder_sorted_by_position(tmp_path: Path) -> None:
    volume = RNG.integers(0, 4000, (5, 16, 18)).astype(np.uint16)
    folder = write_dicom_series(tmp_path / "series", volume, shuffle=True)
    image = load_image(folder, slice_index=3, normalize="none")
    # slope 2, intercept -100 are applied
    np.testing.assert_allclose(image.data, volume[3].astype(np.float32) * 2 - 100)
    assert image.spacing == pytest.approx((0.5, 0.6))


def test_dicom_multiframe_file(tmp_path: Path) -> None:
    frames = RNG.integers(0, 1000, (4, 10, 12)).astype(np.uint16)
    path = write_multiframe_dicom(tmp_path / "multi.dcm", frames)
    image = load_image(path, slice_index=1, normalize="none")
    np.testing.assert_allclose(image.data, frames[1].astype(np.float32))


def test_load_images_builds_a_set(tmp_path: Path, grey8: np.ndarray, rgb8: np.ndarray) -> None:
    PILImage.fromarray(grey8).save(tmp_path / "a.png")
    PILImage.fromarray(rgb8).save(tmp_path / "b.png")
    image_set = load_images([tmp_path / "a.png", tmp_path / "b.png"])
    assert len(image_set) == 2 and image_set.shape == (20, 30)
    assert image_set.stack().shape == (2, 20, 30) and image_set.stack().dtype == np.float32
