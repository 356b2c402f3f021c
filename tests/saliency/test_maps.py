"""Guidance and influence maps equal the reference Jacobian's diagonal and row sums."""

import numpy as np
import pytest
import torch

from fusevis.saliency import guidance_maps, influence_maps

from .zoo import INFLUENCE, Case, case_and_reference


def test_guidance_is_the_jacobian_diagonal(
    case_with_reference: tuple[Case, tuple[torch.Tensor, ...]],
) -> None:
    case, reference = case_with_reference
    maps = guidance_maps(case.model, case.inputs, output_channel=case.output_channel)
    height, width = case.inputs[0].shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    for k, ref in enumerate(reference):
        diagonal = ref[rows, cols, :, rows, cols].permute(2, 0, 1).numpy()  # (C, H, W)
        scale = float(np.abs(diagonal).max()) or 1.0
        assert np.abs(maps.guidance[k] - diagonal).max() <= 1e-5 * scale, (case.name, k)
    with torch.no_grad():
        output = case.model(*case.inputs)
    from .zoo import selected

    np.testing.assert_allclose(
        maps.fused, selected(output, case.output_channel).numpy(), atol=1e-12
    )
    assert ("probe colouring" in maps.method) == case.local


@pytest.mark.parametrize("name", INFLUENCE)
def test_influence_is_the_row_l1_norm(name: str) -> None:
    case, reference = case_and_reference(name)
    tile = 8 if case.name in ("WeightedAverage", "ThreeInputs", "Denoiser") else 512
    maps = influence_maps(case.model, case.inputs, output_channel=case.output_channel, tile=tile)
    assert maps.influence is not None and maps.share is not None
    for k, ref in enumerate(reference):
        expected = ref.abs().sum(dim=(2, 3, 4)).numpy()
        scale = float(expected.max()) or 1.0
        assert np.abs(maps.influence[k] - expected).max() <= 1e-5 * scale, (case.name, k)
    np.testing.assert_allclose(np.sum(maps.share, axis=0), 1.0, atol=1e-6)
