"""Start-up: ``fusevis --help`` under a second, light imports, constants repeated for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "numpy", "fusevis.io", "fusevis.models", "fastapi", "matplotlib")


def console_script() -> list[str]:
    """The installed ``fusevis`` script beside this interpreter (else ``python -m fusevis``)."""
    script = Path(sys.executable).parent / "fusevis"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fusevis"]


def loaded_after(statement: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has imported after ``statement``."""
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = f"{statement}\nimport json, sys\n{report}"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_under_one_second() -> None:
    """Best of three runs, so that one slow start on a busy machine does not fail the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = subprocess.run(
            [*console_script(), "--help"], capture_output=True, text=True, timeout=60, env=env
        )
        times.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stderr
        assert "fuse" in result.stdout and "saliency" in result.stdout
    assert min(times) < 1.0, f"fusevis --help took {', '.join(f'{t:.2f}' for t in times)} s"


def test_import_fusevis_and_the_command_line_stay_light() -> None:
    assert loaded_after("import fusevis") == []
    assert loaded_after("import fusevis.cli.main") == []
    assert loaded_after("import fusevis; fusevis.__version__") == []


def test_version_is_read_on_first_use() -> None:
    from importlib.metadata import version

    import fusevis

    assert fusevis.__version__ == version("fusevis")


def test_constants_repeated_for_a_light_start_agree() -> None:
    from fusevis.cli import options
    from fusevis.io import limits
    from fusevis.models.parts import RULES

    assert options.DEFAULT_MAX_PIXELS == limits.DEFAULT_MAX_PIXELS
    assert options.MAX_PIXELS_ENV == limits.MAX_PIXELS_ENV
    assert options.RULE_NAMES == tuple(RULES)
