"""Shared fixtures: the paper's data folder and small tensors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def paper_data_dir() -> Path | None:
    """Locate ../shared/fusevis-paper (or $FUSEVIS_PAPER_DATA); None if absent."""
    configured = os.environ.get("FUSEVIS_PAPER_DATA")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "fusevis-paper"
    return candidate if candidate.is_dir() else None


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
