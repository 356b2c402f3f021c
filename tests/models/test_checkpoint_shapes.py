"""Checkpoints as repositories ship them (issue 13, item 6), made here with ``torch.save``.

Each shape is loaded through ``--weights`` (the command line) or ``resolve_model`` and the
loaded network must compute exactly what the network that was saved computes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fusevis.errors import ModelError
from fusevis.io import load_images
from fusevis.models import DeepFuse, resolve_model
from fusevis.models.inference import fuse

NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.decoder = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))

    def forward(self, a, b):
        return self.decoder(self.encoder(torch.cat([a, b], 1)))


class Wrapped(nn.Module):
    def __init__(self):
        super().__init__()
        from fusevis.models import DeepFuse

        self.body = DeepFuse()

    def forward(self, a, b):
        return self.body(a, b)
"""


def trained(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with random weights and BatchNorm statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                fresh = torch.rand(value.shape, generator=generator) * 0.5
                value.copy_(fresh + 0.5 if name.endswith("running_var") else fresh - 0.25)
    return model.eval()


def same_outputs(loaded: nn.Module, source: nn.Module) -> bool:
    inputs = torch.rand(2, 1, 1, 20, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(loaded(*inputs), source(*inputs))


@pytest.fixture()
def source() -> nn.Module:
    return trained(DeepFuse())


@pytest.fixture()
def net_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


@pytest.mark.parametrize("key", ["state_dict", "model", "weight", "net", "params", "generator"])
def test_nested_dict_beside_optimizer_state(tmp_path: Path, source: nn.Module, key: str) -> None:
    optimizer = torch.optim.Adam(source.parameters())
    source(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)).mean().backward()
    optimizer.step()  # the optimizer's state holds tensors of the same shapes
    source.zero_grad()
    path = tmp_path / "nested.pth"
    torch.save({key: source.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 9}, path)
    assert same_outputs(resolve_model("DeepFuse", weights=path), source)


def test_numpy_scalars_and_metadata_beside_the_tensors(tmp_path: Path, source: nn.Module) -> None:
    path = tmp_path / "numpy.pth"
    checkpoint = {
        "model": source.state_dict(),
        "best_psnr": np.float64(31.25),
        "epoch": np.int64(40),
        "history": np.arange(5.0, dtype=np.float32),
        "args": argparse.Namespace(lr=1e-4, name="run"),
        "config": {"layers": [16, 32], "mode": "train", "ratio": 0.5},
    }
    torch.save(checkpoint, path)
    assert same_outputs(resolve_model("DeepFuse", weights=path), source)


@pytest.mark.parametrize("zip_format", [True, False])
def test_missing_num_batches_tracked(tmp_path: Path, source: nn.Module, zip_format: bool) -> None:
    state = OrderedDict(
        (k, v) for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")
    )
    path = tmp_path / "old.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    assert same_outputs(resolve_model("DeepFuse", weights=path), source)


@pytest.mark.parametrize("prefix", ["module.", "model.", "netG.module."])
def test_prefixed_names(tmp_path: Path, source: nn.Module, prefix: str) -> None:
    path = tmp_path / "prefixed.pth"
    torch.save({prefix + k: v for k, v in source.state_dict().items()}, path)
    assert same_outputs(resolve_model("DeepFuse", weights=path), source)


def test_model_names_with_a_prefix_the_file_lacks(
    tmp_path: Path, source: nn.Module, net_file: Path
) -> None:
    path = tmp_path / "plain.pth"
    torch.save(source.state_dict(), path)
    assert same_outputs(resolve_model(f"{net_file}:Wrapped", weights=path), source)


def test_key_chosen_with_a_hash(tmp_path: Path, source: nn.Module) -> None:
    other = trained(DeepFuse(), seed=5)
    path = tmp_path / "gan.pth"
    torch.save({"generator": other.state_dict(), "ema": {"g": source.state_dict()}}, path)
    assert same_outputs(resolve_model("DeepFuse", weights=f"{path}#ema.g"), source)
    assert same_outputs(resolve_model("DeepFuse", weights=f"{path}#generator"), other)
    with pytest.raises(ModelError, match="no tensors|holds no tensors"):
        resolve_model("DeepFuse", weights=f"{path}#discriminator")


def test_two_dicts_that_fit_need_a_key(tmp_path: Path, source: nn.Module) -> None:
    path = tmp_path / "two.pth"
    torch.save({"first": source.state_dict(), "second": trained(DeepFuse(), 3).state_dict()}, path)
    with pytest.raises(ModelError, match=r"several dicts fit the model \(first, second\)"):
        resolve_model("DeepFuse", weights=path)


def test_whole_pickled_module(tmp_path: Path, source: nn.Module) -> None:
    path = tmp_path / "whole.pth"
    torch.save(source, path)
    assert same_outputs(resolve_model("DeepFuse", weights=path), source)


def save_parts(net: nn.Module, folder: Path) -> tuple[Path, Path]:
    encoder, decoder = folder / "enc.pth", folder / "dec.pth"
    torch.save({"module." + k: v for k, v in net.encoder.state_dict().items()}, encoder)
    torch.save({"state_dict": net.decoder.state_dict(), "epoch": np.int64(3)}, decoder)
    return encoder, decoder


def test_two_files_for_two_parts(tmp_path: Path, net_file: Path) -> None:
    net = trained(resolve_model(f"{net_file}:Net", weights=None))
    encoder, decoder = save_parts(net, tmp_path)
    spec = f"encoder={encoder},decoder={decoder}"
    assert same_outputs(resolve_model(f"{net_file}:Net", weights=spec), net)
    mapping = {"encoder": encoder, "decoder": decoder}
    assert same_outputs(resolve_model(f"{net_file}:Net", weights=mapping), net)
    listed = [f"encoder={encoder}", f"decoder={decoder}"]
    assert same_outputs(resolve_model(f"{net_file}:Net", weights=listed), net)
    with pytest.raises(ModelError, match=r"no file gives Net's decoder.0.weight"):
        resolve_model(f"{net_file}:Net", weights=f"encoder={encoder}")
    with pytest.raises(ModelError, match=r"Net has no part 'fusion' \(its parts: encoder"):
        resolve_model(f"{net_file}:Net", weights=f"encoder={encoder},fusion={decoder}")


def test_two_files_for_two_parts_through_the_command_line(tmp_path: Path, net_file: Path) -> None:
    net = trained(resolve_model(f"{net_file}:Net", weights=None))
    encoder, decoder = save_parts(net, tmp_path)
    rng = np.random.default_rng(0)
    images = []
    for name in ("a.png", "b.png"):
        Image.fromarray((rng.random((20, 24)) * 255).astype(np.uint8)).save(tmp_path / name)
        images.append(tmp_path / name)
    output = tmp_path / "fused.npy"
    command = [sys.executable, "-m", "fusevis", "fuse", *map(str, images)]
    command += ["--model", f"{net_file}:Net", "--weights", f"encoder={encoder},decoder={decoder}"]
    result = subprocess.run([*command, "-o", str(output)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = fuse(net, load_images(images).stack())
    assert np.array_equal(np.load(output), expected)
