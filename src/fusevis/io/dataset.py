"""Paired datasets: one subfolder per modality, files paired by name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from fusevis.errors import InputError
from fusevis.io.loading import ColorMode, ImageSet, load_images
from fusevis.io.normalize import NormalizeMode
from fusevis.io.readers import RASTER_SUFFIXES, suffix_of


def _natural_key(stem: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", stem))


class PairedDataset(Sequence[ImageSet]):
    """Image sets read from ``root/<modality>/<name>.<ext>``, paired by file name.

    ``root/mri/12.gif`` pairs with ``root/pet/12.gif`` (the extensions may differ). Names
    that are missing from any modality are reported in one error, so that a broken dataset
    is not silently trained on half its pairs.

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
        files = [self._files(m) for m in self.modalities]
        common = set.intersection(*(set(f) for f in files))
        for modality, found in zip(self.modalities, files, strict=True):
            missing = sorted(set(found) - common, key=_natural_key)
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise InputError(
                    self.root / modality,
                    f"{len(missing)} file(s) have no partner in every modality: {shown}",
                )
        self.names = sorted(common, key=_natural_key)
        self._paths = [[f[name] for f in files] for name in self.names]
        if not self.names:
            raise InputError(self.root, "dataset holds no image pairs")

    def _files(self, modality: str) -> dict[str, Path]:
        folder = self.root / modality
        if not folder.is_dir():
            raise InputError(folder, "modality folder not found")
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
