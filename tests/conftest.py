"""Shared fixtures: the paper's data folder and small tensors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def paper_data_dir() -> Path | None:
    """Locate ../shared/fusevis-paper (or $FUSEVIS_PAPER_DATA); None if absent."""
    configured = os.environ.get("FUSEVIS_PAPER_DATA")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "fusevis-paper"
    return candidate if candidate.is_dir() else None


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, share the cores among the workers and the commands they start.

    Torch in each worker, and in every ``fusevis`` command a test starts, gets its share of
    the cores: OpenMP threads oversubscribed on a busy machine run many times slower.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ["OMP_NUM_THREADS"] = threads
        import torch

        torch.set_num_threads(int(threads))


@pytest.fixture(autouse=True)
def _viewers_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every ``ViewerData`` a test makes is closed after it.

    Otherwise its map worker may go on computing into later tests of the same pytest
    worker: slowing them, and holding the engine's TF32 switch (``exact_float32``) while
    ``test_precision`` looks at it. Viewers made by fixtures of a wider scope are their
    fixtures' to close.
    """
    from fusevis.viewer.data import ViewerData

    made: list[ViewerData] = []
    original = ViewerData.__init__

    def tracked(self: ViewerData, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ViewerData, "__init__", tracked)
    yield
    for data in made:
        data.close()


@pytest.fixture(scope="session")
def paper() -> Path:
    """The paper's data folder; skipped outside CI when missing, a failure in CI."""
    found = paper_data_dir()
    if found is None:
        message = "fusevis-paper data not found beside the checkout (set FUSEVIS_PAPER_DATA)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by what they use: ``browser`` (Chromium) and ``paper`` (the paper's data).

    ``make test-fast`` deselects these and ``slow``; ``make test`` runs everything.
    """
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "chromium_path" in fixtures:
            item.add_marker(pytest.mark.browser)
        if "paper" in fixtures:
            item.add_marker(pytest.mark.paper)
