"""FuseVis: exact, fast per-pixel saliency for deep image-fusion networks."""

from importlib.metadata import PackageNotFoundError, version

from fusevis.errors import FuseVisError

try:
    __version__ = version("fusevis")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["FuseVisError", "__version__"]
