"""Viewer fixtures: the demo pair with two shipped networks, served on loopback."""

from collections.abc import Iterator

import pytest

from fusevis.cli.view import build_viewer_data
from fusevis.io import load_demo
from fusevis.viewer.engine import ViewerData

DEMO_MODELS = ["DeepFuse", "MaskNet"]


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerData]:
    """The demo MRI/PET pair with DeepFuse and MaskNet; guidance maps computed on view."""
    cache = tmp_path_factory.mktemp("map-cache")
    data = build_viewer_data(load_demo("mri-pet"), DEMO_MODELS, cache=cache)
    yield data
    data.close()
