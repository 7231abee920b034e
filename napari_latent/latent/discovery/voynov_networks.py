"""The two networks of the Voynov & Babenko method: the deformator and the reconstructor.

See :mod:`napari_latent.latent.discovery.voynov` for the method, the choice of
deformators (``linear``, ``proj``, ``orthonormal``) and of reconstructors (``lenet``,
the official LeNet shift predictor; ``resnet``, a small ResNet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UserInputError

DEFORMATORS = ("linear", "orthonormal", "proj")
RECONSTRUCTORS = ("lenet", "resnet")


class Deformator(nn.Module):
    """The map ``(k, eps) -> eps * a_k`` from a direction index and a shift to a latent shift.

    Parameters
    ----------
    kind : {"linear", "orthonormal", "proj"}
        See the module docstring.
    dim : int
        Latent dimension ``d``.
    count : int
        Number of directions ``K`` (at most ``d`` for ``orthonormal``).
    """

    def __init__(self, kind: str, dim: int, count: int) -> None:
        super().__init__()
        if kind not in DEFORMATORS:
            raise UserInputError(f"unknown deformator {kind!r}; use one of {', '.join(DEFORMATORS)}")
        if kind == "orthonormal" and count > dim:
            raise UserInputError(f"an orthonormal deformator has at most d = {dim} directions, not {count}")
        self.kind = kind
        if kind == "orthonormal":
            start = torch.randn(dim, count)
        else:
            start = torch.eye(dim, count) + 0.1 * torch.randn(dim, count)
        self.weight = nn.Parameter(start)

    def matrix(self) -> torch.Tensor:
        """The effective ``(d, K)`` matrix whose columns are the latent shifts of unit ``eps``."""
        if self.kind == "proj":
            return self.weight / self.weight.norm(dim=0, keepdim=True).clamp_min(1e-12)
        if self.kind == "orthonormal":
            q, r = torch.linalg.qr(self.weight)
            return q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype)
        return self.weight

    def forward(self, indices: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Latent shifts ``(n, d)`` for direction indices ``(n,)`` and shifts ``(n,)``."""
        return self.matrix().T[indices] * shifts[:, None]


class LeNetReconstructor(nn.Module):
    """The official ``LeNetShiftPredictor`` for grey images: ``K`` logits and one shift from an image pair."""

    def __init__(self, count: int, width: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 3 * width, 5), nn.BatchNorm2d(3 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(3 * width, 8 * width, 5), nn.BatchNorm2d(8 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8 * width, 60 * width, 5), nn.BatchNorm2d(60 * width), nn.ReLU())
        self.logits = nn.Sequential(nn.Linear(60 * width, 42 * width), nn.BatchNorm1d(42 * width), nn.ReLU(),
                                    nn.Linear(42 * width, count))
        self.shift = nn.Sequential(nn.Linear(60 * width, 42 * width), nn.BatchNorm1d(42 * width), nn.ReLU(),
                                   nn.Linear(42 * width, 1))

    def forward(self, original: torch.Tensor, shifted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(n, K)`` and predicted shifts ``(n,)``."""
        features = self.features(torch.cat([original, shifted], dim=1)).mean(dim=(2, 3))
        return self.logits(features), self.shift(features)[:, 0]


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected when needed) shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False), nn.BatchNorm2d(channels_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetReconstructor(nn.Module):
    """A small ResNet on the image pair: stride-2 stem, blocks halving to 4 x 4, linear heads."""

    def __init__(self, count: int, image_size: int, width: int = 32, max_width: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(2, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        channels, resolution = width, image_size // 2
        while resolution > 4:
            layers.append(_BasicBlock(channels, min(2 * channels, max_width), 2))
            channels, resolution = min(2 * channels, max_width), resolution // 2
        self.features = nn.Sequential(*layers)
        self.logits = nn.Linear(channels, count)
        self.shift = nn.Linear(channels, 1)

    def forward(self, original: torch.Tensor, shifted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(n, K)`` and predicted shifts ``(n,)``."""
        features = self.features(torch.cat([original, shifted], dim=1)).mean(dim=(2, 3))
        return self.logits(features), self.shift(features)[:, 0]


def make_reconstructor(kind: str, count: int, image_size: int) -> nn.Module:
    """A reconstructor by name (``lenet`` or ``resnet``)."""
    if kind == "lenet":
        return LeNetReconstructor(count)
    if kind == "resnet":
        return ResNetReconstructor(count, image_size)
    raise UserInputError(f"unknown reconstructor {kind!r}; use one of {', '.join(RECONSTRUCTORS)}")

