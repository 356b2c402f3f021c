"""Writing 2-D results (fused images, maps) to image and array files, durably.

Every file is written under a temporary name in its own folder, flushed to disk
(``os.fsync``), renamed over the target (``os.replace``) and the folder fsynced, so that a
crash or a kill leaves either the old file or the new one, never half of one.
:func:`check_writable` tells, before a long computation, whether an output can be written;
every failure is an :class:`~fusevis.errors.InputError` naming the path.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from fusevis.errors import InputError
from fusevis.io.readers import suffix_of

WRITABLE_SUFFIXES = (".png", ".npy", ".npz", ".nii.gz", ".nii", ".tif", ".tiff")

OutputKind = Literal["file", "folder", "zarr"]

# fsync on a folder is refused by some file systems; nothing more can be done there.
_UNSUPPORTED_FSYNC = {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EROFS}


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Map an image in [0, 1] (grey or (H, W, 3) RGB) to uint8 with rounding and clipping."""
    return np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)


def os_problem(error: OSError) -> str:
    """The human part of an :class:`OSError` (``Permission denied``, ...)."""
    return error.strerror or str(error)


def fsync_path(path: str | PathLike[str]) -> None:
    """Flush a file or a folder to disk (folders where the file system allows it)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if not flags & os.O_DIRECTORY or error.errno not in _UNSUPPORTED_FSYNC:
            raise
    finally:
        os.close(descriptor)


def fsync_tree(root: str | PathLike[str]) -> None:
    """Flush every file and folder under ``root`` (deepest first), then ``root`` itself."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(os.path.join(folder, name))
        fsync_path(folder)


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree, ignoring what is already gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def temporary_sibling(target: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden name in ``target``'s folder (same file system, so renames are atomic)."""
    return target.with_name(f".{target.name[:64]}.{uuid.uuid4().hex[:12]}{suffix}")


def replace_durably(temporary: str | PathLike[str], target: str | PathLike[str]) -> None:
    """Move a finished ``temporary`` file or folder onto ``target``, durably.

    The temporary is fsynced (every file of a folder, then the folders), renamed over the
    target with :func:`os.replace` and the parent folder is fsynced. A folder replaces
    whatever is at ``target`` (moved aside first, deleted after); a file never replaces a
    folder (:class:`IsADirectoryError`).
    """
    source, final = Path(temporary), Path(target)
    aside = None
    if source.is_dir():
        fsync_tree(source)
        if final.is_symlink() or final.exists():
            aside = temporary_sibling(final, ".old")
            os.replace(final, aside)
    else:
        fsync_path(source)
    try:
        os.replace(source, final)
    except OSError:
        if aside is not None:
            os.replace(aside, final)  # put the old one back
        raise
    fsync_path(final.parent)
    if aside is not None:
        _remove(aside)


def write_atomically(target: str | PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(handle)``: temporary file, fsync, rename, folder fsync.

    Raises :class:`OSError` as it comes (callers decide what a failure means).
    """
    final = Path(target)
    temporary = temporary_sibling(final)
    try:
        with open(temporary, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        fsync_path(final.parent)
    except BaseException:
        _remove(temporary)
        raise


@contextmanager
def atomic_output(
    path: str | PathLike[str], kind: OutputKind = "file", describe: bool = True
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it there durably.

    The temporary keeps ``path``'s suffix (writers that choose the format by suffix still
    work). The parent folder is created. On failure the temporary is removed; an
    :class:`OSError` becomes an :class:`InputError` naming ``path`` (``describe=False``
    lets it through unchanged).
    """
    target = Path(path)
    temporary = temporary_sibling(target, ".tmp" + suffix_of(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind != "file":
            temporary.mkdir()
        yield temporary
        replace_durably(temporary, target)
    except OSError as error:
        _remove(temporary)
        if not describe:
            raise
        raise InputError(target, f"cannot write: {os_problem(error)}") from None
    except BaseException:
        _remove(temporary)
        raise


def _is_zarr_store(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))


def check_writable(path: str | PathLike[str], kind: OutputKind = "file") -> Path:
    """Check, before any work, that ``path`` can be written; raise :class:`InputError` if not.

    ``kind`` is ``file`` (an image or array file, replaced if it exists), ``folder`` (a
    folder written into) or ``zarr`` (a Zarr store folder, replaced; an existing folder
    that is not a Zarr store is refused rather than wiped). The test is real: a file is
    created and deleted in the nearest existing folder, since permission bits do not stop
    root and read-only mounts do not show in them.
    """
    target = Path(path)
    if target.is_symlink() or target.exists():
        if kind == "file" and target.is_dir():
            raise InputError(target, "is a folder, not a file")
        if kind == "file" and not target.is_file():
            raise InputError(target, "is not a regular file")
        if kind != "file" and not target.is_dir():
            raise InputError(target, "exists and is not a folder")
        if kind == "zarr" and any(target.iterdir()) and not _is_zarr_store(target):
            raise InputError(target, "is a folder that is not a Zarr store (not overwritten)")
    folder = target if kind == "folder" and target.is_dir() else target.parent
    folder = Path(os.path.abspath(folder))
    while not (folder.is_symlink() or folder.exists()) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(target, f"{folder} is not a folder")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".fusevis-probe-", dir=folder)
    except OSError as error:
        raise InputError(target, f"cannot write in {folder}: {os_problem(error)}") from None
    os.close(descriptor)
    os.unlink(probe)
    return target


def save_image(
    image: np.ndarray,
    path: str | PathLike[str],
    spacing: tuple[float, float] | None = None,
    **arrays: np.ndarray,
) -> Path:
    """Write a 2-D image (values in [0, 1] for image formats) to ``path``.

    The format follows the suffix: ``.png`` and ``.tif`` (8-bit, values clipped to [0, 1]),
    ``.npy`` (float32), ``.npz`` (key ``fused`` plus any extra ``arrays``), ``.nii.gz`` /
    ``.nii`` (float32, one slice, with ``spacing`` in mm if given). The parent folder is
    created; the file is written atomically. Returns the path written.
    """
    target = Path(path)
    suffix = suffix_of(target)
    if suffix not in WRITABLE_SUFFIXES:
        raise InputError(
            target,
            f"cannot write {suffix or 'files without suffix'!s}; use one of "
            + ", ".join(WRITABLE_SUFFIXES),
        )
    check_writable(target)
    data = np.asarray(image, dtype=np.float32)
    with atomic_output(target) as temporary:
        if suffix in (".png", ".tif", ".tiff"):
            from PIL import Image as PILImage

            PILImage.fromarray(to_uint8(data)).save(temporary)
        elif suffix == ".npy":
            np.save(temporary, data)
        elif suffix == ".npz":
            np.savez_compressed(temporary, fused=data, **arrays)
        else:
            import nibabel as nib

            affine = np.eye(4)
            if spacing is not None:
                affine[0, 0], affine[1, 1] = spacing
            nib.save(nib.Nifti1Image(data[:, :, None], affine), str(temporary))
    return target
