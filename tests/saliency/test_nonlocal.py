"""Non-local networks: exact rows and maps (banded plus low rank, or batched full-image passes),
and estimates only when asked for, with bounds that hold where they are checked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from fusevis.errors import InputError, ModelError
from fusevis.saliency import PixelJacobian, guidance_maps, influence_maps
from fusevis.saliency.batched import z_value
from fusevis.saliency.locality import analyse_locality, sample_pixels, verify_field
from fusevis.saliency.lowrank import LowRank, find_structure

from .zoo_nonlocal import BUILDERS, STRUCTURE

SIZE = (16, 20)
_CACHE: dict[str, tuple[nn.Module, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}


def case(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The zoo network in float64, two 16×20 inputs and its (H, W, C, H, W) Jacobians."""
    if name not in _CACHE:
        torch.manual_seed(0)
        model = BUILDERS[name](6).double().eval()
        generator = torch.Generator().manual_seed(1)
        inputs = tuple(
            torch.rand(1, 1, *SIZE, generator=generator, dtype=torch.float64) for _ in range(2)
        )

        def fused(*xs: torch.Tensor) -> torch.Tensor:
            return model(*xs)[0, 0]

        jacobian = torch.autograd.functional.jacobian(fused, inputs, vectorize=True)
        _CACHE[name] = (model, inputs, tuple(j[:, :, 0] for j in jacobian))
    return _CACHE[name]


def diagonal(reference: torch.Tensor) -> np.ndarray:
    rows, cols = torch.meshgrid(torch.arange(SIZE[0]), torch.arange(SIZE[1]), indexing="ij")
    return reference[rows, cols, :, rows, cols].permute(2, 0, 1).numpy()  # (C, H, W)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_rows_are_exact_and_say_how(name: str) -> None:
    model, inputs, reference = case(name)
    jacobian = PixelJacobian(model)
    pixels = sample_pixels(SIZE, count=3)  # corners, edge midpoints, centre, interior
    found = jacobian.explain_pixels(inputs, pixels)
    assert {f.strategy for f in found} == {STRUCTURE[name]}
    for result, (r, c) in zip(found, pixels, strict=True):
        for k, row in enumerate(result.dense()):
            expected = reference[k][r, c]
            scale = float(expected.abs().max())
            assert float((row[0] - expected).abs().max()) <= 1e-5 * scale, (name, k, (r, c))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_guidance_is_the_exact_diagonal(name: str) -> None:
    model, inputs, reference = case(name)
    maps = guidance_maps(model, inputs)
    assert not maps.estimate and maps.error_bound is None
    assert "exact" in maps.method and "ESTIMATE" not in maps.method
    assert ("banded plus low rank" in maps.method) == (STRUCTURE[name] == "lowrank")
    for k, ref in enumerate(reference):
        expected = diagonal(ref)
        assert np.abs(maps.guidance[k] - expected).max() <= 1e-5 * np.abs(expected).max()
    with torch.no_grad():
        np.testing.assert_allclose(maps.fused, model(*inputs)[0, 0].numpy(), atol=1e-12)


@pytest.mark.parametrize(
    "name", ["ChannelAttention", "TransposedAttention", "MinMax", "GlobalAttention"]
)
def test_influence_is_the_exact_row_l1_norm(name: str) -> None:
    model, inputs, reference = case(name)
    maps = influence_maps(model, inputs)
    assert maps.influence is not None and not maps.estimate
    for k, ref in enumerate(reference):
        expected = ref.abs().sum(dim=(2, 3, 4)).numpy()
        assert np.abs(maps.influence[k] - expected).max() <= 1e-5 * expected.max(), (name, k)
        assert np.abs(maps.guidance[k] - diagonal(ref)).max() <= 1e-5 * np.abs(diagonal(ref)).max()


def test_the_global_quantities_found() -> None:
    """Squeeze-excitation: the two blocks' scales (the second's pooling depends on the first's
    scale: nested); transposed attention: a heads × (C/heads)² attention per block; min-max:
    the minimum and the range."""
    expected = {
        "ChannelAttention": (2, 12),
        "TransposedAttention": (2, 2 * 2 * 3 * 3),
        "MinMax": (2, 2),
    }
    for name, (count, size) in expected.items():
        model, inputs, _ = case(name)
        structure = find_structure(model, inputs)
        assert (len(structure.globals), structure.size) == (count, size), structure.describe()
    for name in ("GlobalAttention", "ShiftedWindow"):
        model, inputs, _ = case(name)
        assert "no global quantity" in (LowRank(model).problem(inputs) or "")


def test_a_new_image_gets_its_own_decomposition() -> None:
    model, inputs, _ = case("ChannelAttention")
    jacobian = PixelJacobian(model)
    jacobian.explain(inputs, pixel=(3, 4))
    others = tuple(torch.rand_like(x) for x in inputs)
    found = jacobian.explain(others, pixel=(3, 4))
    assert found.strategy == "lowrank"
    leaves = [x.clone().requires_grad_(True) for x in others]
    model(*leaves)[0, 0, 3, 4].backward()
    for row, leaf in zip(found.dense(), leaves, strict=True):
        assert torch.allclose(row, leaf.grad, rtol=0, atol=1e-12 * float(leaf.grad.abs().max()))


def test_prepare_keeps_what_later_pixels_need() -> None:
    calls = {"count": 0}

    for name, strategy in (("MinMax", "lowrank"), ("GlobalAttention", "full")):
        model, inputs, reference = case(name)
        handle = model.register_forward_hook(
            lambda *_: calls.__setitem__("count", calls["count"] + 1)
        )
        try:
            jacobian = PixelJacobian(model)
            jacobian.locality(inputs)
            calls["count"] = 0
            output = jacobian.prepare(inputs)
            with torch.no_grad():
                torch.testing.assert_close(output, model(*inputs), rtol=0, atol=1e-12)
            calls["count"] = 0
            for pixel in ((0, 0), (9, 11), (15, 19)):
                found = jacobian.explain(inputs, pixel)
                assert found.strategy == strategy
            assert calls["count"] == 0  # no forward of the model per pixel
        finally:
            handle.remove()


def test_named_strategies_are_checked() -> None:
    model, inputs, _ = case("GlobalAttention")
    with pytest.raises(ModelError, match="strategy 'lowrank' cannot run this model: no global"):
        PixelJacobian(model, strategy="lowrank").explain(inputs, pixel=(1, 1))
    local = nn.Conv2d(2, 1, 3, padding=1).double()
    with pytest.raises(ModelError, match="strategy 'lowrank' is for models that are not local"):
        PixelJacobian(lambda_model(local), strategy="lowrank").explain(inputs, pixel=(1, 1))
    model, inputs, reference = case("MinMax")
    found = PixelJacobian(model, strategy="full").explain(inputs, pixel=(2, 3))
    assert found.strategy == "full"


class lambda_model(nn.Module):  # noqa: N801 - a tiny local two-input wrapper
    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((a, b), dim=1))


def test_too_many_global_scalars_fall_back_to_exact_full_passes() -> None:
    model, inputs, reference = case("TransposedAttention")
    lowrank = LowRank(model, global_limit=10)
    assert "36 global scalars (more than 10)" in (lowrank.problem(inputs) or "")
    small = LowRank(model, memory=1000)
    assert "U and D would take" in (small.problem(inputs) or "")


# -- estimates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["GlobalAttention", "ShiftedWindow"])
def test_an_estimate_is_marked_and_its_bound_holds_where_checked(name: str) -> None:
    model, inputs, reference = case(name)
    maps = guidance_maps(model, inputs, estimate=True, probes=256)
    assert maps.estimate and maps.method.startswith("ESTIMATE, not exact")
    check = maps.extra["estimate"]
    assert check["held"] and check["widened"] == 1.0 and check["checked"] == 17
    assert maps.error_bound is not None
    pixels = sample_pixels(SIZE, count=8, seed=1)  # the pixels the estimate was checked at
    rows = torch.tensor([p[0] for p in pixels])
    cols = torch.tensor([p[1] for p in pixels])
    exceeded = 0
    for k, ref in enumerate(reference):
        error = np.abs(maps.guidance[k] - diagonal(ref))
        bound = maps.error_bound[k]
        assert (error[:, rows, cols] <= bound[:, rows, cols]).all(), (name, k)
        exceeded += int((error > bound).sum())
        # an estimate, not a guess: within a few percent of the diagonal's range here
        assert np.median(error) <= 0.05 * np.abs(diagonal(ref)).max()
    # every pixel's bound holds with probability 0.999: over 640 values, a few at most exceed
    assert exceeded <= 3


def test_estimates_only_when_asked_and_only_where_not_exact() -> None:
    model, inputs, _ = case("GlobalAttention")
    exact = guidance_maps(model, inputs)
    assert not exact.estimate and "estimate" not in exact.extra
    structured, structured_inputs, _ = case("MinMax")
    asked = guidance_maps(structured, structured_inputs, estimate=True)
    assert not asked.estimate and "banded plus low rank" in asked.method  # exact anyway
    with pytest.raises(InputError, match="influence maps have no estimate"):
        influence_maps(model, inputs, estimate=True)
    with pytest.raises(InputError, match="at least 32 probes"):
        guidance_maps(model, inputs, estimate=True, probes=8)


def test_the_bound_multiplier() -> None:
    # Hoeffding for many probes, Student's t for few (its sample deviation is itself uncertain)
    assert z_value(0.999, 10_000) == pytest.approx(np.sqrt(2 * np.log(2000)))
    assert z_value(0.999, 16) > z_value(0.999, 10_000)
    with pytest.raises(InputError, match="confidence"):
        z_value(1.0, 16)


class _BatchCoupled(nn.Module):
    """Attention over all pixels that also mixes the images of a batch (never independent)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = BUILDERS["GlobalAttention"](4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = self.inner(a, b)
        return y + 0.5 * y.mean(dim=0, keepdim=True)


@pytest.mark.parametrize("way", ["vmap", "replicate"])
def test_exact_batched_maps_either_way(way: str) -> None:
    from fusevis.saliency.batched import exact_maps
    from fusevis.saliency.maps import _Saver

    model, inputs, reference = case("GlobalAttention")
    coupled = _BatchCoupled().double().eval()
    for net, refs in ((model, reference), (coupled, None)):
        if refs is None:
            refs = torch.autograd.functional.jacobian(lambda a, b: coupled(a, b)[0, 0], inputs)
            refs = tuple(j[:, :, 0] for j in refs)
        arrays = {"fused": np.zeros(SIZE)} | {
            f"guidance_{k}": np.zeros((1, *SIZE)) for k in range(2)
        }
        arrays |= {f"influence_{k}": np.zeros(SIZE) for k in range(2)}
        method = exact_maps(
            net, inputs, arrays, True, 0, None, None, _Saver(None), set(), 1 << 26, way
        )
        assert "256 per batched pass" in method  # MAX_BATCH: 320 pixels in two passes
        assert ("not independent" in method) == (way == "replicate" and net is coupled)
        for k, ref in enumerate(refs):
            expected = diagonal(ref)
            assert (
                np.abs(arrays[f"guidance_{k}"] - expected).max() <= 1e-10 * np.abs(expected).max()
            )
            l1 = ref.abs().sum(dim=(2, 3, 4)).numpy()
            assert np.abs(arrays[f"influence_{k}"] - l1).max() <= 1e-10 * l1.max()


class _ScalarMinMax(nn.Module):
    """``(y - y.min()) / (y.max() - y.min())``: global quantities without any axis."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = self.conv(torch.cat((a, b), dim=1))
        return (y - y.min()) / (y.max() - y.min())


def test_scalar_global_quantities() -> None:
    torch.manual_seed(0)
    model = _ScalarMinMax().double().eval()
    inputs = tuple(torch.rand(1, 1, 12, 14, dtype=torch.float64) for _ in range(2))
    found = PixelJacobian(model).explain(inputs, pixel=(0, 13))
    assert found.strategy == "lowrank"
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    model(*leaves)[0, 0, 0, 13].backward()
    for row, leaf in zip(found.dense(), leaves, strict=True):
        assert float((row - leaf.grad).abs().max()) <= 1e-12 * float(leaf.grad.abs().max())


# -- windows: local, on crops that start where the image's windows start -------------------------


def test_window_attention_is_local_on_crops_aligned_to_its_windows() -> None:
    """Swin-style windows (window 4, then shifted by 2 with ``torch.roll`` and a mask): the
    tracer stops at the window partition, the field is measured, and crops are exact only
    where they start on a multiple of the window. The rows, the guidance and the influence
    maps computed on such crops equal float64 autograd over the whole image."""
    torch.manual_seed(0)
    model = BUILDERS["ShiftedWindow"](6).double().eval()
    size = (24, 28)
    generator = torch.Generator().manual_seed(1)
    inputs = tuple(
        torch.rand(1, 1, *size, generator=generator, dtype=torch.float64) for _ in range(2)
    )
    locality = analyse_locality(model, inputs, cache=False)
    assert locality.local and locality.field is not None, locality.how
    assert locality.field.stride == (4, 4) and "multiples of 4" in locality.how
    assert locality.field.height < size[0] and locality.field.width < size[1]
    pixels = sample_pixels(size, count=4)
    unaligned = replace(locality.field, stride=(1, 1))
    assert verify_field(model, inputs, unaligned, 0, pixels) > 1e-3  # why the period matters

    jacobian = torch.autograd.functional.jacobian(
        lambda *xs: model(*xs)[0, 0], inputs, vectorize=True
    )
    reference = tuple(j[:, :, 0] for j in jacobian)  # (H, W, C, H, W) per input
    found = PixelJacobian(model).explain_pixels(inputs, pixels)
    assert {f.strategy for f in found} == {"crop"}
    for result, (r, c) in zip(found, pixels, strict=True):
        for k, row in enumerate(result.dense()):
            expected = reference[k][r, c]
            assert float((row[0] - expected).abs().max()) <= 1e-9 * float(expected.abs().max())
    maps = influence_maps(model, inputs)
    assert "probe colouring" in maps.method and not maps.estimate
    rows, cols = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    for k, ref in enumerate(reference):
        expected = ref[rows, cols, :, rows, cols].permute(2, 0, 1).numpy()
        assert np.abs(maps.guidance[k] - expected).max() <= 1e-9 * np.abs(expected).max()
        magnitude = ref.abs().sum(dim=(2, 3, 4)).numpy()
        assert np.abs(maps.influence[k] - magnitude).max() <= 1e-9 * magnitude.max()
