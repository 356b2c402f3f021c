"""``fusevis metrics``, run in-process (typer's CliRunner; ``guarded`` for the error path)."""

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from fusevis.cli.errors import guarded
from fusevis.cli.main import app
from fusevis.cli.options import CONVENTION_NAMES
from fusevis.metrics import CONVENTIONS, fusion_metrics


def pictures(tmp_path: Path) -> dict[str, np.ndarray]:
    """Grey inputs a, b, their 8-bit mean f, a colour input c and a colour fused image fc."""
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:40, 0:48]
    a = (120 + 80 * np.sin(rows / 5) + rng.integers(0, 30, (40, 48))).astype(np.uint8)
    b = (90 + 70 * np.cos(cols / 4) + rng.integers(0, 30, (40, 48))).astype(np.uint8)
    f = ((a.astype(int) + b) // 2).astype(np.uint8)
    c = np.stack([a, b, f], axis=-1)
    fc = ((c.astype(int) + f[..., None] + 1) // 2).astype(np.uint8)
    arrays = {"a": a, "b": b, "f": f, "c": c, "fc": fc}
    for name, pixels in arrays.items():
        PILImage.fromarray(pixels).save(tmp_path / f"{name}.png")
    return {name: pixels / 255.0 for name, pixels in arrays.items()}


def invoke(*args: str | Path) -> str:
    result = CliRunner().invoke(app, ["metrics", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def failure(args: Sequence[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of ``fusevis metrics ARGS`` as the console script runs it."""
    with pytest.raises(SystemExit) as stopped:
        guarded(lambda: app(args=["metrics", *map(str, args)], prog_name="fusevis"))
    return stopped.value.code, capsys.readouterr().err  # type: ignore[return-value]


def test_convention_names_repeated_for_a_light_start_agree() -> None:
    assert CONVENTION_NAMES == tuple(CONVENTIONS)


def test_table_names_the_convention_and_shows_its_values(tmp_path: Path) -> None:
    arrays = pictures(tmp_path)
    paths = [tmp_path / f"{name}.png" for name in ("f", "a", "b")]
    expected = fusion_metrics(arrays["f"], [arrays["a"], arrays["b"]], "cddfuse")
    output = invoke(*paths, "--convention", "cddfuse")
    assert "convention cddfuse" in output and "nats" in output
    for key in ("MI", "SSIM", "VIF", "SSIM_2"):
        assert f"{expected[key]:.4f}" in output, key
    default = invoke(*paths)
    assert "convention fusevis" in default
    assert f"{fusion_metrics(arrays['f'], [arrays['a'], arrays['b']])['MI']:.4f}" in default


def test_json_with_colour_and_16_bit_files(tmp_path: Path) -> None:
    arrays = pictures(tmp_path)
    sixteen = tmp_path / "fc16.tif"  # the same picture at 16 bits: x · 257 / 65535 = x / 255
    PILImage.fromarray((np.round(arrays["fc"] * 255).astype(np.uint16) * 257)[..., 0]).save(sixteen)
    report = json.loads(
        invoke(tmp_path / "fc.png", tmp_path / "c.png", tmp_path / "b.png", "-c", "vifb", "--json")
    )
    assert report["convention"] == "vifb" and report["choices"]["colour"] == "per-channel"
    assert report["inputs"] == [str(tmp_path / "c.png"), str(tmp_path / "b.png")]
    expected = fusion_metrics(arrays["fc"], [arrays["c"], arrays["b"]], "vifb")
    assert report["metrics"] == pytest.approx(expected, rel=1e-12)
    grey = json.loads(invoke(sixteen, tmp_path / "b.png", "--json"))["metrics"]
    eight = fusion_metrics(arrays["fc"][..., 0], [arrays["b"]])
    assert grey == pytest.approx(eight, rel=1e-9)
    identical = json.loads(invoke(tmp_path / "a.png", tmp_path / "a.png", "--json"))
    assert identical["metrics"]["PSNR"] is None  # infinite: null in strict JSON


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["f.png", "missing.png"], "error: {tmp}/missing.png: file not found"),
        (
            ["f.png", "a.png", "small.png"],
            "error: {tmp}/small.png: size 20x48 differs from the fused image {tmp}/f.png (40x48)",
        ),
        (
            ["f.png", "a.png", "--convention", "matlab"],
            "error: --convention: unknown metric convention 'matlab' (known: fusevis, cddfuse, "
            "vifb)",
        ),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    message: str,
) -> None:
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # guarded replaces it
    arrays = pictures(tmp_path)
    PILImage.fromarray(np.round(arrays["a"][:20] * 255).astype(np.uint8)).save(
        tmp_path / "small.png"
    )
    paths = [str(tmp_path / a) if a.endswith(".png") else a for a in arguments]
    status, stderr = failure(paths, capsys)
    assert status == 2
    assert stderr == message.format(tmp=tmp_path) + "\n"
