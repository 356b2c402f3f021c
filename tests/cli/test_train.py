import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

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
