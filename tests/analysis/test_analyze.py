"""fusevis analyze: Dask workers give single-process numbers; a killed run resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from fusevis.analysis import analyse_set
from fusevis.analysis.dataset_run import analyze, group_arrays, group_name, is_complete
from fusevis.errors import FuseVisError
from fusevis.io import export_demo_dataset, load_images
from fusevis.models import get_model

NETWORKS = ["DeepFuse", "WeightedAverage"]


def make_dataset(root: Path, count: int, size: int) -> Path:
    return export_demo_dataset(root, count, size)


@pytest.mark.slow
def test_two_workers_give_the_single_process_numbers(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", count=3, size=32)
    store = tmp_path / "out.zarr"
    summary = analyze(data, ["mri", "pet"], NETWORKS, store, influence=True, workers=2)
    assert len(summary) == 6
    assert (tmp_path / "out.csv").is_file()
    parquet = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(parquet, pd.read_csv(tmp_path / "out.csv"), check_dtype=False)
    for index in range(3):
        paths = [data / "mri" / f"case{index}.png", data / "pet" / f"case{index}.png"]
        image_set = load_images(paths)
        for network in NETWORKS:
            expected = analyse_set(get_model(network), image_set, influence=True)
            arrays = group_arrays(store, f"case{index}", network)
            np.testing.assert_allclose(arrays["fused"], expected.fused, atol=1e-6)
            for k in range(2):
                np.testing.assert_allclose(arrays[f"guidance_{k}"], expected.guidance[k], atol=1e-6)
                np.testing.assert_allclose(
                    arrays[f"influence_share_{k}"], expected.share[k], atol=1e-6
                )
            row = summary[(summary["set"] == f"case{index}") & (summary["network"] == network)]
            for key in ("EN", "MI", "SSIM", "QABF", "VIF", "PSNR"):
                assert float(row[key].iloc[0]) == pytest.approx(expected.metrics[key], rel=1e-6)


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_finished_groups(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", count=6, size=32)
    store = tmp_path / "out.zarr"
    groups = [group_name(f"case{i}", n) for i in range(6) for n in ("DeepFuse", "MaskNet")]
    command = [sys.executable, "-m", "fusevis", "analyze", "--data", str(data), "-m", "DeepFuse",
               "-m", "MaskNet", "-o", str(store), "--workers", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    finished: list[str] = []
    while time.monotonic() < deadline and not finished:
        time.sleep(0.1)
        finished = [g for g in groups if is_complete(store, g)] if store.exists() else []
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert finished, "no group finished before the deadline"
    done_before = [g for g in groups if is_complete(store, g)]
    assert len(done_before) < len(groups), "the run finished before it could be killed"
    stamps = {g: zarr.open_group(store / g, mode="r").attrs["computed_at"] for g in done_before}
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert all(is_complete(store, g) for g in groups)
    for group, stamp in stamps.items():
        assert zarr.open_group(store / group, mode="r").attrs["computed_at"] == stamp, group
    summary = pd.read_csv(tmp_path / "out.csv")
    assert len(summary) == len(groups)


def test_bad_dataset_and_duplicate_networks(tmp_path: Path) -> None:
    with pytest.raises(FuseVisError, match="dataset folder not found"):
        analyze(tmp_path / "nope", ["mri", "pet"], ["DeepFuse"], tmp_path / "o.zarr")
    data = make_dataset(tmp_path / "data", count=1, size=24)
    with pytest.raises(FuseVisError, match="networks named twice"):
        analyze(data, ["mri", "pet"], ["DeepFuse", "DeepFuse"], tmp_path / "o.zarr")


def test_metrics_follow_the_chosen_convention_and_say_which(tmp_path: Path) -> None:
    """A group remembers its metric convention; under another one it counts as not done."""
    from fusevis.analysis.dataset_run import collect_summary, plan_jobs, run_job
    from fusevis.metrics import fusion_metrics
    from fusevis.models.inference import minmax

    data = make_dataset(tmp_path / "data", count=1, size=32)
    store = tmp_path / "out.zarr"
    (job,) = plan_jobs(
        data, ["mri", "pet"], ["WeightedAverage"], [], store, False, 1, convention="cddfuse"
    )
    row = run_job(job)
    image_set = load_images([data / "mri" / "case0.png", data / "pet" / "case0.png"])
    fused = analyse_set(get_model("WeightedAverage"), image_set, influence=False).fused
    inputs = [image.data for image in image_set]
    expected = fusion_metrics(minmax(fused), inputs, "cddfuse")
    assert row["metric_convention"] == "cddfuse"
    for key in ("MI", "SSIM", "VIF", "EN"):
        assert row[key] == pytest.approx(expected[key], rel=1e-6), key
    assert expected["MI"] != pytest.approx(fusion_metrics(minmax(fused), inputs)["MI"])
    group = group_name("case0", "WeightedAverage")
    assert is_complete(store, group, "cddfuse") and not is_complete(store, group, "fusevis")
    summary = collect_summary(store, [job])
    assert list(summary["metric_convention"]) == ["cddfuse"]
