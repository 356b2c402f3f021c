"""Turning FuseVis errors into one-line messages and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from fusevis.errors import FuseVisError

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def guarded(entry: Callable[[], object]) -> None:
    """Run ``entry``, reporting :class:`FuseVisError` and Ctrl-C without a traceback."""
    try:
        entry()
    except FuseVisError as error:
        fail(str(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
