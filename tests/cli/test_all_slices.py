"""``fusevis guidance|fuse --all-slices``, in-process (typer's CliRunner; ``guarded`` for errors).

The volumes the command writes with two Dask worker processes equal those of a one-worker
run; they open with nibabel and nilearn (a plot over the input); bad input is one line.
"""

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from fusevis.analysis.volume_run import VolumeSettings, run_volume
from fusevis.cli.errors import guarded
from fusevis.cli.main import app
from fusevis.models.specs import ModelSpec
from tests.analysis.test_volume_run import LPS, make_pair


def failure(args: Sequence[str | Path], capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error:`` line of ``fusevis ARGS`` as the console script runs it (status 2)."""
    with pytest.raises(SystemExit) as stopped:
        guarded(lambda: app(args=[*map(str, args)], prog_name="fusevis"))
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    return error


def test_guidance_volumes_from_two_worker_processes(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from nilearn import plotting

    inputs = make_pair(tmp_path)
    out = tmp_path / "cli.nii.gz"
    args = ["guidance", *map(str, inputs), "-m", "WeightedAverage", "--all-slices",
            "--influence", "--workers", "2", "--threads", "1", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "5 slices computed, 0 resumed, 1 background (zeros)" in result.output
    settings = VolumeSettings(ModelSpec("WeightedAverage"), influence=True)
    single = run_volume(inputs, tmp_path / "one.nii.gz", settings, workers=1, processes=False)
    canonical = nib.as_closest_canonical(nib.load(inputs[0])).affine
    for key, path in single.paths.items():
        written = tmp_path / path.name.replace("one", "cli")
        image = nib.load(str(written))
        assert np.array_equal(image.affine, canonical), key
        np.testing.assert_array_equal(
            np.asarray(image.dataobj), np.asarray(nib.load(str(path)).dataobj), err_msg=key
        )
    display = plotting.plot_stat_map(
        str(tmp_path / "cli_guidance-1.nii.gz"), bg_img=str(inputs[0]), display_mode="z",
        cut_coords=[2.0], colorbar=True, threshold=0.1,
    )  # fmt: skip
    display.savefig(str(tmp_path / "overlay.png"))
    display.close()
    assert (tmp_path / "overlay.png").stat().st_size > 1000


@pytest.mark.parametrize("command", ["fuse", "guidance"])
def test_bad_volume_inputs_are_one_line(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    inputs = make_pair(tmp_path)
    png = tmp_path / "flat.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(png)
    run = (command, "-m", "WeightedAverage", "--all-slices")
    out = ("-o", tmp_path / "o.nii.gz")
    error = failure([*run, inputs[0], png, *out], capsys)
    assert "flat.png: --all-slices needs NIfTI volumes" in error
    shifted = LPS.copy()
    shifted[2, 3] += 1.5
    (tmp_path / "other").mkdir()
    other = make_pair(tmp_path / "other", shifted)
    error = failure([*run, inputs[0], other[1], *out], capsys)
    assert "other/b.nii.gz: affine differs from" in error and "by up to 1.5 mm" in error
    error = failure([*run, *inputs, "-o", tmp_path / "o.png"], capsys)
    assert "o.png: a whole-volume output must be .nii.gz or .nii" in error
    (tmp_path / "o.nii.gz").mkdir()
    assert "o.nii.gz: is a folder, not a file" in failure([*run, *inputs, *out], capsys)
    error = failure([*run, *inputs, "--slice", "2", "-o", tmp_path / "p.nii.gz"], capsys)
    assert "--slice cannot be used with --all-slices" in error
    assert not list(tmp_path.glob("*.slices"))  # nothing started
