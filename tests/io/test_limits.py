"""The pixel limit every reader checks from the header, regular files only, DICOM series.

In-process checks of each reader with a lowered limit (the measured attacks through the
command line are in tests/security/test_images.py). A limit checked *before* decoding is
shown with files whose header is intact but whose pixel data are cut or corrupt: the limit
error comes first, where decoding would have failed differently.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image as PILImage
from pydicom.uid import DeflatedExplicitVRLittleEndian

from fusevis.errors import InputError
from fusevis.io import PairedDataset, load_image, load_images, volume_slices
from fusevis.io.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, max_pixels_from

from .crafted import nifti_gz_claiming, tiff_claiming
from .dicom_files import write_dicom_series, write_multiframe_dicom

RNG = np.random.default_rng(5)
GREY = RNG.integers(0, 256, (20, 30), dtype=np.uint8)


def message(call: Callable[[], object]) -> str:
    with pytest.raises(InputError) as error:
        call()
    text = str(error.value)
    assert "\n" not in text
    return text


def save_raster(path: Path, pixels: np.ndarray = GREY) -> Path:
    if path.suffix == ".tif":
        tifffile.imwrite(path, pixels)
    else:
        PILImage.fromarray(pixels).save(path)
    return path


# --- the limit ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".gif", ".jpg", ".bmp", ".tif"])
def test_every_raster_format_is_held_to_the_limit(tmp_path: Path, suffix: str) -> None:
    path = save_raster(tmp_path / f"grey{suffix}")
    assert load_image(path, max_pixels=600).shape == (20, 30)
    assert message(lambda: load_image(path, max_pixels=599)) == (
        f"{path}: image of 30x20 pixels exceeds the limit of 599 (raise it with --max-pixels)"
    )


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_the_limit_is_checked_before_decoding(tmp_path: Path, suffix: str) -> None:
    path = save_raster(tmp_path / f"cut{suffix}", RNG.integers(0, 256, (64, 64), np.uint8))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # pixel data cut
    assert "cannot read" in message(lambda: load_image(path))
    assert "exceeds the limit of 100" in message(lambda: load_image(path, max_pixels=100))


def test_the_environment_variable_sets_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_raster(tmp_path / "grey.png")
    assert max_pixels_from() == DEFAULT_MAX_PIXELS == 1 << 26
    monkeypatch.setenv(MAX_PIXELS_ENV, "599")
    assert "exceeds the limit of 599" in message(lambda: load_image(path))
    assert load_image(path, max_pixels=600).shape == (20, 30)  # the argument wins
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    assert message(lambda: load_image(path)) == (
        f"{MAX_PIXELS_ENV}: must be a positive integer, got 'lots'"
    )
    assert "must be a positive integer" in message(lambda: load_image(path, max_pixels=0))


def test_pillow_bomb_limit_is_replaced_not_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_raster(tmp_path / "grey.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse it
    assert load_image(path).shape == (20, 30)
    assert PILImage.MAX_IMAGE_PIXELS == 100


def test_pillow_decodes_only_the_expected_formats(tmp_path: Path) -> None:
    jpeg_named_png = tmp_path / "photo.png"
    PILImage.fromarray(GREY).save(jpeg_named_png, format="JPEG")
    assert load_image(jpeg_named_png).shape == (20, 30)
    ppm_named_png = tmp_path / "other.png"
    PILImage.fromarray(GREY).save(ppm_named_png, format="PPM")
    assert "cannot read PNG file" in message(lambda: load_image(ppm_named_png))


def test_tiff_tiles_and_strips(tmp_path: Path) -> None:
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, GREY, tile=(16, 16), compression="zlib")
    np.testing.assert_array_equal(load_image(tiled, normalize="none").data, GREY)
    huge_tile = tiff_claiming(tmp_path / "huge_tile.tif", 64, 64, tile=2048)
    assert "TIFF tile or strip of 2048x2048 pixels is larger than its image" in message(
        lambda: load_image(huge_tile)
    )
    bomb = tiff_claiming(tmp_path / "strip.tif", 64, 64, inflate_to=1 << 24)
    assert "a TIFF strip or tile inflates beyond its 4096 bytes" in message(
        lambda: load_image(bomb)
    )
    honest = tiff_claiming(tmp_path / "honest.tif", 300, 200, rows_per_strip=64)
    assert "image is constant" in message(lambda: load_image(honest))  # decoded, all zeros


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_is_held_to_the_limit(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"vol{suffix}"
    nib.save(nib.Nifti1Image(RNG.random((4, 5, 6)).astype(np.float32), np.eye(4)), str(path))
    assert load_image(path, max_pixels=120).shape == (5, 4)
    assert message(lambda: load_image(path, max_pixels=119)) == (
        f"{path}: volume of 4x5x6 voxels exceeds the limit of 119 (raise it with --max-pixels)"
    )


def test_nifti_claim_is_refused_before_reading(tmp_path: Path) -> None:
    path = nifti_gz_claiming(tmp_path / "claim.nii.gz", (2048, 2048, 2048))
    assert "volume of 2048x2048x2048 voxels" in message(lambda: load_image(path))
    path.write_bytes(path.read_bytes()[:2000])  # voxels cut: the header is enough
    assert "volume of 2048x2048x2048 voxels" in message(lambda: load_image(path))


def test_nifti_extension_bomb_is_refused_before_nibabel_reads_it(tmp_path: Path) -> None:
    path = nifti_gz_claiming(tmp_path / "ext.nii.gz", (4, 4, 4), extensions=256 << 20)
    assert "NIfTI header extensions up to offset" in message(lambda: load_image(path))
    small = nifti_gz_claiming(tmp_path / "small_ext.nii.gz", (4, 4, 4), extensions=4096)
    assert "image is constant" in message(lambda: load_image(small))  # read, all zeros


def test_nifti_scaling_matches_nibabel_in_float32(tmp_path: Path) -> None:
    stored = RNG.integers(-300, 3000, (6, 7, 5)).astype(np.int16)
    image = nib.Nifti1Image(stored, np.diag([-1.5, 2.0, 2.5, 1.0]))
    image.header.set_slope_inter(0.37, -12.5)
    path = tmp_path / "scaled.nii.gz"
    nib.save(image, str(path))
    expected = nib.as_closest_canonical(nib.load(str(path))).get_fdata(dtype=np.float32)
    got = load_image(path, slice_index=2, normalize="none").data
    np.testing.assert_array_equal(got, np.rot90(expected[:, :, 2]))


def test_dicom_file_is_held_to_the_limit(tmp_path: Path) -> None:
    frames = RNG.integers(0, 1000, (4, 10, 12)).astype(np.uint16)
    path = write_multiframe_dicom(tmp_path / "multi.dcm", frames)
    assert load_image(path, max_pixels=480, normalize="none").shape == (10, 12)
    assert message(lambda: load_image(path, max_pixels=479)) == (
        f"{path}: volume of 10x12x4 voxels exceeds the limit of 479 (raise it with --max-pixels)"
    )


def test_dicom_folder_counts_every_file_before_decoding(tmp_path: Path) -> None:
    volume = RNG.integers(0, 1000, (3, 16, 16)).astype(np.uint16)
    folder = write_dicom_series(tmp_path / "series", volume)
    assert load_image(folder, max_pixels=768).shape == (16, 16)
    first = sorted(folder.iterdir())[0]
    dataset = pydicom.dcmread(first)
    dataset.PixelData = dataset.PixelData[:100]  # a slice whose pixel data is cut
    dataset.save_as(first)
    assert "no readable pixel data" in message(lambda: load_image(folder))
    assert message(lambda: load_image(folder, max_pixels=767)) == (
        f"{folder}: volume of 16x16x3 voxels exceeds the limit of 767 (raise it with --max-pixels)"
    )


def test_deflated_dicom_is_bounded_before_pydicom_inflates_it(tmp_path: Path) -> None:
    frames = RNG.integers(0, 1000, (1, 10, 12)).astype(np.uint16)
    path = write_multiframe_dicom(tmp_path / "deflated.dcm", frames)
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dataset.save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(load_image(path, normalize="none").data, frames[0])
    dataset.add_new(0x00091010, "OB", bytes(4 << 20))  # 4 MiB of zeros: 4 KiB deflated
    dataset.add_new(0x00090010, "LO", "FUSEVIS TEST")
    dataset.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 64 << 10
    assert "deflated DICOM data inflate beyond" in message(
        lambda: load_image(path, max_pixels=1000)
    )


# --- regular files only ---------------------------------------------------------------


def finishes(call: Callable[[], object], fifo: Path, seconds: float = 10.0) -> object:
    """Run ``call`` in a thread; fail (after unblocking it) if it is still waiting."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a writer lets the reader go
        thread.join(seconds)
        pytest.fail(f"reading {fifo} blocked for {seconds} s")
    return outcome[0]


@pytest.mark.parametrize("name", ["in.png", "in.tif", "in.nii.gz", "in.nii", "in.dcm"])
def test_fifo_is_refused_without_blocking(tmp_path: Path, name: str) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    error = finishes(lambda: load_image(fifo), fifo)
    assert isinstance(error, InputError)
    assert str(error) == f"{fifo}: is a FIFO, not a regular file"


def test_device_is_refused(tmp_path: Path) -> None:
    device = tmp_path / "zeros.png"
    device.symlink_to("/dev/zero")
    assert message(lambda: load_image(device)) == (
        f"{device}: is a character device, not a regular file"
    )


def test_dicom_folder_reads_only_its_regular_files(tmp_path: Path) -> None:
    volume = RNG.integers(0, 1000, (3, 8, 8)).astype(np.uint16)
    folder = write_dicom_series(tmp_path / "series", volume)
    fifo = folder / "zz_pipe.dcm"
    os.mkfifo(fifo)
    (folder / "subfolder").mkdir()
    image = finishes(lambda: load_image(folder, slice_index=1, normalize="none"), fifo)
    np.testing.assert_allclose(image.data, volume[1].astype(np.float32) * 2 - 100)  # type: ignore[union-attr]


def test_paired_dataset_passes_the_limit(tmp_path: Path) -> None:
    for modality in ("mri", "pet"):
        (tmp_path / modality).mkdir()
        save_raster(tmp_path / modality / "1.png")
    assert PairedDataset(tmp_path, max_pixels=600)[0].shape == (20, 30)
    assert "exceeds the limit of 599" in message(lambda: PairedDataset(tmp_path, max_pixels=599)[0])


# --- DICOM folders holding several series ---------------------------------------------

MR_UID = "1.2.826.0.1.3680043.8.498.11"
PT_UID = "1.2.826.0.1.3680043.8.498.22"


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    folder = tmp_path / "study"
    mr = RNG.integers(0, 1000, (3, 8, 8)).astype(np.uint16)
    pt = RNG.integers(0, 1000, (4, 8, 8)).astype(np.uint16)
    write_dicom_series(folder, mr, modality="MR", series_uid=MR_UID, prefix="a")
    write_dicom_series(folder, pt, modality="PT", series_uid=PT_UID, description="FDG", prefix="b")
    return folder, mr, pt


def test_several_series_are_refused_and_listed(study: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder = study[0]
    assert message(lambda: load_image(folder)) == (
        f"{folder}: folder holds 2 DICOM series; choose one with --series: "
        '1) ...0043.8.498.11 MR, 3 files; 2) ...0043.8.498.22 PT "FDG", 4 files'
    )


@pytest.mark.parametrize(
    ("choice", "modality"),
    [(1, "MR"), ("2", "PT"), (MR_UID, "MR"), ("498.22", "PT"), (" 22", "PT")],
)
def test_one_series_is_chosen(
    study: tuple[Path, np.ndarray, np.ndarray], choice: int | str, modality: str
) -> None:
    folder, mr, pt = study
    volume = mr if modality == "MR" else pt
    image = load_image(folder, slice_index=1, normalize="none", series=choice)
    np.testing.assert_allclose(image.data, volume[1].astype(np.float32) * 2 - 100)


@pytest.mark.parametrize(("choice", "problem"), [("3", "matches none"), ("8.498", "matches none")])
def test_an_unknown_series_is_refused(
    study: tuple[Path, np.ndarray, np.ndarray], choice: str, problem: str
) -> None:
    folder = study[0]
    text = message(lambda: load_image(folder, series=choice))
    assert f"--series {choice!r} {problem} of its DICOM series: 1) " in text


def test_series_chosen_per_input(study: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, mr, pt = study
    image_set = load_images([folder, folder], normalize="none", slice_index=0, series=[1, 2])
    np.testing.assert_allclose(image_set[0].data, mr[0].astype(np.float32) * 2 - 100)
    np.testing.assert_allclose(image_set[1].data, pt[0].astype(np.float32) * 2 - 100)
    assert "3 series choices for 2 inputs" in message(
        lambda: load_images([folder, folder], series=[1, 2, 1])
    )
    slices = list(volume_slices([folder], series="1", normalize="none"))
    assert len(slices) == 3
