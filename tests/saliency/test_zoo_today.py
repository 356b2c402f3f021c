"""Today's local fusion networks (``zoo_today``): exact, and on the fast path.

For every network: Jacobian rows equal float64 full-image autograd at the corners and
inside (relative error ≤ 1e-5), computed by the cone or the recorded sweep (never the crop,
the full image or a measured field); guidance maps equal the diagonal of
``torch.autograd.functional.jacobian``; the traced field equals the true support of the
Jacobian found at interior pixels.
"""

from __future__ import annotations

import pytest
import torch

from fusevis.saliency import PixelJacobian, guidance_maps
from fusevis.saliency.trace import trace_receptive_fields

from .test_idioms import assert_exact, corners_and_inside, interior_block, true_support
from .zoo_today import LOCAL_ZOO

SIZE = (36, 40)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("FUSEVIS_CACHE", str(tmp_path / "cache"))


def _case(index: int, size: tuple[int, int]) -> tuple[str, torch.nn.Module, tuple]:
    name, build, count = LOCAL_ZOO[index]
    generator = torch.Generator().manual_seed(7)
    inputs = tuple(
        torch.rand(1, 1, *size, generator=generator, dtype=torch.float64) for _ in range(count)
    )
    return name, build().double(), inputs


ZOO = pytest.mark.parametrize("index", range(len(LOCAL_ZOO)), ids=[z[0] for z in LOCAL_ZOO])


@ZOO
def test_rows_are_exact_on_the_cone_or_the_recorded_sweep(index: int) -> None:
    name, model, inputs = _case(index, SIZE)
    jacobian = PixelJacobian(model)
    jacobian.prepare(inputs)  # as the viewer does
    locality = jacobian.locality(inputs)
    assert locality.local and locality.how == "traced", (name, locality.how)
    pixels = [*corners_and_inside(SIZE), (SIZE[0] // 2, SIZE[1] // 2), (3, SIZE[1] - 2)]
    used = assert_exact(model, inputs, jacobian, pixels)
    assert used <= {"cone", "recorded"}, (name, used)
    for strategy in ("cone", "recorded"):
        named = PixelJacobian(model, strategy=strategy)
        assert assert_exact(model, inputs, named, [(0, 0), (17, 21), (35, 39)]) == {strategy}


@ZOO
def test_the_traced_field_is_the_true_support(index: int) -> None:
    name, model, inputs = _case(index, SIZE)
    fields = trace_receptive_fields(model, len(inputs), inputs)
    support = true_support(model, inputs, interior_block(SIZE, fields[0].stride))
    assert support == [(f.row_lo, f.row_hi, f.col_lo, f.col_hi) for f in fields], name


@ZOO
def test_guidance_maps_are_the_jacobian_diagonal(index: int) -> None:
    side = 28 if LOCAL_ZOO[index][0] == "PoolShuffleUNet" else 24  # > the field, × the stride
    size = (side, side)
    name, model, inputs = _case(index, size)
    maps = guidance_maps(model, inputs)
    assert maps.locality.local and "probe colouring" in maps.method, (name, maps.method)
    jacobian = torch.autograd.functional.jacobian(
        lambda *xs: model(*xs)[0, 0], inputs, vectorize=True
    )
    rows, cols = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    for k, full in enumerate(jacobian):  # (H, W, 1, C, H, W) per input
        diagonal = full[rows, cols, 0, :, rows, cols].permute(2, 0, 1)  # (C, H, W)
        scale = float(diagonal.abs().max()) or 1.0
        error = float((torch.from_numpy(maps.guidance[k]) - diagonal).abs().max())
        assert error <= 1e-5 * scale, (name, k, error / scale)
