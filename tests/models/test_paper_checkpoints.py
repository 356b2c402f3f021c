"""The authors' checkpoints, read by the safe importer, reproduce their published images."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fusevis.io import load_images
from fusevis.models import get_model
from fusevis.models.inference import fuse, minmax

REPRODUCIBLE = ["MaskNet", "DeepFuse", "DeepPedestrian"]


def published(paper: Path, name: str) -> np.ndarray:
    return np.asarray(PILImage.open(paper / "fused" / f"{name}.png").convert("L"), np.float64) / 255


@pytest.fixture(scope="module")
def test_pair(paper: Path) -> np.ndarray:
    return load_images([paper / "test-pair" / "mri.gif", paper / "test-pair" / "pet.png"]).stack()


@pytest.mark.parametrize("name", REPRODUCIBLE)
def test_authors_checkpoint_reproduces_published_fused_image(
    paper: Path, test_pair: np.ndarray, name: str
) -> None:
    model = get_model(name, weights=paper / "checkpoints" / f"{name}.pth")
    fused = minmax(fuse(model, test_pair)).astype(np.float64)
    reference = published(paper, name)
    assert np.corrcoef(fused.ravel(), reference.ravel())[0, 1] >= 0.9999
    assert np.abs(fused - reference).max() <= 2 / 255


def test_funfusean_checkpoint_loads_with_every_parameter(paper: Path) -> None:
    model = get_model("FunFuseAn", weights=paper / "checkpoints" / "FunFuseAn.pth")
    assert model.mri_lf[0].weight.shape == (16, 1, 9, 9)
    assert model.pet_hf[3].weight.shape == (32, 16, 5, 5)


@pytest.mark.parametrize("name", ["MaskNet"])
def test_fuse_command_reproduces_published_image(paper: Path, tmp_path: Path, name: str) -> None:
    output = tmp_path / "fused.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusevis",
            "fuse",
            str(paper / "test-pair" / "mri.gif"),
            str(paper / "test-pair" / "pet.png"),
            "--model",
            name,
            "--weights",
            str(paper / "checkpoints" / f"{name}.pth"),
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = np.asarray(PILImage.open(output), np.float64) / 255
    reference = published(paper, name)
    assert np.corrcoef(written.ravel(), reference.ravel())[0, 1] >= 0.9999
    assert np.abs(written - reference).max() <= 2 / 255
