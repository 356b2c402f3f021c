"""Attacks on the map cache and on output paths, through the ``fusevis guidance`` command.

A cache entry or checkpoint that is corrupt (a damaged Zarr chunk, an empty or truncated
``partial.npz``; more kinds in-process in tests/saliency/test_cache.py) must be a miss: the
rerun exits 0, warns once and writes exactly what a clean run writes. A cache folder that
cannot be written warns once and the run goes on. An output that cannot be written is one
``error:`` line, exit 2, found before any computation (the cache stays empty). Every rename
in the cache follows an fsync.

Tests run as root, for whom permission bits mean nothing, so "cannot be written" is made
with paths the kernel refuses to root too: a folder below a regular file (ENOTDIR) and a
folder in sysfs (``/sys``: no file can be created there).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusevis.io import save_image
from fusevis.models import WeightedAverage
from fusevis.saliency import MapCache, cached_maps

from .harm import Measured, fusevis

MODEL = "WeightedAverage"
SIZE = 24
TIMEOUT = 120.0


def _sysfs_refuses_files() -> bool:
    try:
        descriptor, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return True
    os.close(descriptor)
    os.unlink(probe)
    return False


needs_sysfs = pytest.mark.skipif(
    not _sysfs_refuses_files(), reason="/sys accepts files here; no read-only folder for root"
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    paths = []
    for name in ("a.png", "b.png"):
        pixels = (generator.random((SIZE, SIZE)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths[0], paths[1]


def guidance(images: tuple[Path, Path], output: Path, cache: Path) -> Measured:
    """``fusevis guidance`` on the two images with ``$FUSEVIS_CACHE`` set to ``cache``."""
    return fusevis(
        "guidance",
        str(images[0]),
        str(images[1]),
        "--model",
        MODEL,
        "-o",
        str(output),
        env={"FUSEVIS_CACHE": str(cache)},
        timeout=TIMEOUT,
    )


def warning_lines(run: Measured) -> list[str]:
    return [line for line in (run.stdout + run.stderr).splitlines() if "warning" in line.lower()]


def assert_clean_exit(run: Measured) -> None:
    assert not run.timed_out, f"timed out after {run.seconds:.0f} s"
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "Aborted" not in run.stderr + run.stdout


def assert_same_result(output: Path, reference: dict[str, np.ndarray]) -> None:
    with np.load(output) as written:
        assert sorted(written.files) == sorted(reference)
        for name, array in reference.items():
            np.testing.assert_array_equal(written[name], array, err_msg=name)


@pytest.fixture(scope="module")
def clean(
    images: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, dict[str, np.ndarray]]:
    """A clean run: its cache folder, the entry's key and the arrays it wrote."""
    folder = tmp_path_factory.mktemp("clean")
    run = guidance(images, folder / "out.npz", folder / "cache")
    assert_clean_exit(run)
    assert not warning_lines(run), run.stderr
    (entry,) = (folder / "cache").glob("*.zarr")
    with np.load(folder / "out.npz") as written:
        reference = {name: written[name] for name in written.files}
    return folder / "cache", entry.name[: -len(".zarr")], reference


def entry_is_valid(cache: Path, key: str) -> bool:
    """The entry reads back without a warning (it was replaced by a good one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return MapCache(cache).get(key) is not None


def _damage_chunk(store: Path) -> None:
    chunks = sorted(p for p in (store / "guidance_0").rglob("*") if p.is_file())
    chunk = next(p for p in chunks if p.name != "zarr.json")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    chunk.write_bytes(bytes(data))


def test_corrupt_zarr_entry_is_recomputed_and_replaced(
    images: tuple[Path, Path], clean: tuple, tmp_path: Path
) -> None:
    """Half of a chunk zeroed: undecodable or wrong data (the checksum catches the latter)."""
    source, key, reference = clean
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    _damage_chunk(cache / f"{key}.zarr")
    run = guidance(images, tmp_path / "out.npz", cache)
    assert_clean_exit(run)
    assert len(warning_lines(run)) == 1, run.stdout + run.stderr
    assert_same_result(tmp_path / "out.npz", reference)
    assert entry_is_valid(cache, key)


def _empty(path: Path, reference: dict[str, np.ndarray]) -> None:
    path.write_bytes(b"")


def _truncated(path: Path, reference: dict[str, np.ndarray]) -> None:
    arrays = {"fused": reference["fused"]}
    for k in range(2):
        arrays[f"guidance_{k}"] = reference[f"guidance_{k}"][None]
    np.savez(path, __done__=np.array([[0, 0], [0, 1]], dtype=np.int64), **arrays)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("make", [_empty, _truncated], ids=["empty", "truncated"])
def test_bad_checkpoint_is_a_miss(
    images: tuple[Path, Path], clean: tuple, tmp_path: Path, make: object
) -> None:
    _, key, reference = clean
    cache = tmp_path / "cache"
    cache.mkdir()
    make(cache / f"{key}.partial.npz", reference)  # type: ignore[operator]
    run = guidance(images, tmp_path / "out.npz", cache)
    assert_clean_exit(run)
    assert len(warning_lines(run)) == 1, run.stdout + run.stderr
    assert_same_result(tmp_path / "out.npz", reference)
    assert entry_is_valid(cache, key)
    assert not (cache / f"{key}.partial.npz").exists()


def test_unwritable_cache_warns_once_and_the_run_goes_on(
    images: tuple[Path, Path], clean: tuple, tmp_path: Path
) -> None:
    """The cache folder would be below a regular file (a read-only folder in /sys is tested
    in-process, in tests/saliency/test_cache.py)."""
    _, _, reference = clean
    (tmp_path / "file").write_text("a regular file")
    cache = tmp_path / "file" / "cache"
    run = guidance(images, tmp_path / "out.npz", cache)
    assert_clean_exit(run)
    lines = warning_lines(run)
    assert len(lines) == 1 and str(cache) in lines[0], run.stdout + run.stderr
    assert_same_result(tmp_path / "out.npz", reference)


@pytest.mark.parametrize(
    "where", ["below-a-file", "a-folder", pytest.param("sysfs", marks=needs_sysfs)]
)
def test_unwritable_output_is_one_line_before_any_work(
    images: tuple[Path, Path], tmp_path: Path, where: str
) -> None:
    if where == "below-a-file":
        (tmp_path / "file").write_text("a regular file")
        output = tmp_path / "file" / "out.npz"
    elif where == "a-folder":
        output = tmp_path / "out.npz"
        output.mkdir()
    else:
        output = Path("/sys/fusevis-test-out.npz")
    cache = tmp_path / "cache"
    run = guidance(images, output, cache)
    run.assert_one_line_error(str(output))
    assert run.seconds < 60
    assert not cache.exists(), "the maps were computed before the output was checked"


def test_cache_renames_follow_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every os.replace in the cache (checkpoints, the Zarr store) and in save_image is
    preceded by an fsync of what is renamed (each file of a folder too) and followed by one
    of the folder it lands in."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source: str, target: str) -> None:
        events.append(("replace", os.path.abspath(source), os.path.abspath(target)))  # type: ignore[arg-type]
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    generator = torch.Generator().manual_seed(0)
    inputs = tuple(torch.rand(1, 1, 16, 16, generator=generator) + 0.1 for _ in range(2))
    cache = tmp_path / "cache"
    cached_maps(WeightedAverage(), inputs, cache=MapCache(cache), checkpoint_interval=0.0)
    save_image(np.zeros((4, 4)), tmp_path / "out" / "image.png")

    folders = {str(cache), str(tmp_path / "out")}  # not renames inside a store being written
    renames = [
        (i, e)
        for i, e in enumerate(events)
        if e[0] == "replace" and os.path.dirname(e[2]) in folders
    ]
    targets = [e[2] for _, e in renames]
    assert any(t.endswith(".partial.npz") for t in targets), targets
    assert any(t.endswith(".zarr") for t in targets), targets
    assert any(t.endswith("image.png") for t in targets), targets
    for index, (_, source, target) in renames:
        before = {e[1] for e in events[:index] if e[0] == "fsync"}
        after = {e[1] for e in events[index + 1 :] if e[0] == "fsync"}
        if Path(target).is_dir() and target.endswith(".zarr"):
            files = [p for p in Path(target).rglob("*")]
            assert files
            for path in files:
                assert source + str(path)[len(target) :] in before, (path, "not fsynced")
        assert source in before, (source, "renamed without fsync")
        assert os.path.dirname(target) in after, (target, "folder not fsynced after rename")
