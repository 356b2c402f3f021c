"""Binary websocket frames: a JSON header followed by little-endian float32 arrays.

Layout: ``uint32 n`` (little-endian), ``n`` bytes of UTF-8 JSON (padded with spaces so the
arrays start at a multiple of 4), then the arrays back to back. The header's ``arrays``
entry lists ``{"name", "shape", "offset"}`` with offsets counted from the end of the
header, so the browser can view each array as a ``Float32Array`` without copying.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

_LENGTH = struct.Struct("<I")


def encode_frame(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """Pack a header and named arrays (sent as float32) into one binary frame."""
    specs, chunks, offset = [], [], 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array, dtype="<f4")
        specs.append({"name": name, "shape": list(data.shape), "offset": offset})
        chunks.append(data.tobytes())
        offset += data.nbytes
    head = json.dumps({**header, "arrays": specs}, allow_nan=False).encode()
    head += b" " * ((-(_LENGTH.size + len(head))) % 4)
    return _LENGTH.pack(len(head)) + head + b"".join(chunks)


def decode_frame(frame: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Unpack a frame made by :func:`encode_frame` (used by tests and benchmarks)."""
    (length,) = _LENGTH.unpack_from(frame)
    header = json.loads(frame[_LENGTH.size : _LENGTH.size + length])
    base = _LENGTH.size + length
    arrays = {}
    for spec in header.pop("arrays"):
        count = int(np.prod(spec["shape"], dtype=np.int64))
        start = base + spec["offset"]
        arrays[spec["name"]] = np.frombuffer(frame, "<f4", count, start).reshape(spec["shape"])
    return header, arrays
