"""Per-pixel Jacobians of the trained paper networks equal full-image autograd (float64).

The zoo in conftest.py uses random weights on random inputs; trained weights on a real
image give other activation patterns (saturated tanh, dead ReLUs, FunFuseAn's near-zero
denominators), so the rows are checked again with the shipped weights and with the
authors' checkpoints on a crop of the paper's test pair.
"""

from pathlib import Path

import pytest
import torch

from fusevis.io import load_demo
from fusevis.models import get_model
from fusevis.models.inference import as_tensors
from fusevis.saliency import PixelJacobian
from fusevis.saliency.locality import sample_pixels

from .test_paper_guidance import pair

PAPER_NETWORKS = ["FunFuseAn", "MaskNet", "DeepFuse", "DeepPedestrian"]
CROP = (slice(96, 144), slice(80, 126))  # 48 x 46 pixels of brain and background


def assert_rows_equal_autograd(
    rows: tuple[torch.Tensor, ...],
    model64: torch.nn.Module,
    xs: tuple[torch.Tensor, ...],
    pixels: list[tuple[int, int]],
) -> None:
    """Rows of ``pixels`` equal float64 ``autograd.grad`` of ``model64`` to 1e-5 of each max."""
    leaves = tuple(x.detach().to(torch.float64, copy=True).requires_grad_(True) for x in xs)
    output = model64(*leaves)
    for index, (row, col) in enumerate(pixels):
        expected = torch.autograd.grad(output[0, 0, row, col], leaves, retain_graph=True)
        for k, reference in enumerate(expected):
            scale = float(reference.abs().max()) or 1.0
            error = float((rows[k][index].double() - reference).abs().max())
            assert error <= 1e-5 * scale, (type(model64).__name__, k, (row, col), error / scale)


def check_rows_against_autograd(model: torch.nn.Module, inputs: list[torch.Tensor]) -> None:
    model = model.double().eval()
    xs = tuple(x[..., CROP[0], CROP[1]].double().contiguous() for x in inputs)
    pixels = sample_pixels(tuple(xs[0].shape[-2:]), count=4)
    jacobian = PixelJacobian(model)
    found = jacobian.explain_pixels(xs, pixels)
    assert_rows_equal_autograd(_stacked(found), model, xs, pixels)
    assert {f.strategy for f in found} == {"cone"}
    prepared = PixelJacobian(model, strategy="recorded")  # a sweep from the full forward
    prepared.prepare(xs)
    found = prepared.explain_pixels(xs, pixels)
    assert {f.strategy for f in found} == {"recorded"}
    assert_rows_equal_autograd(_stacked(found), model, xs, pixels)


def _stacked(found: list) -> tuple[torch.Tensor, ...]:
    """Per input, the rows of every pixel along a leading axis (as ``attribute`` gives)."""
    dense = [f.dense() for f in found]
    return tuple(torch.cat([d[k] for d in dense]) for k in range(len(dense[0])))


@pytest.mark.parametrize("name", PAPER_NETWORKS)
def test_shipped_weights_rows_equal_autograd(name: str) -> None:
    inputs = as_tensors(load_demo("mri-pet").stack())
    check_rows_against_autograd(get_model(name), inputs)


@pytest.mark.parametrize("name", PAPER_NETWORKS)
def test_authors_checkpoint_rows_equal_autograd(paper: Path, name: str) -> None:
    model = get_model(name, weights=paper / "checkpoints" / f"{name}.pth")
    check_rows_against_autograd(model, pair(paper))


@pytest.mark.parametrize("name", ["DeepFuse", "DeepPedestrian"])
@pytest.mark.parametrize("strategy", ["recorded", "cone"])
@pytest.mark.parametrize("convolutions", ["onednn", "im2col"])
def test_float32_rows_every_way_equal_float64_autograd(
    name: str, strategy: str, convolutions: str
) -> None:
    model = get_model(name)
    inputs = [
        x[..., 100:164, 90:150].contiguous() for x in as_tensors(load_demo("mri-pet").stack())
    ]
    jacobian = PixelJacobian(model, verify=False, strategy=strategy, convolutions=convolutions)
    fused = jacobian.prepare(inputs)
    torch.testing.assert_close(fused, model(*inputs), rtol=0, atol=1e-6)
    pixels = [(0, 0), (31, 17), (63, 59)]
    found = jacobian.explain_pixels(inputs, pixels)
    rows = _stacked(found)
    assert {f.strategy for f in found} == {strategy}
    assert torch.backends.mkldnn.enabled, "the global oneDNN switch changed"
    twin = get_model(name).double().eval()
    assert_rows_equal_autograd(rows, twin, tuple(inputs), pixels)
