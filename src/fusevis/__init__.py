"""FuseVis: exact, fast per-pixel saliency for deep image-fusion networks.

``import fusevis`` is kept light (no NumPy, no torch, not even :mod:`importlib.metadata`
until ``__version__`` is asked for): import the layer you need, such as
:mod:`fusevis.models` or :mod:`fusevis.saliency`.
"""

from __future__ import annotations

from typing import Any

from fusevis.errors import FuseVisError

__all__ = ["FuseVisError", "__version__"]


def __getattr__(name: str) -> Any:
    """``__version__``, read from the installed package's metadata on first use."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("fusevis")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        found = "0.0.0"
    globals()["__version__"] = found
    return found
