from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from fusevis import __version__

from .helpers import assert_one_line_error, fusevis


def test_help_lists_commands() -> None:
    result = fusevis("--help")
    assert result.returncode == 0
    for command in ("data", "fuse", "train"):
        assert command in result.stdout


def test_version() -> None:
    result = fusevis("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"fusevis {__version__}"


def test_data_list_names_demo_sets() -> None:
    result = fusevis("data", "list")
    assert result.returncode == 0
    for name in ("mri-pet", "mri-fmri", "multifocus-camera"):
        assert name in result.stdout


def test_data_export_writes_images(tmp_path: Path) -> None:
    result = fusevis("data", "export", "mri-fmri", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"mri.png", "fmri.png"}


def test_unknown_demo_set_is_one_line() -> None:
    assert_one_line_error(fusevis("data", "export", "nope", "/tmp/x"), "unknown demo set 'nope'")


def test_missing_input_is_one_line(tmp_path: Path) -> None:
    result = fusevis(
        "fuse",
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
        "--model",
        "WeightedAverage",
        "-o",
        str(tmp_path / "f.png"),
    )
    assert_one_line_error(result, f"{tmp_path / 'a.png'}: file not found")


def write(path: Path, shape: tuple[int, int]) -> Path:
    rng = np.random.default_rng(0)
    PILImage.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def test_mismatched_sizes_is_one_line(tmp_path: Path) -> None:
    a, b = write(tmp_path / "a.png", (16, 16)), write(tmp_path / "b.png", (16, 17))
    result = fusevis("fuse", str(a), str(b), "-m", "WeightedAverage", "-o", str(tmp_path / "f.png"))
    assert_one_line_error(result, "shape 16x17 differs")


def test_unknown_model_is_one_line(tmp_path: Path) -> None:
    a, b = write(tmp_path / "a.png", (16, 16)), write(tmp_path / "b.png", (16, 16))
    result = fusevis("fuse", str(a), str(b), "-m", "Nope", "-o", str(tmp_path / "f.png"))
    assert_one_line_error(result, "unknown model 'Nope'")


def test_checkpoint_that_does_not_fit_is_one_line(tmp_path: Path) -> None:
    import torch

    from fusevis.models import DeepFuse

    a, b = write(tmp_path / "a.png", (16, 16)), write(tmp_path / "b.png", (16, 16))
    torch.save(DeepFuse().state_dict(), tmp_path / "w.pth")
    result = fusevis(
        "fuse",
        str(a),
        str(b),
        "-m",
        "MaskNet",
        "-w",
        str(tmp_path / "w.pth"),
        "-o",
        str(tmp_path / "f.png"),
    )
    assert_one_line_error(result, "weights do not fit MaskNet")


def test_demo_shows_the_networks_of_the_sets_task() -> None:
    from fusevis.cli.demo import _shipped_models
    from fusevis.models.registry import get_entry

    medical = _shipped_models("mri-pet", 2)
    assert medical[0] == "DeepFuse"
    assert {"FunFuseAn", "MaskNet", "DeepPedestrian", "WeightedAverage"} <= set(medical)
    focus = _shipped_models("multifocus-camera", 2)
    assert focus[0] == "DeepFuse-multifocus" and "WeightedAverage" in focus
    assert all(get_entry(n).task in ("multi-focus", "any") for n in focus)
    assert _shipped_models("multiexposure-astronaut", 2)[0] == "DeepFuse-multiexposure"
    assert "DeepFuse-multiexposure" not in _shipped_models("multiexposure-coffee", 3)  # 2 inputs
