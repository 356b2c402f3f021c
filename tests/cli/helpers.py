"""Running the real ``fusevis`` command in a subprocess."""

from __future__ import annotations

import subprocess
import sys


def fusevis(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fusevis ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "fusevis", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    """Exit status 2, one ``error:`` line naming the problem, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
