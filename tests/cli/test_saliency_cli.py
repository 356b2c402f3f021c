from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import zarr
from PIL import Image as PILImage

from fusevis.io import load_images
from fusevis.models import DeepFuse, get_model
from fusevis.models.inference import as_tensors
from fusevis.saliency import PixelJacobian, guidance_maps

from .helpers import assert_one_line_error, fusevis


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("saliency")
    rng = np.random.default_rng(0)
    a, b = folder / "a.png", folder / "b.png"
    PILImage.fromarray(rng.integers(0, 256, (40, 36), dtype=np.uint8)).save(a)
    PILImage.fromarray(rng.integers(0, 256, (40, 36), dtype=np.uint8)).save(b)
    torch.manual_seed(0)
    weights = folder / "w.pth"
    torch.save(DeepFuse().state_dict(), weights)
    return a, b, weights


def test_saliency_npz_equals_engine(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, b, weights = setup
    out = tmp_path / "s.npz"
    result = fusevis(
        "saliency",
        str(a),
        str(b),
        "-m",
        "DeepFuse",
        "-w",
        str(weights),
        "--pixel",
        "5",
        "30",
        "-o",
        str(out),
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    assert set(data.files) == {"fused", "pixel", "jacobian_0", "jacobian_1"}
    model = get_model("DeepFuse", weights=weights)
    rows = PixelJacobian(model).attribute(as_tensors(load_images([a, b]).stack()), pixel=(5, 30))
    for k, row in enumerate(rows):
        np.testing.assert_allclose(data[f"jacobian_{k}"], row[0].numpy(), atol=1e-6)


def test_saliency_png_and_pixel_outside(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, b, weights = setup
    ok = fusevis(
        "saliency",
        str(a),
        str(b),
        "-m",
        "DeepFuse",
        "-w",
        str(weights),
        "--pixel",
        "3",
        "3",
        "-o",
        str(tmp_path / "s.png"),
        "--method",
        "integrated_gradients",
    )
    assert ok.returncode == 0, ok.stderr
    assert PILImage.open(tmp_path / "s.png").size[0] > 100
    bad = fusevis(
        "saliency",
        str(a),
        str(b),
        "-m",
        "DeepFuse",
        "-w",
        str(weights),
        "--pixel",
        "40",
        "0",
        "-o",
        str(tmp_path / "s.npz"),
    )
    assert_one_line_error(bad, "pixel (40, 0) is outside the 40x36 image")


def test_guidance_formats(
    setup: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, weights = setup
    monkeypatch.setenv("FUSEVIS_CACHE", str(tmp_path / "cache"))
    # every run asks for influence too: one computation, the later runs read the cache
    common = [str(a), str(b), "-m", "DeepFuse", "-w", str(weights), "--device", "cpu"]
    common.append("--influence")
    npz = fusevis("guidance", *common, "-o", str(tmp_path / "g.npz"))
    assert npz.returncode == 0, npz.stderr
    data = np.load(tmp_path / "g.npz")
    assert {"fused", "guidance_0", "guidance_1", "influence_0", "influence_1"} <= set(data.files)
    model = get_model("DeepFuse", weights=weights)
    expected = guidance_maps(model, as_tensors(load_images([a, b]).stack()))
    np.testing.assert_allclose(data["guidance_0"], expected.guidance[0][0], atol=1e-6)
    assert list((tmp_path / "cache").glob("*.zarr")), "the result was not cached"

    paper = fusevis("guidance", *common, "--paper-layout", "-o", str(tmp_path / "DeepFuse.h5"))
    assert paper.returncode == 0, paper.stderr
    with h5py.File(tmp_path / "DeepFuse_pet.h5") as handle:
        np.testing.assert_allclose(handle["Jacob_PET_dataset"][:], data["guidance_1"], atol=1e-7)
    store = fusevis("guidance", *common, "-o", str(tmp_path / "g.zarr"))
    assert store.returncode == 0, store.stderr
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="r")
    np.testing.assert_allclose(group["guidance_0"][:], data["guidance_0"], atol=1e-7)
    bad = fusevis("guidance", *common, "-o", str(tmp_path / "g.txt"))
    assert_one_line_error(bad, "guidance output must be .npz, .h5, .zarr or .png")


def test_the_command_line_names_every_attribution_method() -> None:
    from fusevis.cli.saliency import METHOD_NAMES
    from fusevis.saliency import METHODS

    assert set(METHOD_NAMES) == set(METHODS)
