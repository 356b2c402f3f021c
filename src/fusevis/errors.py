"""Exceptions raised by FuseVis for problems a user can fix.

Every error carries a one-line message that names the file (or object) and the problem;
the command line prints it without a traceback and exits with status 2.
"""

from __future__ import annotations

from os import PathLike


class FuseVisError(Exception):
    """Base class of every error FuseVis raises for bad input or configuration."""


class InputError(FuseVisError):
    """An input file or array cannot be used (missing, corrupt, wrong shape, NaN, ...)."""

    def __init__(self, source: str | PathLike[str] | None, problem: str) -> None:
        self.source = None if source is None else str(source)
        self.problem = problem
        super().__init__(problem if source is None else f"{source}: {problem}")


class ModelError(FuseVisError):
    """A model or checkpoint cannot be used (unknown name, unsafe pickle, mismatch, ...)."""
