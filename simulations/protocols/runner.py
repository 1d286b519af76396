"""Run one protocol in one mode: every fold through the real system, metrics pooled.

Modes differ only in how a fold's model is trained:

* ``centralized``: all training clips pooled, plain SGD for
  ``num-server-rounds x local-epochs`` epochs (the same passes over the data
  as FedAvg); the one mode that is not federated, so it runs here;
* ``federated``: the ServerApp loop and the ClientApp over the in-process
  transport, one device per training subject and one held-out device per test
  subject, DP-SGD off (the devices' node configs allow it);
* ``federated-dp``: the same, with DP-SGD on every device at ``target-epsilon``.

Each fold writes a ``results.json`` of the one results schema
(:mod:`common.results_schema`) in its own folder, next to the devices'
ledgers for the federated modes. Every mode trains on a fixed schedule and
is scored on the last model, with held-out confusion counts pooled over all
folds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from client.inference import predict
from client.plain_training import LocalSchedule, train_plain
from common.atomic_io import write_json_atomic
from common.labels import COMPOSITE_CLASSES
from common.metrics import confusion_matrix, summarize
from common.models import build_model, input_shape_of
from common.node_config import HELDOUT, TRAIN
from common.results_schema import RESULTS_SCHEMA, validate_results
from common.run_config import RunConfig
from simulations.device_folders import Assignment, read_device_index
from simulations.federation import prepare_federation, run_federation
from simulations.partitions import assign_subjects
from simulations.protocols.data import ProtocolData
from simulations.protocols.folds import Fold, cross_dataset_fold, subject_folds
from simulations.protocols.pooled import confusion_metrics, per_dataset_metrics, pool

PROTOCOLS = ("loso", "composite", "cross")
# Partitions that put a fold's training subjects on lab devices.
GROUPING_PARTITIONS = ("lab", "dirichlet")
MODES = ("centralized", "federated", "federated-dp")
PROTOCOL_SUMMARY_VERSION = 2


@dataclass(frozen=True)
class ProtocolSpec:
    """What to evaluate and how; every field is recorded in the results.

    ``run`` is the run config every fold's federation uses (its rounds, local
    training, DP settings, seed); the protocol fields choose the folds.
    """

    protocol: str
    mode: str
    run: RunConfig = field(default_factory=RunConfig)
    folds: int | None = None
    dataset: str | None = None
    train_dataset: str | None = None
    test_dataset: str | None = None
    # Unclipped SGD needs a smaller step than DP-SGD, whose clipped per-sample
    # gradients have norm <= max-grad-norm; None means learning-rate.
    plain_learning_rate: float | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} must be one of {', '.join(PROTOCOLS)}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} must be one of {', '.join(MODES)}")
        if self.mode == "federated-dp" and not 0 < self.run.target_epsilon < math.inf:
            raise ValueError(
                "federated-dp needs a positive, finite target epsilon, got "
                f"{self.run.target_epsilon} (ε = ∞ is the federated mode)"
            )

    @property
    def epsilon(self) -> float | None:
        """The DP target, or None for the non-DP modes."""
        return self.run.target_epsilon if self.mode == "federated-dp" else None

    def fold_run_config(self) -> RunConfig:
        """The run config of this mode's federations."""
        private = self.mode == "federated-dp"
        rate = self.run.learning_rate
        if not private and self.plain_learning_rate is not None:
            rate = self.plain_learning_rate
        return self.run.replace(dp_sgd=private, learning_rate=rate)

    def as_dict(self) -> dict[str, Any]:
        spec = asdict(self)
        spec["run"] = self.run.to_flower()
        return spec


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
    return data, subject_folds(data.subjects, spec.folds, spec.run.seed)


def run_protocol(
    data: ProtocolData,
    spec: ProtocolSpec,
    manifest: Path,
    out_dir: Path,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Train and test every fold under ``out_dir``; metrics on the pooled counts."""
    data = data.for_model(spec.run.model)
    _check_model_input(spec.run.model, data)
    started = time.monotonic()
    data, folds = make_folds(data, spec)
    dataset_of = {str(s): str(d) for s, d in zip(data.subjects, data.datasets, strict=True)}
    fold_entries, matrices = [], []
    by_dataset: dict[str, list[Any]] = {}
    worst_epsilon = 0.0
    for number, fold in enumerate(folds, 1):
        fold_started = time.monotonic()
        fold_dir = Path(out_dir) / f"fold-{number:02d}"
        if spec.mode == "centralized":
            results = _centralized_fold(
                data, fold, spec, fold_dir, seed=spec.run.seed * 1_000 + number
            )
            subject_of_device = {s: s for s in fold.test_subjects}
        else:
            results = _federated_fold(data, fold, spec, manifest, fold_dir)
            subject_of_device = {
                str(d["device_id"]): str(d["subject"])
                for d in read_device_index(fold_dir / "devices")
            }
        final = results["final"]
        # The raw released counts (when the fold has them): pooled before any rounding.
        matrices.append(final.get("released") or final["confusion"])
        for device, cm in final["heldout_devices"].items():
            by_dataset.setdefault(dataset_of[subject_of_device[device]], []).append(cm)
        epsilon = float(results["privacy"]["worst_epsilon"])
        worst_epsilon = max(worst_epsilon, epsilon)
        fold_entries.append(
            {
                "name": fold.name,
                "folder": str(fold_dir),
                "test_subjects": list(fold.test_subjects),
                "num_train": int(len(fold.train_idx)),
                "num_test": int(len(fold.test_idx)),
                "uf1": final["uf1"],
                "uar": final["uar"],
                "epsilon": epsilon,
                "seconds": round(time.monotonic() - fold_started, 2),
            }
        )
        say(
            f"fold {number}/{len(folds)} {fold.name}: {len(fold.test_idx)} test clips, "
            f"fold UF1 {final['uf1']:.3f} ({time.monotonic() - fold_started:.0f}s)"
        )
    num_classes = len(COMPOSITE_CLASSES)
    return {
        "version": PROTOCOL_SUMMARY_VERSION,
        "protocol": spec.protocol,
        "mode": spec.mode,
        "model": spec.run.model,
        "epsilon": spec.epsilon,
        "epsilon_spent": worst_epsilon if spec.mode == "federated-dp" else None,
        "delta": spec.run.delta if spec.mode == "federated-dp" else None,
        "privacy_unit": (
            "person-level (one subject, user-level DP-SGD), worst device, RDP accountant"
            if spec.run.dp_unit == "subject"
            else "sample-level (one clip), worst device, RDP accountant"
        ),
        "classes": list(COMPOSITE_CLASSES),
        "spec": spec.as_dict(),
        "num_folds": len(folds),
        "folds": fold_entries,
        "pooled": confusion_metrics(pool(matrices, num_classes)),
        "per_dataset": per_dataset_metrics(by_dataset, num_classes),
        "num_skipped_clips": len(data.skipped),
        "seconds": round(time.monotonic() - started, 1),
    }


def _federated_fold(
    data: ProtocolData, fold: Fold, spec: ProtocolSpec, manifest: Path, fold_dir: Path
) -> dict[str, Any]:
    """One federation: the fold's training subjects train, its test subjects only evaluate.

    One device per training subject, as the protocols have always run, unless
    ``partition`` groups them: ``lab`` puts each dataset's training subjects on
    one device (the test subject's lab trains on its other subjects),
    ``dirichlet`` spreads them over ``silos`` labs with label skew. The default
    ``round-robin`` is ``fedmer simulate``'s dealing of its own held-out split,
    so it does not regroup a protocol's folds. Each test subject has a
    held-out device of its own, so its counts can be pooled per lab.
    """
    run = spec.fold_run_config()
    train_idx = fold.train_idx
    if run.partition in GROUPING_PARTITIONS:
        rows = [
            (str(s), str(d), str(y))
            for s, d, y in zip(
                data.subjects[train_idx],
                data.datasets[train_idx],
                data.labels[train_idx],
                strict=True,
            )
        ]
        labs = assign_subjects(rows, run.partition, run.silos, run.dirichlet_alpha, run.seed)
        training: list[Assignment] = [(lab, TRAIN) for lab in labs]
    else:
        training = [(s, TRAIN) for s in sorted(set(data.subjects[train_idx].tolist()))]
    assignment = training + [(s, HELDOUT) for s in fold.test_subjects]
    cfg, devices = prepare_federation(
        run,
        manifest,
        fold_dir,
        assignment=assignment,
        policy={"allow_non_private": True} if spec.mode == "federated" else None,
    )
    run_federation(cfg, devices, transport="in-process")
    return read_results(fold_dir)


def _centralized_fold(
    data: ProtocolData, fold: Fold, spec: ProtocolSpec, fold_dir: Path, seed: int
) -> dict[str, Any]:
    """The pooled-data baseline, written as a results document of the same schema."""
    cfg = spec.run
    torch.manual_seed(seed)
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    rate = spec.plain_learning_rate if spec.plain_learning_rate is not None else cfg.learning_rate
    schedule = LocalSchedule(cfg.num_server_rounds * cfg.local_epochs, cfg.batch_size, rate)
    x, y = data.features[fold.train_idx], data.labels[fold.train_idx]
    loss = train_plain(model, x, y, schedule, seed)
    num_classes = len(COMPOSITE_CLASSES)
    predicted = predict(model, data.features[fold.test_idx])
    truth = data.labels[fold.test_idx]
    subjects = data.subjects[fold.test_idx]
    per_subject = {
        s: confusion_matrix(truth[subjects == s], predicted[subjects == s], num_classes).tolist()
        for s in fold.test_subjects
    }
    metrics = summarize(confusion_matrix(truth, predicted, num_classes))
    entry = {
        "round": 1,
        **metrics,
        "heldout_devices": per_subject,
        "epsilon": math.inf,
        "train_loss": loss,
        "trained": ["centralized"],
        "declined": {},
        "failed": {},
    }
    results = {
        "schema": RESULTS_SCHEMA,
        "config": cfg.replace(dp_sgd=False, learning_rate=rate).to_flower(),
        "classes": list(COMPOSITE_CLASSES),
        "rounds": [entry],
        "final": {
            k: entry[k] for k in ("round", "uf1", "uar", "accuracy", "confusion", "heldout_devices")
        },
        "privacy": {
            "unit": "none (centralized, no DP)",
            "accountant": "none",
            "worst_epsilon": math.inf,
            "devices": {},
        },
        "devices": {"centralized": "train", **{s: "heldout" for s in fold.test_subjects}},
        "stopped": None,
    }
    validate_results(results)
    write_json_atomic(fold_dir / "results.json", results)
    return results


def read_results(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``results.json``, checked against the one schema."""
    results = json.loads((Path(run_dir) / "results.json").read_text())
    validate_results(results)
    return results


def _check_model_input(model: str, data: ProtocolData) -> None:
    expected = input_shape_of(model)
    if tuple(data.features.shape[1:]) != expected:
        raise ValueError(
            f"model {model!r} takes inputs of shape {expected}, but the prepared features "
            f"are {tuple(data.features.shape[1:])}"
        )
