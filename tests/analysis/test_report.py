"""fusevis report: a real CLI run, its tables checked against direct computations."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusevis.analysis import analyse_set, automatic_regions
from fusevis.io import export_demo, load_images
from fusevis.metrics import fusion_metrics
from fusevis.models import get_model
from fusevis.models.inference import minmax

from ..conftest import LAUNCH_ARGS


def run_fusevis(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fusevis", *arguments],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=cwd,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pair")
    paths = []
    for path in export_demo("mri-pet", folder):
        crop = folder / f"{path.stem}_crop.png"
        Image.open(path).crop((80, 80, 128, 128)).save(crop)
        paths.append(crop)
    return paths


@pytest.mark.slow
def test_report_with_influence_matches_direct_computation(
    small_pair: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = run_fusevis(
        "report", *map(str, small_pair), "-m", "DeepFuse", "-m", "WeightedAverage",
        "-o", str(out), "--cache", str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("index.html", "fused.png", "guidance.png", "scatter.png", "influence.png",
                 "regions.png", "metrics.csv", "regions.csv"):  # fmt: skip
        assert (out / name).is_file(), name
    image_set = load_images(small_pair)
    inputs = [image.data for image in image_set]
    metrics = {row["network"]: row for row in read_csv(out / "metrics.csv")}
    model = get_model("DeepFuse")
    direct = analyse_set(model, image_set, influence=False)
    expected = fusion_metrics(minmax(direct.fused), inputs)
    for key in ("EN", "SSIM", "QABF", "VIF", "MI", "PSNR"):
        assert float(metrics["DeepFuse"][key]) == pytest.approx(expected[key], rel=1e-5), key
    # Weighted averaging: J_k(p, q) = w_k(p) δ(p, q), so each input's influence share is
    # w_k = x_k / Σ_j x_j (1/2 where both are 0).
    total = inputs[0] + inputs[1]
    weight = np.where(total > 0, inputs[0] / np.where(total > 0, total, 1), 0.5)
    regions = automatic_regions(inputs)
    rows = [r for r in read_csv(out / "regions.csv") if r["network"] == "WeightedAverage"]
    for row in rows:
        mask = regions[row["region"]]
        assert int(row["pixels"]) == int(mask.sum())
        assert float(row["influence share 1"]) == pytest.approx(weight[mask].mean(), abs=1e-5)


def test_report_refuses_a_mask_of_the_wrong_size(small_pair: list[Path], tmp_path: Path) -> None:
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask)
    result = run_fusevis(
        "report", *map(str, small_pair), "-m", "WeightedAverage", "-o", str(tmp_path / "r"),
        "--mask", str(mask),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {mask}: mask shape (10, 10) differs from the inputs"
    ]


def test_paper_pair_report_for_two_networks_opens_in_chromium(
    paper: Path, chromium_path: Path, artifacts: Path, tmp_path: Path
) -> None:
    """A report on the paper's pair, as a user opens it. Two of the paper's networks, the two
    whose guidance maps are cheapest: DeepFuse and weighted averaging (the four learned ones
    took 20 min of a 2-core CI run; their maps on this pair are checked in
    tests/saliency/test_paper_guidance.py)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    out = artifacts / "report"
    pair = [str(paper / "test-pair" / "mri.gif"), str(paper / "test-pair" / "pet.png")]
    networks = ["DeepFuse", "WeightedAverage"]
    models = [part for name in networks for part in ("-m", name)]
    result = run_fusevis(
        "report", *pair, *models, "--no-influence", "-o", str(out),
        "--cache", str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = read_csv(out / "metrics.csv")
    assert [row["network"] for row in rows] == networks
    for row in rows:
        assert all(np.isfinite(float(row[key])) for key in ("EN", "SSIM", "QABF", "VIF"))
    errors: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=LAUNCH_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "index.html").as_uri())
        page.wait_for_load_state("load")
        loaded = page.evaluate(
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.locator("table").count() == 2
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        browser.close()
    assert loaded, "a figure did not load"
    assert not errors, errors


def test_report_states_its_metric_convention(small_pair: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_fusevis(
        "report", *map(str, small_pair), "-m", "WeightedAverage", "-o", str(out),
        "--no-influence", "--convention", "vifb",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = read_csv(out / "metrics.csv")
    assert row["metric_convention"] == "vifb"
    image_set = load_images(small_pair)
    fused = analyse_set(get_model("WeightedAverage"), image_set, influence=False).fused
    expected = fusion_metrics(minmax(fused), [image.data for image in image_set], "vifb")
    for key in ("MI", "SSIM", "QABF"):
        assert float(row[key]) == pytest.approx(expected[key], rel=1e-5), key
    assert "metric convention\n<code>vifb</code>" in (out / "index.html").read_text()
    wrong = run_fusevis(
        "report", *map(str, small_pair), "-m", "WeightedAverage", "-o", str(tmp_path / "x"),
        "--convention", "matlab",
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "--convention: unknown metric convention 'matlab'" in wrong.stderr
    assert "Traceback" not in wrong.stderr
