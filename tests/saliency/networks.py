"""Small networks covering the structures the saliency engine must handle."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class DilatedNet(nn.Module):
    """Two inputs, dilated 3×3 convolutions (dilation 2 and 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 6, 3, padding=2, dilation=2)
        self.b = nn.Conv2d(6, 4, 3, padding=3, dilation=3)
        self.c = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(torch.cat((x1, x2), dim=1)))
        return self.c(functional.leaky_relu(self.b(h), 0.1))


class EncoderDecoder(nn.Module):
    """Strided encoder (two stride-2 convs), nearest and bilinear up-sampling, a skip."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.down1 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(6, 6, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(6, 6, 3, padding=1)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = nn.Conv2d(6, 4, 3, padding=1)
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.out = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        stem = torch.tanh(self.stem(torch.cat((x1, x2), dim=1)))
        low = torch.relu(self.mid(torch.relu(self.down2(torch.relu(self.down1(stem))))))
        up = self.up2(torch.relu(self.dec1(self.up1(low))))
        return self.out(torch.cat((stem, up), dim=1))


class ThreeInputs(nn.Module):
    """Three inputs with a max rule between two of them."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Conv2d(1, 4, 3, padding=1)
        self.mix = nn.Conv2d(8, 1, 5, padding=2)

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        fused = torch.maximum(self.encode(a), self.encode(b))
        return self.mix(torch.cat((fused, torch.sigmoid(self.encode(c))), dim=1))


class ColourNet(nn.Module):
    """Two RGB inputs, an RGB output."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(6, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.b(functional.elu(self.a(torch.cat((x1, x2), dim=1)))))


class Denoiser(nn.Module):
    """One input (any image-to-image network)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


class GlobalPoolNet(nn.Module):
    """Local convolutions plus a global average (not local)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Conv2d(3, 1, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(torch.cat((x1, x2), dim=1)))
        return self.out(h * self.pool(h))


class SelfAttentionNet(nn.Module):
    """Self-attention over all pixels (not local, and not traceable by shape rules)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(2, 4, 1)
        self.attention = nn.MultiheadAttention(4, 1, batch_first=True)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        h = self.embed(torch.cat((x1, x2), dim=1))
        batch, channels, height, width = h.shape
        tokens = h.flatten(2).transpose(1, 2)
        mixed, _ = self.attention(tokens, tokens, tokens)
        return self.out(mixed.transpose(1, 2).reshape(batch, channels, height, width))


class DataDependent(nn.Module):
    """Local but not traceable by torch.fx (branches on values): measured instead."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 5, padding=2)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        h = self.conv(torch.cat((x1, x2), dim=1))
        if float(h.detach().mean()) > 1e9:  # never true, but fx cannot know
            return h * 0
        return torch.tanh(h)
