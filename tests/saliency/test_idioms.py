"""Every local idiom stays on the fast path: traced exactly, run by the cone and the sweep.

One small network per idiom (issue 13, item 1). For each: the strategy chosen is the cone
or the recorded sweep (never the crop, the full image or a measured field), the rows equal
float64 full-image autograd at corners and inside, and the traced field equals the true
support of the Jacobian found at interior pixels. Padding shifts the field; operations
that cannot be traced are named with the model's source line.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional

from fusevis.saliency import PixelJacobian
from fusevis.saliency.trace import NotLocal, TraceFailure, trace_receptive_fields

from .zoo_today import LayerNorm2d

SIZE = (16, 18)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("FUSEVIS_CACHE", str(tmp_path / "cache"))


class Idiom(nn.Module):
    """Two inputs → a 3×3 convolution (8 channels) → ``body`` → a 3×3 convolution → 1 channel.

    ``body(self, h)`` may use ``self.layer`` (built by ``layer()``); ``out`` its channel count.
    """

    def __init__(
        self,
        body: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        layer: Callable[[], nn.Module] | None = None,
        out: int = 8,
    ) -> None:
        super().__init__()
        self.enter = nn.Conv2d(2, 8, 3, padding=1)
        self.layer = layer() if layer is not None else nn.Identity()
        self.body = body
        self.leave = nn.Conv2d(out, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.enter(torch.cat((a, b), dim=1)))
        return self.leave(self.body(self, h))


def _layer(s: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return s.layer(h)


def _chunk_and_split(s: nn.Module, h: torch.Tensor) -> torch.Tensor:
    first, second = h.chunk(2, dim=1)
    small, large = torch.split(h, [3, 5], dim=1)
    return torch.cat((second, first, small, large), dim=1)


IDIOMS: dict[str, Idiom | Callable[[], nn.Module]] = {
    # padding: modules, functions, and padding_mode on convolutions
    "ZeroPad2d": lambda: Idiom(_layer, lambda: nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(8, 8, 3))),
    "ConstantPad2d": lambda: Idiom(
        _layer, lambda: nn.Sequential(nn.ConstantPad2d((2, 0, 1, 1), 0.3), nn.Conv2d(8, 8, 3))
    ),
    "ReflectionPad2d": lambda: Idiom(
        _layer, lambda: nn.Sequential(nn.ReflectionPad2d(2), nn.Conv2d(8, 8, 5))
    ),
    "ReplicationPad2d": lambda: Idiom(
        _layer, lambda: nn.Sequential(nn.ReplicationPad2d((1, 1, 2, 0)), nn.Conv2d(8, 8, 3))
    ),
    "F.pad reflect": lambda: Idiom(
        lambda s, h: s.layer(functional.pad(h, (1, 1, 1, 1), mode="reflect")),
        lambda: nn.Conv2d(8, 8, 3),
    ),
    "F.pad replicate": lambda: Idiom(
        lambda s, h: s.layer(functional.pad(h, [2, 2, 2, 2], mode="replicate")),
        lambda: nn.Conv2d(8, 8, 5),
    ),
    "F.pad constant and a crop": lambda: Idiom(
        lambda s, h: functional.pad(h, (1, 1, 1, 1), value=0.5)[:, :, 2:, :-2]
    ),
    "padding_mode reflect": lambda: Idiom(
        _layer, lambda: nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")
    ),
    "padding_mode replicate": lambda: Idiom(
        _layer, lambda: nn.Conv2d(8, 8, 3, padding=2, dilation=2, padding_mode="replicate")
    ),
    "padding same": lambda: Idiom(_layer, lambda: nn.Conv2d(8, 8, (3, 5), padding="same")),
    # channels: repeat, expand, tile, chunk, split, view, permute, flatten, slices
    "repeat and tile": lambda: Idiom(
        lambda s, h: h[:, :4].repeat(1, 2, 1, 1) + torch.tile(h[:, 4:], (1, 2, 1, 1))[:, :8]
    ),
    "expand": lambda: Idiom(lambda s, h: h[:, :1].expand(-1, 8, -1, -1) * h),
    "chunk and split": lambda: Idiom(_chunk_and_split, out=16),
    "channel shuffle view": lambda: Idiom(
        lambda s, h: h.view(h.shape[0], 2, 4, h.shape[2], h.shape[3]).transpose(1, 2).flatten(1, 2)
    ),
    "unsqueeze, squeeze, reshape": lambda: Idiom(
        lambda s, h: h.unsqueeze(1).squeeze(1).reshape(1, 8, h.shape[-2], h.shape[-1])
    ),
    "channel slicing": lambda: Idiom(
        lambda s, h: h[:, 2:3] * h[:, :, :, :] + h[:, ::2].sum(1, True)
    ),
    # resampling
    "pixel unshuffle and shuffle": lambda: Idiom(
        lambda s, h: functional.pixel_shuffle(s.layer(functional.pixel_unshuffle(h, 2)), 2),
        lambda: nn.Conv2d(32, 32, 3, padding=1),
    ),
    "interpolate nearest by scale": lambda: Idiom(
        lambda s, h: functional.interpolate(s.layer(h), scale_factor=2, mode="nearest"),
        lambda: nn.Conv2d(8, 8, 3, stride=2, padding=1),
    ),
    "interpolate bilinear by size": lambda: Idiom(
        lambda s, h: functional.interpolate(s.layer(h), size=h.shape[-2:], mode="bilinear"),
        lambda: nn.Conv2d(8, 8, 3, stride=2, padding=1),
    ),
    "interpolate bilinear align_corners": lambda: Idiom(
        lambda s, h: functional.interpolate(
            s.layer(h), scale_factor=2, mode="bilinear", align_corners=True
        ),
        lambda: nn.Conv2d(8, 8, 3, stride=2, padding=1),
    ),
    "Upsample bilinear": lambda: Idiom(
        lambda s, h: s.layer[1](s.layer[0](h)),
        lambda: nn.Sequential(nn.AvgPool2d(2), nn.Upsample(scale_factor=2, mode="bilinear")),
    ),
    "max pooling ceil_mode, back by size": lambda: Idiom(
        lambda s, h: functional.interpolate(s.layer(h), size=(h.shape[2], h.shape[3])),
        lambda: nn.MaxPool2d(3, stride=3, ceil_mode=True),  # 16 x 18 -> 6 x 6
    ),
    "average pooling without the pad count": lambda: Idiom(
        _layer, lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    ),
    # convolutions
    "transposed": lambda: Idiom(
        lambda s, h: s.layer[1](s.layer[0](h)),
        lambda: nn.Sequential(
            nn.Conv2d(8, 8, 4, stride=2, padding=1), nn.ConvTranspose2d(8, 8, 4, 2, 1)
        ),
    ),
    "grouped": lambda: Idiom(_layer, lambda: nn.Conv2d(8, 8, 3, padding=1, groups=4)),
    "depthwise": lambda: Idiom(_layer, lambda: nn.Conv2d(8, 8, 5, padding=2, groups=8)),
    # activations, norms, branches
    "activations": lambda: Idiom(
        lambda s, h: (
            s.layer(functional.gelu(h) + functional.silu(h) * functional.mish(h))
            + functional.hardswish(h)
            + torch.softmax(h, dim=1)
        ),
        lambda: nn.PReLU(8),
    ),
    "LayerNorm channels-last": lambda: Idiom(
        lambda s, h: s.layer(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), lambda: nn.LayerNorm(8)
    ),
    "LayerNorm2d": lambda: Idiom(_layer, lambda: LayerNorm2d(8)),
    "max, maximum and minimum": lambda: Idiom(
        lambda s, h: (
            torch.max(h, s.layer(h))
            + torch.maximum(h, -h)
            - torch.minimum(h, 0.5 * h)
            + torch.max(h, dim=1, keepdim=True)[0]
        ),
        lambda: nn.Conv2d(8, 8, 3, padding=1),
    ),
}


class ManyInputs(nn.Module):
    """``forward(*inputs)`` over any number of inputs, a maximum over them."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Conv2d(1, 4, 3, padding=1)
        self.decode = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        features = [torch.relu(self.encode(x)) for x in inputs]
        fused = features[0]
        for other in features[1:]:
            fused = torch.maximum(fused, other)
        return self.decode(fused)


def _inputs(count: int, size: tuple[int, int] = SIZE, seed: int = 1) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(
        torch.rand(1, 1, *size, generator=generator, dtype=torch.float64) for _ in range(count)
    )


def reference_row(model: nn.Module, inputs: tuple, pixel: tuple[int, int]) -> tuple:
    """One fused pixel's Jacobian rows by full-image float64 autograd."""
    xs = tuple(x.clone().requires_grad_(True) for x in inputs)
    grads = torch.autograd.grad(model(*xs)[0, 0, pixel[0], pixel[1]], xs, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs, strict=True))


def true_support(model: nn.Module, inputs: tuple, pixels: list) -> list[tuple[int, ...]]:
    """Per input, the offsets of the exactly non-zero Jacobian entries, over ``pixels``."""
    bounds: list[list[int] | None] = [None] * len(inputs)
    for pixel in pixels:
        for k, row in enumerate(reference_row(model, inputs, pixel)):
            found = row[0].abs().sum(dim=0).nonzero()
            if found.numel() == 0:
                continue
            lo = (found.min(dim=0).values - torch.tensor(pixel)).tolist()
            hi = (found.max(dim=0).values - torch.tensor(pixel)).tolist()
            old = bounds[k] or [lo[0], hi[0], lo[1], hi[1]]
            bounds[k] = [
                min(old[0], lo[0]),
                max(old[1], hi[0]),
                min(old[2], lo[1]),
                max(old[3], hi[1]),
            ]
    return [tuple(b) for b in bounds if b is not None]


def assert_exact(model: nn.Module, inputs: tuple, jacobian: PixelJacobian, pixels: list) -> set:
    """Rows equal float64 autograd within 1e-5 of each row's largest entry; strategies used."""
    used = set()
    for pixel in pixels:
        found = jacobian.explain(inputs, pixel)
        used.add(found.strategy)
        for got, want in zip(found.dense(), reference_row(model, inputs, pixel), strict=True):
            scale = float(want.abs().max()) or 1.0
            assert float((got - want).abs().max()) <= 1e-5 * scale, (pixel, found.strategy)
    return used


def corners_and_inside(size: tuple[int, int]) -> list[tuple[int, int]]:
    height, width = size
    return [
        (0, 0),
        (0, width - 1),
        (height - 1, 0),
        (height - 1, width - 1),
        (height // 2, 7),
        (5, 4),
    ]


def interior_block(size: tuple[int, int], period: tuple[int, int]) -> list[tuple[int, int]]:
    """Pixels around the centre covering every phase of the network's stride, twice."""
    period = (min(period[0], 4), min(period[1], 4))  # a grid that does not divide: some
    rows = range(size[0] // 2 - period[0], size[0] // 2 + period[0])
    cols = range(size[1] // 2 - period[1], size[1] // 2 + period[1])
    return [(r, c) for r in rows for c in cols]


@pytest.mark.parametrize("name", list(IDIOMS))
def test_each_idiom_is_traced_exactly_and_runs_on_the_fast_path(name: str) -> None:
    torch.manual_seed(0)
    model = IDIOMS[name]().double().eval()
    inputs = _inputs(2)
    fields = trace_receptive_fields(model, 2, inputs)
    for field in fields:
        assert field.source == "traced"
    support = true_support(model, inputs, interior_block(SIZE, fields[0].stride))
    assert support == [(f.row_lo, f.row_hi, f.col_lo, f.col_hi) for f in fields], name
    jacobian = PixelJacobian(model)
    jacobian.prepare(inputs)
    assert jacobian.locality(inputs).how == "traced", jacobian.locality(inputs).how
    assert assert_exact(model, inputs, jacobian, corners_and_inside(SIZE)) <= {"cone", "recorded"}
    for strategy in ("cone", "recorded"):
        named = PixelJacobian(model, strategy=strategy)
        assert assert_exact(model, inputs, named, [(0, 1), (8, 9), (15, 17)]) == {strategy}


@pytest.mark.parametrize("count", [1, 2, 4])
def test_any_number_of_inputs_through_forward_star_inputs(count: int) -> None:
    torch.manual_seed(0)
    model = ManyInputs().double().eval()
    inputs = _inputs(count)
    fields = trace_receptive_fields(model, count, inputs)
    assert [(f.row_lo, f.row_hi) for f in fields] == [(-2, 2)] * count
    jacobian = PixelJacobian(model)
    jacobian.prepare(inputs)
    assert assert_exact(model, inputs, jacobian, corners_and_inside(SIZE)) <= {"cone", "recorded"}


@pytest.mark.parametrize(
    ("pad", "expected"),
    [
        (nn.ZeroPad2d(1), (-1, 1, -1, 1)),
        (nn.ReflectionPad2d(1), (-1, 1, -1, 1)),
        (nn.ReplicationPad2d(1), (-1, 1, -1, 1)),
        (nn.ZeroPad2d((2, 0, 0, 2)), (0, 2, -2, 0)),  # left 2, bottom 2: off centre
    ],
)
def test_padding_shifts_the_field_it_does_not_widen_it(pad: nn.Module, expected: tuple) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(pad, nn.Conv2d(1, 1, 3)).double().eval()
    (x,) = _inputs(1, (12, 12))
    assert true_support(model, (x,), interior_block((12, 12), (2, 2))) == [expected]
    for example in (None, (x,)):
        field = trace_receptive_fields(model, 1, example)[0]
        assert (field.row_lo, field.row_hi, field.col_lo, field.col_hi) == expected


def test_an_asymmetric_reflection_reaches_further_at_the_border() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReflectionPad2d((2, 0, 0, 2)), nn.Conv2d(1, 1, 3)).double().eval()
    (x,) = _inputs(1, (12, 12))
    inside = true_support(model, (x,), interior_block((12, 12), (2, 2)))
    everywhere = true_support(model, (x,), [(r, c) for r in range(12) for c in range(12)])
    assert inside == [(0, 2, -2, 0)] and everywhere == [(-2, 2, -2, 2)]
    field = trace_receptive_fields(model, 1, (x,))[0]  # crops of border pixels need it all
    assert (field.row_lo, field.row_hi, field.col_lo, field.col_hi) == everywhere[0]


class _Erf(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.erf(a) + b  # the line the message names


class _FlattenedImage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = self.conv(torch.cat((a, b), 1))
        return h.view(1, 2, -1).softmax(-1).view(h.shape)[:, :1]


class _Branching(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.sum() > 0:  # data-dependent: torch.fx cannot follow it
            return a
        return b


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        (
            _Erf(),
            TraceFailure,
            r"function erf is not known to the tracer at test_idioms\.py:\d+ "
            r"\(return torch\.erf\(a\) \+ b",
        ),  # fmt: skip
        (
            _FlattenedImage(),
            TraceFailure,
            r"\.view\(\) at test_idioms\.py:\d+ .*: reshapes the image",
        ),
        (
            _Branching(),
            TraceFailure,
            r"cannot trace the model: .* at test_idioms\.py:\d+ \(if a\.sum",
        ),
    ],
)
def test_a_tracing_failure_names_the_operation_and_the_line(
    model: nn.Module, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        trace_receptive_fields(model.double(), 2, _inputs(2))


def test_a_spatial_reduction_is_not_local_and_named() -> None:
    model = Idiom(lambda s, h: h - h.mean(dim=(-2, -1), keepdim=True)).double()
    with pytest.raises(
        NotLocal, match=r"\.mean\(\) at test_idioms\.py:\d+ .*mixes the whole image"
    ):
        trace_receptive_fields(model, 2, _inputs(2))


@pytest.mark.parametrize("pixel", [(0, 0), (8, 9), (15, 17), (0, 12)])
def test_circular_padding_is_computed_exactly_by_the_cone_but_not_local(pixel) -> None:  # noqa: ANN001
    from fusevis.saliency.cone import cone_of
    from fusevis.saliency.convolution import convolve_with

    torch.manual_seed(0)
    model = Idiom(_layer, lambda: nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"))
    model = model.double().eval()
    inputs = _inputs(2)
    value, leaves, windows = cone_of(model, 2).run(inputs, pixel, convolve_with("onednn"))
    grads = torch.autograd.grad(value[0, 0], leaves)
    for grad, window, want in zip(grads, windows, reference_row(model, inputs, pixel), strict=True):
        placed = torch.zeros_like(want)
        placed[..., window.top : window.bottom, window.left : window.right] = grad
        torch.testing.assert_close(placed, want, rtol=1e-9, atol=1e-12)
    assert not PixelJacobian(model).locality(inputs).local  # a corner reads the far corner


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "bilinear", "bicubic", "area"])
@pytest.mark.parametrize("size", [(24, 26), (23, 25)])
def test_resampling_reads_the_rows_pytorch_reads_in_float32(mode: str, size: tuple) -> None:
    """Down by 1/3 and back up to the size: awkward factors, computed in the inputs' precision."""
    torch.manual_seed(0)
    model = Idiom(
        lambda s, h: functional.interpolate(
            functional.interpolate(h, scale_factor=1 / 3, mode=mode), size=h.shape[-2:], mode=mode
        )
    ).eval()
    generator = torch.Generator().manual_seed(3)
    inputs = tuple(torch.rand(1, 1, *size, generator=generator) for _ in "ab")
    for strategy in ("cone", "recorded"):
        jacobian = PixelJacobian(model, strategy=strategy)
        for pixel in [(0, 0), (size[0] - 1, size[1] - 1), (11, 12), (4, 20)]:
            found = jacobian.explain(inputs, pixel)
            for got, want in zip(found.dense(), reference_row(model, inputs, pixel), strict=True):
                scale = float(want.abs().max()) or 1.0
                assert float((got - want).abs().max()) <= 1e-4 * scale, (mode, pixel, strategy)
