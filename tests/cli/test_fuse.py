from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image as PILImage

from fusevis.io import load_images
from fusevis.models import DeepFuse, WeightedAverage

from .helpers import fusevis


def inputs(tmp_path: Path, colour: bool = False) -> tuple[Path, Path]:
    rng = np.random.default_rng(2)
    a = tmp_path / "a.png"
    b = tmp_path / "b.png"
    PILImage.fromarray(rng.integers(1, 256, (24, 20), dtype=np.uint8)).save(a)
    shape = (24, 20, 3) if colour else (24, 20)
    PILImage.fromarray(rng.integers(1, 256, shape, dtype=np.uint8)).save(b)
    return a, b


def test_fuse_writes_every_format(tmp_path: Path) -> None:
    a, b = inputs(tmp_path)
    stack = load_images([a, b]).stack()
    expected = WeightedAverage()(*[torch.from_numpy(x)[None, None] for x in stack])[0, 0].numpy()
    for name in ("f.npy", "f.npz", "f.nii.gz", "f.png"):
        result = fusevis(
            "fuse", str(a), str(b), "-m", "WeightedAverage", "-o", str(tmp_path / name)
        )
        assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "f.npz")["fused"], expected, atol=1e-6)
    nifti = nib.load(str(tmp_path / "f.nii.gz")).get_fdata()[:, :, 0]
    np.testing.assert_allclose(nifti, expected, atol=1e-6)
    png = np.asarray(PILImage.open(tmp_path / "f.png"), np.float64) / 255
    scaled = (expected - expected.min()) / (expected.max() - expected.min())
    assert np.abs(png - scaled).max() <= 0.5 / 255 + 1e-9


def test_fuse_recolours_in_ycbcr_mode(tmp_path: Path) -> None:
    a, b = inputs(tmp_path, colour=True)
    result = fusevis(
        "fuse",
        str(a),
        str(b),
        "-m",
        "WeightedAverage",
        "--color",
        "ycbcr",
        "-o",
        str(tmp_path / "f.png"),
    )
    assert result.returncode == 0, result.stderr
    rgb = np.asarray(PILImage.open(tmp_path / "f.png"))
    assert rgb.shape == (24, 20, 3)
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).max() > 0  # colour kept


def test_fuse_with_user_weights(tmp_path: Path) -> None:
    a, b = inputs(tmp_path)
    torch.manual_seed(0)
    model = DeepFuse().eval()
    torch.save(model.state_dict(), tmp_path / "w.pth")
    result = fusevis(
        "fuse",
        str(a),
        str(b),
        "-m",
        "DeepFuse",
        "-w",
        str(tmp_path / "w.pth"),
        "-o",
        str(tmp_path / "f.npy"),
    )
    assert result.returncode == 0, result.stderr
    stack = load_images([a, b]).stack()
    with torch.no_grad():
        expected = model(*[torch.from_numpy(x)[None, None] for x in stack])[0, 0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, atol=1e-6)
