"""Held-out scores against ground truth, and the shipped task networks that store them."""

import numpy as np
import pytest

from fusevis.analysis.heldout import (
    CHECK_CROP,
    CHECK_SETS,
    fuse_pair,
    heldout_pairs,
    mixed_crop,
    quality_scores,
    saliency_scores,
)
from fusevis.analysis.truth import FOCUS_BAND, boundary_band
from fusevis.io.tasks import oracle_fusion, task_pair
from fusevis.models import REQUIRED_METADATA, get_entry, get_model, list_models
from fusevis.models.registry import TASK_NETWORKS

SHIPPED = [(name, task) for name, _, task in TASK_NETWORKS if name in list_models()]
# Exact influence maps take ~10-25 s per network even at 32²: one runs in the fast suite.
SALIENCY_CASES = [
    pytest.param(*case, marks=() if index == 0 else pytest.mark.slow)
    for index, case in enumerate(SHIPPED)
]


def test_a_network_for_every_synthetic_task_ships() -> None:
    assert {task for _, task in SHIPPED} == {"multi-focus", "multi-exposure"}
    assert set(list_models("multi-focus")) >= {"WeightedAverage"} | {
        n for n, t in SHIPPED if t == "multi-focus"
    }
    assert "DeepFuse" not in list_models("multi-focus")


def test_the_oracle_scores_perfectly_and_the_exposure_pairs_hold_two_inputs() -> None:
    pair = task_pair("multifocus-coins")
    assert quality_scores(oracle_fusion(pair), pair.truth_image) == {
        "psnr": float("inf"),
        "ssim": 1.0,
    }
    pairs = heldout_pairs("multi-exposure")
    assert [p.name for p in pairs] == ["multiexposure-astronaut", "multiexposure-coffee-2"]
    assert all(len(p.inputs) == 2 and p.quality is not None for p in pairs)


def test_the_saliency_window_holds_both_focus_classes() -> None:
    pair = task_pair("multifocus-camera")
    top, left = mixed_crop(pair, 32)
    mask = pair.truth_mask[top : top + 32, left : left + 32]
    kept = mask[~boundary_band(mask, FOCUS_BAND)]
    assert 0.3 < kept.mean() < 0.7


@pytest.mark.parametrize(("name", "task"), SHIPPED)
def test_shipped_task_network_metadata_and_quality_reproduce(name: str, task: str) -> None:
    meta = get_entry(name).default_weights.meta
    assert not [k for k in REQUIRED_METADATA if k not in meta]
    assert meta["task"] == task and meta["command"].startswith("fusevis train")
    assert f"--task {task}" in meta["command"] and meta["model"] in name
    assert {"recipe", "steps", "seed", "created"} <= set(meta)
    stored = meta["scores"]["heldout"]
    assert stored["check"]["set"] == CHECK_SETS[task]
    pair = task_pair(CHECK_SETS[task])
    fused = fuse_pair(get_model(name), pair)
    assert np.isfinite(fused).all()
    got = quality_scores(fused, pair.truth_image)
    assert got["psnr"] == pytest.approx(stored["check"]["psnr"], abs=0.02)
    assert got["ssim"] == pytest.approx(stored["check"]["ssim"], abs=1e-3)
    assert got == pytest.approx(
        {k: stored["sets"][pair.name][k] for k in ("psnr", "ssim")}, abs=0.02
    )


@pytest.mark.parametrize(("name", "task"), SALIENCY_CASES)
def test_shipped_task_network_saliency_score_reproduces(name: str, task: str) -> None:
    stored = get_entry(name).default_weights.meta["scores"]["heldout"]["check"]
    got = saliency_scores(get_model(name), task_pair(CHECK_SETS[task]), CHECK_CROP)
    assert got["crop"] == stored["crop"]
    for key in got:
        if key != "crop":
            assert got[key] == pytest.approx(stored[key], abs=5e-3), key
