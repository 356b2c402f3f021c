"""Non-local fusion networks in today's idioms, written here for the tests and benchmarks.

Each couples distant pixels in its own way:

* :class:`ChannelAttentionNet` — squeeze-excitation (channel means, a global max), two blocks,
  the second's pooled features depending on the first's (nested global quantities);
* :class:`TransposedAttentionNet` — Restormer-style transposed attention: q and k
  L2-normalised over the whole image, a C×C attention per head, softmax over channels,
  followed by a gated depth-wise feed-forward network; two blocks;
* :class:`ShiftedWindowNet` — Swin-style window attention, then shifted windows (``torch.roll``
  and a mask keeping wrapped regions apart), windows made by ``view``/``permute``;
* :class:`GlobalAttentionNet` — softmax attention over all pixels (no low-rank structure);
* :class:`MinMaxNet` — a local CNN whose output is min-max normalised over the image.

``BUILDERS`` maps each name to a builder taking a ``width``; ``STRUCTURE`` says what the
engine is expected to choose for each.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional


class ChannelNorm(nn.Module):
    """Layer normalisation over the channels of each pixel, written out (local)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(1, channels, 1, 1))
        self.bias = nn.Parameter(0.1 * torch.randn(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        variance = (centred * centred).mean(dim=1, keepdim=True)
        return centred / torch.sqrt(variance + 1e-5) * self.weight + self.bias


class SqueezeExcite(nn.Module):
    """Channel attention: pooled channel statistics through two linear layers, a sigmoid."""

    def __init__(self, channels: int, with_max: bool = False) -> None:
        super().__init__()
        hidden = max(1, channels // 2)
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)
        self.with_max = with_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[0], x.shape[1]
        if self.with_max:  # CBAM-style: the mean and the maximum of each channel
            pooled = x.mean(dim=(2, 3)) + x.amax(dim=(-2, -1))
        else:
            pooled = functional.adaptive_avg_pool2d(x, 1).view(batch, channels)
        scale = torch.sigmoid(self.excite(torch.relu(self.squeeze(pooled))))
        return x * scale.view(batch, channels, 1, 1)


class ChannelAttentionNet(nn.Module):
    """Two inputs, convolutions and two squeeze-excitation blocks (the second nested)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(2, width, 3, padding=1)
        self.first = SqueezeExcite(width)
        self.body = nn.Conv2d(width, width, 3, padding=1)
        self.second = SqueezeExcite(width, with_max=True)
        self.tail = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = self.first(torch.relu(self.head(torch.cat((a, b), dim=1))))
        h = torch.relu(self.body(h))
        return self.tail(h + self.second(h))


class TransposedAttention(nn.Module):
    """Restormer-style multi-head transposed attention: a C×C attention over the image."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(1.0 + 0.2 * torch.rand(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.qkv_dw = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels)
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        q = functional.normalize(q.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        k = functional.normalize(k.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        v = v.reshape(b, self.heads, c // self.heads, h * w)
        attention = (q @ k.transpose(-2, -1)) * self.temperature
        attention = attention.softmax(dim=-1)
        return self.project((attention @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """Restormer's gated depth-wise feed-forward network (local)."""

    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = channels * expansion
        self.into = nn.Conv2d(channels, 2 * hidden, 1)
        self.depthwise = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.depthwise(self.into(x)).chunk(2, dim=1)
        return self.out(functional.gelu(gate) * value)


class TransposedBlock(nn.Module):
    """Norm, transposed attention, norm, gated feed-forward; residuals around both."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.attention = TransposedAttention(channels, heads)
        self.norm2 = ChannelNorm(channels)
        self.feed = GatedFeedForward(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.feed(self.norm2(x))


class TransposedAttentionNet(nn.Module):
    """Two inputs, an embedding, two transposed-attention blocks, a 3×3 output."""

    def __init__(self, width: int = 8, heads: int = 2, blocks: int = 2) -> None:
        super().__init__()
        self.embed = nn.Conv2d(2, width, 3, padding=1)
        self.blocks = nn.Sequential(*(TransposedBlock(width, heads) for _ in range(blocks)))
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.embed(torch.cat((a, b), dim=1))))


class WindowAttention(nn.Module):
    """Attention within non-overlapping windows, optionally shifted (Swin's SW-MSA).

    The shifted windows are made by rolling the image by ``-shift`` and cutting windows; the
    regions that the roll wraps around are kept apart by a mask, so no pixel attends across
    the image border. The image is padded to a multiple of ``window`` (as Swin does).
    """

    def __init__(self, channels: int, window: int, shift: int, heads: int) -> None:
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.project = nn.Linear(channels, channels)
        self.scale = (channels // heads) ** -0.5

    def _regions(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Per pixel of the rolled image, which of the 3×3 regions of the roll it came from."""
        ws, s = self.window, self.shift
        rows = torch.arange(h, device=device)
        cols = torch.arange(w, device=device)
        row_region = (rows >= h - ws).long() + (rows >= h - s).long()
        col_region = (cols >= w - ws).long() + (cols >= w - s).long()
        return row_region[:, None] * 3 + col_region[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        ws, s, heads = self.window, self.shift, self.heads
        x = functional.pad(x, (0, (ws - width % ws) % ws, 0, (ws - height % ws) % ws))
        b, c, h, w = x.shape
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(2, 3))
        tokens = (
            x.view(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, c)
        )
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        q = q.reshape(-1, ws * ws, heads, c // heads).transpose(1, 2)
        k = k.reshape(-1, ws * ws, heads, c // heads).transpose(1, 2)
        v = v.reshape(-1, ws * ws, heads, c // heads).transpose(1, 2)
        logits = (q @ k.transpose(-2, -1)) * self.scale
        if s:
            regions = self._regions(h, w, x.device)
            regions = regions.view(h // ws, ws, w // ws, ws).permute(0, 2, 1, 3)
            regions = regions.reshape(-1, ws * ws)
            apart = regions[:, :, None] != regions[:, None, :]
            logits = logits.view(b, -1, heads, ws * ws, ws * ws)
            logits = logits.masked_fill(apart[None, :, None], float("-inf"))
            logits = logits.view(-1, heads, ws * ws, ws * ws)
        mixed = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, ws * ws, c)
        mixed = self.project(mixed)
        y = mixed.view(b, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4)
        y = y.reshape(b, c, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(2, 3))
        return y[:, :, :height, :width]


class ShiftedWindowNet(nn.Module):
    """Two inputs, window attention then shifted-window attention (Swin), per-pixel MLPs."""

    def __init__(self, width: int = 8, window: int = 4, heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Conv2d(2, width, 3, padding=1)
        self.norms = nn.ModuleList(ChannelNorm(width) for _ in range(2))
        self.attention = nn.ModuleList(
            WindowAttention(width, window, shift, heads) for shift in (0, window // 2)
        )
        self.mlp = nn.Sequential(
            nn.Conv2d(width, 2 * width, 1), nn.GELU(), nn.Conv2d(2 * width, width, 1)
        )
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = self.embed(torch.cat((a, b), dim=1))
        for norm, attention in zip(self.norms, self.attention, strict=True):
            x = x + attention(norm(x))
        return self.out(x + self.mlp(x))


class GlobalAttentionNet(nn.Module):
    """Softmax attention over every patch of the image (the general non-local case).

    Patches of ``patch`` × ``patch`` pixels become tokens (a strided convolution), every token
    attends to every other, and a transposed convolution brings the result back to the
    pixels, added to a full-resolution path. ``patch=1`` attends over all pixels.
    """

    def __init__(self, width: int = 8, patch: int = 2) -> None:
        super().__init__()
        self.embed = nn.Conv2d(2, width, 3, padding=1)
        self.tokens = nn.Conv2d(width, width, patch, stride=patch)
        self.query = nn.Conv2d(width, width, 1)
        self.key = nn.Conv2d(width, width, 1)
        self.value = nn.Conv2d(width, width, 1)
        self.back = nn.ConvTranspose2d(width, width, patch, stride=patch)
        self.out = nn.Conv2d(width, 1, 3, padding=1)
        self.scale = 1.0 / math.sqrt(width)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.embed(torch.cat((a, b), dim=1)))
        t = self.tokens(x)
        batch, channels, h, w = t.shape
        q = self.query(t).flatten(2).transpose(1, 2)  # (B, N, C)
        k = self.key(t).flatten(2)  # (B, C, N)
        v = self.value(t).flatten(2).transpose(1, 2)
        weights = torch.softmax((q @ k) * self.scale, dim=-1)  # (B, N, N)
        mixed = (weights @ v).transpose(1, 2).reshape(batch, channels, h, w)
        return self.out(x + self.back(mixed))


class MinMaxNet(nn.Module):
    """A local CNN whose output is min-max normalised over the image."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, width, 3, padding=1)
        self.b = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = self.b(torch.relu(self.a(torch.cat((a, b), dim=1))))
        low = y.amin(dim=(2, 3), keepdim=True)
        high = y.amax(dim=(2, 3), keepdim=True)
        return (y - low) / (high - low + 1e-6)


BUILDERS: dict[str, Callable[[int], nn.Module]] = {
    "ChannelAttention": lambda width: ChannelAttentionNet(width),
    "TransposedAttention": lambda width: TransposedAttentionNet(width, heads=2),
    "ShiftedWindow": lambda width: ShiftedWindowNet(width, window=4, heads=2),
    "GlobalAttention": lambda width: GlobalAttentionNet(width, patch=2),
    "MinMax": lambda width: MinMaxNet(width),
}

# what PixelJacobian(strategy="auto") is expected to choose for each
STRUCTURE = {
    "ChannelAttention": "lowrank",
    "TransposedAttention": "lowrank",
    "ShiftedWindow": "full",
    "GlobalAttention": "full",
    "MinMax": "lowrank",
}
