"""``fusevis view`` and ``fusevis demo``: a light module top, --threads and its default."""

import os
import subprocess
import sys

import pytest

from fusevis.cli.view import interactive_threads, start_threads

HEAVY = ("torch", "numpy", "fastapi", "uvicorn", "fusevis.viewer", "fusevis.saliency", "rich")


def test_the_commands_import_nothing_heavy_until_they_run() -> None:
    probe = (
        "import sys, fusevis.cli.view, fusevis.cli.demo; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"imported at the top: {result.stdout.strip()}"


def test_default_threads_are_half_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert interactive_threads() == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert interactive_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert interactive_threads() == 1


def test_threads_are_set_for_torch() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        start_threads(1)
        assert torch.get_num_threads() == 1
        start_threads(None)
        assert torch.get_num_threads() == interactive_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["view", "demo"])
def test_help_names_threads(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fusevis", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0 and "--threads" in result.stdout
    if command == "view":
        assert "--max-pixels" in result.stdout
