"""In-process FedAvg over per-subject devices, with or without DP-SGD.

Federated LOSO needs one federation per fold; with 16 subjects that would be
16 Flower simulations (Ray start-up and a process per device each time),
which a 2-core machine cannot afford for an epsilon sweep. This loop runs the
same pieces without the transport: each training subject is one device,
:func:`client.dp_training.train_with_dp` (or plain SGD when DP is off) does
its local epochs, sigma is calibrated once per device for every step it
plans to take (as the ClientApp does), and Flower's own FedAvg aggregation
(``aggregate_arrayrecords`` weighted by ``num-examples``) averages the
updates. Held-out subjects are not among the devices at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from torch import nn

from client.dp_training import (
    DPSettings,
    device_seed,
    sample_rate_for,
    steps_per_epoch,
    train_with_dp,
)
from common.labels import COMPOSITE_CLASSES
from common.models import build_model
from common.privacy.accounting import Segment, calibrate_noise_multiplier
from simulations.protocols.local_training import LocalSchedule, train_plain


@dataclass(frozen=True)
class FederatedSchedule:
    """Rounds and local training; ``target_epsilon`` None (or inf) means no DP."""

    rounds: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    target_epsilon: float | None = None
    max_grad_norm: float = 1.0
    delta: float = 1e-5

    @property
    def private(self) -> bool:
        return self.target_epsilon is not None and math.isfinite(self.target_epsilon)


@dataclass
class _Device:
    name: str
    features: np.ndarray
    labels: np.ndarray
    sigma: float = 0.0
    history: list[Segment] | None = None
    epsilon: float = 0.0


def train_federated(
    model_name: str,
    devices: list[tuple[np.ndarray, np.ndarray]],
    schedule: FederatedSchedule,
    seed: int,
) -> tuple[nn.Module, float]:
    """FedAvg for ``schedule.rounds``; returns the last round's model and worst epsilon.

    The last round's model is used, never a round picked on held-out scores.
    """
    torch.manual_seed(seed)
    global_model = build_model(model_name, num_classes=len(COMPOSITE_CLASSES))
    state = _DeviceStates(devices, schedule)
    for server_round in range(1, schedule.rounds + 1):
        replies = []
        for _i, device in enumerate(state.devices):
            local = build_model(model_name, num_classes=len(COMPOSITE_CLASSES))
            local.load_state_dict(global_model.state_dict())
            _train_locally(local, device, schedule, device_seed(seed, server_round, device.name))
            replies.append(
                RecordDict(
                    {
                        "arrays": ArrayRecord(local.state_dict()),
                        "metrics": MetricRecord({"num-examples": len(device.labels)}),
                    }
                )
            )
        averaged = aggregate_arrayrecords(replies, "num-examples")
        global_model.load_state_dict(averaged.to_torch_state_dict())
    worst = max((d.epsilon for d in state.devices), default=0.0)
    return global_model, worst


class _DeviceStates:
    """Per-device sigma and accountant history, kept across rounds."""

    def __init__(self, devices: list[tuple[np.ndarray, np.ndarray]], schedule: FederatedSchedule):
        self.devices = [
            _Device(f"device-{i}", x, y, history=[]) for i, (x, y) in enumerate(devices) if len(y)
        ]
        if not self.devices:
            raise ValueError("no training device has any clip")
        if schedule.private:
            for device in self.devices:
                n = len(device.labels)
                planned = (
                    schedule.rounds
                    * schedule.local_epochs
                    * steps_per_epoch(n, schedule.batch_size)
                )
                device.sigma = _calibrated_sigma(
                    float(schedule.target_epsilon),
                    schedule.delta,
                    sample_rate_for(n, schedule.batch_size),
                    planned,
                )


@lru_cache(maxsize=64)
def _calibrated_sigma(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    # Calibration is a slow binary search (seconds); devices with the same
    # number of clips, in every fold, need the very same sigma.
    return calibrate_noise_multiplier(target_epsilon, delta, sample_rate, steps)


def _train_locally(
    model: nn.Module, device: _Device, schedule: FederatedSchedule, seed: int
) -> None:
    if not schedule.private:
        train_plain(
            model,
            device.features,
            device.labels,
            LocalSchedule(schedule.local_epochs, schedule.batch_size, schedule.learning_rate),
            seed,
        )
        return
    result = train_with_dp(
        model,
        device.features,
        device.labels,
        epochs=schedule.local_epochs,
        batch_size=schedule.batch_size,
        learning_rate=schedule.learning_rate,
        dp=DPSettings(device.sigma, schedule.max_grad_norm, schedule.delta),
        history=device.history or [],
        seed=seed,
    )
    device.history = list(result.history)
    device.epsilon = result.epsilon
