"""Measuring the harm an attack does: a child process's peak memory, time and output.

Each security test runs the attacked command in a child process through :func:`run_measured`
and asserts on what it returns: exit status, one-line stderr, peak resident memory of that
child alone (``os.wait4`` gives the child's own ``ru_maxrss``) and wall time. The child's
data segment is capped (``RLIMIT_DATA``) so that an attack that still works on old code
fails the test instead of exhausting the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GIB = 1 << 30
FUSEVIS = [sys.executable, "-m", "fusevis"]


@dataclass
class Measured:
    """What a child process did."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int
    seconds: float
    timed_out: bool

    @property
    def peak_rss_mb(self) -> float:
        """Peak resident set size in MiB."""
        return self.peak_rss_bytes / (1 << 20)

    def assert_one_line_error(self, *fragments: str) -> None:
        """Exit status 2, stderr one ``error: ...`` line containing every fragment."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert not self.timed_out, f"timed out after {self.seconds:.1f} s"
        assert self.returncode == 2, (self.returncode, self.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: "), self.stderr[-2000:]
        assert "Traceback" not in self.stderr
        for fragment in fragments:
            assert fragment.lower() in lines[0].lower(), (fragment, lines[0])


def _limit_memory(cap: int) -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))


def run_measured(
    args: list[str],
    timeout: float = 60.0,
    memory_cap: int | None = 3 * GIB,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> Measured:
    """Run ``args`` as a child, killed after ``timeout`` seconds; measure its peak RSS.

    ``memory_cap`` bounds the child's data segment (None: no cap).
    """
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=child_env,
            preexec_fn=None if memory_cap is None else lambda: _limit_memory(memory_cap),
        )
        timed_out = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                process.kill()
                timed_out = True
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Measured(
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_maxrss * 1024,
            elapsed,
            timed_out,
        )


def fusevis(*args: str, timeout: float = 60.0, **kwargs: object) -> Measured:
    """Run the ``fusevis`` command (``python -m fusevis``) measured."""
    return run_measured([*FUSEVIS, *args], timeout=timeout, **kwargs)  # type: ignore[arg-type]
