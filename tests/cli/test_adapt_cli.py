"""--adapt, --name, --parts and --rule on the command line (in-process, one slow subprocess)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from fusevis.cli.main import run
from fusevis.io import load_images
from fusevis.models import Assembled

from .helpers import fusevis

USER_CODE = '''
import torch
from torch import nn


class ConcatNet(nn.Module):
    """A repository's network: both images as one 2-channel tensor, values x/255."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.out = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.out(torch.relu(self.conv(x))))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, f):
        return self.conv(f)
'''


class HandWritten(nn.Module):
    """The 30-line wrapper a user writes without --adapt (here shortened)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([ir / 255.0, vis / 255.0], dim=1))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A user's network file, its weights, parts weights and two 8-bit images."""
    folder = tmp_path_factory.mktemp("repo")
    (folder / "repo_net.py").write_text(USER_CODE)
    sys.path.insert(0, str(folder))
    try:
        import repo_net  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(folder))
    torch.manual_seed(5)
    torch.save(repo_net.ConcatNet().state_dict(), folder / "net.pth")
    torch.save(repo_net.Encoder().state_dict(), folder / "enc.pth")
    torch.save({"state_dict": repo_net.Decoder().state_dict()}, folder / "dec.pth")
    rng = np.random.default_rng(1)
    for name, low, high in (("ir", 10, 120), ("vis", 40, 230)):  # dark infrared, as they are
        values = rng.integers(low, high, (20, 17), dtype=np.uint8)
        PILImage.fromarray(values).save(folder / f"{name}.png")
    return {
        "net": folder / "repo_net.py",
        "weights": folder / "net.pth",
        "enc": folder / "enc.pth",
        "dec": folder / "dec.pth",
        "ir": folder / "ir.png",
        "vis": folder / "vis.png",
        "module": repo_net,
    }


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: object
) -> tuple[int, str, str]:
    """Run ``fusevis ARGS`` in this process as the console script does: (status, out, err)."""
    monkeypatch.setattr(sys, "argv", ["fusevis", *map(str, args)])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    try:
        run()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def raw_tensors(*paths: Path) -> list[torch.Tensor]:
    """The files' own 8-bit values, as a repository's ``cv2.imread(path, 0)`` gives them."""
    return [torch.from_numpy(np.asarray(PILImage.open(p), np.float32))[None, None] for p in paths]


def hand_written(repo: dict[str, Any]) -> nn.Module:
    net = repo["module"].ConcatNet()
    net.load_state_dict(torch.load(repo["weights"]))
    return HandWritten(net).eval()


def test_adapt_gives_the_hand_written_wrappers_image(
    repo: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "fused.npy"
    code, stdout, stderr = cli(
        monkeypatch,
        capsys,
        "fuse",
        repo["ir"],
        repo["vis"],
        "--model",
        f"{repo['net']}:ConcatNet",
        "--weights",
        repo["weights"],
        "--adapt",
        "inputs=concat;scale=x/255",
        "--name",
        "My IR-VIS net",
        "-o",
        out,
    )
    assert code == 0, stderr
    assert "My IR-VIS net" in stdout
    with torch.no_grad():
        expected = hand_written(repo)(*raw_tensors(repo["ir"], repo["vis"]))[0, 0].numpy()
        # what FuseVis gave before: the images min-max scaled, which is not x/255
        minmaxed = torch.from_numpy(load_images([repo["ir"], repo["vis"]]).stack())[None]
        wrong = hand_written(repo).net(minmaxed)[0, 0].numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=0, atol=1e-6)
    assert np.abs(wrong - expected).max() > 1e-3  # the scale matters for this network


def test_saliency_rows_are_with_respect_to_the_loaded_images(
    repo: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "rows.npz"
    pixel = (0, 9)  # on the border
    code, stdout, stderr = cli(
        monkeypatch,
        capsys,
        "saliency",
        repo["ir"],
        repo["vis"],
        "-m",
        f"{repo['net']}:ConcatNet",
        "-w",
        repo["weights"],
        "--adapt",
        "inputs=concat;scale=x/255;name=Adapted",
        "--pixel",
        *pixel,
        "--device",
        "cpu",
        "-o",
        out,
    )
    assert code == 0, stderr
    assert "Adapted" in stdout
    inputs = [x.double().requires_grad_() for x in raw_tensors(repo["ir"], repo["vis"])]
    hand_written(repo).double()(*inputs)[0, 0][pixel].backward()
    found = np.load(out)
    for k, x in enumerate(inputs):
        truth = x.grad[0].numpy()  # type: ignore[union-attr]
        assert np.abs(truth).max() > 0
        np.testing.assert_allclose(found[f"jacobian_{k}"], truth, rtol=1e-4, atol=1e-9)


def test_parts_and_rule_assemble_encoder_and_decoder_from_two_files(
    repo: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "fused.npy"
    code, stdout, stderr = cli(
        monkeypatch,
        capsys,
        "fuse",
        repo["ir"],
        repo["vis"],
        "--parts",
        f"encoder={repo['net']}:Encoder,decoder={repo['net']}:Decoder",
        "--rule",
        "l1-norm",
        "--weights",
        f"encoder={repo['enc']},decoder={repo['dec']}",
        "--name",
        "DenseFuse-like",
        "-o",
        out,
    )
    assert code == 0, stderr
    assert "DenseFuse-like" in stdout
    module = repo["module"]
    encoder, decoder = module.Encoder(), module.Decoder()
    encoder.load_state_dict(torch.load(repo["enc"]))
    decoder.load_state_dict(torch.load(repo["dec"])["state_dict"])
    stack = load_images([repo["ir"], repo["vis"]]).stack()
    with torch.no_grad():
        expected = Assembled(encoder, "l1-norm", decoder)(
            *[torch.from_numpy(x)[None, None] for x in stack]
        )
    np.testing.assert_allclose(np.load(out), expected[0, 0].numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--adapt", "inputs=concat;scal=x/255"], "unknown convention 'scal'"),
        (["--adapt", "inputs=concat;scale=x/255", "--normalize", "minmax"], "normalize none"),
        (["--adapt", "scale=x/255", "--color", "ycbcr"], "loaded with color gray, not ycbcr"),
        (["--adapt", "inputs=concat", "--adapt", ""], "2 --adapt for 1 model"),
        (["--adapt", "inputs=concat;output=0"], "returns one tensor; leave output unset"),
        (["--parts", "encoder=x.py:E,decoder=x.py:D", "--rule", "max"], "a --model or one --parts"),
        (["--rule", "max"], "1 --rule for 0 --parts"),
        (["--name", ""], "--name must not be empty"),
    ],
)
def test_bad_conventions_are_one_line(
    repo: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    fragment: str,
) -> None:
    model = ["-m", f"{repo['net']}:ConcatNet"]
    code, _, stderr = cli(
        monkeypatch,
        capsys,
        "fuse",
        repo["ir"],
        repo["vis"],
        *model,
        *args,
        "-o",
        tmp_path / "f.npy",
    )
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert fragment in lines[0]
    assert not (tmp_path / "f.npy").exists()


def test_parts_without_rule_and_no_model_are_one_line(
    repo: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for args, fragment in [
        (["--parts", f"encoder={repo['net']}:Encoder,decoder={repo['net']}:Decoder"], "--rule"),
        ([], "fuse needs a --model (or --parts with --rule)"),
        (["--parts", f"encoder={repo['net']}:Encoder", "--rule", "max"], "no decoder"),
    ]:
        code, _, stderr = cli(
            monkeypatch, capsys, "fuse", repo["ir"], repo["vis"], *args, "-o", tmp_path / "f.npy"
        )
        assert code == 2 and stderr.count("\n") == 1 and fragment in stderr, stderr


@pytest.mark.slow
def test_adapt_through_the_installed_command(repo: dict[str, Any], tmp_path: Path) -> None:
    """The real console script: --adapt and --name reach the output; a conflict is one line."""
    out = tmp_path / "fused.npy"
    common = [str(repo["ir"]), str(repo["vis"]), "-m", f"{repo['net']}:ConcatNet"]
    adapted = ["-w", str(repo["weights"]), "--adapt", "inputs=concat;scale=x/255"]
    result = fusevis("fuse", *common, *adapted, "--name", "Shown", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "Shown" in result.stdout
    with torch.no_grad():
        expected = hand_written(repo)(*raw_tensors(repo["ir"], repo["vis"]))[0, 0].numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_analyze_jobs_carry_conventions_name_and_loading(
    repo: dict[str, Any], tmp_path: Path
) -> None:
    import shutil

    import zarr

    from fusevis.analysis.dataset_run import group_arrays, plan_jobs, run_job
    from fusevis.models.specs import choose_loading, model_specs

    data = tmp_path / "data"
    for modality in ("ir", "vis"):
        (data / modality).mkdir(parents=True)
        shutil.copy(repo[modality], data / modality / "case0.png")
    specs = model_specs(
        [f"{repo['net']}:ConcatNet"],
        [str(repo["weights"])],
        ["inputs=concat;scale=x/255"],
        ["Mine"],
    )
    loading = choose_loading(specs)
    store = tmp_path / "out.zarr"
    (job,) = plan_jobs(
        data, ["ir", "vis"], specs, [], store, False, 1, (loading.normalize, loading.color)
    )
    assert (job.network, job.normalize, job.color) == ("Mine", "none", "gray")
    zarr.open_group(store, mode="a").require_group("case0")
    run_job(job)
    with torch.no_grad():
        expected = hand_written(repo)(*raw_tensors(repo["ir"], repo["vis"]))[0, 0].numpy()
    np.testing.assert_allclose(group_arrays(store, "case0", "Mine")["fused"], expected, atol=1e-6)
