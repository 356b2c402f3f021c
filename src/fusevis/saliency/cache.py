"""On-disk cache of saliency maps (Zarr), written durably and resumable.

A finished result lives in ``<root>/<key>.zarr``; the key hashes the model's class and
weights, the inputs and the method options, so a change in any of them misses the cache.
The store is written under a temporary name, fsynced and renamed into place, so a reader
never sees half a result. While a computation runs, its partial arrays and the list of
finished units are checkpointed to ``<key>.partial.npz`` (also fsynced and renamed); a
rerun after an interruption resumes from there and deletes it when done.

The cache never blocks a run: whatever is read is checked (arrays present, shapes and
dtypes as the inputs imply, finite values, a SHA-256 of the stored arrays, regular files
only, sizes bounded before reading); an entry or checkpoint that fails is a miss, recomputed
and replaced, with one :class:`CacheWarning`. A cache folder that cannot be written gives
one warning and the run goes on without storing anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusevis.errors import InputError
from fusevis.io.writers import (
    check_writable,
    os_problem,
    replace_durably,
    temporary_sibling,
    write_atomically,
)
from fusevis.models.weights import tensor_digest
from fusevis.saliency.locality import Locality
from fusevis.saliency.maps import SaliencyMaps, compute_maps
from fusevis.saliency.tensors import as_input_tuple

Layout = dict[str, tuple[tuple[int, ...], np.dtype]]
"""Array name → (shape, dtype) that a result for given inputs must have."""

MAX_UNITS = 1 << 24  # finished (tile, colour) units a checkpoint may list
_HEADER_SLACK = 1 << 16  # bytes of .npy header and Zarr metadata allowed beyond the data


class CacheWarning(UserWarning):
    """The cache could not be used as it is (corrupt entry, read-only folder); run goes on."""


class CorruptEntry(ValueError):
    """What is stored is not a valid result for the inputs (the reason is the message)."""


def default_cache_root() -> Path:
    """``$FUSEVIS_CACHE`` or ``~/.cache/fusevis``."""
    configured = os.environ.get("FUSEVIS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "fusevis"


def cache_key(model: nn.Module, inputs: Sequence[torch.Tensor], method: dict) -> str:
    """SHA-256 over the model class, its weights, the inputs and the method options."""
    digest = hashlib.sha256()
    digest.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    digest.update(tensor_digest(model.state_dict()).encode())
    for x in inputs:
        tensor = x.detach().cpu().contiguous()
        digest.update(f"{tuple(tensor.shape)}|{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps(method, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def expected_layout(inputs: Sequence[torch.Tensor], influence: bool) -> Layout:
    """The arrays :func:`compute_maps` returns for ``inputs`` ((1, C, H, W) each)."""
    shape = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
    dtype = np.dtype(np.float64 if inputs[0].dtype == torch.float64 else np.float32)
    layout: Layout = {"fused": (shape, dtype)}
    for k, x in enumerate(inputs):
        layout[f"guidance_{k}"] = ((int(x.shape[1]), *shape), dtype)
        if influence:
            layout[f"influence_{k}"] = (shape, dtype)
    return layout


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def _check_array(name: str, shape: tuple, dtype: np.dtype, layout: Layout | None) -> int:
    """Check a stored array's declared shape and dtype (before reading); return its bytes."""
    if layout is not None:
        want_shape, want_dtype = layout[name]
        if tuple(shape) != tuple(want_shape) or np.dtype(dtype) != want_dtype:
            raise CorruptEntry(
                f"{name} is {np.dtype(dtype)} {tuple(shape)}, expected "
                f"{want_dtype} {tuple(want_shape)}"
            )
    elif np.dtype(dtype).kind != "f" or len(shape) not in (2, 3):
        raise CorruptEntry(f"{name} is {np.dtype(dtype)} {tuple(shape)}, not a float map")
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise CorruptEntry(f"{name} holds NaN or infinite values")


def _read_npy_member(
    archive: zipfile.ZipFile, name: str, layout: Layout | None, done: bool = False
) -> np.ndarray:
    """One ``.npy`` member of a checkpoint, its header and size checked before reading."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise CorruptEntry(f"{name} is missing") from None
    with archive.open(info) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    if done:
        if np.dtype(dtype).kind not in "iu" or len(shape) != 2 or shape[1] != 2:
            raise CorruptEntry(f"finished units are {np.dtype(dtype)} {shape}, not (n, 2) ints")
        if shape[0] > MAX_UNITS:
            raise CorruptEntry(f"{shape[0]} finished units listed (limit {MAX_UNITS})")
        size = int(shape[0]) * 2 * np.dtype(dtype).itemsize
    else:
        size = _check_array(name, shape, dtype, layout)
    if info.file_size > size + _HEADER_SLACK:
        raise CorruptEntry(f"{name} takes {info.file_size} bytes for {size} bytes of data")
    with archive.open(info) as handle:
        array = np.lib.format.read_array(handle, allow_pickle=False)
        if handle.read(1):  # also reaches the end, where zipfile checks the CRC
            raise CorruptEntry(f"{name} has trailing bytes")
    return array


def read_checkpoint(
    path: Path, layout: Layout | None = None
) -> tuple[dict[str, np.ndarray], set[tuple[int, int]]]:
    """Arrays and finished units of a checkpoint file; :class:`CorruptEntry` if unusable.

    With ``layout`` exactly those arrays are read and must have its shapes and dtypes;
    without, every float array in the file is read. Values must be finite and the units
    non-negative pairs.
    """
    if not path.is_file():
        raise CorruptEntry("is not a regular file")
    if path.stat().st_size == 0:
        raise CorruptEntry("is empty")
    try:
        with zipfile.ZipFile(path) as archive:
            if layout is not None:
                names = list(layout)
            else:
                names = [
                    member[: -len(".npy")]
                    for member in archive.namelist()
                    if member.endswith(".npy") and member != "__done__.npy"
                ]
            arrays = {name: _read_npy_member(archive, name, layout) for name in names}
            finished = _read_npy_member(archive, "__done__", None, done=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as error:
        if isinstance(error, CorruptEntry):
            raise
        raise CorruptEntry(str(error) or type(error).__name__) from None
    for name, array in arrays.items():
        _check_finite(name, array)
    if finished.size and (finished.min() < 0 or finished.max() >= 1 << 31):
        raise CorruptEntry("finished units out of range")
    return arrays, {(int(a), int(b)) for a, b in finished}


def _problem(error: BaseException) -> str:
    """One line saying what went wrong."""
    if isinstance(error, OSError):
        return os_problem(error)
    if isinstance(error, InputError):
        return error.problem
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class _Reporter:
    """Warns once per problem and remembers whether the cache folder can be written."""

    def __init__(self) -> None:
        self.writable: bool | None = None  # None: not tried yet
        self._said: set[str] = set()

    def warn(self, message: str, once: str | None = None) -> None:
        tag = once or message
        if tag not in self._said:
            self._said.add(tag)
            warnings.warn(message, CacheWarning, stacklevel=4)

    def corrupt(self, path: Path, problem: str) -> None:
        self.warn(f"cache: {path} is unusable ({problem}); recomputing it")

    def unwritable(self, where: Path, problem: str) -> None:
        self.writable = False
        self.warn(
            f"cache: cannot write in {where} ({problem}); going on without the cache",
            once="unwritable",
        )


class NpzCheckpoint:
    """Partial results in one ``.npz`` file, replaced durably on every save.

    Parameters
    ----------
    path : Path
        The checkpoint file.
    layout : dict, optional
        The arrays a checkpoint must hold (see :func:`expected_layout`); a file that
        differs is ignored (and replaced by the next save).
    """

    def __init__(
        self, path: Path, layout: Layout | None = None, reporter: _Reporter | None = None
    ) -> None:
        self.path = path
        self.layout = layout
        self.reporter = reporter or _Reporter()

    def load(self) -> tuple[dict[str, np.ndarray], set[tuple[int, int]]] | None:
        """Arrays and finished units saved before, or None (absent or unusable)."""
        if not (self.path.is_symlink() or self.path.exists()):
            return None
        try:
            return read_checkpoint(self.path, self.layout)
        except Exception as error:  # noqa: BLE001 - any failure to read is a miss
            self.reporter.corrupt(self.path, _problem(error))
            return None

    def save(self, arrays: dict[str, np.ndarray], done: set[tuple[int, int]]) -> None:
        """Write the arrays and finished units to a temporary file, fsync, rename it.

        A failure to write gives one warning and turns saving off (the run goes on).
        """
        if self.reporter.writable is False:
            return
        finished = np.array(sorted(done), dtype=np.int64).reshape(-1, 2)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(
                self.path, lambda handle: np.savez(handle, __done__=finished, **arrays)
            )
        except OSError as error:
            self.reporter.unwritable(self.path.parent, _problem(error))

    def clear(self) -> None:
        """Delete the checkpoint (nothing happens where that cannot be done)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


class StreamingCheckpoint:
    """A checkpoint that also hands a copy of every partial result to a callback.

    Lets a viewer show maps filling in while they are computed; saving is delegated.
    """

    def __init__(
        self, inner: NpzCheckpoint, publish: Callable[[dict[str, np.ndarray]], None]
    ) -> None:
        self.inner = inner
        self.publish = publish

    def load(self) -> tuple[dict[str, np.ndarray], set[tuple[int, int]]] | None:
        """What the wrapped checkpoint holds (also published, so a resume shows at once)."""
        restored = self.inner.load()
        if restored is not None:
            self.publish({k: v.copy() for k, v in restored[0].items()})
        return restored

    def save(self, arrays: dict[str, np.ndarray], done: set[tuple[int, int]]) -> None:
        """Save through the wrapped checkpoint and publish a copy."""
        self.inner.save(arrays, done)
        self.publish({k: v.copy() for k, v in arrays.items()})

    def clear(self) -> None:
        """Delete the wrapped checkpoint."""
        self.inner.clear()


def _check_tree(path: Path, limit: int | None) -> None:
    """A store holds only folders and regular files (no links, FIFOs) within ``limit`` bytes."""
    total = 0
    for folder, folders, files in os.walk(path):
        for name in folders + files:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise CorruptEntry(f"{os.path.join(folder, name)} is not a regular file")
            total += os.lstat(os.path.join(folder, name)).st_size
    if limit is not None and total > limit:
        raise CorruptEntry(f"holds {total} bytes, more than its arrays need")


def _result_arrays(maps: SaliencyMaps) -> dict[str, np.ndarray]:
    arrays = {"fused": np.ascontiguousarray(maps.fused)}
    for k, guidance in enumerate(maps.guidance):
        arrays[f"guidance_{k}"] = np.ascontiguousarray(guidance)
    for k, influence in enumerate(maps.influence or []):
        arrays[f"influence_{k}"] = np.ascontiguousarray(influence)
    return arrays


class MapCache:
    """A folder of finished saliency results, one Zarr store per key.

    Reading works in a read-only folder; writing is tried once (:meth:`writable`) and,
    where it fails, turned off with one :class:`CacheWarning`.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self._reporter = _Reporter()

    def store_path(self, key: str) -> Path:
        """Where the finished result for ``key`` lives."""
        return self.root / f"{key}.zarr"

    def checkpoint(self, key: str, layout: Layout | None = None) -> NpzCheckpoint:
        """The partial-result checkpoint for ``key`` (checked against ``layout``)."""
        return NpzCheckpoint(self.root / f"{key}.partial.npz", layout, self._reporter)

    def writable(self) -> bool:
        """Whether results can be stored: the folder is created and a file written there.

        Tried once; a failure gives one warning and the cache is then read-only.
        """
        if self._reporter.writable is None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                check_writable(self.root, "folder")
            except (OSError, InputError) as error:
                self._reporter.unwritable(self.root, _problem(error))
            else:
                self._reporter.writable = True
        return bool(self._reporter.writable)

    def get(self, key: str, layout: Layout | None = None) -> SaliencyMaps | None:
        """The cached result, or None (absent, or unusable: then one warning).

        With ``layout`` the stored arrays must have exactly its names, shapes and dtypes.
        """
        path = self.store_path(key)
        if not (path.is_symlink() or path.exists()):
            return None
        try:
            return self._read(path, layout)
        except Exception as error:  # noqa: BLE001 - any failure to read is a miss
            self._reporter.corrupt(path, _problem(error))
            return None

    def _read(self, path: Path, layout: Layout | None) -> SaliencyMaps:
        import zarr

        if path.is_symlink() or not path.is_dir():
            raise CorruptEntry("not a folder")
        limit = None
        if layout is not None:
            data = sum(
                _check_array(n, shape, dtype, layout) for n, (shape, dtype) in layout.items()
            )
            limit = data + _HEADER_SLACK * (len(layout) + 1)
        _check_tree(path, limit)
        group = zarr.open_group(str(path), mode="r")
        attrs = group.attrs.asdict()
        count, digest = attrs.get("inputs"), attrs.get("sha256")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 64:
            raise CorruptEntry(f"input count {count!r}")
        if not isinstance(digest, str):
            raise CorruptEntry("no checksum (written by an older FuseVis?)")
        present = set(group.array_keys())
        if layout is not None:
            names = list(layout)
        else:
            names = ["fused", *(f"guidance_{k}" for k in range(count))]
            names += [f"influence_{k}" for k in range(count) if f"influence_{k}" in present]
        if len([n for n in names if n.startswith("guidance_")]) != count:
            raise CorruptEntry(f"input count {count} differs from the expected")
        arrays = {}
        for name in names:
            if name not in present:
                raise CorruptEntry(f"{name} is missing")
            node = group[name]
            _check_array(name, node.shape, node.dtype, layout)
            arrays[name] = np.asarray(node[...])
            _check_finite(name, arrays[name])
        if arrays_digest(arrays) != digest:
            raise CorruptEntry("the arrays do not match their checksum")
        return SaliencyMaps(
            fused=arrays["fused"],
            guidance=[arrays[f"guidance_{k}"] for k in range(count)],
            influence=[arrays[f"influence_{k}"] for k in range(count)]
            if "influence_0" in arrays
            else None,
            locality=None,
            method=str(attrs.get("method", "")) + " (from cache)",
        )

    def put(self, key: str, maps: SaliencyMaps) -> Path | None:
        """Store ``maps`` under ``key`` durably (temporary store, fsync, rename).

        Replaces what is there (an unusable entry is recomputed and replaced). Returns the
        store's path, or None where the cache cannot be written (one warning).
        """
        if not self.writable():
            return None
        import zarr

        final = self.store_path(key)
        temporary = temporary_sibling(final)
        arrays = _result_arrays(maps)
        try:
            group = zarr.open_group(str(temporary), mode="w")
            for name, array in arrays.items():
                group.create_array(name, data=array)
            group.attrs["inputs"] = len(maps.guidance)
            group.attrs["method"] = maps.method
            group.attrs["sha256"] = arrays_digest(arrays)
            replace_durably(temporary, final)
        except Exception as error:  # noqa: BLE001 - a cache failure never loses the result
            self._reporter.unwritable(self.root, _problem(error))
            shutil.rmtree(temporary, ignore_errors=True)
            return None
        return final


def cached_maps(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    influence: bool = False,
    cache: MapCache | None = None,
    locality: Locality | None = None,
    on_partial: Callable[[dict[str, np.ndarray]], None] | None = None,
    **options: object,
) -> SaliencyMaps:
    """:func:`compute_maps` through a :class:`MapCache`: reuse, resume, then store.

    ``on_partial`` receives copies of the partial arrays each time they are checkpointed.
    """
    items = as_input_tuple(inputs)
    cache = cache or MapCache()
    method = {
        "influence": influence,
        "output_channel": options.get("output_channel", 0),
        "receptive_field": options.get("receptive_field"),
        "version": 1,
    }
    key = cache_key(model, items, method)
    layout = expected_layout(items, influence)
    found = cache.get(key, layout)
    if found is not None:
        return found  # always exact: estimates are never stored
    if options.get("estimate"):  # an estimate is neither checkpointed nor stored
        maps = compute_maps(model, items, influence=influence, locality=locality, **options)  # type: ignore[arg-type]
        if maps.estimate:
            return maps
        cache.put(key, maps)  # the model needed no estimate: the maps are exact
        maps.extra["cache_key"] = key
        return maps
    cache.writable()  # tried before the work: a read-only cache warns at once
    checkpoint: NpzCheckpoint | StreamingCheckpoint = cache.checkpoint(key, layout)
    if on_partial is not None:
        checkpoint = StreamingCheckpoint(checkpoint, on_partial)
    maps = compute_maps(
        model, items, influence=influence, checkpoint=checkpoint, locality=locality, **options
    )  # type: ignore[arg-type]
    cache.put(key, maps)
    checkpoint.clear()
    maps.extra["cache_key"] = key
    return maps
