"""Receptive fields of N-dimensional networks traced from their modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fusevis.saliency.boxes import GridField
from fusevis.saliency.trace import trace_receptive_fields
from fusevis.saliency.volume_trace import NotLocal, TraceFailure, trace_grid_fields


class Padded(nn.Module):
    """Padding modules shift the field: voxel j of the padded map reads voxel j - before."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ConstantPad3d((2, 0, 0, 2, 1, 1), 0.0)  # z: 2 before; y: 2 after; x: 1, 1
        self.conv = nn.Conv3d(1, 1, 3)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(a))


def test_a_padding_module_shifts_the_field_rather_than_widening_it() -> None:
    (field,) = trace_grid_fields(Padded(), 1)
    assert field == GridField((-1, 0, -2), (1, 2, 0), (1, 1, 1), "traced")
    model = Padded()
    x = torch.rand(1, 1, 7, 8, 6, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[0, 0, 3, 3, 3], x)
    support = grad[0, 0].nonzero()
    assert support.min(0).values.tolist() == [2, 3, 1]  # (3, 3, 3) + lo
    assert support.max(0).values.tolist() == [4, 5, 3]  # (3, 3, 3) + hi


def test_functional_padding_pooling_and_upsampling() -> None:
    class Clean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AvgPool3d(2)
            self.down = nn.Conv3d(1, 2, 3, stride=2, padding=1)
            self.back = nn.ConvTranspose3d(2, 1, 2, stride=2)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            up = nn.functional.interpolate(self.pool(a), scale_factor=2, mode="nearest")
            return self.back(self.down(up)) + nn.functional.pad(b, (0, 0, 1, -1, 0, 0))

    first, second = trace_grid_fields(Clean(), 2)
    assert first.stride == (2, 2, 2)  # the pool's grid (and the strided convolution's)
    assert second.lo == (-2, -3, -2) and second.hi == (2, 1, 2)  # y shifted by 1, margin 2
    for field in (first, second):
        assert all(lo < 0 < hi for lo, hi in zip(field.lo, field.hi, strict=True))


@pytest.mark.parametrize("pad", [nn.ReflectionPad2d((1, 2, 0, 3)), nn.ZeroPad2d((3, 0, 2, 1))])
def test_on_images_the_grid_tracer_agrees_with_the_2d_tracer(pad: nn.Module) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pad = pad
            self.conv = nn.Conv2d(1, 2, (3, 4), dilation=(1, 1))
            self.pool = nn.MaxPool2d(2)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear")
            self.out = nn.Conv2d(4, 1, 5, padding=2)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(self.pad(a)))
            y = self.up(self.pool(x))
            return self.out(torch.cat([x, y], dim=1)) * torch.sigmoid(b)

    grid = trace_grid_fields(Net(), 2, dims=2)
    flat = trace_receptive_fields(Net(), 2)
    assert grid == [GridField.of_2d(f) for f in flat]


def test_whole_volume_operations_are_not_local() -> None:
    circular = nn.Sequential(nn.CircularPad3d(1), nn.Conv3d(1, 1, 3))
    with pytest.raises(NotLocal, match="circular padding"):
        trace_grid_fields(circular, 1)
    training = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.BatchNorm3d(2)).train()
    with pytest.raises(NotLocal, match="BatchNorm3d in training mode"):
        trace_grid_fields(training, 1)
    pooled = nn.Sequential(nn.Conv3d(1, 2, 3), nn.AdaptiveAvgPool3d(1))
    with pytest.raises(NotLocal, match="AdaptiveAvgPool3d"):
        trace_grid_fields(pooled, 1)
    aligned = nn.Sequential(nn.Upsample(scale_factor=2, mode="trilinear", align_corners=True))
    with pytest.raises(TraceFailure, match="align_corners=True"):
        trace_grid_fields(aligned, 1)


class Convolved(nn.Module):
    """One convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.conv(a)


class Activated(Convolved):
    """Activations the 2-D tracer knows (module and function) around the same convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.threshold = nn.Threshold(0.1, 0.0)
        self.log_sigmoid = nn.LogSigmoid()

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.log_sigmoid(nn.functional.hardshrink(self.conv(self.threshold(a))))


def test_the_activations_of_the_2d_tracer_keep_the_field_in_3d() -> None:
    from fusevis.saliency.ops import ACTIVATION_FUNCTIONS, ACTIVATION_MODULES
    from fusevis.saliency.volume_trace import FUNCTION_RULES, MODULE_RULES

    assert all(module in MODULE_RULES for module in ACTIVATION_MODULES)
    assert all(function in FUNCTION_RULES for function in ACTIVATION_FUNCTIONS)
    (field,) = trace_grid_fields(Activated(), 1)
    assert field == trace_grid_fields(Convolved(), 1)[0]  # the convolution's field alone
    assert field.lo != field.hi
