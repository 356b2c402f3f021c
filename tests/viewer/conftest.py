"""Viewer fixtures: the demo pair with two shipped networks, served on loopback."""

import math
from collections.abc import Iterator

import pytest

from fusevis.io import load_demo
from fusevis.viewer.data import ViewerData, build_viewer_data

DEMO_MODELS = ["DeepFuse", "MaskNet"]


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerData]:
    """The demo MRI/PET pair with DeepFuse and MaskNet; guidance maps computed on view.

    The maps start whatever their predicted time (on a busy 2-core machine DeepFuse's can
    be predicted over the 2 minutes above which a viewer asks first); the question itself
    is tested on networks made slow on purpose (``tests/viewer/slow.py``).
    """
    cache = tmp_path_factory.mktemp("map-cache")
    data = build_viewer_data(load_demo("mri-pet"), DEMO_MODELS, cache=cache, ask_above_s=math.inf)
    yield data
    data.close()
