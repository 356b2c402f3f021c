"""The tracer: each operation moves the receptive field as its table entry says."""

import pytest
import torch
from torch import nn
from torch.nn import functional

from fusevis.saliency import PixelJacobian, graph
from fusevis.saliency.cone import cone_of
from fusevis.saliency.graph import graph_of
from fusevis.saliency.trace import NotLocal, TraceFailure, trace_receptive_fields

from .networks import DilatedNet


class Chain(nn.Module):
    """``layers`` applied one after the other to the concatenated inputs."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat((a, b), dim=1))


def field_of(*layers: nn.Module) -> tuple[int, int, int, int, tuple[int, int]]:
    field = trace_receptive_fields(Chain(*layers), 2)[0]
    return field.row_lo, field.row_hi, field.col_lo, field.col_hi, field.stride


def test_convolutions_move_the_field_by_kernel_padding_and_dilation() -> None:
    assert field_of(nn.Conv2d(2, 1, 3, padding=1)) == (-1, 1, -1, 1, (1, 1))
    assert field_of(nn.Conv2d(2, 1, (3, 5), padding=(0, 2))) == (0, 2, -2, 2, (1, 1))
    assert field_of(nn.Conv2d(2, 1, 3, padding=2, dilation=2)) == (-2, 2, -2, 2, (1, 1))
    assert field_of(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 5, padding=2)) == (
        -3, 3, -3, 3, (1, 1),
    )  # fmt: skip


def test_strides_and_upsampling_set_the_sampling_grid() -> None:
    layers = (nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.Upsample(scale_factor=2))
    row_lo, row_hi, _, _, stride = field_of(*layers)
    assert stride == (2, 2) and row_lo <= -1 and row_hi >= 1
    shuffle = field_of(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.PixelShuffle(2))
    assert shuffle[4] == (2, 2)
    pooled = field_of(nn.MaxPool2d(2), nn.ConvTranspose2d(2, 1, 2, stride=2))
    assert pooled[4] == (2, 2) and pooled[0] <= 0 <= pooled[1]


def _support(model: nn.Module, size: int = 15) -> tuple[int, int, int, int]:
    """Offsets of the exact float64 Jacobian support of the centre pixel (rows, cols)."""
    xs = tuple(torch.rand(1, 1, size, size, dtype=torch.float64, requires_grad=True) for _ in "ab")
    grads = torch.autograd.grad(model.double()(*xs)[0, 0, size // 2, size // 2], xs)
    rows = grads[0][0, 0].abs().sum(dim=1).nonzero()[:, 0] - size // 2
    cols = grads[0][0, 0].abs().sum(dim=0).nonzero()[:, 0] - size // 2
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


@pytest.mark.parametrize("pad", [nn.ZeroPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d])
@pytest.mark.parametrize("example", [False, True])
def test_padding_modules_shift_the_field_to_the_true_support(pad: type, example: bool) -> None:
    torch.manual_seed(0)
    model = Chain(pad(1), nn.Conv2d(2, 1, 3)).double()
    inputs = tuple(torch.rand(1, 1, 15, 15, dtype=torch.float64) for _ in "ab")
    field = trace_receptive_fields(model, 2, inputs if example else None)[0]
    assert (field.row_lo, field.row_hi, field.col_lo, field.col_hi) == (-1, 1, -1, 1)
    assert _support(model) == (-1, 1, -1, 1)


@pytest.mark.parametrize("example", [False, True])
def test_an_asymmetric_padding_shifts_the_field_off_centre(example: bool) -> None:
    torch.manual_seed(0)
    model = Chain(nn.ZeroPad2d((2, 0, 1, 1)), nn.Conv2d(2, 1, 3)).double()  # left 2, right 0
    inputs = tuple(torch.rand(1, 1, 15, 15, dtype=torch.float64) for _ in "ab")
    field = trace_receptive_fields(model, 2, inputs if example else None)[0]
    assert (field.row_lo, field.row_hi, field.col_lo, field.col_hi) == _support(model)
    assert _support(model) == (-1, 1, -2, 0)


def test_element_wise_operations_and_channel_reductions_keep_the_field() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            h = functional.leaky_relu(self.conv(torch.cat((a, b), 1)), 0.1)
            h = torch.maximum(h, h.sigmoid() * 2 - a).clamp(-1, 1)
            return h.mean(dim=1, keepdim=True) + torch.tanh(b)

    fields = trace_receptive_fields(Mixed(), 2)
    assert [f.radius for f in fields] == [1, 1]


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (nn.AdaptiveAvgPool2d(1), "AdaptiveAvgPool2d mixes the whole image"),
        (nn.GroupNorm(1, 2), "GroupNorm mixes the whole image"),
    ],
)
def test_global_modules_are_not_local(layer: nn.Module, message: str) -> None:
    with pytest.raises(NotLocal, match=message):
        trace_receptive_fields(Chain(layer), 2)


def test_spatial_reductions_are_not_local() -> None:
    class Means(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a - a.mean(dim=(2, 3), keepdim=True) + b

    with pytest.raises(NotLocal, match=r"\.mean\(\) over the image axes"):
        trace_receptive_fields(Means(), 2)


@pytest.mark.parametrize(
    ("forward", "message"),
    [
        (lambda a, b: torch.erf(a) + b, "function erf is not known to the tracer"),
        (lambda a, b: a.permute(0, 1, 3, 2) + b, "traced with example inputs only"),
        (lambda a, b: torch.stack((a, b), 2)[:, :, 0], "traced with example inputs only"),
        (lambda a, b: a.flip(2) + b, r"method \.flip\(\) is not known"),
    ],
)
def test_operations_outside_the_table_are_named(forward, message: str) -> None:  # noqa: ANN001
    class Model(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return forward(a, b)

    with pytest.raises(TraceFailure, match=message):
        trace_receptive_fields(Model(), 2)


def test_an_unknown_module_is_named() -> None:
    with pytest.raises(TraceFailure, match="module Unfold is not known to the tracer"):
        trace_receptive_fields(Chain(nn.Unfold(3)), 2)


def test_an_input_count_the_model_does_not_take_fails() -> None:
    with pytest.raises(TraceFailure, match="takes 2 inputs, not 3"):
        trace_receptive_fields(DilatedNet(), 3)


def test_each_model_is_traced_once_for_the_tracer_the_cone_and_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    trace = graph.trace

    def counting(model: nn.Module, count: int | None = None) -> graph.Graph:
        calls.append(model)
        return trace(model, count)

    monkeypatch.setattr(graph, "trace", counting)
    model = DilatedNet().double().eval()
    inputs = tuple(torch.rand(1, 1, 20, 21, dtype=torch.float64) for _ in range(2))
    jacobian = PixelJacobian(model, strategy="recorded")
    jacobian.prepare(inputs)  # the tracer (field), the cone and the record
    assert jacobian.explain(inputs, pixel=(3, 4)).strategy == "recorded"
    PixelJacobian(model, strategy="cone").explain(inputs, pixel=(3, 4))
    assert calls == [model]
    assert cone_of(model, 2).graph is graph_of(model)


def test_a_model_changed_by_surgery_is_traced_again() -> None:
    model = Chain(nn.Conv2d(2, 1, 3, padding=1))
    first = graph_of(model)
    assert graph_of(model) is first
    model.layers[0] = nn.Conv2d(2, 1, 5, padding=2)
    assert graph_of(model) is not first
    assert trace_receptive_fields(model, 2)[0].radius == 2
