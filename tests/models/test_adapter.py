"""The declarative adapter: each convention against a hand-written wrapper, in float64."""

from __future__ import annotations

import copy
import inspect
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.fx
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.autograd.functional import jacobian

from fusevis.errors import InputError, ModelError
from fusevis.io import Image, recolor
from fusevis.models import (
    Adapter,
    Assembled,
    Conventions,
    L1Norm,
    adapt,
    display_name,
    fuse_chroma,
)
from fusevis.models.inference import run_model
from fusevis.models.weights import load_weights

H = W = 8


def tensor(x: object) -> bool:
    """True for a real tensor (False for a torch.fx proxy while tracing)."""
    return isinstance(x, torch.Tensor)


def grey(count: int = 2, scale: float = 1.0, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.rand(1, 1, H, W, generator=generator, dtype=torch.float64) * scale
        for _ in range(count)
    ]


def conv(cin: int, cout: int, seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, 3, padding=1).double()


def assert_jacobians_equal(model: nn.Module, reference, inputs: list[torch.Tensor]) -> None:
    """The adapter's Jacobian equals float64 autograd of the hand-written composition."""
    ours = jacobian(lambda *xs: model(*xs), tuple(inputs))
    theirs = jacobian(lambda *xs: reference(*xs), tuple(inputs))
    assert any(float(j.abs().max()) > 0 for j in ours)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def assert_one_line(error: pytest.ExceptionInfo, *words: str) -> None:
    text = str(error.value)
    assert "\n" not in text and len(text) < 200, text
    for word in words:
        assert word in text, text


# -- tiny networks that insist on their convention ------------------------------------------


class Separate(nn.Module):
    """forward(a, b): two (1, 1, H, W) tensors; the output depends on the order."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv(2, 1, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if tensor(a):
            assert a.shape == b.shape == (1, 1, H, W)
        return self.conv(torch.cat([a, 2 * b], dim=1))


class Concat(nn.Module):
    """forward(x): x is the inputs concatenated along the channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = conv(channels, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tensor(x):
            assert x.shape[:2] == (1, self.channels)
        return torch.tanh(self.conv(x))


class Listed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = conv(2, 1, 3)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        assert isinstance(xs, list) and len(xs) == 2
        return self.conv(torch.cat(xs, dim=1))


class Keywords(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = conv(2, 1, 4)

    def forward(self, *, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([ir, vis], dim=1))


class ThreeChannels(nn.Module):
    """Expects every input as 3 identical channels (unless ``identical=False``)."""

    def __init__(self, identical: bool = True) -> None:
        super().__init__()
        self.identical = identical
        self.conv = conv(3, 4, 5)
        self.out = conv(4, 1, 6)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if tensor(a) and self.identical:
            for x in (a, b):
                assert x.shape == (1, 3, H, W)
                assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
        return self.out(torch.maximum(torch.relu(self.conv(a)), torch.relu(self.conv(b))))


class UnitRange(nn.Module):
    """Expects values within [lo, hi] and somewhere below ``below`` (a [-1, 1] check)."""

    def __init__(self, lo: float, hi: float, below: float | None = None) -> None:
        super().__init__()
        self.lo, self.hi, self.below = lo, hi, below
        self.conv = conv(2, 1, 7)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if tensor(a):
            for x in (a, b):
                low, high = float(x.detach().min()), float(x.detach().max())
                assert self.lo <= low and high <= self.hi, (low, high)
                if self.below is not None:
                    assert low < self.below
        return self.conv(torch.cat([a, b], dim=1))


class Outputs(nn.Module):
    """Returns a tuple, or a dict, of a 3-channel fused image and an auxiliary map."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        self.as_dict = as_dict
        self.conv = conv(2, 3, 8)

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        fused = torch.tanh(self.conv(torch.cat([a, b], dim=1)))
        aux = a - b
        return {"fused": fused, "aux": aux} if self.as_dict else (aux, fused)


# -- inputs ------------------------------------------------------------------------------------


def test_separate_inputs_are_passed_in_order() -> None:
    net = Separate()
    adapter = Adapter(net)
    x = grey()
    torch.testing.assert_close(adapter(*x), net(*x), rtol=0, atol=0)
    assert not torch.allclose(adapter(*x), net(x[1], x[0]))
    assert_jacobians_equal(adapter, net, x)


@pytest.mark.parametrize("channels", [1, 3])
def test_concat_gives_one_tensor_of_n_times_c_channels(channels: int) -> None:
    net = Concat(2 * channels)
    adapter = Adapter(net, inputs="concat", channels=channels)

    def wrapper(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([a.repeat(1, channels, 1, 1), b.repeat(1, channels, 1, 1)], 1))

    x = grey()
    torch.testing.assert_close(adapter(*x), wrapper(*x), rtol=0, atol=0)
    assert_jacobians_equal(adapter, wrapper, x)


def test_three_inputs_concatenated() -> None:
    net = Concat(3)
    adapter = Adapter(net, inputs="concat", num_inputs=3)
    x = grey(3)
    torch.testing.assert_close(adapter(*x), net(torch.cat(x, 1)), rtol=0, atol=0)
    assert list(inspect.signature(adapter.forward).parameters) == ["input_1", "input_2", "input_3"]


def test_list_and_keyword_inputs() -> None:
    x = grey()
    listed = Listed()
    torch.testing.assert_close(Adapter(listed, inputs="list")(*x), listed(list(x)), rtol=0, atol=0)
    named = Keywords()
    adapter = Adapter(named, inputs=("vis", "ir"))  # input 1 is the visible image
    torch.testing.assert_close(adapter(*x), named(ir=x[1], vis=x[0]), rtol=0, atol=0)
    assert_jacobians_equal(adapter, lambda a, b: named(ir=b, vis=a), x)


def test_grey_replicated_to_three_identical_channels() -> None:
    net = ThreeChannels()
    adapter = Adapter(net, channels=3)

    def wrapper(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return net(a.repeat(1, 3, 1, 1), b.expand(-1, 3, -1, -1))

    x = grey()
    torch.testing.assert_close(adapter(*x), wrapper(*x), rtol=0, atol=0)
    assert_jacobians_equal(adapter, wrapper, x)
    with pytest.raises(AssertionError):
        net(*x)  # the network really insists on 3 channels


# -- scaling -----------------------------------------------------------------------------------


def test_x255_divides_the_files_values_and_the_jacobian_is_per_loaded_value() -> None:
    net = UnitRange(0.0, 1.0)
    adapter = Adapter(net, scale="x/255")
    raw = [torch.round(x) for x in grey(scale=255.0)]  # loaded with normalize="none"
    assert float(max(x.max() for x in raw)) > 200

    def wrapper(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return net(a / 255, b / 255)

    torch.testing.assert_close(adapter(*raw), wrapper(*raw), rtol=0, atol=0)
    assert_jacobians_equal(adapter, wrapper, raw)
    # the rows are with respect to the loaded values: 1/255 of the network's own
    ours = jacobian(lambda *xs: adapter(*xs), tuple(raw))
    own = jacobian(lambda *xs: net(*xs), tuple(x / 255 for x in raw))
    for a, b in zip(ours, own, strict=True):
        torch.testing.assert_close(a * 255, b, rtol=1e-12, atol=1e-12)
    with pytest.raises(AssertionError):
        net(*raw)  # unscaled values are refused by the network


def test_x255_in_ycbcr_mode_adds_no_division() -> None:
    # the loader's YCbCr mode already divides 8-bit files by 255
    net = UnitRange(0.0, 1.0)
    adapter = Adapter(net, scale="x/255", color="ycbcr")
    x = grey()
    torch.testing.assert_close(adapter(*x), net(*x), rtol=0, atol=0)
    assert adapter.conventions.loading().normalize == "none"
    assert adapter.conventions.loading().color == "ycbcr"


def test_signed_range_is_two_x_minus_one() -> None:
    net = UnitRange(-1.0, 1.0, below=-0.5)
    adapter = Adapter(net, mean_std="signed")
    x = grey()

    def wrapper(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return net(2 * a - 1, 2 * b - 1)

    torch.testing.assert_close(adapter(*x), wrapper(*x), rtol=1e-15, atol=1e-15)
    assert_jacobians_equal(adapter, wrapper, x)


def test_x255_then_signed_as_torchvision_to_tensor_and_normalize() -> None:
    net = UnitRange(-1.0, 1.0, below=-0.5)
    adapter = Adapter(net, scale="x/255", mean_std=(0.5, 0.5))
    raw = grey(scale=255.0)

    def wrapper(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return net((a / 255 - 0.5) / 0.5, (b / 255 - 0.5) / 0.5)

    torch.testing.assert_close(adapter(*raw), wrapper(*raw), rtol=0, atol=0)
    assert_jacobians_equal(adapter, wrapper, raw)


def test_imagenet_mean_std_per_channel() -> None:
    net = ThreeChannels(identical=False)
    adapter = Adapter(net, channels=3, mean_std="imagenet")
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).reshape(1, 3, 1, 1)

    def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return net.out(torch.maximum(torch.relu(net.conv(a)), torch.relu(net.conv(b))))

    def wrapper(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return inner((a.repeat(1, 3, 1, 1) - mean) / std, (b.repeat(1, 3, 1, 1) - mean) / std)

    x = grey()
    adapter.double()  # the mean/std buffers follow the dtype
    torch.testing.assert_close(adapter(*x), wrapper(*x), rtol=1e-14, atol=1e-14)
    assert_jacobians_equal(adapter, wrapper, x)
    assert sorted(adapter.state_dict()) == sorted(f"model.{k}" for k in net.state_dict())


# -- outputs -----------------------------------------------------------------------------------


def test_output_of_a_tuple_or_a_dict_then_channel_and_post() -> None:
    x = grey()
    for net, key in ((Outputs(), 1), (Outputs(as_dict=True), "fused")):
        adapter = Adapter(net, output=key, output_channel=0, post=("signed", "clamp"))

        def wrapper(a: torch.Tensor, b: torch.Tensor, net=net, key=key) -> torch.Tensor:
            fused = net(a, b)[key][:, :1]
            return torch.clamp((fused + 1) / 2, 0, 1)

        out = adapter(*x)
        assert out.shape == (1, 1, H, W)
        assert 0 <= float(out.detach().min()) and float(out.detach().max()) <= 1
        torch.testing.assert_close(out, wrapper(*x), rtol=1e-15, atol=1e-15)
        assert_jacobians_equal(adapter, wrapper, x)


def test_clamp_stops_the_gradient_where_it_clips() -> None:
    net = Separate()
    adapter = Adapter(net, post="clamp")
    x = grey()
    with torch.no_grad():
        raw = net(*x)
    assert float(raw.min()) < 0 or float(raw.max()) > 1  # something is clipped
    rows = jacobian(lambda *xs: adapter(*xs), tuple(x))[0].reshape(H * W, H * W)
    clipped = ((raw < 0) | (raw > 1)).reshape(-1)
    assert float(rows[clipped].abs().max()) == 0
    assert float(rows[~clipped].abs().max()) > 0


def test_output_mean_of_channels() -> None:
    net = Outputs()
    adapter = Adapter(net, output=1, output_channel="mean")
    x = grey()
    torch.testing.assert_close(adapter(*x), net(*x)[1].mean(1, keepdim=True), rtol=0, atol=0)


def test_global_minmax_is_exact_and_declared_not_local() -> None:
    net = Separate()
    adapter = Adapter(net, post="minmax")

    def wrapper(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = net(a, b)
        return (y - y.min()) / (y.max() - y.min())

    x = grey()
    out = adapter(*x)
    assert float(out.detach().min()) == 0 and abs(float(out.detach().max()) - 1) < 1e-15
    torch.testing.assert_close(out, wrapper(*x), rtol=1e-14, atol=1e-14)
    assert_jacobians_equal(adapter, wrapper, x)
    # not local: a pixel's row reaches far outside the 3x3 field of the network
    row = jacobian(lambda *xs: adapter(*xs)[0, 0, 0, 0], tuple(x))[0][0, 0]
    assert float(row[4:, 4:].abs().max()) > 0
    assert not adapter.conventions.is_local and Conventions().is_local
    graph = torch.fx.symbolic_trace(adapter).graph
    reductions = {n.target for n in graph.nodes if n.op == "call_method"}
    assert {"amin", "amax"} <= reductions
    for node in graph.nodes:
        if node.target in ("amin", "amax"):
            assert tuple(node.kwargs["dim"]) == (2, 3)


# -- tracing, copies, the engine's contract ----------------------------------------------------


@pytest.mark.parametrize(
    ("net", "conventions"),
    [
        (Separate, {}),
        (lambda: Concat(6), {"inputs": "concat", "channels": 3, "scale": "x/255"}),
        (Listed, {"inputs": "list", "mean_std": "signed"}),
        (Keywords, {"inputs": ("ir", "vis"), "post": ("clamp",)}),
        (
            lambda: ThreeChannels(identical=False),
            {"channels": 3, "mean_std": "imagenet", "output_channel": 0},
        ),
        (Outputs, {"output": 1, "output_channel": "mean", "post": "signed"}),
        (lambda: Outputs(True), {"output": "fused", "output_channel": 2}),
    ],
)
def test_local_conventions_trace_with_fx(net, conventions: dict) -> None:
    adapter = Adapter(net(), **conventions).double()
    traced = torch.fx.symbolic_trace(adapter)
    placeholders = [n.name for n in traced.graph.nodes if n.op == "placeholder"]
    assert placeholders == ["input_1", "input_2"]
    x = grey(scale=255.0 if "scale" in conventions else 1.0)
    torch.testing.assert_close(traced(*x), adapter(*x), rtol=0, atol=0)
    methods = {n.target for n in traced.graph.nodes if n.op == "call_method"}
    assert not methods & {"amin", "amax", "detach", "numpy"}


def test_deepcopy_pickle_and_run_model_keep_the_adapter() -> None:
    net = Concat(2)
    adapter = Adapter(net, inputs="concat", post="clamp", name="CDD")
    x = [t.float() for t in grey()]
    adapter.float()
    for twin in (copy.deepcopy(adapter), pickle.loads(pickle.dumps(adapter))):
        assert isinstance(twin, Adapter) and twin.display_name == "CDD"
        torch.testing.assert_close(twin(*x), adapter(*x), rtol=0, atol=0)
        torch.fx.symbolic_trace(twin)
    assert run_model(adapter, x).shape == (1, 1, H, W)
    with pytest.raises(ModelError) as error:
        run_model(adapter, x + x[:1])
    assert_one_line(error, "fuses 2 inputs, got 3")


def test_display_names() -> None:
    assert Adapter(Separate(), name="CDDFuse").display_name == "CDDFuse"
    assert Adapter(Separate()).display_name == "Separate"
    assert display_name(Adapter(Separate(), name="A")) == "A"
    assert display_name(Separate()) == "Separate"
    assert "CDDFuse" in repr(Adapter(Separate(), name="CDDFuse"))


# -- conventions from strings ------------------------------------------------------------------


def test_parse_from_command_line_strings() -> None:
    parsed = Conventions.parse(
        {
            "inputs": "concat",
            "channels": "3",
            "scale": "x/255",
            "mean-std": "0.485,0.456,0.406/0.229,0.224,0.225",
            "color": "YCbCr",
            "chroma": "2",
            "output": "1",
            "output_channel": "mean",
            "post": "signed, clamp",
            "name": "My net",
        }
    )
    assert parsed == Conventions(
        inputs="concat",
        channels=3,
        scale="x/255",
        mean_std="imagenet",
        color="ycbcr",
        chroma=2,
        output=1,
        output_channel="mean",
        post=("signed", "clamp"),
        name="My net",
    )
    assert Conventions.parse({"output": "fused", "inputs": "keywords:ir,vis"}) == Conventions(
        output="fused", inputs=("ir", "vis")
    )
    assert Conventions.parse({"scale": "", "post": "none"}) == Conventions()
    pairs = Conventions.from_pairs(["inputs=concat", "mean_std=0.5/0.5", "scale=x/65535"])
    assert pairs.mean_std == ((0.5,), (0.5,)) and pairs.divisor == 65535.0
    assert Conventions.from_text("inputs=concat; mean_std=0.5/0.5;scale=x/65535;") == pairs
    assert "inputs=concat" in pairs.describe() and Conventions().describe() == "defaults"
    adapter = adapt(Concat(2), {"inputs": "concat", "name": "X"})
    assert adapter.display_name == "X" and adapter.conventions.inputs == "concat"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"inputs": "stacked"}, ["inputs", "stacked", "separate"]),
        ({"channel": "3"}, ["unknown convention", "channel"]),
        ({"channels": "three"}, ["channels", "three"]),
        ({"channels": "0"}, ["channels", "1..64"]),
        ({"scale": "x*255"}, ["scale", "x*255"]),
        ({"scale": "x/0"}, ["scale", "divides by 0"]),
        ({"mean_std": "0.5"}, ["mean_std", "MEAN/STD"]),
        ({"mean_std": "a/b"}, ["mean", "numbers"]),
        ({"mean_std": "0.5/0"}, ["std", "positive"]),
        ({"channels": "3", "mean_std": "0.1,0.2/0.3,0.4"}, ["2 values for 3 channel"]),
        ({"color": "lab"}, ["color", "lab"]),
        ({"chroma": "0"}, ["chroma", "input number"]),
        ({"output_channel": "max"}, ["output_channel", "max"]),
        ({"post": "clamp,gamma"}, ["post step", "gamma"]),
        ({"inputs": "keywords:ir,ir"}, ["twice"]),
        ({"name": "  "}, ["name"]),
    ],
)
def test_bad_conventions_are_one_line_model_errors(options: dict, words: list[str]) -> None:
    with pytest.raises(ModelError) as error:
        Conventions.parse(options)
    assert_one_line(error, *words)


def test_adapter_errors_are_one_line() -> None:
    x = grey()
    cases = [
        (lambda: Adapter(Outputs())(*x), ["Outputs returns a tuple of 2", "output=INDEX"]),
        (lambda: Adapter(Outputs(True))(*x), ["returns a dict", "'fused'", "output=KEY"]),
        (lambda: Adapter(Outputs(True), output="y")(*x), ["no key 'y'"]),
        (lambda: Adapter(Outputs(), output=5)(*x), ["2 outputs", "output=5"]),
        (lambda: Adapter(Separate(), output=0)(*x), ["one tensor", "not 0"]),
        (lambda: Adapter(Outputs(), output=1, output_channel=3)(*x), ["3 channel(s)"]),
        (lambda: Adapter(Separate())(x[0]), ["fuses 2 inputs, got 1"]),
        (lambda: Adapter(Separate(), bogus=1), ["unknown convention 'bogus'"]),
        (lambda: Adapter(Keywords(), inputs=("ir",)), ["1 keywords for 2 inputs"]),
        (lambda: Adapter("net"), ["torch.nn.Module"]),
        (lambda: Adapter(Separate(), num_inputs=0), ["num_inputs"]),
        (lambda: Conventions.from_pairs(["inputs"]), ["KEY=VALUE"]),
        (lambda: Conventions.from_pairs(["post=clamp", "post=signed"]), ["twice"]),
    ]
    for call, words in cases:
        with pytest.raises(ModelError) as error:
            call()
        assert_one_line(error, *words)


def test_loading_pairs_with_the_scale() -> None:
    assert Conventions().loading().normalize is None
    assert Conventions(scale="minmax").loading().normalize == "minmax"
    assert Conventions(scale="x/255").loading() == (
        Conventions(scale="x/255").loading().__class__("none", "gray")
    )
    Conventions(scale="x/255").check_loading("none", "gray")
    Conventions().check_loading("percentile", "ycbcr")
    with pytest.raises(ModelError) as error:
        Conventions(scale="x/255").check_loading("minmax", "gray")
    assert_one_line(error, "scale x/255", "normalize none, not minmax")
    with pytest.raises(ModelError) as error:
        Conventions(scale="x/255").check_loading("none", "ycbcr")
    assert_one_line(error, "color gray, not ycbcr")
    with pytest.raises(ModelError) as error:
        Conventions(color="ycbcr").check_loading("minmax", "gray")
    assert_one_line(error, "color ycbcr", "not gray")


def test_check_values_catches_the_wrong_loader() -> None:
    raw = np.array([[0.0, 17.0], [200.0, 255.0]])
    minmaxed = raw / 255.0
    Conventions(scale="x/255").check_values([raw, raw])
    Conventions(scale="minmax").check_values([minmaxed])
    Conventions().check_values([raw * 1000])
    cases = [
        (Conventions(scale="x/255"), [raw, minmaxed], ["b.png", "normalize none"]),
        (Conventions(scale="x/255"), [raw, raw * 256], ["b.png", "outside [0, 255]"]),
        (Conventions(scale="minmax"), [minmaxed, raw], ["b.png", "normalize minmax"]),
        (Conventions(scale="x/255", color="ycbcr"), [minmaxed, raw], ["outside [0, 1]"]),
    ]
    for conventions, images, words in cases:
        with pytest.raises(InputError) as error:
            conventions.check_values([torch.as_tensor(i) for i in images], ["a.png", "b.png"])
        assert_one_line(error, *words)


# -- colour ------------------------------------------------------------------------------------


def _colour(source: str, cb: float, cr: float, seed: int) -> Image:
    rng = np.random.default_rng(seed)
    chroma = np.stack([np.full((4, 4), cb), np.full((4, 4), cr)]).astype(np.float32)
    data = rng.uniform(0, 1, (4, 4)).astype(np.float32)
    return Image(data=data, source=source, value_range=(0.0, 1.0), chroma=chroma)


def test_chroma_from_either_or_both_inputs() -> None:
    first = _colour("a.png", 0.3, 0.9, 1)
    second = _colour("b.png", 0.6, 0.5, 2)
    plain = Image(data=np.zeros((4, 4), np.float32), source="ir.png", value_range=(0.0, 0.0))
    np.testing.assert_array_equal(fuse_chroma([plain, second, first]), second.chroma)
    np.testing.assert_array_equal(fuse_chroma([first, second], 2), second.chroma)
    both = fuse_chroma([first, second], "weighted")
    # Cb: (0.3*0.2 + 0.6*0.1) / 0.3 = 0.4; Cr: only the first is coloured: 0.9
    np.testing.assert_allclose(both[0], 0.4, rtol=1e-6)
    np.testing.assert_allclose(both[1], 0.9, rtol=1e-6)
    neutral = _colour("n.png", 0.5, 0.5, 3)
    np.testing.assert_allclose(fuse_chroma([neutral, neutral], "weighted"), 0.5)
    assert fuse_chroma([plain, plain], "weighted") is None
    with pytest.raises(InputError) as error:
        fuse_chroma([plain, first], 1)
    assert_one_line(error, "ir.png", "no colour")
    with pytest.raises(InputError) as error:
        fuse_chroma([plain, first], 3)
    assert_one_line(error, "2 inputs")

    fused_y = np.linspace(0, 1, 16).reshape(4, 4)
    adapter = Adapter(Separate(), color="ycbcr", chroma="weighted")
    np.testing.assert_allclose(adapter.recolor(fused_y, [first, second]), recolor(fused_y, both))
    assert Adapter(Separate()).recolor(fused_y, [first, second]) is None


# -- a model assembled from parts ----------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = conv(1, 4, 11)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x), 0.1)


def _l1_by_hand(features: list[torch.Tensor], softmax: bool, window: int) -> torch.Tensor:
    activity = [f.abs().sum(dim=1, keepdim=True) for f in features]
    if window > 1:
        activity = [
            F.avg_pool2d(a, window, 1, window // 2, count_include_pad=False) for a in activity
        ]
    stacked = torch.stack(activity)
    weights = torch.softmax(stacked, dim=0) if softmax else stacked / (stacked.sum(0) + 1e-5)
    return sum(w * f for w, f in zip(weights, features, strict=True))


@pytest.mark.parametrize(
    ("rule", "softmax", "window"),
    [("l1-norm", False, 1), ("l1-softmax", True, 1), (L1Norm("ratio", window=3), False, 3)],
)
def test_assembled_l1_norm_rule_against_a_hand_computation(
    rule, softmax: bool, window: int
) -> None:
    encoder, decoder = Encoder(), conv(4, 1, 12)
    model = Assembled(encoder, rule, decoder)
    x = grey()

    def by_hand(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return decoder(_l1_by_hand([encoder(a), encoder(b)], softmax, window))

    torch.testing.assert_close(model(*x), by_hand(*x), rtol=1e-13, atol=1e-13)
    assert_jacobians_equal_loose(model, by_hand, x)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(*x), model(*x), rtol=0, atol=0)
    # the weights really vary from pixel to pixel (not a plain average)
    with torch.no_grad():
        features = [encoder(t) for t in x]
    activity = features[0].abs().sum(1) / (features[0].abs().sum(1) + features[1].abs().sum(1))
    assert float(activity.max() - activity.min()) > 0.1


def assert_jacobians_equal_loose(model: nn.Module, reference, inputs: list[torch.Tensor]) -> None:
    ours = jacobian(lambda *xs: model(*xs), tuple(inputs))
    theirs = jacobian(lambda *xs: reference(*xs), tuple(inputs))
    for a, b in zip(ours, theirs, strict=True):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("rule", "combine"),
    [
        ("mean", lambda f: (f[0] + f[1] + f[2]) / 3),
        ("sum", lambda f: f[0] + f[1] + f[2]),
        ("max", lambda f: torch.maximum(torch.maximum(f[0], f[1]), f[2])),
        (lambda *f: f[0] * f[1] - f[2], lambda f: f[0] * f[1] - f[2]),
    ],
)
def test_assembled_simple_rules_and_callables(rule, combine) -> None:
    encoder, decoder = Encoder(), conv(4, 1, 13)
    model = Assembled(encoder, rule, decoder, num_inputs=3)
    x = grey(3)
    expected = decoder(combine([encoder(t) for t in x]))
    torch.testing.assert_close(model(*x), expected, rtol=1e-14, atol=1e-14)
    torch.fx.symbolic_trace(model)


class AutoEncoder(nn.Module):
    """A repository's network: its parts are methods, the encoder multi-scale."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = conv(1, 4, 21)
        self.enc2 = conv(4, 4, 22)
        self.dec = conv(8, 1, 23)

    def encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = torch.relu(self.enc1(x))
        return [first, torch.relu(self.enc2(first))]

    def decoder_eval(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.dec(torch.cat(levels, dim=1))


def test_assembled_from_bound_methods_with_multi_scale_features() -> None:
    net = AutoEncoder()
    model = Assembled(net.encoder, "max", net.decoder_eval)
    assert model.display_name == "AutoEncoder"
    assert sorted(model.state_dict()) == sorted(f"network.{k}" for k in net.state_dict())
    x = grey()

    def by_hand(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = net.encoder(a), net.encoder(b)
        return net.decoder_eval([torch.maximum(p, q) for p, q in zip(fa, fb, strict=True)])

    torch.testing.assert_close(model(*x), by_hand(*x), rtol=0, atol=0)
    assert_jacobians_equal(model, by_hand, x)
    traced = torch.fx.symbolic_trace(model)
    assert {n.target for n in traced.graph.nodes if n.op == "call_module"} == {
        "network.enc1",
        "network.enc2",
        "network.dec",
    }
    model.float()
    assert net.dec.weight.dtype == torch.float32  # .float() reached the registered owner


def test_assembled_per_input_encoders_adapted_and_weights_by_part(tmp_path: Path) -> None:
    ir_encoder, vis_encoder, decoder = Encoder(), Encoder(), conv(4, 1, 31)
    with torch.no_grad():
        vis_encoder.conv.weight.mul_(-1)
    model = Assembled([ir_encoder, vis_encoder], "l1-norm", decoder, name="Two encoders")
    assert model.num_inputs == 2 and model.display_name == "Two encoders"
    adapter = Adapter(model, scale="x/255", post="clamp")
    assert adapter.display_name == "Two encoders"
    raw = grey(scale=255.0)

    def by_hand(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fused = _l1_by_hand([ir_encoder(a / 255), vis_encoder(b / 255)], False, 1)
        return torch.clamp(decoder(fused), 0, 1)

    torch.testing.assert_close(adapter(*raw), by_hand(*raw), rtol=1e-13, atol=1e-13)
    assert_jacobians_equal_loose(adapter, by_hand, raw)

    # part=FILE weights reach the parts: encoders in one file, the decoder in another
    torch.save({"state_dict": model.encoder.state_dict()}, tmp_path / "enc.pth")
    torch.save({"module." + k: v for k, v in decoder.state_dict().items()}, tmp_path / "dec.pth")
    fresh = Assembled([Encoder(), Encoder()], "l1-norm", conv(4, 1, 99))
    for module in (fresh.encoder[1], fresh.decoder):
        for parameter in module.parameters():
            parameter.data.zero_()
    load_weights(fresh, f"encoder={tmp_path / 'enc.pth'},decoder={tmp_path / 'dec.pth'}")
    torch.testing.assert_close(fresh(*x_of(raw)), model(*x_of(raw)), rtol=0, atol=0)


def x_of(raw: list[torch.Tensor]) -> list[torch.Tensor]:
    return [r / 255 for r in raw]


def test_assembled_errors_are_one_line() -> None:
    cases = [
        (lambda: Assembled(Encoder(), "median", conv(4, 1, 1)), ["rule", "median", "l1-norm"]),
        (lambda: Assembled(Encoder(), 3, conv(4, 1, 1)), ["fusion rule", "int"]),
        (lambda: Assembled(Encoder(), "max", "decoder"), ["decoder", "str"]),
        (lambda: Assembled([Encoder()] * 2, "max", conv(4, 1, 1), num_inputs=3), ["2 encoders"]),
        (lambda: Assembled([], "max", conv(4, 1, 1)), ["empty"]),
        (lambda: L1Norm(window=2), ["odd"]),
        (lambda: L1Norm("mean"), ["ratio or softmax"]),
        (lambda: Assembled(Encoder(), "max", conv(4, 1, 1))(*grey(3)), ["fuses 2 inputs, got 3"]),
    ]
    for call, words in cases:
        with pytest.raises(ModelError) as error:
            call()
        assert_one_line(error, *words)


# -- through the saliency engine -----------------------------------------------------------------


@pytest.mark.parametrize(("post", "local"), [("signed", True), ("minmax", False)])
def test_the_engine_keeps_local_conventions_local(post: str, local: bool) -> None:
    from fusevis.saliency import PixelJacobian

    net = Concat(6).float()
    adapter = Adapter(net, inputs="concat", channels=3, scale="x/255", post=post).eval()
    raw = [t.float() for t in grey(scale=255.0)]
    engine = PixelJacobian(adapter)
    result = engine.explain(raw, pixel=(2, 5))
    # local conventions keep the local engine; the global min-max couples every pixel only
    # through the output's minimum and range: banded plus low rank (exact)
    assert result.strategy in (("recorded", "cone", "crop") if local else ("lowrank",))
    twin = copy.deepcopy(adapter).double()
    inputs = [r.double().requires_grad_() for r in raw]
    twin(*inputs)[0, 0, 2, 5].backward()
    for row, x in zip(engine.attribute(raw, pixel=(2, 5)), inputs, strict=True):
        torch.testing.assert_close(row.double().reshape(x.shape), x.grad, rtol=1e-4, atol=1e-9)
