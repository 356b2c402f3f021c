"""Per-pixel Jacobians equal full-image autograd (float64), corners included, every strategy."""

import pytest
import torch

from fusevis.errors import InputError, ModelError
from fusevis.saliency import STRATEGIES, PixelJacobian
from fusevis.saliency.locality import sample_pixels

from .zoo import ALL, Case, ReferenceRows, case_and_rows, make_case

# the zoo's networks that the cone covers, so that the cone and recorded strategies run them
CONE = {
    "FunFuseAn",
    "MaskNet",
    "DeepFuse",
    "DeepPedestrian",
    "Dilated",
    "EncoderDecoder",  # strides, nearest and bilinear up-sampling: cut between grids
    "ThreeInputs",
    "Colour",
    "Denoiser",
}


def assert_rows_equal(
    rows: tuple[torch.Tensor, ...], reference: ReferenceRows, pixels: object, name: str
) -> None:
    """``rows`` (one leading axis of pixels) equal the reference rows to 1e-5 of each max."""
    for k in range(len(rows)):
        for index, (r, c) in enumerate(pixels):
            expected = reference((r, c))[k]
            scale = float(expected.abs().max()) or 1.0
            error = float((rows[k][index] - expected).abs().max())
            assert error <= 1e-5 * scale, (name, k, (r, c), error / scale)


def test_rows_equal_the_reference_jacobian(
    case_with_rows: tuple[Case, ReferenceRows],
) -> None:
    case, reference = case_with_rows
    jacobian = PixelJacobian(case.model, output_channel=case.output_channel)
    pixels = sample_pixels(tuple(case.inputs[0].shape[-2:]), count=4)
    rows = jacobian.attribute(case.inputs, pixels=pixels)
    assert_rows_equal(rows, reference, pixels, case.name)
    assert jacobian.locality(case.inputs).local == case.local


def _applies(strategy: str, case: Case) -> bool:
    if strategy in ("recorded", "cone"):
        return case.name in CONE
    return strategy == "full" or case.local


@pytest.mark.parametrize("strategy", ["recorded", "cone", "crop", "full"])
@pytest.mark.parametrize("name", ALL)
def test_every_strategy_equals_the_reference_jacobian(strategy: str, name: str) -> None:
    case, reference = case_and_rows(name)
    jacobian = PixelJacobian(case.model, output_channel=case.output_channel, strategy=strategy)
    pixels = sample_pixels(tuple(case.inputs[0].shape[-2:]), count=4)
    if not _applies(strategy, case):
        with pytest.raises(ModelError, match=f"strategy '{strategy}'"):
            jacobian.explain_pixels(case.inputs, pixels)
        return
    if strategy == "recorded":  # as a viewer does: one full-image forward first
        fused = jacobian.prepare(case.inputs)
        torch.testing.assert_close(fused, case.model(*case.inputs), rtol=0, atol=1e-12)
        assert jacobian.record_bytes > 0
    results = jacobian.explain_pixels(case.inputs, pixels)
    assert {r.strategy for r in results} == {strategy}
    assert all((r.field is None) == (not case.local) for r in results)
    rows = tuple(torch.cat([r.dense()[k] for r in results]) for k in range(len(case.inputs)))
    assert_rows_equal(rows, reference, pixels, f"{name} {strategy}")


def test_auto_prepares_a_record_only_where_the_cone_runs(
    case_with_rows: tuple[Case, ReferenceRows],
) -> None:
    case, _ = case_with_rows
    jacobian = PixelJacobian(case.model, output_channel=case.output_channel)
    fused = jacobian.prepare(case.inputs)
    torch.testing.assert_close(fused, case.model(*case.inputs), rtol=0, atol=1e-12)
    assert (jacobian.record_bytes > 0) == (case.name in CONE), case.name
    found = jacobian.explain(case.inputs, pixel=(0, 0))
    # a global average is a global quantity: banded plus low rank; attention: full passes
    nonlocal_way = "lowrank" if case.name == "GlobalPool" else "full"
    expected = nonlocal_way if not case.local else "crop" if case.name not in CONE else None
    assert expected is None or found.strategy == expected
    if found.strategy != "recorded":
        assert jacobian.record_bytes == 0  # slower than the cone, or never made: none kept


def test_strategy_and_convolutions_are_checked() -> None:
    case = make_case("Denoiser")
    with pytest.raises(InputError, match="unknown strategy 'fast'"):
        PixelJacobian(case.model, strategy="fast")
    with pytest.raises(InputError, match="unknown convolutions 'mkl'"):
        PixelJacobian(case.model, convolutions="mkl")
    assert STRATEGIES == ("auto", "recorded", "cone", "crop", "lowrank", "full")


def test_prepare_keeps_nothing_above_the_record_limit() -> None:
    case = make_case("DeepPedestrian", (44, 46))
    jacobian = PixelJacobian(case.model, record_limit=10_000)
    jacobian.prepare(case.inputs)
    assert jacobian.record_bytes == 0
    assert jacobian.explain(case.inputs, pixel=(3, 3)).strategy == "cone"
    named = PixelJacobian(case.model, record_limit=10_000, strategy="recorded")
    with pytest.raises(ModelError, match="record would exceed 10000 bytes"):
        named.explain(case.inputs, pixel=(3, 3))


def _autograd_row(model, inputs, pixel):  # noqa: ANN001, ANN202
    xs = tuple(x.clone().requires_grad_(True) for x in inputs)
    return torch.autograd.grad(model(*xs)[0, 0, pixel[0], pixel[1]], xs)


def assert_same(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)


def test_a_record_is_used_only_for_the_inputs_it_was_made_from() -> None:
    case = make_case("DeepPedestrian", (44, 46))
    jacobian = PixelJacobian(case.model)
    jacobian.prepare(case.inputs)
    changed = tuple(x.clone() for x in case.inputs)
    changed[0][..., 4, 4] = 0.25
    found = jacobian.explain(changed, pixel=(3, 3))
    assert found.strategy == "cone"  # the record is of other tensors
    assert_same(found.dense(), _autograd_row(case.model, changed, (3, 3)))
    assert jacobian.record_bytes > 0  # kept for the inputs it was made from
    case.inputs[1][..., 0, 0] = 0.5  # modified in place: the version counter changes
    found = jacobian.explain(case.inputs, pixel=(3, 3))
    assert found.strategy == "cone"
    assert_same(found.dense(), _autograd_row(case.model, case.inputs, (3, 3)))
    named = PixelJacobian(case.model, strategy="recorded")  # records what it is given
    named.prepare(case.inputs)
    found = named.explain(changed, pixel=(3, 3))
    assert found.strategy == "recorded"
    assert_same(found.dense(), _autograd_row(case.model, changed, (3, 3)))


def test_a_sibling_shares_the_analysis_not_the_record() -> None:
    case = make_case("DeepPedestrian", (40, 41))
    jacobian = PixelJacobian(case.model)
    jacobian.prepare(case.inputs)
    kept = jacobian.record_bytes
    other = tuple(x.flip(-1).contiguous() for x in case.inputs)
    twin = jacobian.sibling()
    assert twin.record_bytes == 0
    assert twin.locality(other) is jacobian.locality(case.inputs)  # not analysed again
    twin.prepare(other)
    assert twin.record_bytes > 0 and jacobian.record_bytes == kept
    assert jacobian.explain(case.inputs, pixel=(5, 6)).strategy in ("recorded", "cone")
    assert_same(twin.explain(other, pixel=(5, 6)).dense(), _autograd_row(case.model, other, (5, 6)))
    assert_same(
        jacobian.explain(case.inputs, pixel=(5, 6)).dense(),
        _autograd_row(case.model, case.inputs, (5, 6)),
    )


def test_a_record_of_two_dimensional_inputs_serves_them_again() -> None:
    case = make_case("DeepPedestrian", (44, 46))
    images = tuple(x[0, 0].clone() for x in case.inputs)  # (H, W): new views on every call
    jacobian = PixelJacobian(case.model, strategy="recorded")
    jacobian.prepare(images)
    found = jacobian.explain(images, pixel=(43, 0))
    assert found.strategy == "recorded"
    assert_same(found.dense(), _autograd_row(case.model, case.inputs, (43, 0)))


def test_single_pixel_shape_and_zero_outside_the_window(
    case_with_rows: tuple[Case, ReferenceRows],
) -> None:
    case, reference = case_with_rows
    jacobian = PixelJacobian(case.model, output_channel=case.output_channel)
    rows = jacobian.attribute(case.inputs, pixel=(0, 0))
    assert len(rows) == len(case.inputs)
    for row, x, ref in zip(rows, case.inputs, reference((0, 0)), strict=True):
        assert row.shape == x.shape
        torch.testing.assert_close(row[0], ref, atol=1e-10, rtol=1e-6)
    window = jacobian.explain(case.inputs, pixel=(0, 0)).window
    assert window.top == 0 and window.left == 0
    if not case.local:
        assert window.shape == tuple(case.inputs[0].shape[-2:])
    for row in rows:
        outside = row.clone()
        outside[..., window.top : window.bottom, window.left : window.right] = 0
        assert float(outside.abs().max()) == 0.0


@pytest.mark.parametrize("strategy", ["cone", "crop"])
def test_cone_and_crop_agree(strategy: str) -> None:
    case = make_case("MaskNet", (24, 26))
    found = PixelJacobian(case.model, strategy=strategy).explain(case.inputs, pixel=(5, 25))
    assert found.strategy == strategy
    assert_same(found.dense(), _autograd_row(case.model, case.inputs, (5, 25)))


@pytest.mark.parametrize("name", ["MaskNet", "EncoderDecoder", "GlobalPool"])
def test_the_cropped_rows_are_the_full_rows_cut_to_their_window(name: str) -> None:
    case = make_case(name, (64, 60))
    found = PixelJacobian(case.model).explain(case.inputs, pixel=(29, 3))
    window, crops = found.window, found.cropped()
    rows, cols = window.as_slices()
    for row, crop in zip(found.dense(), crops, strict=True):
        assert crop.shape == (row.shape[1], *window.shape)
        torch.testing.assert_close(crop, row[0][:, rows, cols], rtol=0, atol=0)
        outside = row.clone()
        outside[..., rows, cols] = 0
        assert float(outside.abs().max()) == 0.0


def test_each_result_carries_the_field_it_was_computed_with() -> None:
    case = make_case("DeepFuse", (30, 28))
    jacobian = PixelJacobian(case.model)
    found = jacobian.explain(case.inputs, pixel=(3, 4))
    assert found.field is not None and found.field == jacobian.locality(case.inputs).field
    tiny = tuple(x[..., :5, :5] for x in case.inputs)  # the field covers the whole image
    small = jacobian.explain(tiny, pixel=(1, 1))
    assert small.field is None and small.strategy == "full"
    assert not jacobian.locality(tiny).local
    assert found.field is not None  # a value: the later call did not change it
    again = jacobian.explain(case.inputs, pixel=(3, 4))  # the bigger size, already analysed
    assert again.field == found.field and again.strategy == found.strategy


def test_the_first_pixel_after_prepare_keeps_the_record_only_if_it_is_faster() -> None:
    from fusevis.models import DeepPedestrian

    torch.manual_seed(0)
    model = DeepPedestrian().eval()
    inputs = tuple(torch.rand(1, 1, 48, 50) for _ in range(2))
    jacobian = PixelJacobian(model, verify=False)
    jacobian.prepare(inputs)
    assert jacobian.record_bytes > 0
    found = jacobian.explain(inputs, pixel=(24, 25))
    assert found.strategy in ("recorded", "cone")
    assert (jacobian.record_bytes > 0) == (found.strategy == "recorded")


class _SumsWithItself(torch.nn.Module):
    """Conv, ReLU, then h + h and h * 0.5 + h: sums whose arguments repeat one node."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.last = torch.nn.Conv2d(12, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.first(torch.cat((a, b), dim=1)))
        return self.last(torch.cat((h + h, h * 0.5 + h, h), dim=1))


def test_recorded_sums_count_a_repeated_argument_each_time() -> None:
    torch.manual_seed(0)
    model = _SumsWithItself().double().eval()
    inputs = tuple(torch.rand(1, 1, 16, 17, dtype=torch.float64) for _ in range(2))
    jacobian = PixelJacobian(model, strategy="recorded")
    jacobian.prepare(inputs)
    found = jacobian.explain(inputs, pixel=(7, 8))
    assert found.strategy == "recorded"
    assert_same(found.dense(), _autograd_row(model, inputs, (7, 8)))
