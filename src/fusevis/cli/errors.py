"""Turning FuseVis errors into one-line messages and exit status 2."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import NoReturn, TextIO

from fusevis.errors import FuseVisError

EXIT_BAD_INPUT = 2

_python_showwarning = warnings.showwarning


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """FuseVis's own warnings as one ``warning: ...`` line; others as Python shows them."""
    if category.__module__.split(".")[0] == "fusevis":
        print(f"warning: {message}", file=file or sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def guarded(entry: Callable[[], object]) -> None:
    """Run ``entry``; FuseVis errors, file-system errors and Ctrl-C end without a traceback."""
    warnings.showwarning = show_warning
    try:
        entry()
    except FuseVisError as error:
        fail(str(error))
    except OSError as error:  # a file that cannot be written or read: one line, status 2
        fail(f"{error.filename}: {error.strerror}" if error.filename else str(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
