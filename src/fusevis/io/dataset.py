"""Paired datasets: one subfolder per modality, files paired by name.

Public infrared–visible datasets name their folders in several ways (MSRS and TNO copies
``ir/`` + ``vi/``, M3FD ``Ir/`` + ``Vis/``, LLVIP ``infrared/`` + ``visible/``, RoadScene
``cropinfrared/`` + ``crop_LR_visible/``). A modality folder is found by its exact name,
else case-insensitively, else by a name of the same group in :data:`MODALITY_ALIASES`, so
``--modalities ir,vi`` reads any of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from fusevis.errors import InputError
from fusevis.io.loading import ColorMode, ImageSet, load_images
from fusevis.io.normalize import NormalizeMode
from fusevis.io.readers import RASTER_SUFFIXES, suffix_of

MODALITY_ALIASES: tuple[tuple[str, ...], ...] = (
    ("ir", "inf", "infrared", "lwir", "thermal", "cropinfrared"),
    ("vi", "vis", "visible", "rgb", "crop_lr_visible"),
)


def _aliases(modality: str) -> tuple[str, ...]:
    """The names that may stand for ``modality`` (itself first), all lower case."""
    name = modality.lower()
    for group in MODALITY_ALIASES:
        if name in group:
            return (name, *(other for other in group if other != name))
    return (name,)


def find_modality_folder(root: Path, modality: str) -> Path:
    """The folder of ``modality`` under ``root``: exact name, any case, or an alias.

    Raises
    ------
    InputError
        When no folder matches (the names looked for are listed), or two folders match
        the same way (``IR/`` and ``ir/`` on a case-sensitive file system).
    """
    exact = root / modality
    if exact.is_dir():
        return exact
    folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    for name in _aliases(modality):
        found = [p for p in folders if p.name.lower() == name]
        if len(found) > 1:
            listed = ", ".join(sorted(p.name for p in found))
            raise InputError(root / modality, f"ambiguous modality folder: {listed}")
        if found:
            return found[0]
    others = _aliases(modality)[1:]
    tried = f" (nor {', '.join(others)}, in any case)" if others else " (in any case)"
    raise InputError(root / modality, f"modality folder not found{tried}")


def _natural_key(stem: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", stem))


class PairedDataset(Sequence[ImageSet]):
    """Image sets read from ``root/<modality>/<name>.<ext>``, paired by file name.

    ``root/mri/12.gif`` pairs with ``root/pet/12.gif`` (the extensions may differ). Names
    that are missing from any modality are reported in one error, so that a broken dataset
    is not silently trained on half its pairs. Modality folders are found as
    :func:`find_modality_folder` says (``ir`` also finds ``Inf/``, ``infrared/``, ...).

    Parameters
    ----------
    root : str or path-like
        The dataset folder.
    modalities : sequence of str
        Subfolder names, in input order (input 1 first).
    color, normalize, max_pixels :
        Passed to :func:`fusevis.io.load_images` for every set.
    """

    def __init__(
        self,
        root: str | PathLike[str],
        modalities: Sequence[str] = ("mri", "pet"),
        color: ColorMode = "gray",
        normalize: NormalizeMode = "minmax",
        max_pixels: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.max_pixels = max_pixels
        self.modalities = tuple(modalities)
        self.color: ColorMode = color
        self.normalize: NormalizeMode = normalize
        if not self.root.is_dir():
            raise InputError(self.root, "dataset folder not found")
        if len(self.modalities) < 1:
            raise InputError(self.root, "name at least one modality subfolder")
        self.folders = [find_modality_folder(self.root, m) for m in self.modalities]
        files = [self._files(folder) for folder in self.folders]
        common = set.intersection(*(set(f) for f in files))
        for folder, found in zip(self.folders, files, strict=True):
            missing = sorted(set(found) - common, key=_natural_key)
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise InputError(
                    folder, f"{len(missing)} file(s) have no partner in every modality: {shown}"
                )
        self.names = sorted(common, key=_natural_key)
        self._paths = [[f[name] for f in files] for name in self.names]
        if not self.names:
            raise InputError(self.root, "dataset holds no image pairs")

    def _files(self, folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for path in folder.iterdir():
            if path.is_file() and suffix_of(path) in RASTER_SUFFIXES:
                if path.stem in found:
                    raise InputError(path, f"two files are named {path.stem!r}")
                found[path.stem] = path
        return found

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> ImageSet:  # type: ignore[override]
        paths = self._paths[index]
        return load_images(
            paths, self.color, self.normalize, name=self.names[index], max_pixels=self.max_pixels
        )

    def paths(self, index: int) -> list[Path]:
        """The files of set ``index``, in modality order."""
        return list(self._paths[index])
