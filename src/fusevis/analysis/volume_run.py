"""Every slice of registered volumes through one network, on Dask, resumable.

``fusevis fuse|guidance ... --all-slices`` runs here. The volumes are read once (NIfTI,
reoriented to RAS+); each slice along the axis is cut exactly as a 2-D run cuts it
(:func:`fusevis.io.loading.volume_slice`, turned anterior-up) and normalised by the same
code (:func:`fusevis.io.loading.image_from_array`: per slice, as ``--slice K`` would), so
each slice's results equal those of the 2-D command on that slice. Each slice is one Dask
task, which writes its results (turned back to the volume's orientation) to
``<out>.slices/slice<K>.npz`` atomically; a rerun with the same settings computes only the
slices missing there, so an interrupted run resumes. At the end the slices are assembled
into NIfTI volumes on the inputs' grid (:mod:`fusevis.io.volumes`) and the slice folder
is removed.

Slices where any input is constant (background outside the head) cannot be normalised, as
a 2-D run of them is refused; they are not computed and hold zeros in every output.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from fusevis.analysis.cluster import dask_client
from fusevis.errors import FuseVisError, InputError
from fusevis.io.loading import ImageSet, blank_input, slice_image_set, slice_label, volume_slice
from fusevis.io.readers import NIFTI_SUFFIXES, RawArray, read_volume, suffix_of
from fusevis.io.volumes import check_same_grid, nifti_base, save_volume, volume_output_paths

if TYPE_CHECKING:
    from torch import nn

    from fusevis.models.specs import ModelSpec

Mode = Literal["fuse", "guidance"]
STORE_SUFFIX = ".slices"
SETTINGS = "run.json"


class VolumeWarning(UserWarning):
    """A slice store left by another run's settings is discarded."""


@dataclass(frozen=True)
class VolumeSettings:
    """What every slice is computed with (plain values, sent to the Dask workers)."""

    spec: ModelSpec
    mode: Mode = "guidance"
    axis: int = 2
    normalize: str = "minmax"
    color: str = "gray"
    influence: bool = False
    channel: int = 0
    tile: int = 512
    device: str = "cpu"
    threads: int = 1

    def fingerprint(self, sources: Sequence[Path]) -> dict[str, object]:
        """What a stored slice depends on: the inputs (path, size, time) and the settings."""
        inputs = []
        for source in sources:
            stat = source.stat()
            inputs.append([str(source.resolve()), stat.st_size, stat.st_mtime_ns])
        return {
            "inputs": inputs,
            "spec": repr(self.spec),
            "mode": self.mode,
            "axis": self.axis,
            "normalize": self.normalize,
            "color": self.color,
            "influence": self.influence,
            "channel": self.channel,
        }


@dataclass(frozen=True)
class SliceJob:
    """One slice: its raw planes as a 2-D run cuts them, where to store its results."""

    settings: VolumeSettings
    index: int
    planes: tuple[np.ndarray, ...]
    labels: tuple[str, ...]
    store: str
    rotated: bool = True
    """Whether the planes were turned anterior-up (NIfTI), so results turn back."""


@dataclass
class VolumeResult:
    """What a volume run wrote and did."""

    paths: dict[str, Path]
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    background: list[int] = field(default_factory=list)


def store_path(output: str | os.PathLike[str]) -> Path:
    """The slice folder beside an output: ``out.nii.gz`` → ``out.slices``."""
    base, _ = nifti_base(output)
    return base.with_name(base.name + STORE_SUFFIX)


def slice_file(store: Path, index: int) -> Path:
    """The file holding slice ``index``'s results."""
    return store / f"slice{index:04d}.npz"


def read_volumes(
    paths: Sequence[str | os.PathLike[str]], max_pixels: int | None = None
) -> tuple[list[Path], list[RawArray]]:
    """Read NIfTI volumes on one grid (RAS+); anything else is refused in one line."""
    sources = [Path(p) for p in paths]
    for source in sources:
        if suffix_of(source) not in NIFTI_SUFFIXES:
            raise InputError(source, "--all-slices needs NIfTI volumes (.nii or .nii.gz)")
    volumes = [read_volume(source, max_pixels) for source in sources]
    check_same_grid(volumes, sources)
    return sources, volumes


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@functools.lru_cache(maxsize=4)
def _worker_model(spec: ModelSpec, count: int, device: str, thread: int) -> nn.Module:
    """The model, built once per worker (process and thread) and device."""
    from fusevis.models.specs import build_model

    del thread  # in the key only: threads of one process do not share a module
    return build_model(spec, count).to(device).eval()


def compute_slice(
    model: nn.Module, image_set: ImageSet, settings: VolumeSettings, device: str
) -> dict[str, np.ndarray]:
    """One slice's 2-D results, as the 2-D command computes them (display orientation).

    ``fuse``: ``fused`` as ``fusevis fuse`` writes it. ``guidance``: ``fused`` and
    ``guidance_k`` (channels summed), and with influence ``share_k``, as
    ``fusevis guidance`` computes them (without its cache).
    """
    if settings.mode == "fuse":
        from fusevis.models.inference import fuse

        return {"fused": fuse(model, image_set.stack(), device)}
    from fusevis.models.inference import as_tensors
    from fusevis.saliency.maps import compute_maps

    tensors = as_tensors(image_set.stack(), device)
    maps = compute_maps(
        model,
        tensors,
        influence=settings.influence,
        output_channel=settings.channel,
        tile=settings.tile,
    )
    results = {"fused": maps.fused}
    for k in range(len(maps.guidance)):
        results[f"guidance_{k}"] = maps.guidance_2d(k)
    for k, share in enumerate(maps.share or []):
        results[f"share_{k}"] = share
    return {key: np.asarray(value, np.float32) for key, value in results.items()}


def _to_volume_plane(result: np.ndarray, rotated: bool) -> np.ndarray:
    """Undo the anterior-up turn of :func:`volume_slice` (a 2-D result back to the volume)."""
    return np.ascontiguousarray(np.rot90(result, k=-1) if rotated else result)


def run_slice(job: SliceJob) -> int:
    """Compute one slice on a worker and store its results; returns the slice index."""
    import torch

    from fusevis.io.writers import atomic_output

    settings = job.settings
    torch.set_num_threads(max(1, settings.threads))
    device = _resolve_device(settings.device)
    image_set = slice_image_set(job.planes, job.labels, settings.color, settings.normalize)
    try:
        model = _worker_model(settings.spec, len(job.planes), device, threading.get_ident())
        results = compute_slice(model, image_set, settings, device)
    except FuseVisError as error:  # as the base class, which pickles back to the client
        raise FuseVisError(f"slice {job.index}: {error}") from None
    with atomic_output(slice_file(Path(job.store), job.index)) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(
                handle, **{key: _to_volume_plane(v, job.rotated) for key, v in results.items()}
            )
    return job.index


def _ours(name: str) -> bool:
    """Whether a file in a slice folder is one a volume run writes (temporaries included)."""
    return name == SETTINGS or name.startswith(".") or bool(re.fullmatch(r"slice\d{4,}\.npz", name))


def open_store(store: Path, fingerprint: dict[str, object]) -> None:
    """Create the slice folder, or keep one of the same run; another run's is discarded.

    A folder at that place holding anything a volume run does not write is refused
    (:class:`InputError`) rather than deleted.
    """
    settings = store / SETTINGS
    if store.exists():
        foreign = [entry.name for entry in store.iterdir() if not _ours(entry.name)]
        if foreign:
            raise InputError(
                store, f"holds files FuseVis did not write ({foreign[0]}, ...); not overwritten"
            )
        try:
            same = json.loads(settings.read_text()) == json.loads(json.dumps(fingerprint))
        except (OSError, ValueError):
            same = False
        if same:
            return
        warnings.warn(
            f"{store}: slices of a run with other inputs or settings; starting afresh",
            VolumeWarning,
            stacklevel=2,
        )
        shutil.rmtree(store)
    store.mkdir(parents=True)
    settings.write_text(json.dumps(fingerprint, indent=1))


def check_model(
    settings: VolumeSettings, sources: Sequence[Path], volumes: Sequence[RawArray]
) -> None:
    """Build the model once here, so that a bad model or weights fail before any slice."""
    from fusevis.models.inference import check_input_count
    from fusevis.models.specs import build_model, check_loaded

    network = build_model(settings.spec, len(volumes))
    check_input_count(network, len(volumes))
    for index in _middle_out(volumes[0].pixels.shape[settings.axis]):
        planes = [
            volume_slice(v, s, index, settings.axis).pixels
            for v, s in zip(volumes, sources, strict=True)
        ]
        if blank_input(planes) is None:
            labels = [slice_label(s, settings.axis, index) for s in sources]
            loaded = slice_image_set(planes, labels, settings.color, settings.normalize)
            check_loaded({settings.spec.label: network}, loaded.images)
            return


def _middle_out(depth: int) -> list[int]:
    """Slice indices from the middle outwards (the first with tissue is found soon)."""
    middle = depth // 2
    return sorted(range(depth), key=lambda i: (abs(i - middle), i))


@dataclass
class VolumePlan:
    """A checked volume run: its inputs read, its store open, the slices left to compute."""

    volumes: list[RawArray]
    store: Path
    axis: int
    chosen: list[int]
    jobs: list[SliceJob]
    result: VolumeResult

    def run(
        self,
        workers: int = 2,
        scheduler: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        processes: bool = True,
        assemble: bool = True,
    ) -> VolumeResult:
        """Compute the missing slices on Dask, then (``assemble``) write the volumes.

        See :func:`run_volume` for the parameters.
        """
        total = len(self.chosen)
        done = total - len(self.jobs)
        if progress is not None:
            progress(done, total)
        if self.jobs:
            from distributed import as_completed

            with dask_client(workers, scheduler, processes) as client:
                futures = client.map(run_slice, self.jobs, pure=False)  # type: ignore[attr-defined]
                for future in as_completed(futures):
                    self.result.computed.append(future.result())
                    done += 1
                    if progress is not None:
                        progress(done, total)
        self.result.computed.sort()
        if assemble:
            assemble_volumes(self.store, self.result.paths, self.volumes[0], self.axis, self.chosen)
            shutil.rmtree(self.store, ignore_errors=True)
        return self.result


def plan_volume(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    settings: VolumeSettings,
    indices: Sequence[int] | None = None,
    max_pixels: int | None = None,
) -> VolumePlan:
    """Read and check the volumes and the model, open the slice store, list the slices.

    Every one-line error (inputs that are not NIfTI or not on one grid, a model that does
    not fit) is raised here, before any slice is computed.
    """
    sources, volumes = read_volumes(paths, max_pixels)
    axis = settings.axis
    if axis not in (0, 1, 2):
        raise InputError(None, f"slice axis must be 0, 1 or 2, got {axis}")
    depth = volumes[0].pixels.shape[axis]
    chosen = list(range(depth)) if indices is None else sorted(set(indices))
    if any(not 0 <= i < depth for i in chosen):
        raise InputError(sources[0], f"slices outside the volume (axis {axis} has {depth})")
    check_model(settings, sources, volumes)
    store = store_path(output)
    open_store(store, settings.fingerprint(sources))
    guidance = settings.mode == "guidance"
    result = VolumeResult(
        volume_output_paths(output, len(sources), guidance, guidance and settings.influence)
    )
    jobs = []
    for index in chosen:
        planes = tuple(
            volume_slice(v, s, index, axis).pixels for v, s in zip(volumes, sources, strict=True)
        )
        if blank_input(planes) is not None:
            result.background.append(index)
        elif slice_file(store, index).is_file():
            result.reused.append(index)
        else:
            labels = tuple(slice_label(s, axis, index) for s in sources)
            rotated = volumes[0].rotate_slices
            jobs.append(SliceJob(settings, index, planes, labels, str(store), rotated))
    return VolumePlan(volumes, store, axis, chosen, jobs, result)


def run_volume(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    settings: VolumeSettings,
    workers: int = 2,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    indices: Sequence[int] | None = None,
    max_pixels: int | None = None,
    processes: bool = True,
    assemble: bool = True,
) -> VolumeResult:
    """Compute every slice of registered NIfTI volumes and write the result volumes.

    Parameters
    ----------
    paths : sequence of path-like
        The input volumes, input 1 first, on one grid (same shape and affine).
    output : path-like
        ``out.nii.gz`` (or ``.nii``); the files written are those of
        :func:`fusevis.io.volumes.volume_output_paths`; the slices are kept in
        ``out.slices/`` until the volumes are written.
    settings : VolumeSettings
        The model and how each slice is computed.
    workers, scheduler :
        A local cluster of ``workers`` processes, or an existing ``tcp://HOST:PORT``.
    progress : callable(done, total), optional
        Called as slices finish (slices stored by an earlier run count as done).
    indices : sequence of int, optional
        Compute only these slices (the others are zero in the output); default all.
    max_pixels : int, optional
        The most voxels an input may announce (see :func:`fusevis.io.limits.max_pixels_from`).
    processes : bool
        Worker processes (default) or threads of this process (quick to start, for tests;
        use one worker there: the saliency engine is not safe in concurrent threads).
    assemble : bool
        Write the volumes and remove the slice folder at the end (False: keep the slices,
        as an interrupted run would).
    """
    plan = plan_volume(paths, output, settings, indices, max_pixels)
    return plan.run(workers, scheduler, progress, processes, assemble)


def assemble_volumes(
    store: Path, paths: dict[str, Path], grid: RawArray, axis: int, indices: Sequence[int]
) -> None:
    """Write each result volume from the stored slices (zeros where no slice is stored)."""
    stored = [i for i in indices if slice_file(store, i).is_file()]
    for key, path in paths.items():
        volume = np.zeros(grid.pixels.shape, np.float32)
        for index in stored:
            with np.load(slice_file(store, index)) as arrays:
                if key not in arrays:
                    raise FuseVisError(f"{slice_file(store, index)}: holds no {key!r}")
                plane = arrays[key]
            where = [slice(None)] * 3
            where[axis] = index  # type: ignore[call-overload]
            volume[tuple(where)] = plane
        save_volume(volume, path, grid)
