"""Hostile image files in real formats, crafted in a few kilobytes: headers that claim far
more pixels than the file's size suggests, backed by compressed zeros.

The deflate streams are built without compressing the zeros they stand for: one megabyte
of zeros is compressed once and its block repeated (each block ends with a full flush, so
it does not refer back), and the Adler-32 of n zero bytes is ``(n mod 65521) << 16 | 1``.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

CHUNK = 1 << 20


def deflate_zeros(size: int) -> bytes:
    """A zlib stream that inflates to ``size`` zero bytes (about size / 1000 bytes long)."""
    full, rest = divmod(size, CHUNK)
    if full < 2:
        return zlib.compress(bytes(size), 9)
    compressor = zlib.compressobj(9)
    head = compressor.compress(bytes(CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(bytes(rest)) + compressor.flush()
    checksum = struct.pack(">I", ((size % 65521) << 16) | 1)
    return head + block * (full - 1) + tail[:-4] + checksum


def png_claiming(path: Path, width: int, height: int) -> Path:
    """An 8-bit grey PNG of width × height zero pixels, as a real, complete file."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data))
        return struct.pack(">I", len(data)) + tag + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = deflate_zeros(height * (width + 1))  # a filter byte (0) and the row's zeros
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def tiff_claiming(
    path: Path,
    width: int,
    height: int,
    bits: int = 8,
    rows_per_strip: int | None = None,
    tile: int | None = None,
    inflate_to: int | None = None,
) -> Path:
    """A grey, deflate-compressed baseline TIFF whose strips (or tiles) are zeros.

    Every strip or tile points at the same compressed block, so the file stays small
    whatever size it claims. ``inflate_to`` makes that block inflate to so many bytes
    instead of the strip's or tile's own size.
    """
    item = bits // 8
    if tile is not None:
        segment = tile * tile * item
        count = -(-width // tile) * -(-height // tile)
        layout = [(322, 4, 1, tile), (323, 4, 1, tile)]
        offsets_tag, counts_tag = 324, 325
    else:
        rows = rows_per_strip or height
        segment = width * rows * item
        count = -(-height // rows)
        layout = [(278, 4, 1, rows)]
        offsets_tag, counts_tag = 273, 279
    block = deflate_zeros(inflate_to or segment)
    offsets_at = 8 + len(block)
    counts_at = offsets_at + 4 * count
    ifd_at = counts_at + 4 * count
    ifd_at += ifd_at % 2
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 8)]
    tags += [(262, 3, 1, 1), (277, 3, 1, 1), *layout]
    if count == 1:
        tags += [(offsets_tag, 4, 1, 8), (counts_tag, 4, 1, len(block))]
    else:
        tags += [(offsets_tag, 4, count, offsets_at), (counts_tag, 4, count, counts_at)]
    entries = b"".join(
        struct.pack("<HHIHH" if kind == 3 else "<HHII", tag, kind, n, value, *[0] * (kind == 3))
        for tag, kind, n, value in sorted(tags)
    )
    n_tags = len(tags)
    body = b"II*\x00" + struct.pack("<I", ifd_at) + block
    body += struct.pack(f"<{count}I", *[8] * count)
    body += struct.pack(f"<{count}I", *[len(block)] * count)
    body += b"\x00" * (ifd_at - len(body))
    path.write_bytes(body + struct.pack("<H", n_tags) + entries + b"\x00" * 4)
    return path


def nifti_gz_claiming(
    path: Path, shape: tuple[int, ...], dtype: type = np.uint8, extensions: int = 0
) -> Path:
    """A complete .nii.gz of zeros of ``shape`` (several gzip members of shared zeros).

    ``extensions`` > 0 sets the header's extension flag and puts that many bytes of one
    (zero-filled) extension before the voxels.
    """
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352 + extensions
    flag = b"\x01\x00\x00\x00" if extensions else b"\x00" * 4
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    start = header.binaryblock + flag
    if extensions:
        start += struct.pack("<ii", extensions, 0)  # esize (header included), ecode
    zeros = (extensions - 8 if extensions else 0) + size
    member = gzip.compress(bytes(CHUNK), 9)
    full, rest = divmod(zeros, CHUNK)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(start))
        handle.write(member * full)
        if rest:
            handle.write(gzip.compress(bytes(rest)))
    return path
