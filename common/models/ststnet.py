"""STSTNet (Liong et al., 2019) adapted for DP-SGD.

Input is a 3x28x28 tensor of (horizontal flow, vertical flow, optical strain)
from onset to apex. BatchNorm is replaced with GroupNorm: BatchNorm mixes
samples inside a batch, which breaks per-sample gradients and therefore DP-SGD.
"""

from __future__ import annotations

import torch
from torch import nn


class _Stream(nn.Module):
    """One 3x3 convolution stream: conv -> ReLU -> norm -> max-pool -> dropout."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.act = nn.ReLU()
        # One group: the streams have 3, 5 and 8 channels, and a single group is
        # the only choice that divides all of them and still normalizes.
        self.norm = nn.GroupNorm(1, out_channels)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.pool(self.norm(self.act(self.conv(x)))))


class STSTNet(nn.Module):
    """Shallow triple-stream 3D CNN (about 1.7k parameters)."""

    input_shape = (3, 28, 28)

    def __init__(self, num_classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.streams = nn.ModuleList(_Stream(3, c, dropout) for c in (3, 5, 8))
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2)
        # 28 -> 10 after max-pool (k3, s3, p1) -> 5 after avg-pool; 16 * 5 * 5 = 400.
        self.fc = nn.Linear(16 * 5 * 5, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.cat([stream(x) for stream in self.streams], dim=1)
        return self.fc(torch.flatten(self.avgpool(features), 1))
