"""Local DP-SGD training with an accountant that survives across rounds.

Opacus' PrivacyEngine is created anew each round (the model and optimizer
are new objects each round), but its accountant history is loaded from the
device's persistent state first. A fresh engine with an empty history would
silently report per-round epsilon instead of cumulative epsilon.
"""

from __future__ import annotations

import secrets
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.models.losses import training_loss
from common.privacy.accounting import Segment, epsilon_rdp, total_steps


@dataclass(frozen=True)
class DPSettings:
    """DP-SGD parameters for one round of local training."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float


@dataclass(frozen=True)
class LocalTrainingResult:
    """What one round of local training produced (no data, only numbers)."""

    num_examples: int
    loss: float
    accuracy: float
    steps: int
    sample_rate: float
    noise_multiplier: float
    history: list[Segment]
    epsilon: float

    @property
    def total_steps(self) -> int:
        return total_steps(self.history)


def device_seed(run_seed: int, server_round: int, device_id: str) -> int:
    """Seed for batch sampling: reproducible per run, round and device (never for noise).

    The coordinator knows all three inputs; the privacy issue replaces this
    with a secret source on the device so that subsampling amplification
    holds against the coordinator too.
    """
    return run_seed * 100_003 + server_round * 1009 + zlib.crc32(device_id.encode()) % 1000


def train_with_dp(
    model: nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    dp: DPSettings,
    history: Sequence[Segment],
    seed: int | None = None,
) -> LocalTrainingResult:
    """Train ``model`` in place with DP-SGD and return cumulative accounting.

    ``history`` is the device's accountant history before this round; the
    returned history includes this round's steps.

    ``seed`` None (the default, and the only private choice) draws the Poisson
    sampling and dropout from the operating system's secure random source,
    fresh every round: a coordinator that knew the seed could replay every
    batch and subsampling would amplify nothing against it. An integer seed
    makes the batches reproducible, for non-private debugging and tests only.
    """
    if len(features) == 0:
        raise ValueError("no training examples on this device")
    if seed is None:
        seed = secrets.randbits(63)
    torch.manual_seed(seed)
    dataset = TensorDataset(
        torch.as_tensor(features, dtype=torch.float32),
        torch.as_tensor(labels, dtype=torch.long),
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp")
    engine.accountant.history = [tuple(seg) for seg in history]
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    # Noise is always secret, whatever ``seed`` is: anyone who knew it could
    # subtract the noise.
    noise_generator = torch.Generator().manual_seed(secrets.randbits(63))
    private_model, private_opt, private_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=noise_generator,
    )
    private_model.train()
    loss_sum, correct, seen, steps = 0.0, 0, 0, 0
    for x, y in _batches(private_loader, epochs):
        private_opt.zero_grad(set_to_none=True)
        if len(y):
            # Multi-head models (MSR-3D) train every head with its own loss.
            loss, logits = training_loss(private_model, x, y)
        else:
            # Poisson sampling can draw an empty batch; the step still adds noise
            # and still counts towards the budget, so it is taken, not skipped.
            logits = private_model(x)
            loss = logits.sum() * 0.0
        with warnings.catch_warnings():
            # The input tensor never requires grad; PyTorch says so on every step.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        private_opt.step()
        steps += 1
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    new_history = [tuple(seg) for seg in engine.accountant.history]
    # Opacus wraps the module in place; strip the per-sample-gradient hooks so
    # the caller's model is a plain module again.
    private_model.remove_hooks()
    return LocalTrainingResult(
        num_examples=len(dataset),
        loss=loss_sum / max(seen, 1),
        accuracy=correct / max(seen, 1),
        steps=steps,
        sample_rate=1.0 / len(loader),
        noise_multiplier=dp.noise_multiplier,
        history=new_history,
        epsilon=epsilon_rdp(new_history, dp.delta),
    )


def _batches(loader: DataLoader, epochs: int):
    """All batches of ``epochs`` passes over a (Poisson-sampled) loader."""
    for _ in range(epochs):
        yield from loader
