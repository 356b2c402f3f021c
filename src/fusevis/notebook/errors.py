"""The notebook's one-line errors."""

from __future__ import annotations

from fusevis.errors import FuseVisError


class ExplorerError(FuseVisError):
    """Bad input to an :class:`~fusevis.notebook.Explorer`: IPython shows one line, no traceback."""

    def _render_traceback_(self) -> list[str]:
        """What IPython prints instead of a traceback (the error's one line)."""
        return [f"{type(self).__name__}: {self}"]
