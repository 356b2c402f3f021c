"""The package's layers (DESIGN.md) are an import-linter contract that can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_parent,
        timeout=120,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of ``src/fusevis`` that a test may break."""
    shutil.copytree(REPO / "src" / "fusevis", tmp_path / "fusevis")
    return tmp_path


def test_the_layers_hold(package_copy: Path) -> None:
    result = _lint_imports(package_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "broken" in result.stdout and "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("saliency/maps.py", "fusevis.viewer.state"),
        ("io/color.py", "fusevis.models.registry"),
        ("models/paper.py", "fusevis.cli.main"),
    ],
)
def test_an_import_back_up_breaks_the_contract(
    package_copy: Path, module: str, imported: str
) -> None:
    target = package_copy / "fusevis" / module
    target.write_text(target.read_text() + f"\nimport {imported}  # noqa\n")
    result = _lint_imports(package_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and imported in result.stdout
