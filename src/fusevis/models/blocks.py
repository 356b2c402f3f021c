"""Small building blocks shared by the paper's networks."""

from __future__ import annotations

from torch import nn


def conv_bn_act(
    in_channels: int, out_channels: int, kernel: int, activation: nn.Module
) -> nn.Sequential:
    """Return ``Sequential(conv k×k 'same', BatchNorm2d, activation)`` (indices 0, 1, 2)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
        nn.BatchNorm2d(out_channels),
        activation,
    )


def conv_chain(channels: list[int], kernels: list[int], slope: float = 0.2) -> nn.Sequential:
    """Chain of conv–BN–LeakyReLU triples flattened into one ``Sequential``."""
    layers: list[nn.Module] = []
    for cin, cout, k in zip(channels[:-1], channels[1:], kernels, strict=True):
        layers.extend(conv_bn_act(cin, cout, k, nn.LeakyReLU(slope)))
    return nn.Sequential(*layers)
