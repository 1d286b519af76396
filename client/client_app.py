"""fedmer's Flower ClientApp: local DP-SGD training and held-out evaluation.

Three message handlers:

* query: a census answer (role, device id, number of usable clips);
* train: DP-SGD on the device's clips, replying with model arrays and scalars;
* evaluate: confusion-matrix counts on the device's clips (held-out devices).

Every reply passes the payload guard before it leaves the device.
"""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.accountant_state import load_history, save_history, stored_sigma
from client.dp_training import (
    DPSettings,
    predict,
    sample_rate_for,
    steps_per_epoch,
    train_with_dp,
)
from client.local_data import TRAIN, LocalData, load_local_data
from client.payload_guard_mod import payload_guard_mod
from common.labels import COMPOSITE_CLASSES
from common.metrics import confusion_matrix
from common.models import build_model
from common.payload_guard import ARRAYS_KEY, INFO_KEY, METRICS_KEY
from common.privacy.accounting import calibrate_noise_multiplier
from common.run_config import RunConfig

log = logging.getLogger(__name__)

app = ClientApp(mods=[payload_guard_mod])


@app.query()
def census(msg: Message, context: Context) -> Message:
    """Tell the server this device's role and how many clips it can use."""
    data = _local_data(context)
    content = RecordDict(
        {
            INFO_KEY: ConfigRecord({"role": data.role, "device-id": data.device_id}),
            METRICS_KEY: MetricRecord(
                {"num-clips": len(data), "num-skipped": len(data.skipped)}
            ),
        }
    )
    return Message(content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of DP-SGD on the local clips."""
    cfg = RunConfig.from_flower(context.run_config)
    data = _local_data(context)
    if data.role != TRAIN or len(data) == 0:
        reason = data.describe_emptiness() if len(data) == 0 else f"role is {data.role}"
        return _decline(msg, data, reason)

    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(msg.content[ARRAYS_KEY].to_torch_state_dict())
    sigma = _noise_multiplier(context, cfg, len(data))
    server_round = int(msg.content["config"]["server-round"])
    result = train_with_dp(
        model,
        data.features,
        data.labels,
        epochs=cfg.local_epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        dp=DPSettings(sigma, cfg.max_grad_norm, cfg.delta),
        history=load_history(context),
        seed=cfg.seed * 100_003 + server_round * 1009 + context.node_id % 1000,
    )
    save_history(context, result.history, sigma)
    metrics = MetricRecord(
        {
            "num-examples": result.num_examples,
            "train-loss": result.loss,
            "train-accuracy": result.accuracy,
            "epsilon": result.epsilon,
            "delta": cfg.delta,
            "noise-multiplier": sigma,
            "sample-rate": result.sample_rate,
            "steps": result.steps,
            "total-steps": result.total_steps,
        }
    )
    content = RecordDict(
        {
            ARRAYS_KEY: ArrayRecord(model.state_dict()),
            METRICS_KEY: metrics,
            INFO_KEY: ConfigRecord({"device-id": data.device_id}),
        }
    )
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Confusion-matrix counts of the global model on the local clips."""
    cfg = RunConfig.from_flower(context.run_config)
    data = _local_data(context)
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(msg.content[ARRAYS_KEY].to_torch_state_dict())
    cm = confusion_matrix(data.labels, predict(model, data.features), len(COMPOSITE_CLASSES))
    metrics: dict[str, int | float] = {"num-examples": len(data)}
    # Only the pooled counts leave the device, never per-clip predictions.
    for i, row in enumerate(cm):
        for j, count in enumerate(row):
            metrics[f"cm-{i}-{j}"] = int(count)
    content = RecordDict(
        {
            METRICS_KEY: MetricRecord(metrics),
            INFO_KEY: ConfigRecord({"device-id": data.device_id}),
        }
    )
    return Message(content, reply_to=msg)


def _local_data(context: Context) -> LocalData:
    return load_local_data(context.node_config, RunConfig.from_flower(context.run_config))


def _noise_multiplier(context: Context, cfg: RunConfig, num_examples: int) -> float:
    """Sigma for this device, calibrated once for every step it plans to take."""
    if cfg.target_epsilon <= 0:
        return cfg.noise_multiplier
    sigma = stored_sigma(context)
    if sigma is None:
        planned_steps = (
            cfg.num_server_rounds
            * cfg.local_epochs
            * steps_per_epoch(num_examples, cfg.batch_size)
        )
        sigma = calibrate_noise_multiplier(
            cfg.target_epsilon,
            cfg.delta,
            sample_rate_for(num_examples, cfg.batch_size),
            planned_steps,
        )
    return sigma


def _decline(msg: Message, data: LocalData, reason: str) -> Message:
    """Reply that this device trains nothing this round; the round goes on."""
    log.warning("device %s declines to train: %s", data.device_id, reason)
    content = RecordDict(
        {
            METRICS_KEY: MetricRecord({"num-examples": 0, "declined": 1}),
            INFO_KEY: ConfigRecord(
                {"device-id": data.device_id, "declined": reason[:200]}
            ),
        }
    )
    return Message(content, reply_to=msg)
