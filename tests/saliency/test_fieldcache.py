"""The field analysis remembered on disk per model and input size (issue 13, item 7)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from fusevis.saliency import PixelJacobian, analyse_locality, fieldcache, locality

from .zoo_today import LOCAL_ZOO


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUSEVIS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def analyses(monkeypatch: pytest.MonkeyPatch) -> list[nn.Module]:
    """Every model the (uncached) analysis runs on, in order."""
    calls: list[nn.Module] = []
    analyse = locality._analyse

    def counting(model: nn.Module, *args: object) -> object:
        calls.append(model)
        return analyse(model, *args)

    monkeypatch.setattr(locality, "_analyse", counting)
    return calls


def _model_and_inputs(seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    name, build, count = LOCAL_ZOO[1]  # L1NormFusion: reflection padding, a fusion rule
    model = build()
    generator = torch.Generator().manual_seed(seed)
    return model, tuple(torch.rand(1, 1, 24, 26, generator=generator) for _ in range(count))


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "fields").glob("*.json"))


def test_a_second_analysis_of_the_same_model_and_size_is_read_back(
    cache: Path, analyses: list
) -> None:
    model, inputs = _model_and_inputs()
    first = PixelJacobian(model).locality(inputs)
    assert len(analyses) == 1 and len(_entries(cache)) == 1
    again, _ = _model_and_inputs(seed=5)  # another object, the same class and weights
    other_values = tuple(torch.rand_like(x) for x in inputs)  # the values do not matter
    second = PixelJacobian(again).locality(other_values)
    assert len(analyses) == 1, "the analysis ran again"
    assert second == first and second.verified_error == first.verified_error


def test_another_size_weights_or_option_is_another_entry(cache: Path, analyses: list) -> None:
    model, inputs = _model_and_inputs()
    analyse_locality(model, inputs)
    analyse_locality(model, tuple(x[..., :20, :22] for x in inputs))  # another size
    with torch.no_grad():
        model.decoder.layers[0].conv.weight[0, 0, 0, 0] += 0.5  # other weights
    analyse_locality(model, inputs)
    analyse_locality(model, inputs, verify=False)
    analyse_locality(model, inputs, channel="luminance")
    assert len(analyses) == 5 and len(_entries(cache)) == 5
    analyse_locality(model, inputs, cache=False)
    assert len(analyses) == 6 and len(_entries(cache)) == 5


def test_a_model_whose_structure_changed_is_analysed_again(cache: Path, analyses: list) -> None:
    class Net(nn.Module):
        def __init__(self, padding: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 3, padding=padding)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.cat((a, b), 1))[..., :24, :26]

    inputs = tuple(torch.rand(1, 1, 24, 26) for _ in "ab")
    torch.manual_seed(0)
    padded = analyse_locality(Net(1), inputs)
    torch.manual_seed(0)
    more = analyse_locality(Net(2), inputs)  # same class and weights, another padding
    assert len(analyses) == 2 and padded.field != more.field


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"\x00not json"),
        lambda path: path.write_text("[]"),
        lambda path: path.write_text(path.read_text().replace('"local": true', '"local": 1')),
        lambda path: path.write_text(path.read_text().replace("[-8, 8, -8, 8,", "[8, -8, -8, 8,")),
        lambda path: path.write_text(path.read_text().replace('"traced"', '"guessed"')),
        lambda path: path.write_bytes(path.read_bytes() + b" " * (fieldcache.MAX_ENTRY + 1)),
        lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "version": 0})),
    ],
)
def test_a_corrupt_entry_is_a_miss_and_is_replaced(cache: Path, analyses: list, damage) -> None:  # noqa: ANN001
    model, inputs = _model_and_inputs()
    first = analyse_locality(model, inputs)
    (entry,) = _entries(cache)
    damage(entry)
    second = analyse_locality(model, inputs)
    assert len(analyses) == 2 and second == first
    third = analyse_locality(model, inputs)  # replaced: read back again
    assert len(analyses) == 2 and third == first


def test_a_link_is_not_followed(cache: Path, analyses: list, tmp_path: Path) -> None:
    model, inputs = _model_and_inputs()
    first = analyse_locality(model, inputs)
    (entry,) = _entries(cache)
    elsewhere = tmp_path / "elsewhere.json"
    entry.rename(elsewhere)
    os.symlink(elsewhere, entry)
    assert analyse_locality(model, inputs) == first
    assert len(analyses) == 2


def test_an_unwritable_folder_only_means_no_cache(tmp_path: Path, monkeypatch, analyses) -> None:  # noqa: ANN001
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setenv("FUSEVIS_CACHE", str(blocked))
    model, inputs = _model_and_inputs()
    assert analyse_locality(model, inputs).local
    assert analyse_locality(model, inputs).local
    assert len(analyses) == 2


def test_a_second_saliency_command_skips_the_field_analysis(
    cache: Path, analyses: list, tmp_path: Path
) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from fusevis.cli.main import app
    from fusevis.models import get_model
    from fusevis.models.weights import save_weights

    generator = torch.Generator().manual_seed(0)
    paths = []
    for name in ("a", "b"):
        pixels = (torch.rand(36, 40, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        paths.append(str(tmp_path / f"{name}.png"))
    weights = save_weights(get_model("DeepFuse", weights=None), tmp_path / "w.safetensors", {})
    command = ["saliency", *paths, "-m", "DeepFuse", "-w", str(weights), "--pixel", "5", "7"]
    runner = CliRunner()
    for run in range(2):
        result = runner.invoke(app, [*command, "-o", str(tmp_path / f"s{run}.npz")])
        assert result.exit_code == 0, result.output
    assert len(analyses) == 1, "the second run analysed the field again"
    assert len(_entries(cache)) == 1
