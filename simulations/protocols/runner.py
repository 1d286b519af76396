"""Run one protocol in one mode and report it in the one results format.

Modes differ only in how a fold's model is trained:

* ``centralized``: all training clips pooled, plain SGD for
  ``rounds x local_epochs`` epochs (the same passes over the data as FedAvg);
* ``federated``: FedAvg, one device per training subject, no DP;
* ``federated-dp``: FedAvg with DP-SGD on every device at ``target_epsilon``.

Every mode trains on a fixed schedule and is scored on the last model, with
predictions pooled over all folds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from client.dp_training import predict
from common.labels import COMPOSITE_CLASSES
from common.models import build_model, input_shape_of
from simulations.protocols.data import ProtocolData
from simulations.protocols.federated import FederatedSchedule, train_federated
from simulations.protocols.folds import Fold, cross_dataset_fold, subject_folds
from simulations.protocols.local_training import LocalSchedule, train_plain
from simulations.protocols.pooled import per_dataset_metrics, pooled_metrics

PROTOCOLS = ("loso", "composite", "cross")
MODES = ("centralized", "federated", "federated-dp")
RESULTS_VERSION = 1


@dataclass(frozen=True)
class ProtocolSpec:
    """What to evaluate and how; every field is recorded in the results."""

    protocol: str
    mode: str
    model: str = "ststnet"
    target_epsilon: float = 8.0
    folds: int | None = None
    dataset: str | None = None
    train_dataset: str | None = None
    test_dataset: str | None = None
    rounds: int = 12
    local_epochs: int = 2
    batch_size: int = 8
    learning_rate: float = 0.5
    # Unclipped SGD needs a smaller step than DP-SGD, whose clipped per-sample
    # gradients have norm <= max_grad_norm; None means learning_rate.
    plain_learning_rate: float | None = None
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} must be one of {', '.join(PROTOCOLS)}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} must be one of {', '.join(MODES)}")
        if self.mode == "federated-dp" and not 0 < self.target_epsilon < math.inf:
            raise ValueError(
                f"federated-dp needs a positive, finite target epsilon, got {self.target_epsilon}"
                " (ε = ∞ is the federated mode)"
            )

    @property
    def mode_learning_rate(self) -> float:
        """The step size this mode trains with."""
        if self.mode == "federated-dp" or self.plain_learning_rate is None:
            return self.learning_rate
        return self.plain_learning_rate

    @property
    def epsilon(self) -> float | None:
        """The DP target, or None for the non-DP modes."""
        return self.target_epsilon if self.mode == "federated-dp" else None


def make_folds(data: ProtocolData, spec: ProtocolSpec) -> tuple[ProtocolData, list[Fold]]:
    """The clips the protocol uses and its folds."""
    if spec.protocol == "cross":
        if not (spec.train_dataset and spec.test_dataset):
            raise ValueError("the cross protocol needs a train and a test dataset")
        fold = cross_dataset_fold(
            data.datasets, data.subjects, spec.train_dataset, spec.test_dataset
        )
        return data, [fold]
    if spec.protocol == "loso":
        names = sorted(set(data.datasets.tolist()))
        if spec.dataset:
            data = data.only_dataset(spec.dataset)
        elif len(names) > 1:
            raise ValueError(
                f"single-dataset LOSO: choose one of {', '.join(names)} "
                "(or use the composite protocol)"
            )
    return data, subject_folds(data.subjects, spec.folds, spec.seed)


def run_protocol(
    data: ProtocolData, spec: ProtocolSpec, say: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Train and test every fold; metrics on the pooled predictions.

    ``data`` is re-prepared for ``spec.model`` when the model takes another
    input (flow sequences instead of apex features) and its manifest is known.
    """
    data = data.for_model(spec.model)
    _check_model_input(spec.model, data)
    started = time.monotonic()
    data, folds = make_folds(data, spec)
    y_true, y_pred, test_datasets, fold_entries = [], [], [], []
    worst_epsilon = 0.0
    for number, fold in enumerate(folds, 1):
        fold_started = time.monotonic()
        seed = spec.seed * 1_000 + number
        model, epsilon = _train_fold(data, fold, spec, seed)
        predicted = predict(model, data.features[fold.test_idx])
        truth = data.labels[fold.test_idx]
        y_true.append(truth)
        y_pred.append(predicted)
        test_datasets.append(data.datasets[fold.test_idx])
        worst_epsilon = max(worst_epsilon, epsilon)
        fold_metrics = pooled_metrics(truth, predicted, len(COMPOSITE_CLASSES))
        fold_entries.append(
            {
                "name": fold.name,
                "test_subjects": list(fold.test_subjects),
                "num_train": int(len(fold.train_idx)),
                "num_test": int(len(fold.test_idx)),
                "uf1": fold_metrics["uf1"],
                "uar": fold_metrics["uar"],
                "epsilon": epsilon,
                "seconds": round(time.monotonic() - fold_started, 2),
            }
        )
        say(
            f"fold {number}/{len(folds)} {fold.name}: {len(fold.test_idx)} test clips, "
            f"fold UF1 {fold_metrics['uf1']:.3f} ({time.monotonic() - fold_started:.0f}s)"
        )
    truth_all, pred_all = np.concatenate(y_true), np.concatenate(y_pred)
    return {
        "version": RESULTS_VERSION,
        "protocol": spec.protocol,
        "mode": spec.mode,
        "model": spec.model,
        "epsilon": spec.epsilon,
        "epsilon_spent": worst_epsilon if spec.mode == "federated-dp" else None,
        "delta": spec.delta if spec.mode == "federated-dp" else None,
        "privacy_unit": "sample-level (one clip), worst device, RDP accountant",
        "classes": list(COMPOSITE_CLASSES),
        "spec": asdict(spec),
        "num_folds": len(folds),
        "folds": fold_entries,
        "pooled": pooled_metrics(truth_all, pred_all, len(COMPOSITE_CLASSES)),
        "per_dataset": per_dataset_metrics(
            truth_all, pred_all, np.concatenate(test_datasets), len(COMPOSITE_CLASSES)
        ),
        "num_skipped_clips": len(data.skipped),
        "seconds": round(time.monotonic() - started, 1),
    }


def _train_fold(
    data: ProtocolData, fold: Fold, spec: ProtocolSpec, seed: int
) -> tuple[nn.Module, float]:
    """The fold's model, trained only on ``fold.train_idx``, and the epsilon spent."""
    x, y = data.features[fold.train_idx], data.labels[fold.train_idx]
    if spec.mode == "centralized":
        torch.manual_seed(seed)
        model = build_model(spec.model, num_classes=len(COMPOSITE_CLASSES))
        schedule = LocalSchedule(
            spec.rounds * spec.local_epochs, spec.batch_size, spec.mode_learning_rate
        )
        train_plain(model, x, y, schedule, seed)
        return model, 0.0
    subjects = data.subjects[fold.train_idx]
    devices = [(x[subjects == s], y[subjects == s]) for s in sorted(set(subjects.tolist()))]
    schedule = FederatedSchedule(
        rounds=spec.rounds,
        local_epochs=spec.local_epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.mode_learning_rate,
        target_epsilon=spec.epsilon,
        max_grad_norm=spec.max_grad_norm,
        delta=spec.delta,
    )
    return train_federated(spec.model, devices, schedule, seed)


def _check_model_input(model: str, data: ProtocolData) -> None:
    expected = input_shape_of(model)
    if tuple(data.features.shape[1:]) != expected:
        raise ValueError(
            f"model {model!r} takes inputs of shape {expected}, but the prepared features "
            f"are {tuple(data.features.shape[1:])}"
        )
