"""Run a Python command line in this process and write its own peak RSS to a file at exit.

``python measured_child.py REPORT -m module args...`` (or ``-c code args...`` or
``script args...``) behaves as ``python -m module args...`` and, at exit, writes this
process's ``VmHWM`` (peak resident memory, in KiB) to ``REPORT``.

Why not ``os.wait4``'s ``ru_maxrss``: Linux carries the high-water mark of the address
space replaced at ``exec`` into the child's ``ru_maxrss``, and a child forked from a
pytest process of 1.7 GB starts with that mark. ``VmHWM`` belongs to the address space
that ``exec`` created, so it counts only what the command itself used.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def peak_rss_kib(pid: int | str = "self") -> int:
    """``VmHWM`` of a process in KiB (0 once it has exited, or where ``/proc`` has none)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    """Run the command line after the report path as ``python`` would."""
    report = Path(sys.argv[1])
    atexit.register(lambda: report.write_text(str(peak_rss_kib())))
    command = sys.argv[2:]
    if command[0] == "-m":
        sys.argv = [command[1], *command[2:]]
        sys.path[0] = ""
        runpy.run_module(command[1], run_name="__main__", alter_sys=True)
    elif command[0] == "-c":
        sys.argv = ["-c", *command[2:]]
        sys.path[0] = ""
        exec(compile(command[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = command
        sys.path[0] = str(Path(command[0]).resolve().parent)
        runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main()
