"""Attribution methods on crops equal the same methods on the whole image."""

import numpy as np
import pytest
import torch

from fusevis.saliency import (
    Gradient,
    GradientTimesInput,
    IntegratedGradients,
    PixelJacobian,
    SmoothGrad,
)

from .zoo import make_case


@pytest.fixture(scope="module")
def case():  # noqa: ANN201
    return make_case("DeepFuse", (40, 42))


def full_gradient(model, xs, mask):  # noqa: ANN001, ANN201
    leaves = tuple(x.clone().requires_grad_(True) for x in xs)
    target = (model(*leaves)[0, 0] * mask).sum()
    return torch.autograd.grad(target, leaves)


def region() -> torch.Tensor:
    mask = torch.zeros(40, 42, dtype=torch.bool)
    mask[3:9, 30:41] = True
    return mask


def test_gradient_of_a_pixel_is_its_jacobian_row(case) -> None:  # noqa: ANN001
    got = Gradient(case.model).attribute(case.inputs, pixel=(7, 8))
    row = PixelJacobian(case.model).attribute(case.inputs, pixel=(7, 8))
    for a, b in zip(got, row, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)


def test_region_gradient_and_gradient_times_input(case) -> None:  # noqa: ANN001
    mask = region()
    expected = full_gradient(case.model, case.inputs, mask.double())
    got = Gradient(case.model).attribute(case.inputs, region=mask)
    times = GradientTimesInput(case.model).attribute(case.inputs, region=mask)
    for g, t, e, x in zip(got, times, expected, case.inputs, strict=True):
        torch.testing.assert_close(g, e, atol=1e-12, rtol=1e-9)
        torch.testing.assert_close(t, e * x, atol=1e-12, rtol=1e-9)


def test_smoothgrad_matches_whole_image_noise(case) -> None:  # noqa: ANN001
    method = SmoothGrad(case.model, samples=4, sigma=0.1, seed=3)
    got = method.attribute(case.inputs, pixel=(20, 20))
    generator = torch.Generator().manual_seed(3)
    mask = torch.zeros(40, 42, dtype=torch.float64)
    mask[20, 20] = 1
    total = [torch.zeros_like(x) for x in case.inputs]
    for _ in range(4):
        noisy = [
            x
            + 0.1
            * float(x.max() - x.min())
            * torch.randn(x.shape, generator=generator, dtype=x.dtype)
            for x in case.inputs
        ]
        for acc, g in zip(total, full_gradient(case.model, noisy, mask), strict=True):
            acc += g
    for a, t in zip(got, total, strict=True):
        torch.testing.assert_close(a, t / 4, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("baseline", ["zero", "blur"])
def test_integrated_gradients_completeness(case, baseline: str) -> None:  # noqa: ANN001
    method = IntegratedGradients(case.model, steps=64, baseline=baseline)
    pixel = (15, 16)
    attributions = method.attribute(case.inputs, pixel=pixel)
    bases = method.baselines(case.inputs)
    with torch.no_grad():
        difference = float(
            case.model(*case.inputs)[0, 0, 15, 16] - case.model(*bases)[0, 0, 15, 16]
        )
    total = sum(float(a.sum()) for a in attributions)
    assert total == pytest.approx(difference, rel=2e-2, abs=1e-4)
    window = method.explain(case.inputs, pixel=pixel).window
    outside = attributions[0].clone()
    outside[..., window.top : window.bottom, window.left : window.right] = 0
    assert float(outside.abs().max()) == 0.0


def test_empty_region_is_refused(case) -> None:  # noqa: ANN001
    from fusevis.errors import InputError

    with pytest.raises(InputError, match="selects no pixel"):
        Gradient(case.model).attribute(case.inputs, region=np.zeros((40, 42), bool))
