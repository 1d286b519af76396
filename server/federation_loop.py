"""The round loop: train on ``train`` devices, evaluate on ``heldout`` devices.

The loop, not the strategy, looks at each reply first: declined rounds (no
data, budget) are logged and left out of aggregation, failures are logged, and
privacy reports are tracked. The strategy then aggregates what is usable.
Each completed round is handed to ``on_round`` before the next starts, so a
crash never loses a completed round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from common.payload_guard import INFO_KEY, METRICS_KEY
from server.census import Census, NodeSubsetGrid, take_census
from server.held_out_evaluation import held_out_metrics
from server.privacy_tracker import PrivacyTracker

log = logging.getLogger(__name__)


@dataclass
class RoundOutcome:
    """Everything a completed round produced, for the report and results."""

    round: int
    arrays: ArrayRecord
    metrics: dict[str, Any]
    epsilon: float
    trained: list[str] = field(default_factory=list)
    declined: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    train_loss: float | None = None
    seconds: float = 0.0

    def as_entry(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "uf1": self.metrics["uf1"],
            "uar": self.metrics["uar"],
            "accuracy": self.metrics["accuracy"],
            "confusion": self.metrics["confusion"],
            "epsilon": self.epsilon,
            "train_loss": self.train_loss,
            "trained": self.trained,
            "declined": self.declined,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class FederationSettings:
    num_rounds: int
    num_classes: int
    timeout: float
    start_round: int = 1


def run_rounds(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    census: Census,
    settings: FederationSettings,
    tracker: PrivacyTracker,
    on_round: Callable[[RoundOutcome, Census], None],
) -> ArrayRecord:
    """Run rounds ``start_round..num_rounds``; returns the final global arrays."""
    for server_round in range(settings.start_round, settings.num_rounds + 1):
        started = time.monotonic()
        census = take_census(grid, settings.timeout, census)
        outcome = _train_round(grid, strategy, arrays, census, server_round, settings, tracker)
        arrays = outcome.arrays
        outcome.metrics = _evaluate_round(grid, strategy, arrays, census, server_round, settings)
        outcome.epsilon = tracker.worst_epsilon()
        outcome.seconds = time.monotonic() - started
        on_round(outcome, census)
    return arrays


def _train_round(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    census: Census,
    server_round: int,
    settings: FederationSettings,
    tracker: PrivacyTracker,
) -> RoundOutcome:
    train_grid = NodeSubsetGrid(grid, census.nodes_with_role("train"))
    messages = strategy.configure_train(server_round, arrays, ConfigRecord(), train_grid)
    replies = list(grid.send_and_receive(messages, timeout=settings.timeout))
    outcome = RoundOutcome(round=server_round, arrays=arrays, metrics={}, epsilon=0.0)
    usable: list[Message] = []
    for reply in replies:
        device = census.device_id(reply.metadata.src_node_id)
        if reply.has_error():
            outcome.failed[device] = reply.error.reason
            log.warning("round %d: device %s failed: %s", server_round, device, reply.error.reason)
            continue
        metrics = reply.content.metric_records[METRICS_KEY]
        if int(metrics.get("declined", 0)):
            reason = str(reply.content.config_records[INFO_KEY].get("declined", ""))
            outcome.declined[device] = reason
            log.warning("round %d: device %s declined: %s", server_round, device, reason)
            continue
        tracker.record(device, server_round, metrics)
        outcome.trained.append(device)
        usable.append(reply)
    if usable:
        new_arrays, train_metrics = strategy.aggregate_train(server_round, usable)
        if new_arrays is not None:
            outcome.arrays = new_arrays
        if train_metrics is not None and "train-loss" in train_metrics:
            outcome.train_loss = float(train_metrics["train-loss"])
    else:
        log.warning("round %d: no device trained; the global model is unchanged", server_round)
    return outcome


def _evaluate_round(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    census: Census,
    server_round: int,
    settings: FederationSettings,
) -> dict[str, Any]:
    eval_grid = NodeSubsetGrid(grid, census.nodes_with_role("heldout"))
    messages = strategy.configure_evaluate(server_round, arrays, ConfigRecord(), eval_grid)
    replies = grid.send_and_receive(messages, timeout=settings.timeout)
    records = []
    for reply in replies:
        if reply.has_error():
            log.warning(
                "round %d: held-out device %s failed to evaluate: %s",
                server_round,
                census.device_id(reply.metadata.src_node_id),
                reply.error.reason,
            )
            continue
        records.append(reply.content.metric_records[METRICS_KEY])
    return held_out_metrics(records, settings.num_classes)
