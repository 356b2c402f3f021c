"""On-disk cache of saliency maps (Zarr), written atomically and resumable.

A finished result lives in ``<root>/<key>.zarr``; the key hashes the model's class and
weights, the inputs and the method options, so a change in any of them misses the cache.
The store is written under a temporary name and renamed into place, so a reader never
sees half a result. While a computation runs, its partial arrays and the list of finished
units are checkpointed to ``<key>.partial.npz`` (also written atomically); a rerun after
an interruption resumes from there and deletes it when done.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusevis.models.weights import tensor_digest
from fusevis.saliency.locality import Locality
from fusevis.saliency.maps import SaliencyMaps, compute_maps
from fusevis.saliency.tensors import as_input_tuple


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


class NpzCheckpoint:
    """Partial results in one ``.npz`` file, replaced atomically on every save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[dict[str, np.ndarray], set[tuple[int, int]]] | None:
        """Arrays and finished units saved before, or None."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path) as data:
                arrays = {k: data[k] for k in data.files if k != "__done__"}
                done = {(int(a), int(b)) for a, b in data["__done__"]}
        except (OSError, ValueError, KeyError):
            return None  # unreadable leftovers: start again
        return arrays, done

    def save(self, arrays: dict[str, np.ndarray], done: set[tuple[int, int]]) -> None:
        """Write the arrays and finished units to a temporary file, then rename it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + f".{os.getpid()}.tmp.npz")
        finished = np.array(sorted(done), dtype=np.int64).reshape(-1, 2)
        np.savez(temporary, __done__=finished, **arrays)
        os.replace(temporary, self.path)

    def clear(self) -> None:
        """Delete the checkpoint."""
        self.path.unlink(missing_ok=True)


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


class MapCache:
    """A folder of finished saliency results, one Zarr store per key."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def store_path(self, key: str) -> Path:
        """Where the finished result for ``key`` lives."""
        return self.root / f"{key}.zarr"

    def checkpoint(self, key: str) -> NpzCheckpoint:
        """The partial-result checkpoint for ``key``."""
        return NpzCheckpoint(self.root / f"{key}.partial.npz")

    def get(self, key: str) -> SaliencyMaps | None:
        """The cached result, or None."""
        path = self.store_path(key)
        if not path.is_dir():
            return None
        import zarr

        group = zarr.open_group(str(path), mode="r")
        count = int(group.attrs["inputs"])
        names = set(group.array_keys())
        return SaliencyMaps(
            fused=np.asarray(group["fused"][:]),
            guidance=[np.asarray(group[f"guidance_{k}"][:]) for k in range(count)],
            influence=[np.asarray(group[f"influence_{k}"][:]) for k in range(count)]
            if f"influence_{0}" in names
            else None,
            locality=None,
            method=str(group.attrs.get("method", "")) + " (from cache)",
        )

    def put(self, key: str, maps: SaliencyMaps) -> Path:
        """Write ``maps`` under ``key`` atomically (temporary store, then rename)."""
        import zarr

        self.root.mkdir(parents=True, exist_ok=True)
        final = self.store_path(key)
        temporary = self.root / f"{key}.{os.getpid()}.tmp.zarr"
        shutil.rmtree(temporary, ignore_errors=True)
        group = zarr.open_group(str(temporary), mode="w")
        group.create_array("fused", data=np.ascontiguousarray(maps.fused))
        for k, guidance in enumerate(maps.guidance):
            group.create_array(f"guidance_{k}", data=np.ascontiguousarray(guidance))
        for k, influence in enumerate(maps.influence or []):
            group.create_array(f"influence_{k}", data=np.ascontiguousarray(influence))
        group.attrs["inputs"] = len(maps.guidance)
        group.attrs["method"] = maps.method
        if final.exists():
            shutil.rmtree(temporary)
            return final
        os.replace(temporary, final)
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
    found = cache.get(key)
    if found is not None:
        return found
    checkpoint: NpzCheckpoint | StreamingCheckpoint = cache.checkpoint(key)
    if on_partial is not None:
        checkpoint = StreamingCheckpoint(checkpoint, on_partial)
    maps = compute_maps(
        model, items, influence=influence, checkpoint=checkpoint, locality=locality, **options
    )  # type: ignore[arg-type]
    cache.put(key, maps)
    checkpoint.clear()
    maps.extra["cache_key"] = key
    return maps
