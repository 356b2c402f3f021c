"""Hostile image files through ``fusevis fuse``: the harm each one did, measured.

Each file is real and complete in its format, crafted here in a few kilobytes, and claims
far more pixels than its size suggests (issue 11: a 79 KB PNG of 81 Mpx reached 6.9 GB, a
TIFF and a .nii.gz allocated 9-12 GB), or is a FIFO that hung the command, or a DICOM folder
holding two series that were silently merged. The command runs in a child process
(``tests/security/harm.py``) whose peak resident memory, time and output are checked:
``error: <file>: <problem>`` on one line, exit status 2, under 1 GiB, no hang.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.io.crafted import nifti_gz_claiming, png_claiming, tiff_claiming
from tests.io.dicom_files import write_dicom_series
from tests.security.harm import Measured, fusevis

pytestmark = pytest.mark.slow

MIB = 1 << 20
PEAK_RSS_MIB = 1024
LIMIT_HINT = "exceeds the limit of 67108864 (raise it with --max-pixels)"


def fuse(tmp_path: Path, *inputs: Path | str, **kwargs: object) -> Measured:
    args = [str(p) for p in inputs]
    out = str(tmp_path / "fused.png")
    return fusevis("fuse", *args, "--model", "WeightedAverage", "-o", out, **kwargs)  # type: ignore[arg-type]


def refused(result: Measured, path: Path, *fragments: str) -> None:
    """Under 1 GiB, in seconds, one ``error: <path>: ...`` line with every fragment."""
    assert not result.timed_out, f"timed out after {result.seconds:.1f} s"
    assert result.peak_rss_mb < PEAK_RSS_MIB, f"peak RSS {result.peak_rss_mb:.0f} MiB"
    result.assert_one_line_error(f"error: {path}: ", *fragments)


@pytest.fixture
def partner(tmp_path: Path) -> Path:
    """A small, honest second input."""
    path = tmp_path / "partner.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(path)
    return path


def test_png_claiming_81_megapixels_is_refused_from_its_header(
    tmp_path: Path, partner: Path
) -> None:
    bomb = png_claiming(tmp_path / "bomb.png", 9000, 9000)
    assert bomb.stat().st_size < 100_000
    refused(fuse(tmp_path, bomb, partner), bomb, "image of 9000x9000 pixels", LIMIT_HINT)


def test_tiff_claiming_900_megapixels_is_refused_from_its_header(
    tmp_path: Path, partner: Path
) -> None:
    bomb = tiff_claiming(tmp_path / "bomb.tif", 30000, 30000, rows_per_strip=1000)
    assert bomb.stat().st_size < 100_000
    refused(fuse(tmp_path, bomb, partner), bomb, "image of 30000x30000 pixels", LIMIT_HINT)


def test_tiff_tile_far_larger_than_its_image_is_refused(tmp_path: Path, partner: Path) -> None:
    # a 64x64 image whose one 16-bit tile is 16384x16384: 512 MiB decoded before the crop
    bomb = tiff_claiming(tmp_path / "tile.tif", 64, 64, bits=16, tile=16384)
    assert bomb.stat().st_size < 1 * MIB
    refused(fuse(tmp_path, bomb, partner), bomb, "tile or strip of 16384x16384 pixels")


def test_tiff_strip_inflating_beyond_its_size_is_refused(tmp_path: Path, partner: Path) -> None:
    # a 64x64 image whose one strip's deflate stream inflates to 1 GiB
    bomb = tiff_claiming(tmp_path / "strip.tif", 64, 64, inflate_to=1 << 30)
    assert bomb.stat().st_size < 2 * MIB
    refused(fuse(tmp_path, bomb, partner), bomb, "inflates beyond its 4096 bytes")


def test_nifti_claiming_a_gigavoxel_is_refused_from_its_header(
    tmp_path: Path, partner: Path
) -> None:
    bomb = nifti_gz_claiming(tmp_path / "bomb.nii.gz", (1024, 1024, 1024))
    assert bomb.stat().st_size < 2 * MIB
    refused(fuse(tmp_path, bomb, partner), bomb, "volume of 1024x1024x1024 voxels", LIMIT_HINT)


def test_nifti_header_extension_bomb_is_refused(tmp_path: Path, partner: Path) -> None:
    # a 4x4x4 volume behind 1 GiB of header extension, which nibabel reads whole on load
    bomb = nifti_gz_claiming(tmp_path / "ext.nii.gz", (4, 4, 4), extensions=1 << 30)
    assert bomb.stat().st_size < 2 * MIB
    refused(fuse(tmp_path, bomb, partner), bomb, "NIfTI header extensions")


def test_fifo_input_is_refused_at_once(tmp_path: Path, partner: Path) -> None:
    fifo = tmp_path / "input.png"
    os.mkfifo(fifo)
    result = fuse(tmp_path, fifo, partner, timeout=60)
    refused(result, fifo, "is a FIFO, not a regular file")


def two_series_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    rng = np.random.default_rng(3)
    write_dicom_series(
        folder,
        rng.integers(0, 1000, (3, 16, 16)),
        modality="MR",
        series_uid="1.2.826.0.1.3680043.8.498.1001",
        description="T1 axial",
        prefix="mr",
    )
    write_dicom_series(
        folder,
        rng.integers(0, 1000, (3, 16, 16)),
        modality="PT",
        series_uid="1.2.826.0.1.3680043.8.498.2002",
        description="FDG",
        prefix="pt",
    )
    return folder


def test_dicom_folder_of_two_series_is_refused_with_the_series_listed(tmp_path: Path) -> None:
    folder = two_series_folder(tmp_path)
    result = fuse(tmp_path, folder, folder)
    refused(result, folder, "holds 2 DICOM series", "--series", "MR", "PT", "3 files")
    assert "...43.8.498.1001 MR" in result.stderr and '"T1 axial"' in result.stderr
    assert not (tmp_path / "fused.png").exists()


def test_dicom_series_chosen_per_input_are_fused(tmp_path: Path) -> None:
    folder = two_series_folder(tmp_path)
    result = fuse(tmp_path, folder, folder, "--series", "1", "--series", "8.498.2002")
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(tmp_path / "fused.png").size == (16, 16)


def test_the_limit_is_raised_by_the_option(tmp_path: Path, partner: Path) -> None:
    """A legitimate 3000x2000 image over a lowered limit is refused, and read once raised."""
    rows, cols = np.mgrid[0:2000, 0:3000]
    pixels = ((rows // 7 + cols // 5) % 256).astype(np.uint8)
    big, other = tmp_path / "big.png", tmp_path / "other.png"
    Image.fromarray(pixels).save(big)
    Image.fromarray(pixels[::-1]).save(other)
    lowered = {"FUSEVIS_MAX_PIXELS": "5000000"}
    result = fuse(tmp_path, big, other, env=lowered)
    refused(result, big, "image of 3000x2000 pixels exceeds the limit of 5000000")
    result = fuse(tmp_path, big, other, "--max-pixels", "6000000", env=lowered)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(tmp_path / "fused.png").size == (3000, 2000)
