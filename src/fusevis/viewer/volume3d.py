"""3-D networks in the viewer: the fused volume once, each hovered voxel's row on three planes.

A 3-D fusion network (Conv3d and friends, e.g. the registered ``Fuse3D``) fuses the whole
volumes at once, so the viewer does not run it on a slice: :class:`VolumeNetworks` runs it
once on the whole (per-volume normalised) volumes and caches the fused volume; the fused
slice in view is cut from it exactly as :func:`fusevis.io.loading.volume_slice` cuts the
input slices (turned anterior up for NIfTI). A hovered pixel of the slice in view is a
voxel; its Jacobian row (:class:`~fusevis.saliency.volumetric.VoxelJacobian`, one forward
and one backward pass on the voxel's field-sized crop) is sent as

* the row's plane of the slice in view (``{name}/jacobian_{k}``, the whole slice), which
  the page paints as a 2-D network's Jacobian panels, and
* the three orthogonal planes through the voxel, axial, coronal and sagittal
  (:func:`~fusevis.saliency.volumetric.row_planes`), as ``{name}/plane_{k}_{j}``, with
  the voxel's position in each plane in the header (``planes``).

Its guidance (and influence-share) maps come from volumes computed once in the background
(:mod:`fusevis.viewer.volume3d_maps`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fusevis.errors import InputError
from fusevis.io.loading import display_plane
from fusevis.io.volumes import scaled_volumes
from fusevis.saliency.inputs import check_pixel
from fusevis.saliency.volumetric import VoxelJacobian, row_planes, run_volume_model
from fusevis.viewer.hover import ModelSession
from fusevis.viewer.volume import SliceKey, VolumeSet

PLANES = ("axial", "coronal", "sagittal")  # row_planes' order: across axes 2, 1, 0
PLANE_AXES = (2, 1, 0)
VOLUME_MODULES = (nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d, nn.AvgPool3d, nn.BatchNorm3d)


def is_volume_model(model: nn.Module) -> bool:
    """Whether ``model`` is a 3-D network (it holds 3-D convolutions, pooling or norms)."""
    return any(isinstance(module, VOLUME_MODULES) for module in model.modules())


@dataclass
class NoRecord:
    """A 3-D session keeps no per-slice record (for :attr:`SliceView.nbytes`)."""

    record_bytes: int = 0


class VolumeSession(ModelSession):
    """A 3-D network on one slice of the volumes: its fused slice, cut from the fused volume.

    ``key`` is the slice ``(axis, index)``; hovers go through :class:`VolumeNetworks`.
    """

    def __init__(self, name: str, model: nn.Module, fused: np.ndarray, key: SliceKey) -> None:
        super().__init__(name, model, fused, NoRecord(), 0, True, "voxel")  # type: ignore[arg-type]
        self.key = key


def plane_of(volume: np.ndarray, key: SliceKey, rotate: bool) -> np.ndarray:
    """Slice ``key`` of an (X, Y, Z) array as the viewer shows it (``volume_slice``'s way)."""
    axis, index = key
    return display_plane(volume, axis, index, rotate)


def voxel_of(
    key: SliceKey, pixel: tuple[int, int], depths: tuple[int, int, int], rotate: bool
) -> tuple[int, int, int]:
    """The voxel shown at ``pixel`` (row, col) of slice ``key`` (:func:`plane_of` inverted)."""
    axis, index = key
    rest = [d for a, d in enumerate(depths) if a != axis]
    row, col = pixel
    p, q = (col, rest[1] - 1 - row) if rotate else (row, col)
    voxel = [p, q]
    voxel.insert(axis, index)
    return voxel[0], voxel[1], voxel[2]


def mark_in_plane(
    voxel: tuple[int, int, int], axis: int, depths: tuple[int, int, int], rotate: bool
) -> tuple[int, int]:
    """Where ``voxel`` lies (row, col) on the plane across ``axis`` through it, as shown."""
    p, q = (v for a, v in enumerate(voxel) if a != axis)
    rest = [d for a, d in enumerate(depths) if a != axis]
    return (rest[1] - 1 - q, p) if rotate else (p, q)


class VolumeNetworks:
    """The 3-D networks of a viewer on a :class:`VolumeSet`; used on the engine thread.

    Parameters
    ----------
    volume : VolumeSet
        The volumes; each is scaled whole to [0, 1] (the set's ``normalize`` mode), as
        ``fusevis saliency --voxel`` scales them, and the networks run on them once.
    models : dict of str to nn.Module
        The 3-D networks by display name.
    """

    def __init__(self, volume: VolumeSet, models: Mapping[str, nn.Module]) -> None:
        self.volume = volume
        self.rotate = bool(volume.volumes[0].rotate_slices)
        self.tensors = [
            torch.from_numpy(array)
            for array in scaled_volumes(volume.volumes, volume.sources, volume.normalize)
        ]
        self.models = {name: model.eval() for name, model in models.items()}
        self._fused: dict[str, np.ndarray] = {}
        self._jacobians: dict[str, VoxelJacobian] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def fused(self, name: str) -> np.ndarray:
        """The fused (X, Y, Z) volume of network ``name`` (computed once, then cached)."""
        if name not in self._fused:
            jacobian = self.jacobian(name)
            with torch.no_grad():
                output = run_volume_model(self.models[name], jacobian.inputs, 0)
            self._fused[name] = output[0].cpu().numpy().astype(np.float32)
        return self._fused[name]

    def jacobian(self, name: str) -> VoxelJacobian:
        """The network's :class:`VoxelJacobian` on the volumes (field traced once)."""
        if name not in self._jacobians:
            self._jacobians[name] = VoxelJacobian(self.models[name], self.tensors)
        return self._jacobians[name]

    def open_on(self, name: str, key: SliceKey) -> VolumeSession:
        """Network ``name`` on slice ``key``: its fused slice, cut from the fused volume."""
        key = self.volume.check(key)
        fused = plane_of(self.fused(name), key, self.rotate)
        return VolumeSession(name, self.models[name], fused, key)

    def voxel(self, key: SliceKey, pixel: Sequence[int]) -> tuple[int, int, int]:
        """The voxel at ``pixel`` of slice ``key``; a one-line InputError outside the slice."""
        key = self.volume.check(key)
        found = check_pixel(tuple(pixel), self.volume.slice_shape(key[0]))  # type: ignore[arg-type]
        return voxel_of(key, found, self.volume.depths, self.rotate)

    def rows(self, name: str, key: SliceKey, pixel: Sequence[int]) -> list[np.ndarray]:
        """The hovered voxel's Jacobian rows, per input, on the slice in view (exports)."""
        voxel = self.voxel(key, pixel)
        return [plane_of(r, key, self.rotate) for r in self._rows(name, voxel)]

    def _rows(self, name: str, voxel: tuple[int, int, int]) -> list[np.ndarray]:
        rows = self.jacobian(name).row(voxel)
        return [r if r.ndim == 3 else r.sum(axis=0) for r in rows]

    def answer(
        self, session: VolumeSession, pixel: Sequence[int]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A hover answer for one 3-D network: header entry and arrays (see the module)."""
        name, key = session.name, session.key
        voxel = self.voxel(key, pixel)
        row, col = int(pixel[0]), int(pixel[1])
        began = time.perf_counter()
        rows = self._rows(name, voxel)
        session.pixel_seconds = time.perf_counter() - began
        arrays: dict[str, np.ndarray] = {}
        in_view = [plane_of(r, key, self.rotate) for r in rows]
        for k, plane in enumerate(in_view):
            arrays[f"{name}/jacobian_{k}"] = plane
            for j, through in enumerate(row_planes(rows[k], voxel, self.rotate)):
                arrays[f"{name}/plane_{k}_{j}"] = through
        depths = self.volume.depths
        marks = [list(mark_in_plane(voxel, a, depths, self.rotate)) for a in PLANE_AXES]
        height, width = in_view[0].shape
        size = "x".join(str(s) for s in self.jacobian(name).field.size)
        info = {
            "window": [0, height, 0, width],
            "fused": float(session.fused[row, col]),
            "jacobian_at_pixel": [float(p[row, col]) for p in in_view],
            "jacobian_range": float(max(np.abs(r).max() for r in rows)),
            "method": f"voxel row on a {size} crop",
            "compute_ms": session.pixel_seconds * 1e3,
            "voxel": list(voxel),
            "planes": {"names": list(PLANES), "marks": marks},
        }
        return info, arrays


def split_models(models: Mapping[str, nn.Module], volume: VolumeSet | None) -> dict[str, nn.Module]:
    """The 3-D networks among ``models``; a one-line InputError if there are no volumes."""
    deep = {name: model for name, model in models.items() if is_volume_model(model)}
    if deep and volume is None:
        names = ", ".join(deep)
        raise InputError(None, f"{names} fuses volumes: open NIfTI or DICOM volumes, not images")
    return deep
