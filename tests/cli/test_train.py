import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fusevis.cli.errors import guarded
from fusevis.cli.main import app
from fusevis.models import read_metadata

from .helpers import assert_one_line_error, fusevis


def tiny_dataset(root: Path, count: int = 4, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for modality in ("mri", "pet"):
        (root / modality).mkdir(parents=True)
        for index in range(count):
            image = rng.integers(0, 256, (size, size, 3) if modality == "pet" else (size, size))
            PILImage.fromarray(image.astype(np.uint8)).save(root / modality / f"{index}.gif")
    return root


def test_train_command_writes_checkpoint_and_resumes(tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        "DeepFuse",
        "--data",
        str(data),
        "--modalities",
        "mri,pet",
        "--batch-size",
        "2",
        "--crop",
        "16",
        "--steps-per-epoch",
        "2",
        "--out",
        str(out),
    ]
    first = fusevis(*args, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    assert (out / "checkpoint.pt").is_file() and (out / "loss.png").is_file()
    second = fusevis(*args, "--epochs", "2", "--resume")
    assert second.returncode == 0, second.stderr
    with (out / "loss.csv").open() as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == [1, 1, 2, 2]
    meta = read_metadata(out / "weights.safetensors")
    assert meta["epochs"] == 2 and "--resume" in meta["command"]
    json.dumps(meta)


def test_train_needs_two_modalities(tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data")
    result = fusevis("train", "--model", "DeepFuse", "--data", str(data), "--modalities", "mri")
    assert_one_line_error(result, "training needs exactly two modalities")


def test_train_resume_without_checkpoint(tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data")
    result = fusevis(
        "train",
        "--model",
        "DeepFuse",
        "--data",
        str(data),
        "--resume",
        "--out",
        str(tmp_path / "empty"),
        "--crop",
        "16",
    )
    assert_one_line_error(result, "no checkpoint to resume from")


def in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of ``fusevis ARGS`` run in this process, as the script runs it."""
    with pytest.raises(SystemExit) as stopped:
        guarded(lambda: app(args=args, prog_name="fusevis"))
    return stopped.value.code, capsys.readouterr().err  # type: ignore[return-value]


def assert_one_line(args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = in_process(args, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err, err


def tiny_pictures(folder: Path, sizes: tuple[int, ...] = (48, 56, 64)) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for index, size in enumerate(sizes):
        picture = rng.integers(0, 256, (size // 8, size // 8)).astype(np.uint8)
        PILImage.fromarray(picture).resize((size, size), PILImage.BILINEAR).save(
            folder / f"picture{index}.png"
        )
    return folder


def test_train_task_makes_pairs_from_a_folder_and_scores_held_out_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tiny_pictures(tmp_path / "pictures")
    out = tmp_path / "run"
    args = ["train", "-m", "DeepFuse", "--images", str(images), "--crop", "32", "--threads", "1"]
    args += ["--batch-size", "2", "--steps-per-epoch", "2", "--epochs", "1", "--out", str(out)]
    assert in_process([*args, "--task", "multi-focus"], capsys)[0] == 0
    meta = read_metadata(out / "weights.safetensors")
    assert meta["task"] == "multi-focus" and meta["steps"] == 2 and meta["seed"] == 0
    assert meta["loss"]["target"] == "truth" and "defocus_pair" in meta["recipe"]["defocus"]
    assert "3 pictures from" in meta["trained_on"]
    sets = meta["scores"]["heldout"]["sets"]
    assert set(sets) == {
        "multifocus-camera",
        "multifocus-astronaut",
        "multifocus-coins",
        "multifocus-motorcycle",
        "multifocus-chelsea",
    }
    assert all(0 < row["ssim"] < 1 for row in sets.values())
    with (out / "loss.csv").open() as handle:
        assert [row["step"] for row in csv.DictReader(handle)] == ["1", "2"]
    exposure = [*args, "--task", "multi-exposure", "--out", str(tmp_path / "exp")]
    assert in_process(exposure, capsys)[0] == 0
    meta = read_metadata(tmp_path / "exp" / "weights.safetensors")
    assert "stops [0.0, 3.0]" in meta["recipe"]["exposure"]
    assert set(meta["scores"]["heldout"]["sets"]) == {
        "multiexposure-astronaut",
        "multiexposure-coffee-2",
    }


def test_train_task_bad_image_folders_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "-m", "DeepFuse", "--task", "multi-focus", "--crop", "32", "--images"]
    assert_one_line([*base, str(tmp_path / "nope")], "nope: image folder not found", capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "bad.jpg").write_bytes(b"no jpeg")
    assert_one_line([*base, str(empty)], "no readable images", capsys)
    small = tiny_pictures(tmp_path / "small", (48, 24))
    assert_one_line(
        [*base, str(small)], "picture1.png: image of 24x24 px is smaller than the crop 32", capsys
    )


def test_train_task_options_that_do_not_go_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_dataset(tmp_path / "data")
    assert_one_line(
        ["train", "-m", "DeepFuse", "--task", "multi-focus", "--data", str(data)],
        "--task multi-focus makes its pairs from --images, not --data",
        capsys,
    )
    assert_one_line(["train", "-m", "DeepFuse"], "--task paired needs --data", capsys)
    assert_one_line(
        ["train", "-m", "DeepFuse", "--task", "multifocus"], "unknown --task 'multifocus'", capsys
    )
    assert_one_line(
        ["train", "-m", "DeepFuse", "--task", "multi-exposure", "--stops", "0"],
        "--stops '0': give two exposure stops >= 0",
        capsys,
    )
