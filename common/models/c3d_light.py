"""A lightweight 3D CNN over fixed-length optical-flow sequences.

Input is (channels=3: u, v, strain) x T frames x H x W; the default shape is a
16-frame sequence at the same 28x28 resolution as the apex features. Three
Conv3d blocks then global pooling keep it small enough to train with DP-SGD
on a phone-class CPU; global pooling also makes it accept other T, H, W.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(in_channels: int, out_channels: int, pool: tuple[int, int, int]) -> nn.Sequential:
    # GroupNorm, not BatchNorm: DP-SGD needs per-sample gradients.
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.GroupNorm(4, out_channels),
        nn.MaxPool3d(pool),
    )


class C3DLight(nn.Module):
    """Conv3d(16) -> Conv3d(32) -> Conv3d(64) -> global average pool -> Linear."""

    input_shape = (3, 16, 28, 28)

    def __init__(self, num_classes: int = 3, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            # Spatial pooling first: early frames of a micro-expression carry
            # little motion, so time is kept at full resolution for one block.
            _block(in_channels, 16, (1, 2, 2)),
            _block(16, 32, (2, 2, 2)),
            _block(32, 64, (2, 2, 2)),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(self.features(x)), 1)))
