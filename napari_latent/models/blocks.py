"""Convolutional building blocks shared by the models: residual blocks, down and up paths.

Channel widths follow :meth:`ModelConfig.channels`: ``base_channels`` at the full image
resolution, doubling with every halving of the resolution up to ``max_channels``. Group
normalisation keeps the blocks independent of the batch size (and of how a batch is split
across distributed processes).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import ModelConfig


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``channels``."""
    groups = math.gcd(channels, 8)
    return nn.GroupNorm(groups, channels)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: (GN, SiLU, conv3x3) twice plus a skip connection."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.body = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            group_norm(out_channels), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def resolutions(config: ModelConfig, stop: int) -> list[int]:
    """Feature-map resolutions from the image size down to ``stop`` (inclusive)."""
    sizes = []
    size = int(config.image_size)
    while size >= stop:
        sizes.append(size)
        size //= 2
    return sizes


class DownPath(nn.Module):
    """Image ``(n, 1, S, S)`` to a feature map ``(n, channels(stop), stop, stop)``."""

    def __init__(self, config: ModelConfig, stop: int = 4, blocks_per_level: int = 1) -> None:
        super().__init__()
        levels = resolutions(config, stop)
        layers: list[nn.Module] = [nn.Conv2d(1, config.channels(levels[0]), 3, padding=1)]
        for i, res in enumerate(levels):
            width = config.channels(res)
            layers += [ResidualBlock(width) for _ in range(blocks_per_level)]
            if i + 1 < len(levels):
                layers.append(nn.Conv2d(width, config.channels(levels[i + 1]), 3, stride=2, padding=1))
        layers += [group_norm(config.channels(stop)), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.out_channels = config.channels(stop)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class UpPath(nn.Module):
    """Feature map ``(n, channels(start), start, start)`` to images ``(n, 1, S, S)`` in [-1, 1]."""

    def __init__(self, config: ModelConfig, start: int = 4, blocks_per_level: int = 1) -> None:
        super().__init__()
        levels = list(reversed(resolutions(config, start)))
        layers: list[nn.Module] = []
        for i, res in enumerate(levels):
            width = config.channels(res)
            if i > 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv2d(config.channels(levels[i - 1]), width, 3, padding=1)]
            layers += [ResidualBlock(width) for _ in range(blocks_per_level)]
        layers += [group_norm(config.channels(levels[-1])), nn.SiLU(),
                   nn.Conv2d(config.channels(levels[-1]), 1, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.in_channels = config.channels(start)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
