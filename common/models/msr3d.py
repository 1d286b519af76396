"""Multi-scale 3D ResNet (after Jin et al., 2024), the heavy reference model.

Input is a 16-frame optical-flow volume (u, v, strain) x T x H x W, by
default at the 28x28 resolution of fedmer's features. The network has:

* a 3D residual backbone of four stages (16, 32, 64, 128 channels);
* after each stage, a multi-scale module: 1x1x1, 3x3x3 and factorised
  1x1x7 -> 1x7x1 -> 7x1x1 branches, mixed by learned fusion weights;
* attention feature fusion across depths, Z = M(X+Y)·X + (1−M(X+Y))·Y, where
  X is a stage's output, Y the fused features of the previous depth, and M a
  channel attention made of an average-pool and a max-pool branch;
* four output heads, one per depth, each trained with cross-entropy.

``forward`` returns the mean of the four heads' logits (what inference uses)
and ``forward_heads`` returns all four, for the training loss in
:mod:`common.models.losses`. Only GroupNorm is used, so every layer has
per-sample gradients for DP-SGD; the fusion weights live in a small custom
module whose per-sample gradients Opacus computes with functorch.
"""

from __future__ import annotations

import torch
from torch import nn

STAGE_CHANNELS = (16, 32, 64, 128)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4), channels)


class ResBlock3d(nn.Module):
    """Basic 3D residual block: two 3x3x3 convolutions and a projected shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm1 = _norm(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.act = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride), _norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class WeightedFusion(nn.Module):
    """Softmax-normalised learned weights over K stacked branch outputs.

    Takes one stacked tensor (N, K, ...) rather than K tensors so that
    Opacus sees a single input when it computes per-sample gradients.
    """

    def __init__(self, num_branches: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_branches))

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.logits, dim=0)
        shape = (1, -1) + (1,) * (stacked.dim() - 2)
        return (stacked * weights.view(shape)).sum(dim=1)


class MultiScale3d(nn.Module):
    """1x1x1, 3x3x3 and factorised 7-long branches, fused by learned weights."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [
                nn.Conv3d(channels, channels, 1),
                nn.Conv3d(channels, channels, 3, padding=1),
                # Factorised 7x7x7: width, then height, then time; a long
                # receptive field at a fraction of the parameters.
                nn.Sequential(
                    nn.Conv3d(channels, channels, (1, 1, 7), padding=(0, 0, 3)),
                    nn.Conv3d(channels, channels, (1, 7, 1), padding=(0, 3, 0)),
                    nn.Conv3d(channels, channels, (7, 1, 1), padding=(3, 0, 0)),
                ),
            ]
        )
        self.fusion = WeightedFusion(len(self.branches))
        self.norm = _norm(channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([branch(x) for branch in self.branches], dim=1)
        # Residual: the module refines the stage output rather than replacing it.
        return self.act(x + self.norm(self.fusion(stacked)))


class ChannelAttention3d(nn.Module):
    """M(U) = sigmoid(MLP(avgpool U) + MLP(maxpool U)), one weight per channel."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.max_pool = nn.AdaptiveMaxPool3d(1)
        self.mlp = nn.Sequential(
            nn.Conv3d(channels, hidden, 1), nn.ReLU(), nn.Conv3d(hidden, channels, 1)
        )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(self.avg_pool(u)) + self.mlp(self.max_pool(u)))


class AttentionFusion3d(nn.Module):
    """Z = M(X+Y)·X + (1−M(X+Y))·Y."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = ChannelAttention3d(channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        m = self.attention(x + y)
        return m * x + (1 - m) * y


class MSR3D(nn.Module):
    """Multi-scale 3D ResNet with attention fusion across depths and four heads."""

    input_shape = (3, 16, 28, 28)
    num_heads = len(STAGE_CHANNELS)

    def __init__(self, num_classes: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        c = STAGE_CHANNELS
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, c[0], 3, padding=1), _norm(c[0]), nn.ReLU()
        )
        strides = (1, 2, 2, 2)
        ins = (c[0],) + c[:-1]
        self.stages = nn.ModuleList(ResBlock3d(i, o, s) for i, o, s in zip(ins, c, strides))
        self.multiscale = nn.ModuleList(MultiScale3d(ch) for ch in c)
        # Brings the previous depth's fused features to this depth's shape.
        self.carry = nn.ModuleList(
            nn.Sequential(nn.Conv3d(i, o, 1, stride=2), _norm(o)) for i, o in zip(c[:-1], c[1:])
        )
        self.fusions = nn.ModuleList(AttentionFusion3d(ch) for ch in c[1:])
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.heads = nn.ModuleList(nn.Linear(ch, num_classes) for ch in c)

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of the four heads, shallowest first."""
        x = self.stem(x)
        fused: torch.Tensor | None = None
        logits = []
        for depth, (stage, multiscale) in enumerate(zip(self.stages, self.multiscale)):
            x = multiscale(stage(x))
            if fused is None:
                fused = x
            else:
                fused = self.fusions[depth - 1](x, self.carry[depth - 1](fused))
            logits.append(self.heads[depth](torch.flatten(self.pool(fused), 1)))
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.forward_heads(x), dim=0).mean(dim=0)
