"""Local fusion networks written with today's idioms (written here for the tests).

Each network is built the way recent public fusion code writes them, not copied from any:

* :class:`MaxFusion` — N inputs (``forward(*inputs)``), grey replicated to three channels
  with ``.repeat``, reflect and replicate padding (modules and ``F.pad``) before 'valid'
  convolutions, an element-wise maximum over the inputs' features (IFCNN style);
* :class:`L1NormFusion` — an encoder with a dense block, a fusion rule weighting each
  input's features by their smoothed l1 norm over the channels, a decoder (DenseFuse
  style), every convolution after a ``ReflectionPad2d``;
* :class:`PoolShuffleUNet` — a U-Net: max pooling with ``ceil_mode``, a strided grouped
  convolution, pixel-shuffle and bilinear up-sampling, skips, a transposed convolution;
* :class:`DenseBlockNet` — dense blocks of depthwise and pointwise convolutions with GELU,
  SiLU, Mish, PReLU, hard-swish, a LayerNorm over the channels computed by hand
  (``LayerNorm2d``) and the channels-last idiom (``permute`` → ``nn.LayerNorm`` →
  ``permute``), a softmax over channels, channel slicing and ``chunk``.

:data:`LOCAL_ZOO` lists (name, builder, number of inputs); builders take no arguments and
return a model in eval mode with random weights (BatchNorm statistics randomised).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional


def _randomise_norms(model: nn.Module, seed: int = 3) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


class MaxFusion(nn.Module):
    """IFCNN-style: shared feature extraction per input, element-wise max, reconstruction."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 5)  # after a reflect padding of 2
        self.norm = nn.BatchNorm2d(width)
        self.pad = nn.ReflectionPad2d(1)
        self.feature = nn.Conv2d(width, width, 3)
        self.merge = nn.Conv2d(width, width, 3)  # after a replicate padding
        self.out = nn.Conv2d(width, 1, 1)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        x = x.repeat(1, 3, 1, 1)  # grey to the three channels the stem was trained on
        h = torch.relu(self.norm(self.stem(functional.pad(x, (2, 2, 2, 2), mode="reflect"))))
        return torch.relu(self.feature(self.pad(h)))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        features = [self.extract(x) for x in inputs]
        fused = torch.max(torch.stack(features), dim=0)[0]
        h = torch.relu(self.merge(functional.pad(fused, [1, 1, 1, 1], mode="replicate")))
        return self.out(h)


class _ReflectConv(nn.Module):
    """A convolution after a reflection padding, then an activation (DenseFuse's layer)."""

    def __init__(self, channels_in: int, channels_out: int, last: bool = False) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(channels_in, channels_out, 3)
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.pad(x))
        return torch.sigmoid(h) if self.last else torch.relu(h)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = _ReflectConv(1, 8)
        self.dense = nn.ModuleList([_ReflectConv(8 + 8 * k, 8) for k in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        for layer in self.dense:
            h = torch.cat([h, layer(h)], dim=1)
        return h


class _Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _ReflectConv(32, 16), _ReflectConv(16, 8), _ReflectConv(8, 1, last=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def l1_norm_rule(features: list[torch.Tensor]) -> torch.Tensor:
    """Weight each input's features by its l1 norm over channels, averaged over 3×3."""
    activity = [functional.avg_pool2d(f.abs().sum(dim=1, keepdim=True), 3, 1, 1) for f in features]
    total = torch.stack(activity).sum(dim=0) + 1e-6
    return sum(f * (a / total) for f, a in zip(features, activity, strict=True))


class L1NormFusion(nn.Module):
    """DenseFuse-style: an encoder per input, the l1-norm fusion rule, a decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _Encoder()
        self.decoder = _Decoder()

    def forward(self, infrared: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        return self.decoder(l1_norm_rule([self.encoder(infrared), self.encoder(visible)]))


class PoolShuffleUNet(nn.Module):
    """A small U-Net: pooling down, pixel shuffle and bilinear interpolation up."""

    def __init__(self) -> None:
        super().__init__()
        self.enter = nn.Conv2d(2, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.down = nn.Conv2d(8, 16, 3, padding=1)
        self.bottom = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=4)
        self.expand = nn.Conv2d(16, 64, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.merge = nn.Conv2d(32, 16, 3, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.final = nn.Conv2d(16, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 1, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        top = functional.leaky_relu(self.enter(torch.cat((a, b), dim=1)), 0.1)
        middle = torch.relu(self.down(self.pool(top)))
        low = functional.elu(self.bottom(middle))
        up = self.shuffle(self.expand(low))  # (16, h/2) -> (16, h)
        smooth = functional.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
        middle = torch.relu(self.merge(torch.cat((up, middle + smooth), dim=1)))
        h = torch.relu(self.final(torch.cat((self.up(middle), top), dim=1)))
        return torch.sigmoid(self.out(h))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map, written out as repositories do."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class _DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int, activation: nn.Module) -> None:
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pointwise = nn.Conv2d(channels, growth, 1)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.pointwise(self.depthwise(self.norm(x))))


class DenseBlockNet(nn.Module):
    """Dense blocks of depthwise convolutions with today's activations and norms."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 8, 3, padding=1)
        self.layers = nn.ModuleList(
            [
                _DenseLayer(8, 8, nn.GELU()),
                _DenseLayer(16, 8, nn.SiLU()),
                _DenseLayer(24, 8, nn.Mish()),
            ]
        )
        self.channels_last_norm = nn.LayerNorm(32)
        self.prelu = nn.PReLU(32)
        self.gate = nn.Conv2d(16, 16, 1)
        self.out = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = functional.hardswish(self.stem(torch.cat((a, b), dim=1)))
        for layer in self.layers:
            h = torch.cat((h, layer(h)), dim=1)
        h = self.channels_last_norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        h = self.prelu(h)
        content, weights = h.chunk(2, dim=1)
        weights = torch.softmax(self.gate(weights), dim=1)
        h = content * weights + h[:, :16] * h[:, 16:17]
        return torch.tanh(self.out(h))


def _build(cls: type[nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return _randomise_norms(cls())

    build.__name__ = cls.__name__
    return build


LOCAL_ZOO: list[tuple[str, Callable[[], nn.Module], int]] = [
    ("MaxFusion", _build(MaxFusion), 3),
    ("L1NormFusion", _build(L1NormFusion), 2),
    ("PoolShuffleUNet", _build(PoolShuffleUNet), 2),
    ("DenseBlockNet", _build(DenseBlockNet), 2),
]
"""Local zoo networks: (name, builder, number of inputs)."""
