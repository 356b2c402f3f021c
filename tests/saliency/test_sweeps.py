"""The backward sweeps that need no autograd per pixel, checked against full-image autograd."""

import pytest
import torch
from torch import nn
from torch.nn import functional

from fusevis.saliency import PixelJacobian
from fusevis.saliency.cone import cone_of
from fusevis.saliency.convolution import convolve_with
from fusevis.saliency.recorded import backward_rows, record_forward
from fusevis.saliency.sweeps import PointwiseSweep


class _ChannelIdioms(nn.Module):
    """Padding modes, per-channel normalisation by hand and channels-last, softmax, splits."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 8, 3, padding=1, padding_mode="reflect")
        self.pad = nn.ReflectionPad2d(1)
        self.b = nn.Conv2d(8, 8, 3)
        self.bias = nn.Parameter(torch.rand(1, 8, 1, 1))
        self.norm = nn.LayerNorm(8)
        self.linear = nn.Linear(8, 8)
        self.prelu = nn.PReLU(8)
        self.softmax = nn.Softmax(dim=1)
        self.c = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.a(torch.cat((x, y), 1))
        h = functional.gelu(self.b(self.pad(h))) + self.bias
        centred = h - h.mean(dim=1, keepdim=True)
        scale = centred.pow(2).sum(1).add(1.0).rsqrt()
        h = centred * scale.unsqueeze(1)
        h = self.linear(self.norm(h.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        h = self.prelu(h)
        first, second = h.chunk(2, dim=1)
        weights = self.softmax(second) + torch.log_softmax(first, dim=1).exp()
        mixed = first * weights + h[:, 2:6]
        return self.c(functional.pad(mixed, (2, 2, 2, 2))[..., 2:-2, 2:-2])


class _Fallbacks(nn.Module):
    """Operations the sweeps leave to autograd: cross-channel LRN, in place, a variance."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 6, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(3)
        self.b = nn.Conv2d(6, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.lrn(torch.tanh(self.a(torch.cat((x, y), 1))))
        h = h.mul_(2.0) + h.var(dim=1, keepdim=True)
        return self.b(h)


class _InPlaceOutput(nn.Module):
    """In-place calls whose results are read through the name they changed."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.a(torch.cat((x, y), 1))
        h.clamp_(min=0.0)
        h.mul_(3.0)
        h = self.b(h)
        h.clamp_(0.1, 0.6)
        return h


def _inputs(size: tuple[int, int] = (12, 13)) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    return tuple(torch.rand(1, 1, *size, generator=generator, dtype=torch.float64) for _ in "ab")


def _model(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls().double().eval()


def _sweeps(model: nn.Module) -> dict[str, str]:
    cone = cone_of(model, 2)
    record = record_forward(cone, _inputs())
    assert record is not None
    return {n.name: type(record.sweeps[n]).__name__ for n in cone.graph.nodes if n in record.sweeps}


def test_channel_idioms_are_swept_without_autograd() -> None:
    sweeps = _sweeps(_model(_ChannelIdioms))
    expected = {
        "a": "ConvSweep",  # reflect padding: swept where the window is inside the image
        "pad": "PaddingSweep",
        "b": "ConvSweep",
        "gelu": "PointwiseSweep",
        "add": "PointwiseSweep",  # + a parameter: a constant derivative
        "mean": "ReduceSweep",
        "sub": "PointwiseSweep",
        "pow_1": "PointwiseSweep",
        "sum_1": "ReduceSweep",
        "rsqrt": "PointwiseSweep",
        "permute": "PermuteSweep",
        "norm": "LastAxisSweep",
        "linear": "LastAxisSweep",
        "prelu": "PointwiseSweep",
        "chunk": "SplitSweep",
        "softmax": "ReduceSweep",
        "log_softmax": "ReduceSweep",
        "getitem_2": "IndexSweep",  # h[:, 2:6]
        "pad_1": "PaddingSweep",  # F.pad with zeros
        "getitem_3": "IndexSweep",  # a crop of the image axes
        "c": "ConvSweep",
    }
    missing = {k: v for k, v in expected.items() if sweeps.get(k) != v}
    assert not missing, (missing, sweeps)
    assert "AutogradSweep" in set(sweeps.values())  # unsqueeze: a reshape, by autograd
    assert sum(v == "AutogradSweep" for v in sweeps.values()) == 1, sweeps


def test_a_constant_derivative_is_kept_as_a_number_and_chains_as_one() -> None:
    model = _model(_ChannelIdioms)
    cone = cone_of(model, 2)
    record = record_forward(cone, _inputs())
    nodes = {n.name: n for n in cone.graph.nodes}
    rsqrt = record.sweeps[nodes["rsqrt"]]
    assert isinstance(rsqrt, PointwiseSweep)
    (part,) = rsqrt.parts  # rsqrt(add(sum, 1.0)): the + 1.0 is swept with it
    assert part.source is nodes["sum_1"]
    assert isinstance(part.derivative, torch.Tensor) and part.derivative.shape == (1, 12, 13)
    assert record.sweeps[nodes["add_1"]].parts == ()  # never reached
    # gelu(b(...)) + bias: gelu's derivative maps carried by the sum, whose own is 1
    (part,) = record.sweeps[nodes["add"]].parts
    assert part.source is nodes["b"] and part.map
    assert record.sweeps[nodes["gelu"]].parts == ()
    (scale,) = [p for p in record.sweeps[nodes["mul"]].parts if p.source is nodes["unsqueeze"]]
    assert scale.lead == (1, 1)  # summed over the channels it was broadcast along
    first, mean = record.sweeps[nodes["sub"]].parts  # h - h.mean(1, keepdim=True)
    assert first.source is nodes["add"] and first.one and first.derivative == 1.0
    assert mean.source is nodes["mean"] and mean.derivative == -1.0 and mean.lead == (1, 1)


def test_operations_that_are_not_pointwise_keep_autograd() -> None:
    sweeps = _sweeps(_model(_Fallbacks))
    assert sweeps["lrn"] == "AutogradSweep"  # mixes neighbouring channels
    assert sweeps["mul_"] == "AutogradSweep"  # in place
    assert sweeps["var"] == "AutogradSweep"
    assert sweeps["tanh"] == "PointwiseSweep"


PIXELS = [(0, 0), (0, 12), (11, 0), (11, 12), (1, 1), (0, 6), (6, 0), (5, 6), (10, 11)]


def assert_sweep_is_autograd(model: nn.Module, inputs: tuple, pixels: list) -> None:
    """The recorded sweep's rows at ``pixels`` equal full-image autograd (float64)."""
    cone = cone_of(model, len(inputs))
    record = record_forward(cone, inputs)
    assert record is not None
    for pixel in pixels:
        windows, rows = backward_rows(cone, record, pixel, 0, convolve_with("onednn"))
        xs = tuple(x.clone().requires_grad_(True) for x in inputs)
        expected = torch.autograd.grad(model(*xs)[0, 0, pixel[0], pixel[1]], xs)
        for window, row, want in zip(windows, rows, expected, strict=True):
            placed = torch.zeros_like(want)
            placed[..., window.top : window.bottom, window.left : window.right] = row
            torch.testing.assert_close(placed, want, rtol=1e-9, atol=1e-12, msg=str(pixel))


@pytest.mark.parametrize("cls", [_ChannelIdioms, _Fallbacks, _InPlaceOutput])
def test_rows_equal_full_image_autograd_at_corners_edges_and_inside(cls: type) -> None:
    assert_sweep_is_autograd(_model(cls), _inputs(), PIXELS)


@pytest.mark.parametrize("strategy", ["cone", "recorded"])
def test_in_place_calls_read_through_the_changed_name_are_followed(strategy: str) -> None:
    model = _model(_InPlaceOutput)
    inputs = _inputs()
    xs = tuple(x.clone().requires_grad_(True) for x in inputs)
    output = model(*xs)
    jacobian = PixelJacobian(model, strategy=strategy)
    clamped = 0
    for pixel in PIXELS:
        expected = torch.autograd.grad(output[0, 0, pixel[0], pixel[1]], xs, retain_graph=True)
        clamped += all(bool((e == 0).all()) for e in expected)
        explanation = jacobian.explain(inputs, pixel)
        assert explanation.strategy == strategy
        for got, want in zip(explanation.dense(), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    assert 0 < clamped < len(PIXELS)  # the clamp is met at some pixels, not all


class _Normalised(nn.Module):
    """An eval-mode BatchNorm whose output is read twice (so its sweep is its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.a(x))
        return self.b(torch.tanh(h) * h)


def test_a_per_channel_derivative_is_kept_as_one_pixel() -> None:
    torch.manual_seed(0)
    model = _Normalised()
    with torch.no_grad():
        model.norm.running_var.uniform_(0.5, 2.0)
    model = model.double().eval()
    inputs = _inputs()[:1]
    cone = cone_of(model, 1)
    record = record_forward(cone, inputs)
    nodes = {n.name: n for n in cone.graph.nodes}
    (part,) = record.sweeps[nodes["norm"]].parts
    assert not part.map and part.derivative.shape == (1, 4, 1, 1)
    assert record.sweeps[nodes["tanh"]].parts == ()  # swept with the product
    assert_sweep_is_autograd(model, inputs, [(0, 0), (5, 6), (11, 12)])


def test_two_slopes_per_channel_are_kept_as_a_boolean_map() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 1)
    )
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)
    model = model.double().eval()
    inputs = _inputs()[:1]
    cone = cone_of(model, 1)
    record = record_forward(cone, inputs)
    nodes = {n.name: n for n in cone.graph.nodes}
    (part,) = record.sweeps[nodes["_2"]].parts  # the leaky ReLU, with the BatchNorm before it
    assert part.source is nodes["_0"] and part.two
    assert part.derivative.mask.dtype == torch.bool and part.derivative.low.shape == (1, 4, 1, 1)
    assert part.nbytes < 4 * 12 * 13 * 2  # a byte a value, not eight
    assert_sweep_is_autograd(model, inputs, [(0, 0), (5, 6), (11, 12)])


def test_a_sweep_that_cannot_record_leaves_the_rows_to_the_cone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("cannot record")

    monkeypatch.setattr(PointwiseSweep, "recorded", broken)
    model, inputs = _model(_ChannelIdioms), _inputs()
    assert record_forward(cone_of(model, 2), inputs) is None
    jacobian = PixelJacobian(model)
    jacobian.prepare(inputs)
    assert jacobian.record_bytes == 0
    explanation = jacobian.explain(inputs, (5, 6))
    assert explanation.strategy == "cone"
    xs = tuple(x.clone().requires_grad_(True) for x in inputs)
    expected = torch.autograd.grad(model(*xs)[0, 0, 5, 6], xs)
    for got, want in zip(explanation.dense(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_a_way_that_fails_on_the_first_pixel_is_not_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("cannot sweep")

    monkeypatch.setattr(PointwiseSweep, "back", broken)
    model, inputs = _model(_ChannelIdioms), _inputs()
    jacobian = PixelJacobian(model)
    jacobian.prepare(inputs)
    assert jacobian.record_bytes > 0
    assert jacobian.explain(inputs, (5, 6)).strategy == "cone"
    with pytest.raises(RuntimeError, match="cannot sweep"):
        PixelJacobian(model, strategy="recorded").explain(inputs, (5, 6))
