"""OFF-ApexNet (Gan et al., 2019) adapted for DP-SGD.

Two streams, one over the horizontal flow u and one over the vertical flow v,
each Conv5x5(6) -> pool -> Conv5x5(16) -> pool; concatenated, then
FC1024 -> FC1024 -> classes (about 2.7M parameters, almost all in the FCs).

It takes the same 3x28x28 (u, v, strain) tensor as STSTNet and ignores the
strain channel, so both models train on one cached feature format. GroupNorm
replaces BatchNorm because BatchNorm mixes samples within a batch, which
breaks the per-sample gradients DP-SGD needs.
"""

from __future__ import annotations

import torch
from torch import nn


class _FlowStream(nn.Module):
    """Conv5x5(6) -> ReLU -> norm -> pool -> Conv5x5(16) -> ReLU -> norm -> pool."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.GroupNorm(1, 6),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.GroupNorm(4, 16),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.layers(x), 1)


class OffApexNet(nn.Module):
    """Two-stream (u, v) apex-flow CNN with a 1024-1024 classifier."""

    input_shape = (3, 28, 28)

    def __init__(self, num_classes: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.u_stream = _FlowStream()
        self.v_stream = _FlowStream()
        # 28 -> 14 -> 7 after the two pools; two streams of 16 x 7 x 7.
        self.classifier = nn.Sequential(
            nn.Linear(2 * 16 * 7 * 7, 1024),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(1024, 1024),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.cat([self.u_stream(x[:, 0:1]), self.v_stream(x[:, 1:2])], dim=1)
        return self.classifier(features)
