"""``fusevis guidance --estimate``: only where asked, saved marked as an estimate with its bounds,
never cached; without it the maps of the same network are exact."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from fusevis.cli.main import run
from fusevis.io import load_images
from fusevis.models.inference import as_tensors
from fusevis.saliency import guidance_maps

USER_CODE = '''
import torch
from torch import nn


class AttentionNet(nn.Module):
    """Softmax attention over every pixel: no structure that makes it exact and fast."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(2, 4, 3, padding=1)
        self.qkv = nn.Conv2d(4, 12, 1)
        self.out = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, a, b):
        x = torch.tanh(self.embed(torch.cat((a, b), dim=1)))
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)
        weights = torch.softmax(q.transpose(1, 2) @ k, dim=-1)
        return self.out(x + (v @ weights.transpose(1, 2)).reshape(n, c, h, w))
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("estimate")
    (folder / "attention_net.py").write_text(USER_CODE)
    sys.path.insert(0, str(folder))
    try:
        import attention_net  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(folder))
    torch.manual_seed(0)
    torch.save(attention_net.AttentionNet().state_dict(), folder / "w.pth")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        PILImage.fromarray(rng.integers(0, 256, (16, 20), dtype=np.uint8)).save(
            folder / f"{name}.png"
        )
    return {
        "net": folder / "attention_net.py",
        "weights": folder / "w.pth",
        "a": folder / "a.png",
        "b": folder / "b.png",
        "module": attention_net,  # type: ignore[dict-item]
    }


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: object
) -> tuple[int, str, str]:
    """Run ``fusevis ARGS`` in this process as the console script does."""
    monkeypatch.setattr(sys, "argv", ["fusevis", *map(str, args)])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    try:
        run()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_guidance_estimate_is_marked_bounded_and_not_cached(
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FUSEVIS_CACHE", str(cache))
    common = [files["a"], files["b"], "-m", f"{files['net']}:AttentionNet", "-w", files["weights"]]
    common += ["--device", "cpu"]
    code, stdout, stderr = cli(
        monkeypatch, capsys, "guidance", *common, "--estimate", "-o", tmp_path / "e.npz"
    )
    assert code == 0, stderr
    assert "ESTIMATE, not exact" in stdout
    estimate = np.load(tmp_path / "e.npz")
    assert bool(estimate["estimate"]) and str(estimate["method"]).startswith("ESTIMATE")
    assert not list(cache.glob("*.zarr")), "an estimate was cached"

    model = files["module"].AttentionNet()  # type: ignore[attr-defined]
    model.load_state_dict(torch.load(files["weights"]))
    exact = guidance_maps(model.eval(), as_tensors(load_images([files["a"], files["b"]]).stack()))
    for k in range(2):
        error = np.abs(estimate[f"guidance_{k}"] - exact.guidance[k][0])
        assert (error <= estimate[f"error_bound_{k}"] + 1e-6).mean() >= 0.99

    code, stdout, stderr = cli(monkeypatch, capsys, "guidance", *common, "-o", tmp_path / "x.zarr")
    assert code == 0, stderr
    import zarr

    group = zarr.open_group(str(tmp_path / "x.zarr"), mode="r")
    assert group.attrs["estimate"] is False and "exact" in group.attrs["method"]
    assert "error_bound_0" not in set(group.array_keys())
    np.testing.assert_allclose(group["guidance_0"][:], exact.guidance[0][0], atol=1e-6)
