"""The budget every reader keeps: a pixel limit checked from the header, regular files only.

A file can claim any size in a few bytes of header (a PNG's IHDR, a TIFF's tags, a NIfTI
header's ``dim``, a DICOM's Rows × Columns × NumberOfFrames) and back the claim with a
compressed stream of zeros. Every reader therefore compares the number of pixels (2-D
images) or voxels (volumes) the header announces with one limit *before* it decodes a
byte, and refuses anything that is not a regular file before opening it, so that a FIFO
or a device never blocks a read.

The limit is ``max_pixels`` where a function takes it, else ``$FUSEVIS_MAX_PIXELS``, else
:data:`DEFAULT_MAX_PIXELS`.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence
from os import PathLike

from fusevis.errors import InputError

DEFAULT_MAX_PIXELS = 1 << 26
"""67,108,864 pixels or voxels: an 8192×8192 image, a 512×512×256 volume."""

MAX_PIXELS_ENV = "FUSEVIS_MAX_PIXELS"
HOW_TO_RAISE = "raise it with --max-pixels"

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def max_pixels_from(value: int | None = None) -> int:
    """The pixel limit in force: ``value``, else ``$FUSEVIS_MAX_PIXELS``, else the default.

    Raises
    ------
    InputError
        If the value (or the environment variable) is not a positive integer.
    """
    source = "max_pixels"
    if value is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        source = MAX_PIXELS_ENV
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise InputError(source, f"must be a positive integer, got {text!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(source, f"must be a positive integer, got {value!r}")
    return value


def check_pixels(
    source: str | PathLike[str], dims: Sequence[int], limit: int, what: str = "image"
) -> None:
    """Refuse ``dims`` (as the file states them) when their product exceeds ``limit``.

    ``what`` is ``"image"`` (dims given as width, height: counted in pixels) or
    ``"volume"`` (counted in voxels).
    """
    count = math.prod(int(d) for d in dims)
    if count > limit:
        unit = "voxels" if what == "volume" else "pixels"
        shown = "x".join(str(int(d)) for d in dims)
        raise InputError(
            source, f"{what} of {shown} {unit} exceeds the limit of {limit} ({HOW_TO_RAISE})"
        )


def require_regular_file(path: str | PathLike[str]) -> os.stat_result:
    """Raise a one-line :class:`InputError` unless ``path`` is a regular file (links followed).

    Called before a file is opened: opening a FIFO for reading blocks until a writer
    appears, and a device can be endless.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as error:
        raise InputError(path, f"cannot read file ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a file")
        raise InputError(path, f"is {kind}, not a regular file")
    return info
