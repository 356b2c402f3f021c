"""Viewer fixtures: the demo pair with two shipped networks, served on loopback."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusevis.cli.view import build_viewer_data
from fusevis.io import load_demo
from fusevis.viewer.engine import ViewerData

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DEMO_MODELS = ["DeepFuse", "MaskNet"]


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerData]:
    """The demo MRI/PET pair with DeepFuse and MaskNet; guidance maps computed on view."""
    cache = tmp_path_factory.mktemp("map-cache")
    data = build_viewer_data(load_demo("mri-pet"), DEMO_MODELS, cache=cache)
    yield data
    data.close()


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's Chromium; skipped outside CI when it is not installed, a failure in CI."""
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} not installed (make test installs Debian's chromium package)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave screenshots (kept by CI, ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
