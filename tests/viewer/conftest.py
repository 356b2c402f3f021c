"""Viewer fixtures: the demo pair with two shipped networks, served on loopback."""

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusevis.io import load_demo
from fusevis.viewer.data import ViewerData, build_viewer_data

DEMO_MODELS = ["DeepFuse", "MaskNet"]


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One map cache for the demo viewers of a test session: maps computed once stay."""
    return tmp_path_factory.mktemp("map-cache")


@pytest.fixture(scope="module")
def demo_data(demo_cache: Path) -> Iterator[ViewerData]:
    """The demo MRI/PET pair with DeepFuse and MaskNet; guidance maps computed on view.

    The maps start whatever their predicted time (on a busy 2-core machine DeepFuse's can
    be predicted over the 2 minutes above which a viewer asks first); the question itself
    is tested on networks made slow on purpose (``tests/viewer/slow.py``). One viewer per
    module, closed after it: its map worker must not compute on into other modules' tests
    (``test_precision`` watches the engine's process-wide TF32 switch). The cache is the
    session's, so the next module's viewer finds the maps, or their checkpoint.
    """
    data = build_viewer_data(
        load_demo("mri-pet"), DEMO_MODELS, cache=demo_cache, ask_above_s=math.inf
    )
    yield data
    data.close()
