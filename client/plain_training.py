"""Plain (non-DP) minibatch SGD: non-private devices and the centralized baseline.

DP-SGD lives in :mod:`client.dp_training`; this is its noise-free, unclipped
counterpart, with the same optimizer (SGD) and the same loss, so that the
modes differ only in federation and privacy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.models.losses import training_loss


@dataclass(frozen=True)
class LocalSchedule:
    """A fixed schedule: never chosen by looking at a held-out subject."""

    epochs: int
    batch_size: int
    learning_rate: float


def train_plain(
    model: nn.Module, features: np.ndarray, labels: np.ndarray, schedule: LocalSchedule, seed: int
) -> float:
    """Train ``model`` in place; returns the mean training loss of the last epoch."""
    if len(features) == 0:
        raise ValueError("no training examples")
    # Dropout draws from the global generator: seeding it too makes a round
    # the same on every transport (in-process, Ray workers, SuperNodes).
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_all = torch.as_tensor(features, dtype=torch.float32)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    optimizer = torch.optim.SGD(model.parameters(), lr=schedule.learning_rate)
    model.train()
    last_loss = 0.0
    for _ in range(schedule.epochs):
        order = torch.randperm(len(x_all), generator=generator)
        total = 0.0
        for start in range(0, len(order), schedule.batch_size):
            batch = order[start : start + schedule.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss, _ = training_loss(model, x_all[batch], y_all[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        last_loss = total / len(order)
    return last_loss
