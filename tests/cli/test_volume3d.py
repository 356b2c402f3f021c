"""``fusevis saliency --voxel`` and ``fusevis guidance`` with the 3-D network, in-process."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from fusevis.cli.errors import guarded
from fusevis.cli.main import app
from fusevis.models import get_model
from fusevis.saliency.volumetric import VoxelJacobian, guidance_volumes

AFFINE = np.array([[2.0, 0, 0, -20], [0, 2, 0, -30], [0, 0, 2, -10], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[np.ndarray]]:
    folder = tmp_path_factory.mktemp("volumes3d")
    rng = np.random.default_rng(0)
    arrays = [rng.random((10, 12, 9)).astype(np.float32) for _ in range(2)]
    arrays[1][0, 0, 0], arrays[1][1, 1, 1] = 0.0, 1.0  # min-max scaling leaves both as they are
    arrays[0][0, 0, 0], arrays[0][1, 1, 1] = 0.0, 1.0
    paths = []
    for name, array in zip(("mri", "pet"), arrays, strict=True):
        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, AFFINE), str(path))
        paths.append(path)
    return paths[0], paths[1], arrays


def test_guidance_volumes_are_nifti_on_the_inputs_grid(volumes: tuple, tmp_path: Path) -> None:
    mri, pet, arrays = volumes
    out = tmp_path / "g.nii.gz"
    args = ("guidance", str(mri), str(pet), "-m", "Fuse3D", "-o", str(out), "--device", "cpu")
    result = CliRunner().invoke(app, [*args, "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "5x5x5 backward passes" in result.output
    expected = guidance_volumes(get_model("Fuse3D"), arrays)
    for path, array in (
        (out, expected.fused),
        (tmp_path / "g_guidance-1.nii.gz", expected.guidance[0][0]),
        (tmp_path / "g_guidance-2.nii.gz", expected.guidance[1][0]),
    ):
        image = nib.load(str(path))
        np.testing.assert_allclose(image.affine, AFFINE)
        np.testing.assert_allclose(np.asarray(image.dataobj), array, atol=1e-6)


def test_saliency_of_one_voxel_and_refusals(
    volumes: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mri, pet, arrays = volumes
    out = tmp_path / "row.npz"
    base = ("saliency", str(mri), str(pet), "-m", "Fuse3D", "--device", "cpu")
    result = CliRunner().invoke(app, [*base, "--voxel", "2", "11", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = np.load(out)
    rows = VoxelJacobian(get_model("Fuse3D"), arrays).row((2, 11, 4))
    assert data["voxel"].tolist() == [2, 11, 4]
    for k, row in enumerate(rows):
        np.testing.assert_allclose(data[f"jacobian_{k}"], row, atol=1e-6)
    for extra, message in (
        (["--pixel", "2", "3"], "Fuse3D is a 3-D network: give the fused voxel as --voxel X Y Z"),
        (["--voxel", "2", "3", "4", "--slice", "3"], "--slice cannot be used with a 3-D network"),
        (["--voxel", "10", "3", "4"], "voxel (10, 3, 4) is outside the 10x12x9 volume"),
        (["--voxel", "1", "3", "4", "-m", "DeepFuse"], "--voxel needs a 3-D network (-m Fuse3D)"),
    ):
        with pytest.raises(SystemExit) as stopped:
            guarded(lambda e=extra: app(args=[*base, *e, "-o", str(out)], prog_name="fusevis"))
        assert stopped.value.code == 2
        error = capsys.readouterr().err
        assert error == f"error: {message}\n"
