"""Saliency against ground truth: oracles score perfectly, constant shares at chance."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from fusevis.analysis.dataset_run import plan_jobs, run_job
from fusevis.analysis.truth import (
    GroundTruth,
    boundary_band,
    load_truth,
    rank_auc,
    rank_correlation,
    score_maps,
    score_pair,
)
from fusevis.errors import FuseVisError, InputError
from fusevis.io import export_demo, export_demo_dataset
from fusevis.io.tasks import task_pair, well_exposedness
from fusevis.models import get_model
from fusevis.saliency import compute_maps

FOCUS = task_pair("multifocus-camera").crop(100, 100, 48)  # the mask's boundary runs through it
EXPOSURE = task_pair("multiexposure-coffee").crop(120, 120, 40)


class MaskOracle(nn.Module):
    """Fuses with the true mask, handed over as a constant second channel of input 1.

    F = M·a + (1 − M)·b with M detached: input 1's share is M exactly, and the network stays
    pixel-local (a mask stored in the module would not survive FuseVis's crops).
    """

    def __init__(self, inverted: bool = False) -> None:
        super().__init__()
        self.inverted = inverted

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mask = a[:, 1:2].detach()
        mask = 1 - mask if self.inverted else mask
        return mask * a[:, :1] + (1 - mask) * b


class Mean(nn.Module):
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return sum(inputs) / len(inputs)


class ExposureOracle(nn.Module):
    """Single-scale Mertens fusion: weights = each exposure's well-exposedness, detached."""

    def __init__(self, inverted: bool = False) -> None:
        super().__init__()
        self.inverted = inverted

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        quality = [torch.exp(-((x.detach() - 0.5) ** 2) / 0.08) * (x.detach() < 1) for x in inputs]
        total = sum(quality).clamp_min(1e-12)
        weights = [q / total for q in quality]
        if self.inverted:
            weights = [1 - w for w in weights]
        return sum(w * x for w, x in zip(weights, inputs, strict=True))


def focus_score(model: nn.Module) -> object:
    near = torch.tensor(np.stack([FOCUS.inputs[0], FOCUS.truth_mask]), dtype=torch.float32)
    far = torch.tensor(np.array(FOCUS.inputs[1]), dtype=torch.float32)
    maps = compute_maps(model, [near[None], far[None, None]], influence=True)
    guidance = [maps.guidance_2d(0), maps.guidance_2d(1)]
    return score_maps(guidance, maps.share, GroundTruth.of(FOCUS))


def test_crop_holds_both_classes_outside_the_band() -> None:
    kept = ~boundary_band(FOCUS.truth_mask, 5)
    assert 300 < FOCUS.truth_mask[kept].sum() < kept.sum() - 300


def test_mask_oracle_scores_one_and_its_inverse_zero() -> None:
    oracle = focus_score(MaskOracle())
    assert oracle.share == 1.0 and oracle.guidance == 1.0
    assert focus_score(MaskOracle(inverted=True)).share == 0.0
    assert oracle.pixels == (~boundary_band(FOCUS.truth_mask, 5)).sum()


def test_constant_share_scores_exactly_chance() -> None:
    score = score_pair(Mean(), FOCUS)
    assert score.share == 0.5 and score.guidance == 0.5


def test_weighted_average_scores_its_intensity_share() -> None:
    # The shipped WeightedAverage weighs by intensity (w_1 = x_1 / (x_1 + x_2)), so its share
    # is not constant: its AUC is that ratio's, near chance on whole images but not on this
    # crop (0.28, dark coat: the blurred input is brighter there).
    score = score_pair(get_model("WeightedAverage"), FOCUS)
    near, far = FOCUS.inputs
    ratio = near / (near + far)
    kept = ~boundary_band(FOCUS.truth_mask, 5)
    expected = rank_auc(ratio[kept], FOCUS.truth_mask[kept])
    assert score.share == pytest.approx(expected, abs=1e-3)
    assert score.share < 0.4


def test_exposure_oracle_correlates_one() -> None:
    truth = GroundTruth.of(EXPOSURE)
    q = [well_exposedness(x, x >= 1) for x in EXPOSURE.inputs]
    assert all(np.allclose(a, b) for a, b in zip(q, truth.quality, strict=True))
    assert score_pair(ExposureOracle(), EXPOSURE).share > 0.999
    assert score_pair(Mean(), EXPOSURE).share == 0.0
    two = task_pair("multiexposure-astronaut").crop(60, 60, 32)
    assert score_pair(ExposureOracle(inverted=True), two).share < -0.999


def test_rank_statistics_by_hand() -> None:
    assert rank_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == 0.75
    assert rank_auc(np.array([1.0, 1.0, 2.0]), np.array([1, 0, 1], bool)) == 0.75  # tie: half
    assert np.isnan(rank_auc(np.ones(3), np.ones(3, bool)))
    assert rank_correlation(np.array([1, 2, 3.0]), np.array([10, 30, 20.0])) == pytest.approx(0.5)
    assert rank_correlation(np.ones(4), np.arange(4.0)) == 0.0


def test_band_is_width_pixels_each_side() -> None:
    mask = np.zeros((1, 12), bool)
    mask[0, 6:] = True
    assert boundary_band(mask, 2)[0].nonzero()[0].tolist() == [4, 5, 6, 7]
    assert not boundary_band(mask, 0).any()


def test_truth_files_are_read_and_checked(tmp_path: Path) -> None:
    written = {p.stem: p for p in export_demo("multifocus-camera", tmp_path)}
    truth = load_truth([written["mask"]], 2, (256, 256))
    assert np.array_equal(truth.mask, task_pair("multifocus-camera").truth_mask)
    with pytest.raises(InputError, match=r"mask.png: truth shape \(256, 256\) differs"):
        load_truth([written["mask"]], 2, (64, 64))
    with pytest.raises(InputError, match="3 ground-truth file"):
        load_truth([written["mask"]] * 3, 2, (256, 256))
    with pytest.raises(InputError, match="a focus mask needs two inputs, got 3"):
        GroundTruth(mask=truth.mask).check(3, (256, 256))


def test_analyze_job_adds_the_truth_scores(tmp_path: Path) -> None:
    data = export_demo_dataset(tmp_path / "ds", count=1, size=40, name="multifocus-chelsea")
    jobs = plan_jobs(
        data, ["near", "far"], ["WeightedAverage"], [], tmp_path / "s.zarr", True, 1,
        truth=["mask"],
    )  # fmt: skip
    assert [Path(p).parent.name for p in jobs[0].truth] == ["mask"]
    row = run_job(jobs[0])
    assert 0.0 <= row["share AUC"] <= 1.0 and row["truth"] == "multi-focus"
    with pytest.raises(FuseVisError, match="2 truth folder"):
        plan_jobs(data, ["near"], ["WeightedAverage"], [], tmp_path / "t.zarr", True, 1,
                  truth=["mask", "reference"])  # fmt: skip


def test_report_prints_and_writes_the_truth_scores(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fusevis.cli.main import app

    folder = tmp_path / "pair"
    for path in export_demo("multifocus-chelsea", folder):
        PILImage.open(path).crop((100, 100, 140, 140)).save(path)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["report", str(folder / "near.png"), str(folder / "far.png"), "-m", "WeightedAverage",
         "-o", str(out), "--truth", str(folder / "mask.png"), "--no-influence"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "WeightedAverage against the multi-focus truth: G1-G2 AUC" in result.output
    assert "0.5 = chance" in result.output
    page = (out / "index.html").read_text()
    assert "Saliency against ground truth" in page and "not fusion quality" in page
    assert (out / "truth.csv").read_text().splitlines()[0].startswith("network,truth,share AUC")
