"""The on-disk cache: hits, cancellation without corrupt entries, resume after a kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fusevis.saliency import Cancelled, MapCache, cached_maps, compute_maps

from .conftest import make_case

SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from saliency.conftest import make_case
from fusevis.saliency import MapCache, cached_maps
case = make_case("DeepFuse", (64, 64))
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
    case = make_case("DeepFuse", (40, 40))
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
    tests_dir = str(Path(__file__).resolve().parents[1])
    code = SCRIPT.format(tests=tests_dir, root=str(tmp_path))
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
    case = make_case("DeepFuse", (64, 64))
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
