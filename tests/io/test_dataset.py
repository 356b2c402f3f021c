from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from fusevis.errors import InputError
from fusevis.io import PairedDataset


def make_dataset(root: Path, names: dict[str, list[str]]) -> Path:
    rng = np.random.default_rng(0)
    for modality, stems in names.items():
        (root / modality).mkdir(parents=True)
        for stem in stems:
            PILImage.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                root / modality / f"{stem}.gif"
                if modality == "mri"
                else root / modality / f"{stem}.png"
            )
    return root


def test_pairs_by_name_in_natural_order(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"mri": ["2", "10", "1"], "pet": ["1", "10", "2"]})
    dataset = PairedDataset(root, ("mri", "pet"))
    assert dataset.names == ["1", "2", "10"]
    assert [p.name for p in dataset.paths(2)] == ["10.gif", "10.png"]
    assert len(dataset[1]) == 2


def test_missing_partner_is_named(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"mri": ["1", "2", "3"], "pet": ["1", "2"]})
    with pytest.raises(InputError, match=r"mri: 1 file\(s\) have no partner .*: 3"):
        PairedDataset(root, ("mri", "pet"))


def test_missing_modality_folder(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {"mri": ["1"]})
    with pytest.raises(InputError, match="pet: modality folder not found"):
        PairedDataset(root, ("mri", "pet"))


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset folder not found"):
        PairedDataset(tmp_path / "nothing")
