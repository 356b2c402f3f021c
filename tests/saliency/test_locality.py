"""Receptive fields: traced where possible, measured otherwise, verified, overridable."""

import pytest
import torch

from fusevis.models import get_model
from fusevis.saliency import PixelJacobian, ReceptiveField, analyse_locality
from fusevis.saliency.trace import NotLocal, TraceFailure, trace_receptive_fields

from .networks import DilatedNet, EncoderDecoder, GlobalPoolNet
from .zoo import make_case


@pytest.mark.parametrize(
    ("name", "radii"),
    [
        ("FunFuseAn", (9, 11)),
        ("MaskNet", (8, 8)),
        ("DeepFuse", (12, 12)),
        ("DeepPedestrian", (17, 17)),
    ],
)
def test_paper_networks_fields_are_traced(name: str, radii: tuple[int, int]) -> None:
    fields = trace_receptive_fields(get_model(name, weights=None), 2)
    assert tuple(f.radius for f in fields) == radii
    assert all(f.source == "traced" and f.stride == (1, 1) for f in fields)


def test_dilation_and_stride_are_traced() -> None:
    dilated = trace_receptive_fields(DilatedNet(), 2)[0]
    assert dilated.radius == 2 + 3 + 1
    encoder = trace_receptive_fields(EncoderDecoder(), 2)[0]
    assert encoder.stride == (4, 4)


def test_global_pooling_is_detected() -> None:
    with pytest.raises(NotLocal):
        trace_receptive_fields(GlobalPoolNet(), 2)


def test_untraceable_model_is_measured_and_verified() -> None:
    case = make_case("DataDependent")
    with pytest.raises(TraceFailure):
        trace_receptive_fields(case.model, 2)
    locality = analyse_locality(case.model, case.inputs)
    assert locality.local and locality.how.startswith("measured")
    assert locality.field.radius >= 2  # a 5x5 convolution
    assert locality.verified_error is not None and locality.verified_error < 1e-9


@pytest.mark.parametrize("name", ["GlobalPool", "SelfAttention"])
def test_non_local_models_are_found_not_local(name: str) -> None:
    case = make_case(name)
    locality = analyse_locality(case.model, case.inputs)
    assert not locality.local and locality.field is None and "not local" in locality.how


def test_user_override_too_small_is_widened_by_verification() -> None:
    case = make_case("DeepFuse")
    jacobian = PixelJacobian(case.model, receptive_field=ReceptiveField.square(3), strategy="crop")
    locality = jacobian.locality(case.inputs)
    assert locality.how.startswith("user") and "widened" in locality.how
    xs = tuple(x.clone().requires_grad_(True) for x in case.inputs)
    expected = torch.autograd.grad(case.model(*xs)[0, 0, 10, 10], xs)
    got = jacobian.attribute(case.inputs, pixel=(10, 10))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)


def test_user_override_large_enough_is_kept() -> None:
    case = make_case("DeepFuse", (40, 40))
    locality = analyse_locality(case.model, case.inputs, override=ReceptiveField.square(13))
    assert locality.field == ReceptiveField.square(13) and locality.how == "user"
