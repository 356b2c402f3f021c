"""Hostile checkpoints (issue 11, item 4): small files that claim huge or malformed tensors.

Each attack is a file built here (``torch.save``, a crafting pickler, raw pickle opcodes and
a hand-written zip). It goes through the command line as a user would give it
(``fusevis fuse a.png b.png --model DeepFuse --weights FILE -o out.png``) and through
``get_model`` in one measured child process. The harm is measured: exit status, one
``error: <file>: <problem>`` line that names the defence that caught it, the child's peak
RSS (under 1 GiB) and its time. The children run with a 3 GiB data-segment cap, so an
attack that still works fails the test instead of exhausting the machine: on the loader
before this one, the stride-0 files reached 3.5 and 14.5 GB, the zip bombs 6.6-6.8 GB, and
the malformed records gave tracebacks.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import sys
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fusevis.models import DeepFuse
from tests.security.harm import Measured, fusevis, run_measured

MODEL = "DeepFuse"
FUSE = ["fuse", "--model", MODEL]
MIB = 1 << 20
RSS_LIMIT_MB = 1024
SECONDS = 60.0
BOMB_BYTES = 3_500_000_000  # what the zip bombs decompress to


# --------------------------------------------------------------------------------------------
# Crafting tools


class FakeStorage:
    """Pickled as a storage reference, with whatever fields an attacker writes."""

    def __init__(self, key: Any, numel: Any, kind: Any = torch.FloatStorage) -> None:
        self.key, self.numel, self.kind = key, numel, kind


class FakeTensor:
    """Pickled as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self) -> tuple[Any, ...]:
        return (torch._utils._rebuild_tensor_v2, self.args)


class CraftingPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, FakeStorage):
            return ("storage", obj.kind, obj.key, "cpu", obj.numel)
        return None


def crafted_pickle(obj: Any) -> bytes:
    out = io.BytesIO()
    CraftingPickler(out, protocol=2).dump(obj)
    return out.getvalue()


def stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return (name, data, 0, len(data), zlib.crc32(data))


def bomb(name: str, size: int = BOMB_BYTES) -> tuple[str, bytes, int, int, int]:
    """A deflated entry of ``size`` zero bytes, built from one repeated block (no CRC)."""
    chunk = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    unit = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = size // MIB
    stream = head + unit * (count - 1) + compressor.flush()
    return (name, stream, 8, count * MIB, 0)


def write_zip(path: Path, entries: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip written by hand, so that an entry can be a pre-made deflate stream."""
    body, directory = bytearray(), bytearray()
    for name, payload, method, size, crc in entries:
        offset, raw = len(body), name.encode()
        body += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(payload), size, len(raw), 0
        )
        body += raw + payload
        directory += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(payload),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        directory += raw
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), len(body), 0
    )
    path.write_bytes(bytes(body + directory + end))
    return path


def torch_zip(path: Path, data_pkl: bytes | tuple, storages: dict[str, Any]) -> Path:
    """A checkpoint in PyTorch's zip layout with a given data.pkl and storage entries."""
    entries = [stored("archive/version", b"3\n"), stored("archive/byteorder", b"little")]
    if isinstance(data_pkl, tuple):
        entries.append(data_pkl)
    else:
        entries.append(stored("archive/data.pkl", data_pkl))
    for key, data in storages.items():
        entries.append(data if isinstance(data, tuple) else stored(f"archive/data/{key}", data))
    return write_zip(path, entries)


def model_shaped(storage: FakeStorage, counter: FakeStorage) -> dict[str, FakeTensor]:
    """DeepFuse's names and shapes, every float tensor a view at offset 0 of ``storage``."""
    state = {}
    for name, value in DeepFuse().state_dict().items():
        shape = tuple(value.shape)
        stride = tuple(int(s) for s in torch.empty(shape).stride())
        target = counter if value.dtype == torch.int64 else storage
        state[name] = FakeTensor(target, 0, shape, stride)
    return state


def model_floats() -> int:
    return max(v.numel() for v in DeepFuse().state_dict().values())


def unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


SEQUENTIAL = b"ctorch.nn.modules.container\nSequential\n)\x81"
MODULE_STATE_OPEN = b"}(" + unicode("_parameters") + b"}" + unicode("_modules") + b"}("


def deep_records(depth: int) -> bytes:
    opening = SEQUENTIAL + MODULE_STATE_OPEN + unicode("0")
    return b"\x80\x02" + opening * depth + b"N" + b"uub" * depth + b"."


def cyclic_record() -> bytes:
    return (
        b"\x80\x02" + SEQUENTIAL + b"q\x00" + MODULE_STATE_OPEN + unicode("0") + b"h\x00" + b"uub."
    )


def parameters_as_list() -> bytes:
    return (
        b"\x80\x02"
        + SEQUENTIAL
        + b"}("
        + unicode("_parameters")
        + b"]Na"  # a list holding None
        + unicode("_modules")
        + b"}ub."
    )


class ShellPayload:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


# --------------------------------------------------------------------------------------------
# The attacks: name -> (builder, fragment the one-line error must contain)


def stride0_zip(d: Path) -> Path:
    path = d / "stride0.pth"
    torch.save({"layer1.main.0.weight": torch.zeros(1).expand(30_000, 30_000)}, path)
    return path


def stride0_legacy(d: Path) -> Path:
    path = d / "stride0-legacy.pth"
    huge = torch.zeros(1).expand(30_000, 30_000)
    state = {f"layer{i}.main.0.weight": huge for i in range(1, 5)}  # 4 x 3.6 GB
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def huge_storage_claim(d: Path) -> Path:
    storage = FakeStorage("0", 1 << 33)  # 32 GiB of float32 claimed, 16 bytes present
    counter = FakeStorage("1", 1, torch.LongStorage)
    data = crafted_pickle(model_shaped(storage, counter))
    return torch_zip(d / "claim.pth", data, {"0": bytes(16), "1": bytes(8)})


def zip_bomb_storage(d: Path) -> Path:
    storage = FakeStorage("0", BOMB_BYTES // 4)
    counter = FakeStorage("1", 1, torch.LongStorage)
    data = crafted_pickle(model_shaped(storage, counter))
    return torch_zip(d / "bomb.pth", data, {"0": bomb("archive/data/0"), "1": bytes(8)})


def zip_bomb_larger_than_claimed(d: Path) -> Path:
    storage = FakeStorage("0", model_floats())  # an honest claim ...
    counter = FakeStorage("1", 1, torch.LongStorage)
    data = crafted_pickle(model_shaped(storage, counter))
    entries = {"0": bomb("archive/data/0"), "1": bytes(8)}  # ... and a 3.5 GB entry
    return torch_zip(d / "bomb-entry.pth", data, entries)


def zip_bomb_pickle(d: Path) -> Path:
    return torch_zip(d / "bomb-pickle.pth", bomb("archive/data.pkl"), {})


def deep(d: Path) -> Path:
    return torch_zip(d / "deep.pth", deep_records(20_000), {})


def cyclic(d: Path) -> Path:
    return torch_zip(d / "cyclic.pth", cyclic_record(), {})


def parameters_list(d: Path) -> Path:
    return torch_zip(d / "params-list.pth", parameters_as_list(), {})


def tensor_record(d: Path, name: str, **fields: Any) -> Path:
    values = {"storage": FakeStorage("0", 16), "offset": 0, "size": (4,), "stride": (1,)}
    values.update(fields)
    tensor = FakeTensor(values["storage"], values["offset"], values["size"], values["stride"])
    data = crafted_pickle({"layer1.main.0.bias": tensor})
    return torch_zip(d / name, data, {"0": bytes(64)})


def negative_offset(d: Path) -> Path:
    return tensor_record(d, "negative-offset.pth", offset=-8)


def offset_out_of_range(d: Path) -> Path:
    return tensor_record(d, "offset-range.pth", offset=1 << 40)


def negative_storage_size(d: Path) -> Path:
    return tensor_record(d, "negative-numel.pth", storage=FakeStorage("0", -1))


def strides_of_text(d: Path) -> Path:
    return tensor_record(d, "stride-text.pth", stride=("1",))


def memo_index(d: Path) -> Path:
    data = b"\x80\x02N" + b"r" + struct.pack("<I", 0xFFFF_FFF0) + b"."  # LONG_BINPUT 4e9
    return torch_zip(d / "memo.pth", data, {})


def set_flood(d: Path) -> Path:
    data = b"\x80\x04](" + b"\x8f" * 6_000_000 + b"e."  # six million empty sets in a list
    compressed = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = compressed.compress(data) + compressed.flush()
    entry = ("archive/data.pkl", stream, 8, len(data), zlib.crc32(data))
    return torch_zip(d / "sets.pth", entry, {})


def shell_payload(d: Path) -> Path:
    path = d / "shell.pth"
    torch.save({"w": torch.ones(2), "boom": ShellPayload(f"touch {d / 'pwned'}")}, path)
    return path


def bad_safetensors_metadata(d: Path) -> Path:
    from safetensors.torch import save_file

    path = d / "meta.safetensors"
    save_file(DeepFuse().state_dict(), str(path), metadata={"fusevis": "{not json"})
    return path


def safetensors_header_claim(d: Path) -> Path:
    path = d / "header.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    return path


ATTACKS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "stride0-zip": (stride0_zip, "wrong shape"),
    "stride0-legacy": (stride0_legacy, "wrong shape"),
    "huge-storage-claim": (huge_storage_claim, "storages hold 34,359,738,376 bytes"),
    "zip-bomb-storage": (zip_bomb_storage, "storages hold 3,500,000,008 bytes"),
    "zip-bomb-larger-than-claimed": (zip_bomb_larger_than_claimed, "its record says"),
    "zip-bomb-pickle": (zip_bomb_pickle, "data.pkl is larger than"),
    "deep-records": (deep, "nested deeper than"),
    "cyclic-records": (cyclic, "form a cycle"),
    "parameters-list": (parameters_list, "_parameters of type list"),
    "negative-offset": (negative_offset, "storage offset is -8"),
    "offset-out-of-range": (offset_out_of_range, "reaches byte"),
    "negative-storage-size": (negative_storage_size, "storage size is -1"),
    "strides-of-text": (strides_of_text, "stride is '1'"),
    "memo-index": (memo_index, "holds no tensors"),
    "set-flood": (set_flood, "too large"),
    "shell-payload": (shell_payload, "refused to load"),
    "bad-safetensors-metadata": (bad_safetensors_metadata, "not valid JSON"),
    "safetensors-header-claim": (safetensors_header_claim, "header of 1,099,511,627,776 bytes"),
}

# One child imports the command line once, then forks a grandchild per attack and path
# (the console script's ``run()`` with the attack's argv, or ``get_model`` and
# ``resolve_model``): importing ``fusevis.cli`` costs seconds, forking milliseconds. Each
# grandchild inherits the 3 GiB cap; its peak RSS (from ``os.wait4``) starts from the
# imported process's, as a fresh ``fusevis`` command's does.
FORKING_RUNNER = """
import json, os, signal, sys, time, traceback
from fusevis.cli.main import run
from fusevis.errors import ModelError
from fusevis.models import get_model, resolve_model

def get_model_job(path, out):
    outcome = []
    for load in (get_model, resolve_model):
        try:
            load("DeepFuse", weights=path)
            outcome.append(["loaded", ""])
        except ModelError as error:
            outcome.append(["ModelError", str(error)])
        except BaseException as error:
            outcome.append([type(error).__name__, str(error)[:300]])
    out.write(json.dumps(outcome))
    return 0

results = {}
for key, kind, argv, output in json.loads(sys.argv[1]):
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        signal.alarm(int(sys.argv[2]))
        code = 1
        with open(output, "w") as out:
            os.dup2(out.fileno(), 2)
            try:
                if kind == "cli":
                    sys.argv = ["fusevis", *argv]
                    run()
                    code = 0
                else:
                    code = get_model_job(argv[0], out)
            except SystemExit as error:
                code = error.code if isinstance(error.code, int) else 1
            except BaseException:
                traceback.print_exc()
            sys.stderr.flush()
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - start
    results[key] = [os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, seconds]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def attacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("attacks")
    return {name: build(folder) for name, (build, _) in ATTACKS.items()}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.png", "b.png"):
        pixels = (rng.random((24, 24)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths[0], paths[1]


@dataclass
class Run:
    """One attack through one path: exit status, its output, peak RSS and time."""

    returncode: int
    output: str
    peak_rss_mb: float
    seconds: float


@pytest.fixture(scope="module")
def runs(
    attacks: dict[str, Path], images: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Run]:
    """Every attack through ``fusevis fuse`` and through ``get_model``/``resolve_model``."""
    out = tmp_path_factory.mktemp("out")
    jobs = []
    for name, path in attacks.items():
        argv = [*FUSE, str(images[0]), str(images[1]), "--weights", str(path)]
        argv += ["-o", str(out / f"{name}.png")]
        jobs.append([f"cli {name}", "cli", argv, str(out / f"{name}.cli.txt")])
        jobs.append([f"api {name}", "api", [str(path)], str(out / f"{name}.api.txt")])
    measured = run_measured(
        [sys.executable, "-c", FORKING_RUNNER, json.dumps(jobs), str(int(SECONDS))],
        timeout=SECONDS * 4,
    )
    assert measured.returncode == 0, measured.stderr[-3000:]
    results = json.loads(measured.stdout.strip().splitlines()[-1])
    found = {}
    for key, _, _, output in jobs:
        code, rss, seconds = results[key]
        kind, name = key.split(" ", 1)
        found[(kind, name)] = Run(code, Path(output).read_text(), rss / MIB, seconds)
    return found


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_through_the_command_line(
    name: str, attacks: dict[str, Path], runs: dict[tuple[str, str], Run]
) -> None:
    run = runs[("cli", name)]
    as_measured = Measured(run.returncode, "", run.output, int(run.peak_rss_mb * MIB), 0, False)
    as_measured.assert_one_line_error(f"error: {attacks[name]}: ", ATTACKS[name][1])
    assert run.peak_rss_mb < RSS_LIMIT_MB, f"{run.peak_rss_mb:.0f} MiB"
    assert run.seconds < SECONDS
    assert not (attacks[name].parent / "pwned").exists()


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_through_get_model(
    name: str, attacks: dict[str, Path], runs: dict[tuple[str, str], Run]
) -> None:
    run = runs[("api", name)]
    assert run.returncode == 0, run.output[-2000:]
    for kind, message in json.loads(run.output):
        assert kind == "ModelError", (kind, message)
        assert len(message.splitlines()) == 1 and message.startswith(f"{attacks[name]}: ")
        assert ATTACKS[name][1].lower() in message.lower(), message
    assert run.peak_rss_mb < RSS_LIMIT_MB, f"{run.peak_rss_mb:.0f} MiB"
    assert not (attacks[name].parent / "pwned").exists()


def test_the_fusevis_command_itself(
    attacks: dict[str, Path], images: tuple[Path, Path], tmp_path: Path
) -> None:
    """The command as a user runs it (``python -m fusevis``, not forked): the 14.5 GB file."""
    name = "stride0-legacy"
    argv = [*FUSE, str(images[0]), str(images[1]), "--weights", str(attacks[name])]
    measured = fusevis(*argv, "-o", str(tmp_path / "out.png"), timeout=SECONDS)
    measured.assert_one_line_error(f"error: {attacks[name]}: ", ATTACKS[name][1])
    assert measured.peak_rss_mb < RSS_LIMIT_MB, f"{measured.peak_rss_mb:.0f} MiB"


def test_the_files_are_small(attacks: dict[str, Path]) -> None:
    """The harm is out of proportion: no attack file is larger than a few MB."""
    for name, path in attacks.items():
        assert path.stat().st_size < 8 * MIB, name
