"""Per-pixel Jacobians equal full-image autograd (float64), corners included."""

import pytest
import torch

from fusevis.saliency import PixelJacobian
from fusevis.saliency.locality import sample_pixels

from .conftest import Case

# the zoo's networks that the cone executor covers, so that prepare() can record them
RECORDED = {
    "FunFuseAn",
    "MaskNet",
    "DeepFuse",
    "DeepPedestrian",
    "Dilated",
    "ThreeInputs",
    "Colour",
    "Denoiser",
}


def test_rows_equal_the_reference_jacobian(
    case_with_reference: tuple[Case, tuple[torch.Tensor, ...]],
) -> None:
    case, reference = case_with_reference
    jacobian = PixelJacobian(case.model, output_channel=case.output_channel)
    shape = tuple(case.inputs[0].shape[-2:])
    pixels = sample_pixels(shape, count=4)
    rows = jacobian.attribute(case.inputs, pixels=pixels)
    for k, ref in enumerate(reference):
        for index, (r, c) in enumerate(pixels):
            expected = ref[r, c]
            got = rows[k][index]
            scale = float(expected.abs().max()) or 1.0
            assert float((got - expected).abs().max()) <= 1e-5 * scale, (case.name, k, (r, c))
    locality = jacobian.locality(case.inputs)
    assert locality.path == ("crop" if case.local else "full")


def test_prepared_rows_equal_the_reference_jacobian(
    case_with_reference: tuple[Case, tuple[torch.Tensor, ...]],
) -> None:
    case, reference = case_with_reference
    jacobian = PixelJacobian(case.model, output_channel=case.output_channel)
    fused = jacobian.prepare(case.inputs)
    torch.testing.assert_close(fused, case.model(*case.inputs), rtol=0, atol=1e-12)
    recorded = jacobian._record is not None
    assert recorded == (case.name in RECORDED), case.name
    key = (torch.float64, "cpu", True)
    jacobian._ways[key] = (True, torch.backends.mkldnn.enabled)  # the record, not the cone
    shape = tuple(case.inputs[0].shape[-2:])
    pixels = sample_pixels(shape, count=4)
    rows = jacobian.attribute(case.inputs, pixels=pixels)
    for k, ref in enumerate(reference):
        for index, (r, c) in enumerate(pixels):
            scale = float(ref[r, c].abs().max()) or 1.0
            error = float((rows[k][index] - ref[r, c]).abs().max())
            assert error <= 1e-5 * scale, (case.name, k, (r, c))
    assert recorded == (jacobian.method == "recorded")
    if not case.local:
        assert jacobian.method == "full" and not recorded


def test_prepare_keeps_nothing_above_the_record_limit() -> None:
    from .conftest import make_case

    case = make_case("DeepPedestrian", (44, 46))
    jacobian = PixelJacobian(case.model, record_limit=10_000)
    jacobian.prepare(case.inputs)
    assert jacobian._record is None
    jacobian.attribute(case.inputs, pixel=(3, 3))
    assert jacobian.method == "cone"


def test_a_record_is_used_only_for_the_inputs_it_was_made_from() -> None:
    from .conftest import make_case

    case = make_case("DeepPedestrian", (44, 46))
    jacobian = PixelJacobian(case.model)
    jacobian.prepare(case.inputs)
    jacobian._ways[(torch.float64, "cpu", True)] = (True, torch.backends.mkldnn.enabled)
    jacobian.attribute(case.inputs, pixel=(3, 3))
    assert jacobian.method == "recorded"
    changed = tuple(x.clone() for x in case.inputs)
    changed[0][..., 4, 4] = 0.25
    rows = jacobian.attribute(changed, pixel=(3, 3))
    assert jacobian.method == "cone"
    xs = tuple(x.clone().requires_grad_(True) for x in changed)
    expected = torch.autograd.grad(case.model(*xs)[0, 0, 3, 3], xs)
    for got, want in zip(rows, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-9)
    case.inputs[1][..., 0, 0] = 0.5  # modified in place: the version counter changes
    jacobian.attribute(case.inputs, pixel=(3, 3))
    assert jacobian.method == "cone"


def test_a_record_of_two_dimensional_inputs_serves_them_again() -> None:
    from .conftest import make_case

    case = make_case("DeepPedestrian", (44, 46))
    images = tuple(x[0, 0].clone() for x in case.inputs)  # (H, W): new views on every call
    jacobian = PixelJacobian(case.model)
    jacobian.prepare(images)
    jacobian._ways[(torch.float64, "cpu", True)] = (True, torch.backends.mkldnn.enabled)
    rows = jacobian.attribute(images, pixel=(43, 0))
    assert jacobian.method == "recorded"
    xs = tuple(x.clone().requires_grad_(True) for x in case.inputs)
    expected = torch.autograd.grad(case.model(*xs)[0, 0, 43, 0], xs)
    for got, want in zip(rows, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-9)


def test_single_pixel_shape_and_zero_outside_field(
    case_with_reference: tuple[Case, tuple[torch.Tensor, ...]],
) -> None:
    case, reference = case_with_reference
    jacobian = PixelJacobian(case.model, output_channel=case.output_channel)
    rows = jacobian.attribute(case.inputs, pixel=(0, 0))
    assert len(rows) == len(case.inputs)
    for row, x, ref in zip(rows, case.inputs, reference, strict=True):
        assert row.shape == x.shape
        torch.testing.assert_close(row[0], ref[0, 0], atol=1e-10, rtol=1e-6)
    if case.local:
        window = jacobian.last_window
        assert window is not None and window.top == 0 and window.left == 0
        for row in rows:
            outside = row.clone()
            outside[..., window.top : window.bottom, window.left : window.right] = 0
            assert float(outside.abs().max()) == 0.0


@pytest.mark.parametrize("use_cone", [True, False])
def test_cone_and_crop_agree(use_cone: bool) -> None:
    from .conftest import make_case

    case = make_case("MaskNet", (24, 26))
    jacobian = PixelJacobian(case.model)
    jacobian.use_cone = use_cone
    first = jacobian.attribute(case.inputs, pixel=(5, 25))
    assert jacobian.method == ("cone" if use_cone else "crop")
    xs = tuple(x.clone().requires_grad_(True) for x in case.inputs)
    full = torch.autograd.grad(case.model(*xs)[0, 0, 5, 25], xs)
    for got, expected in zip(first, full, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("name", ["MaskNet", "EncoderDecoder", "GlobalPool"])
def test_attribute_window_is_the_full_row_cut_to_its_window(name: str) -> None:
    from .conftest import make_case

    case = make_case(name, (64, 60))
    jacobian = PixelJacobian(case.model)
    full = jacobian.attribute(case.inputs, pixel=(29, 3))
    window, crops = jacobian.attribute_window(case.inputs, pixel=(29, 3))
    assert window == jacobian.last_window
    rows, cols = window.as_slices()
    for row, crop in zip(full, crops, strict=True):
        assert crop.shape == (row.shape[1], *window.shape)
        torch.testing.assert_close(crop, row[0][:, rows, cols], rtol=0, atol=0)
        outside = row.clone()
        outside[..., rows, cols] = 0
        assert float(outside.abs().max()) == 0.0


def test_receptive_field_is_that_of_the_last_call() -> None:
    from .conftest import make_case

    case = make_case("DeepFuse", (30, 28))
    jacobian = PixelJacobian(case.model)
    assert jacobian.receptive_field is None
    jacobian.attribute(case.inputs, pixel=(3, 4))
    assert jacobian.receptive_field is not None and jacobian.locality(case.inputs).path == "crop"
    tiny = tuple(x[..., :5, :5] for x in case.inputs)  # the field covers the whole image
    jacobian.attribute(tiny, pixel=(1, 1))
    assert jacobian.locality(tiny).path == "full" and jacobian.receptive_field is None
    jacobian.attribute(case.inputs, pixel=(3, 4))  # the bigger size again, already analysed
    assert jacobian.receptive_field == jacobian.locality(case.inputs).field


def test_the_first_pixel_after_prepare_keeps_the_record_only_if_it_is_faster() -> None:
    from fusevis.models import DeepPedestrian

    torch.manual_seed(0)
    model = DeepPedestrian().eval()
    inputs = tuple(torch.rand(1, 1, 48, 50) for _ in range(2))
    jacobian = PixelJacobian(model, verify=False)
    jacobian.prepare(inputs)
    assert jacobian._record is not None
    jacobian.attribute(inputs, pixel=(24, 25))
    use_record, _ = jacobian._ways[(torch.float32, "cpu", True)]
    assert (jacobian._record is not None) == use_record
    assert jacobian.method == ("recorded" if use_record else "cone")


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
    jacobian = PixelJacobian(model)
    jacobian.prepare(inputs)
    jacobian._ways[(torch.float64, "cpu", True)] = (True, torch.backends.mkldnn.enabled)
    rows = jacobian.attribute(inputs, pixel=(7, 8))
    assert jacobian.method == "recorded"
    xs = tuple(x.clone().requires_grad_(True) for x in inputs)
    expected = torch.autograd.grad(model(*xs)[0, 0, 7, 8], xs)
    for got, want in zip(rows, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-9)
