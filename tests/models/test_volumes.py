"""Fuse3D: the shipped 3-D fusion network, its weights and its saliency."""

from __future__ import annotations

import pytest
import torch

from fusevis.models import REQUIRED_METADATA, get_entry, get_model, list_models
from fusevis.saliency.boxes import GridField
from fusevis.saliency.volumetric import VoxelJacobian


def test_fuse3d_is_registered_for_volumes_with_complete_metadata() -> None:
    assert "Fuse3D" in list_models("volume")
    assert "Fuse3D" not in list_models("medical")  # never offered for 2-D images
    weights = get_entry("Fuse3D").default_weights
    assert weights is not None
    meta = weights.meta
    assert not [k for k in REQUIRED_METADATA if meta.get(k) in ("", None)]
    assert meta["model"] == "Fuse3D"
    assert "scripts/train_fuse3d.py" in meta["command"]
    scores = meta["scores"]["demo_volume"]
    assert scores["ssim_1"] > 0.7 and scores["ssim_2"] > 0.7
    assert 0 <= scores["fused_min"] < scores["fused_max"] <= 1


def test_fuse3d_fuses_in_the_unit_range_and_its_rows_are_exact() -> None:
    model = get_model("Fuse3D")
    assert 2000 < sum(p.numel() for p in model.parameters()) < 5000
    generator = torch.Generator().manual_seed(0)
    volumes = [torch.rand((12, 14, 10), generator=generator) for _ in range(2)]
    fused = model(*(v[None, None] for v in volumes)).detach()
    assert fused.shape == (1, 1, 12, 14, 10)
    assert 0 < float(fused.min()) and float(fused.max()) < 1
    jac = VoxelJacobian(model, volumes)
    assert jac.field == GridField((-4,) * 3, (4,) * 3, (1, 1, 1), "traced")
    assert jac.verify([(0, 0, 0), (6, 7, 5), (11, 13, 9)]) < 1e-6


@pytest.mark.slow
def test_the_stored_demo_volume_scores_reproduce() -> None:
    from fusevis.io.demo import demo_volume_arrays
    from fusevis.training.volumes import volume_scores

    arrays, _ = demo_volume_arrays()
    scores = volume_scores(get_model("Fuse3D"), [arrays["mri"], arrays["pet"]])
    stored = get_entry("Fuse3D").default_weights.meta["scores"]["demo_volume"]
    for key in ("ssim_1", "ssim_2", "fused_min", "fused_max"):
        assert scores[key] == pytest.approx(stored[key], abs=2e-4), key
