"""The field analysis of a model at one input size, remembered on disk.

Tracing, measuring and verifying a receptive field (:func:`~fusevis.saliency.analyse_locality`)
costs seconds to a minute; its result depends only on the model (its class, structure and
weights), the inputs' shapes, dtype and device, the explained output and the options. It is
stored as a small JSON file ``<root>/fields/<key>.json`` in the map cache's folder
(``$FUSEVIS_CACHE``, default ``~/.cache/fusevis``), written to a temporary file, fsynced and
renamed into place. Whatever is read is checked (size, types, values); an entry that fails
is a miss, recomputed and replaced. A folder that cannot be written is skipped silently: the
analysis is only not remembered.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusevis.saliency.field import ReceptiveField

VERSION = 2  # bump when the analysis changes what it finds
MAX_ENTRY = 1 << 16  # bytes an entry may hold


def default_root() -> Path:
    """The map cache's folder (``$FUSEVIS_CACHE`` or ``~/.cache/fusevis``)."""
    from fusevis.saliency.cache import default_cache_root

    return default_cache_root()


def _structure(model: nn.Module, count: int) -> str:
    """The model's structure: its traced code where it traces, its source otherwise."""
    from fusevis.saliency.extent import TraceFailure
    from fusevis.saliency.graph import graph_of

    try:
        return graph_of(model, count).module.code
    except TraceFailure:
        try:
            return inspect.getsource(type(model))
        except (OSError, TypeError):
            return ""


def analysis_key(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    channel: object,
    override: ReceptiveField | None,
    verify: bool,
) -> str:
    """SHA-256 over what the analysis depends on: the model and the inputs' shapes, not values."""
    from fusevis.models.weights import tensor_digest

    digest = hashlib.sha256()
    cls = type(model)
    parts = [
        f"fields v{VERSION}",
        f"{cls.__module__}.{cls.__qualname__}",
        repr(model),
        _structure(model, len(inputs)),
        tensor_digest(model.state_dict()),
        json.dumps([[list(x.shape), str(x.dtype), x.device.type] for x in inputs]),
        repr(channel),
        repr(override),
        repr(bool(verify)),
    ]
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:40]


def _field_to_json(field: ReceptiveField) -> list:
    return [field.row_lo, field.row_hi, field.col_lo, field.col_hi, list(field.stride),
            field.source, field.crops]  # fmt: skip


def _field_from_json(value: Any) -> ReceptiveField:
    if not (isinstance(value, list) and len(value) == 7):
        raise ValueError("a field is a list of 7 entries")
    *offsets, stride, source, crops = value
    if not all(type(v) is int and abs(v) < 1 << 20 for v in offsets):
        raise ValueError("field offsets must be integers")
    if not (
        isinstance(stride, list)
        and len(stride) == 2
        and all(type(s) is int and 0 < s < 1 << 16 for s in stride)
    ):
        raise ValueError("a field's stride is two positive integers")
    if source not in ("traced", "measured", "user") or type(crops) is not bool:
        raise ValueError("unknown field source")
    if offsets[0] > offsets[1] or offsets[2] > offsets[3]:
        raise ValueError("a field's offsets are out of order")
    return ReceptiveField(*offsets, (stride[0], stride[1]), source, crops)


def load(key: str, root: Path | None = None) -> Any:
    """The :class:`~fusevis.saliency.Locality` stored under ``key``, or None (absent, unusable)."""
    from fusevis.saliency.locality import Locality

    path = (root or default_root()) / "fields" / f"{key}.json"
    try:
        status = os.lstat(path)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_ENTRY:
            return None
        with open(path, "rb") as handle:
            data = json.loads(handle.read(MAX_ENTRY + 1))
        if not isinstance(data, dict) or data.get("key") != key or data.get("version") != VERSION:
            return None
        local, how, error = data["local"], data["how"], data["verified_error"]
        if type(local) is not bool or not isinstance(how, str) or len(how) > 4096:
            return None
        if error is not None and not (isinstance(error, (int, float)) and 0 <= error < 1e300):
            return None
        field = None if data["field"] is None else _field_from_json(data["field"])
        per_input = [_field_from_json(f) for f in data["per_input"]]
        if local != (field is not None) or len(per_input) > 1024:
            return None
        return Locality(local, field, per_input, how, error)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def store(key: str, locality: Any, root: Path | None = None) -> Path | None:
    """Write ``locality`` under ``key`` (temporary file, fsync, rename); None where it cannot."""
    from fusevis.io.writers import write_atomically

    data = {
        "version": VERSION,
        "key": key,
        "local": bool(locality.local),
        "field": None if locality.field is None else _field_to_json(locality.field),
        "per_input": [_field_to_json(f) for f in locality.per_input],
        "how": locality.how,
        "verified_error": locality.verified_error,
    }
    folder = (root or default_root()) / "fields"
    path = folder / f"{key}.json"
    text = json.dumps(data).encode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda handle: handle.write(text))
    except OSError:
        return None
    return path
