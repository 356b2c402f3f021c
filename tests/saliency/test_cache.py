"""The on-disk cache: hits, cancellation, resume after a kill; corrupt entries, checkpoints
and unwritable folders never block a run."""

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fusevis.models import WeightedAverage
from fusevis.saliency import Cancelled, MapCache, cached_maps, compute_maps
from fusevis.saliency import cache as cache_module
from fusevis.saliency.cache import CacheWarning, NpzCheckpoint, expected_layout

from .zoo import make_case

SCRIPT = """
import sys, torch
sys.path.insert(0, {root_of_repo!r})
from tests.saliency.zoo import make_case  # the same module name: the same model class key
from fusevis.saliency import MapCache, cached_maps
case = make_case("Dilated", (128, 128))
cached_maps(case.model, case.inputs, influence=True, cache=MapCache({root!r}),
            checkpoint_interval=0.0)
"""


def test_cache_hit_returns_the_stored_result(tmp_path: Path) -> None:
    case = make_case("Dilated")
    cache = MapCache(tmp_path)
    first = cached_maps(case.model, case.inputs, influence=True, cache=cache)
    assert len(list(tmp_path.glob("*.zarr"))) == 1
    calls = []
    second = cached_maps(
        case.model,
        case.inputs,
        influence=True,
        cache=cache,
        progress=lambda done, total: calls.append(done),
    )
    assert calls == [] and "from cache" in second.method
    for a, b in zip(
        first.guidance + first.influence, second.guidance + second.influence, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    other = tuple(x + 0.01 for x in case.inputs)
    cached_maps(case.model, other, cache=cache)
    assert len(list(tmp_path.glob("*.zarr"))) == 2


def test_cancel_leaves_no_entry_and_resumes(tmp_path: Path) -> None:
    case = make_case("Dilated", (64, 64))
    cache = MapCache(tmp_path)
    passes = []

    def cancel() -> bool:
        return len(passes) >= 20

    with pytest.raises(Cancelled):
        cached_maps(
            case.model,
            case.inputs,
            cache=cache,
            cancel=cancel,
            progress=lambda done, total: passes.append(done),
            checkpoint_interval=0.0,
        )
    assert not list(tmp_path.glob("*.zarr"))
    assert len(list(tmp_path.glob("*.partial.npz"))) == 1
    resumed = []
    maps = cached_maps(
        case.model,
        case.inputs,
        cache=cache,
        progress=lambda done, total: resumed.append((done, total)),
    )
    assert resumed[0][0] == 21 and resumed[-1][0] == resumed[-1][1]
    assert not list(tmp_path.glob("*.partial.npz"))
    reference = compute_maps(case.model, case.inputs)
    for a, b in zip(maps.guidance, reference.guidance, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-14)


def test_killed_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    root_of_repo = str(Path(__file__).resolve().parents[2])
    code = SCRIPT.format(root_of_repo=root_of_repo, root=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    partial = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list(tmp_path.glob("*.partial.npz"))
        if found:
            partial = found[0]
            time.sleep(0.5)
            break
        time.sleep(0.05)
    assert partial is not None, "the run never checkpointed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not list(tmp_path.glob("*.zarr")), "a killed run must not leave a finished entry"
    case = make_case("Dilated", (128, 128))
    seen = []
    maps = cached_maps(
        case.model,
        case.inputs,
        influence=True,
        cache=MapCache(tmp_path),
        progress=lambda done, total: seen.append(done),
    )
    assert seen[0] > 1, "the rerun started from scratch instead of resuming"
    reference = compute_maps(case.model, case.inputs, influence=True)
    for a, b in zip(
        maps.guidance + maps.influence, reference.guidance + reference.influence, strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-12)
    assert torch.is_tensor(case.inputs[0])


# --- a cache that never blocks a run -------------------------------------------------------


def _small_inputs() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.rand(1, 1, 12, 12, generator=generator) + 0.1 for _ in range(2))


def _cache_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def _checkpoint_arrays(**changes: object) -> dict[str, object]:
    arrays: dict[str, object] = {
        "__done__": np.array([[0, 0], [0, 1]], dtype=np.int64),
        "fused": np.zeros((12, 12), np.float32),
        "guidance_0": np.zeros((1, 12, 12), np.float32),
        "guidance_1": np.zeros((1, 12, 12), np.float32),
    }
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def _huge_header(path: Path) -> None:
    """A member whose header claims 10¹² float32 values in a few bytes."""
    np.savez(path, **_checkpoint_arrays(fused=None))
    with zipfile.ZipFile(path, "a") as archive:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
        )
        archive.writestr("fused.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:])


@pytest.mark.parametrize(
    "make",
    [
        lambda p: np.savez(p, **_checkpoint_arrays(fused=np.zeros((3, 3), np.float32))),
        lambda p: np.savez(p, **_checkpoint_arrays(fused=np.zeros((12, 12), np.float64))),
        lambda p: np.savez(p, **_checkpoint_arrays(guidance_1=None)),
        lambda p: np.savez(p, **_checkpoint_arrays(fused=np.full((12, 12), np.nan, np.float32))),
        lambda p: np.savez(p, **_checkpoint_arrays(__done__=np.array([[0.5, 1.0]]))),
        lambda p: np.savez(p, **_checkpoint_arrays(__done__=np.array([[-1, 0]]))),
        lambda p: np.savez(p, **_checkpoint_arrays(fused=np.array([object()] * 144))),
        lambda p: p.write_bytes(b"PK\x03\x04" + bytes(100)),
        lambda p: p.write_bytes(b""),
        lambda p: os.mkfifo(p),
        _huge_header,
    ],
    ids=[
        "shape",
        "dtype",
        "missing",
        "nan",
        "float-units",
        "negative-unit",
        "object",
        "garbage",
        "empty",
        "fifo",
        "huge-header",
    ],
)
def test_checkpoint_that_does_not_fit_is_ignored(tmp_path: Path, make: object) -> None:
    inputs = _small_inputs()
    path = tmp_path / "x.partial.npz"
    make(path)  # type: ignore[operator]
    checkpoint = NpzCheckpoint(path, expected_layout(inputs, influence=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert checkpoint.load() is None
    assert len(_cache_warnings(caught)) == 1, [str(w.message) for w in caught]


def test_valid_checkpoint_is_read(tmp_path: Path) -> None:
    inputs = _small_inputs()
    path = tmp_path / "x.partial.npz"
    NpzCheckpoint(path).save(
        {k: v for k, v in _checkpoint_arrays().items() if k != "__done__"}, {(0, 0), (0, 1)}
    )
    arrays, done = NpzCheckpoint(path, expected_layout(inputs, False)).load()  # type: ignore[misc]
    assert done == {(0, 0), (0, 1)} and sorted(arrays) == ["fused", "guidance_0", "guidance_1"]


def _garble_metadata(store: Path) -> None:
    (store / "zarr.json").write_text("{ not json")


def _drop_chunks(store: Path) -> None:
    for chunk in (store / "guidance_0" / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()  # reads back as zeros: only the checksum sees it


def _no_checksum(store: Path) -> None:
    metadata = json.loads((store / "zarr.json").read_text())
    del metadata["attributes"]["sha256"]
    (store / "zarr.json").write_text(json.dumps(metadata))


def _fifo(store: Path) -> None:
    target = store / "fused" / "zarr.json"
    target.unlink()
    os.mkfifo(target)


def _a_file(store: Path) -> None:
    shutil.rmtree(store)
    store.write_bytes(b"not a store")


@pytest.mark.parametrize(
    "damage",
    [_garble_metadata, _drop_chunks, _no_checksum, _fifo, _a_file],
    ids=["metadata", "missing-chunks", "no-checksum", "fifo", "file"],
)
def test_unusable_entry_is_recomputed_and_replaced(tmp_path: Path, damage: object) -> None:
    model, inputs = WeightedAverage(), _small_inputs()
    cache = MapCache(tmp_path)
    reference = cached_maps(model, inputs, cache=cache)
    (store,) = tmp_path.glob("*.zarr")
    damage(store)  # type: ignore[operator]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = cached_maps(model, inputs, cache=MapCache(tmp_path))
    assert len(_cache_warnings(caught)) == 1, [str(w.message) for w in caught]
    assert "from cache" not in again.method
    expected, got = [reference.fused, *reference.guidance], [again.fused, *again.guidance]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "from cache" in cached_maps(model, inputs, cache=MapCache(tmp_path)).method


def _sysfs_refuses_files() -> bool:
    try:
        descriptor, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return True
    os.close(descriptor)
    os.unlink(probe)
    return False


@pytest.mark.parametrize("where", ["below-a-file", "a-file", "sysfs"])
def test_unwritable_cache_warns_once_and_computes(tmp_path: Path, where: str) -> None:
    """Root ignores permission bits, so: a folder below a regular file, a regular file where
    the folder should be, and a folder in sysfs (where nobody may create files)."""
    (tmp_path / "file").write_text("a regular file")
    root = {
        "below-a-file": tmp_path / "file" / "cache",
        "a-file": tmp_path / "file",
        "sysfs": Path("/sys/fusevis-test-cache"),
    }[where]
    if where == "sysfs" and not _sysfs_refuses_files():
        pytest.skip("/sys accepts files here")
    model, inputs = WeightedAverage(), _small_inputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = cached_maps(model, inputs, cache=MapCache(root), checkpoint_interval=0.0)
    messages = _cache_warnings(caught)
    assert len(messages) == 1 and str(root) in messages[0], messages
    reference = compute_maps(model, inputs)
    np.testing.assert_array_equal(maps.guidance[0], reference.guidance[0])


def test_disk_full_midway_warns_once_and_keeps_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module, "write_atomically", full)
    monkeypatch.setattr(cache_module, "replace_durably", full)
    model, inputs = WeightedAverage(), _small_inputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = cached_maps(model, inputs, cache=MapCache(tmp_path), checkpoint_interval=0.0)
    messages = _cache_warnings(caught)
    assert len(messages) == 1 and "No space left" in messages[0], messages
    np.testing.assert_array_equal(maps.guidance[1], compute_maps(model, inputs).guidance[1])
    assert not [p for p in tmp_path.iterdir()], "temporary files left behind"
