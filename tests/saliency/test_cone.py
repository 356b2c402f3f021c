"""The cone: the window each layer must provide for a pixel, and the forward over it."""

import threading

import pytest
import torch
from torch import nn
from torch.nn import functional

from fusevis.saliency import PixelJacobian, Window
from fusevis.saliency.cone import ConeUnsupported, cone_of
from fusevis.saliency.convolution import convolve_with, im2col_conv2d
from fusevis.saliency.field import field_window
from fusevis.saliency.trace import trace_receptive_fields

from .networks import EncoderDecoder
from .zoo import make_case


@pytest.fixture(scope="module")
def deepfuse():  # noqa: ANN201
    return make_case("DeepFuse", (30, 28))


def test_an_interior_plan_is_the_template_shifted(deepfuse) -> None:  # noqa: ANN001
    cone = cone_of(deepfuse.model, 2)
    geometry = cone.geometry(deepfuse.inputs)
    plan = cone.plan((15, 14), geometry)
    assert plan == cone._plan((15, 14), geometry)  # planned directly, not shifted
    assert cone.plan((16, 13), geometry) == cone._plan((16, 13), geometry)
    field = trace_receptive_fields(deepfuse.model, 2, deepfuse.inputs)[0]
    expected = field_window(field, (15, 16), (14, 15), (30, 28))
    for node in cone.graph.inputs:
        assert plan[node] == expected  # the cone's input window is the field's
    assert plan[cone.last] == Window.pixel(15, 14)


def test_a_plan_at_the_border_is_clipped_to_the_image(deepfuse) -> None:  # noqa: ANN001
    cone = cone_of(deepfuse.model, 2)
    plan = cone.plan((0, 27), cone.geometry(deepfuse.inputs))
    for window in plan.values():
        assert window.top >= 0 and window.left >= 0 and window.bottom <= 30 and window.right <= 28
    assert plan[cone.graph.inputs[0]] == Window(0, 13, 15, 28)


def test_plans_are_shifted_per_phase_of_a_strided_network() -> None:
    torch.manual_seed(0)
    model = EncoderDecoder().double().eval()  # total stride 4: four phases per axis
    inputs = tuple(torch.rand(1, 1, 48, 44, dtype=torch.float64) for _ in "ab")
    cone = cone_of(model, 2)
    geometry = cone.geometry(inputs)
    assert geometry.period == (4, 4) and geometry.periodic
    for pixel in [(20, 21), (21, 22), (22, 23), (23, 20), (24, 24), (0, 0), (47, 43), (1, 42)]:
        assert cone.plan(pixel, geometry) == cone._plan(pixel, geometry), pixel


@pytest.mark.parametrize("pixel", [(0, 0), (15, 14), (29, 27), (3, 26)])
@pytest.mark.parametrize("backend", ["onednn", "im2col"])
def test_the_forward_over_the_cone_is_the_model_output(deepfuse, pixel, backend) -> None:  # noqa: ANN001
    cone = cone_of(deepfuse.model, 2)
    value, leaves, windows = cone.run(deepfuse.inputs, pixel, convolve_with(backend))
    with torch.no_grad():
        expected = deepfuse.model(*deepfuse.inputs)[:, :, pixel[0], pixel[1]]
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    for leaf, window, x in zip(leaves, windows, deepfuse.inputs, strict=True):
        assert leaf.requires_grad and leaf.shape[-2:] == window.shape
        torch.testing.assert_close(leaf, x[..., window.as_slices()[0], window.as_slices()[1]])


class _Call(nn.Module):
    def __init__(self, forward) -> None:  # noqa: ANN001
        super().__init__()
        self.call = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(x)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_Call(lambda x: x.flip(3)), r"method \.flip\(\) is not known"),
        (_Call(lambda x: x.transpose(2, 3)), "swaps the image's rows and columns"),
        (_Call(lambda x: x.reshape(1, 1, -1, 2)), "reshapes the image axes"),
        (nn.Sequential(nn.AdaptiveAvgPool2d(1)), "mixes the whole image"),
        (_Call(lambda x: x - x.mean(dim=(2, 3), keepdim=True)), "mixes the whole image"),
    ],
)
def test_what_the_cone_does_not_run_is_refused_with_its_line(
    model: nn.Module, message: str
) -> None:
    cone = cone_of(model, 1)
    with pytest.raises(ConeUnsupported, match=message) as refused:
        cone.geometry((torch.rand(1, 1, 12, 12),))
    if isinstance(model, _Call):
        assert "test_cone.py:" in str(refused.value)  # the line of the lambda


class _Scaled(nn.Module):
    """A learned per-channel scale (a get_attr node) between two convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(1, 3, 1, 1) + 0.5)
        self.b = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(torch.cat((x, y), dim=1)) * self.scale))


@pytest.mark.parametrize("strategy", ["cone", "recorded"])
def test_constants_of_the_model_pass_into_the_cone_whole(strategy: str) -> None:
    torch.manual_seed(0)
    model = _Scaled().double().eval()
    inputs = tuple(torch.rand(1, 1, 11, 12, dtype=torch.float64) for _ in range(2))
    xs = tuple(x.clone().requires_grad_(True) for x in inputs)
    for pixel in [(0, 0), (5, 6), (10, 11)]:
        expected = torch.autograd.grad(model(*xs)[0, 0, pixel[0], pixel[1]], xs)
        found = PixelJacobian(model, strategy=strategy).explain(inputs, pixel)
        for got, want in zip(found.dense(), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("dilation", "groups"), [((1, 1), 1), ((2, 3), 1), ((1, 1), 4)])
def test_im2col_is_what_torch_computes_with_onednn_switched_off(
    dtype: torch.dtype, dilation: tuple[int, int], groups: int
) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 8, 13, 11, dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.rand(12, 8 // groups, 3, 3, dtype=dtype)
    bias = torch.rand(12, dtype=dtype)
    probe = None
    results = []
    for ours in (False, True):
        leaf = x.clone().requires_grad_(True)
        if ours:
            y = im2col_conv2d(leaf, weight, bias, 1, (2, 1), dilation, groups)
        else:
            before = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
            try:
                y = functional.conv2d(leaf, weight, bias, 1, (2, 1), dilation, groups)
            finally:
                torch.backends.mkldnn.enabled = before
        probe = torch.rand_like(y) if probe is None else probe
        results.append((y, torch.autograd.grad(y, leaf, probe)[0]))
    assert torch.equal(results[0][0], results[1][0])
    if groups == 1 or dtype == torch.float64:
        assert torch.equal(results[0][1], results[1][1])
    else:  # grouped: each group's gradient summed in another order, float rounding apart
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-6, atol=1e-6)


def test_choosing_a_convolution_backend_flips_no_global_switch() -> None:
    model = make_case("DeepFuse", (40, 40)).model.float()
    inputs = tuple(torch.rand(1, 1, 40, 40) for _ in range(2))
    seen: set[bool] = set()
    done = threading.Event()

    def watch() -> None:  # another thread, as the viewer's map thread
        while not done.is_set():
            seen.add(torch.backends.mkldnn.enabled)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for convolutions in ("auto", "im2col", "onednn"):
            jacobian = PixelJacobian(model, verify=False, convolutions=convolutions)
            jacobian.prepare(inputs)
            for pixel in [(0, 0), (20, 20), (39, 5)]:
                jacobian.explain(inputs, pixel)
    finally:
        done.set()
        watcher.join()
    assert seen == {True}
