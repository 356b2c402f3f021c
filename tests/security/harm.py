"""Measuring the harm an attack does: a child process's peak memory, time and output.

Each security test runs the attacked command in a child process through :func:`run_measured`
and asserts on what it returns: exit status, one-line stderr, peak resident memory of that
child alone and wall time. A Python child runs through ``measured_child.py``, which writes
its own ``VmHWM`` at exit (``ru_maxrss`` from ``os.wait4`` would start from the forking
pytest process's peak); ``VmHWM`` is also sampled while the child runs, for children that
are killed. The child's
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

from tests.security.measured_child import peak_rss_kib

GIB = 1 << 30
MEASURED_CHILD = Path(__file__).with_name("measured_child.py")
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
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        report = Path(scratch) / "peak-kib"
        if args[0] == sys.executable and len(args) > 1:
            args = [sys.executable, str(MEASURED_CHILD), str(report), *args[1:]]
        sampled_kib = 0
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
            sampled_kib = max(sampled_kib, peak_rss_kib(process.pid))
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
        reported_kib = int(report.read_text() or 0) if report.exists() else 0
        peak_kib = max(reported_kib, sampled_kib) or usage.ru_maxrss
        return Measured(
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            peak_kib * 1024,
            elapsed,
            timed_out,
        )


def fusevis(*args: str, timeout: float = 60.0, **kwargs: object) -> Measured:
    """Run the ``fusevis`` command (``python -m fusevis``) measured."""
    return run_measured([*FUSEVIS, *args], timeout=timeout, **kwargs)  # type: ignore[arg-type]
