"""Bad input to the saliency engine gets a clear FuseVis error."""

import pytest
import torch
from torch import nn

from fusevis.errors import FuseVisError, InputError, ModelError
from fusevis.models import DeepFuse
from fusevis.saliency import PixelJacobian, guidance_maps


def inputs(size: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(1, 1, size, size), torch.rand(1, 1, size, size)


@pytest.mark.parametrize("pixel", [(20, 0), (0, -1), (-1, 5), (3, 25)])
def test_pixel_outside_the_image(pixel: tuple[int, int]) -> None:
    with pytest.raises(InputError, match=r"is outside the 20x20 image"):
        PixelJacobian(DeepFuse().eval(), verify=False).attribute(inputs(), pixel=pixel)


def test_wrong_number_of_inputs() -> None:
    three = (*inputs(), torch.rand(1, 1, 20, 20))
    with pytest.raises(ModelError, match="DeepFuse fuses 2 inputs, got 3"):
        PixelJacobian(DeepFuse().eval(), verify=False).attribute(three, pixel=(1, 1))


def test_inputs_the_model_cannot_take() -> None:
    rgb = (torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20))
    with pytest.raises(ModelError, match="DeepFuse failed on inputs"):
        guidance_maps(DeepFuse().eval(), rgb)


class Shrinks(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + b)[..., 1:, 1:]


def test_model_returning_the_wrong_shape() -> None:
    with pytest.raises(ModelError, match=r"returned \(1, 1, 19, 19\); a fusion model must return"):
        PixelJacobian(Shrinks()).attribute(inputs(), pixel=(1, 1))


def test_mismatched_input_sizes_and_nan() -> None:
    with pytest.raises(InputError, match="differs from input 1"):
        guidance_maps(DeepFuse().eval(), (torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 21)))
    bad = torch.rand(1, 1, 20, 20)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        guidance_maps(DeepFuse().eval(), (bad, torch.rand(1, 1, 20, 20)))


def test_nan_written_into_inputs_checked_before_is_still_caught() -> None:
    jacobian = PixelJacobian(DeepFuse().eval())
    a, b = torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 20)
    jacobian.attribute((a, b), pixel=(2, 2))  # checked and remembered
    a[0, 0, 7, 7] = float("nan")  # in place: the version counter moves
    with pytest.raises(InputError, match="input 1: contains NaN"):
        jacobian.attribute((a, b), pixel=(2, 2))
    view = b[0]
    view[0, 1, 1] = float("inf")  # through a view: the base's version moves too
    with pytest.raises(InputError, match="input 2: contains NaN or infinite"):
        jacobian.attribute((torch.rand(1, 1, 20, 20), b), pixel=(2, 2))


def test_errors_are_fusevis_errors() -> None:
    assert issubclass(InputError, FuseVisError) and issubclass(ModelError, FuseVisError)


def test_prepare_checks_the_inputs_and_the_output() -> None:
    with pytest.raises(ModelError, match=r"returned \(1, 1, 19, 19\); a fusion model must return"):
        PixelJacobian(Shrinks()).prepare(inputs())
    three = (*inputs(), torch.rand(1, 1, 20, 20))
    with pytest.raises(ModelError, match="DeepFuse fuses 2 inputs, got 3"):
        PixelJacobian(DeepFuse().eval(), verify=False).prepare(three)
    bad = torch.rand(1, 1, 20, 20)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="input 1: contains NaN"):
        PixelJacobian(DeepFuse().eval(), verify=False).prepare((bad, torch.rand(1, 1, 20, 20)))
