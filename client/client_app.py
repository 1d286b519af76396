"""fedmer's Flower ClientApp: local DP-SGD training and held-out evaluation.

Three message handlers:

* query: a census answer (role, device id, number of usable clips);
* train: DP-SGD on the device's clips, replying with model arrays and scalars
  and the round's signed ledger entry (or refusing the round when it would
  exceed the device's privacy budget);
* evaluate: confusion-matrix counts on the device's clips (held-out devices).

Every reply passes the payload guard before it leaves the device.
"""

from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.accountant_state import DevicePrivacyState, open_device_state
from client.dp_training import (
    DPSettings,
    device_seed,
    predict,
    sample_rate_for,
    steps_per_epoch,
    train_with_dp,
)
from client.local_data import TRAIN, LocalData, load_local_data
from client.payload_guard_mod import payload_guard_mod
from client.poisoning_mod import poisoning_mod
from client.secagg_client import TrainRequest, raise_injected_dropout, secagg_when_requested_mod
from common.labels import COMPOSITE_CLASSES
from common.metrics import confusion_matrix
from common.models import build_model
from common.payload_guard import ARRAYS_KEY, INFO_KEY, LEDGER_ENTRY_KEY, METRICS_KEY
from common.privacy.accounting import calibrate_noise_multiplier, epsilon_prv
from common.privacy.budget import check_budget, effective_budget
from common.privacy.ledger import encode_entry
from common.run_config import RunConfig

log = logging.getLogger(__name__)

BUDGET_KEY = "epsilon-budget"

# The payload guard runs inside SecAgg+, so it checks each update before masking.
# Mods run outermost first: the payload guard checks whatever the inner layers
# produce, including a deliberately poisoned update in robustness experiments.
app = ClientApp(mods=[secagg_when_requested_mod, payload_guard_mod, poisoning_mod])


@app.query()
def census(msg: Message, context: Context) -> Message:
    """Tell the server this device's role and how many clips it can use."""
    data = _local_data(context)
    content = RecordDict(
        {
            INFO_KEY: ConfigRecord({"role": data.role, "device-id": data.device_id}),
            METRICS_KEY: MetricRecord({"num-clips": len(data), "num-skipped": len(data.skipped)}),
        }
    )
    return Message(content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of DP-SGD on the local clips, unless the budget forbids it."""
    cfg = RunConfig.from_flower(context.run_config)
    data = _local_data(context)
    request = TrainRequest.parse(msg.content)
    if data.role != TRAIN or len(data) == 0:
        reason = data.describe_emptiness() if len(data) == 0 else f"role is {data.role}"
        return _decline(msg, request, data, reason, None)
    raise_injected_dropout(data.device_id)

    state = open_device_state(context)
    history = state.history()
    sigma = _noise_multiplier(state, cfg, len(data))
    planned = (
        sigma,
        sample_rate_for(len(data), cfg.batch_size),
        cfg.local_epochs * steps_per_epoch(len(data), cfg.batch_size),
    )
    budget = _device_budget(context, cfg)
    decision = check_budget(history, planned, cfg.delta, budget)
    ledger_fields = {
        "round": request.server_round,
        "device_id": data.device_id,
        "mechanism": "dp-sgd",
        "sigma": sigma,
        "q": planned[1],
        "delta": cfg.delta,
        "budget": budget,
        "accountant": "rdp",
    }
    if not decision.allowed:
        # Recorded before replying: the refusal is part of the device's history.
        entry = state.ledger.append(
            **ledger_fields,
            event="refused",
            steps=0,
            epsilon=decision.spent,
            note=decision.reason()[:200],
        )
        return _decline(msg, request, data, decision.reason(), entry)

    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(request.state_dict(model))
    result = train_with_dp(
        model,
        data.features,
        data.labels,
        epochs=cfg.local_epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        dp=DPSettings(sigma, cfg.max_grad_norm, cfg.delta),
        history=history,
        seed=device_seed(cfg.seed, request.server_round, data.device_id),
    )
    # fsynced before the reply leaves: an acknowledged spend is never lost.
    entry = state.ledger.append(
        **ledger_fields, event="train", steps=result.steps, epsilon=result.epsilon, note=""
    )
    metrics: dict[str, int | float] = {
        "num-examples": result.num_examples,
        "train-loss": result.loss,
        "train-accuracy": result.accuracy,
        "epsilon": result.epsilon,
        "epsilon-prv": epsilon_prv(result.history, cfg.delta),
        "delta": cfg.delta,
        "noise-multiplier": sigma,
        "sample-rate": result.sample_rate,
        "steps": result.steps,
        "total-steps": result.total_steps,
    }
    info = {"device-id": data.device_id, LEDGER_ENTRY_KEY: encode_entry(entry)}
    return Message(request.reply(model, metrics, info, cfg.client_clipping_norm), reply_to=msg)


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


def _noise_multiplier(state: DevicePrivacyState, cfg: RunConfig, num_examples: int) -> float:
    """Sigma for this device, calibrated once for every step it plans to take."""
    if cfg.target_epsilon <= 0:
        return cfg.noise_multiplier
    sigma = state.calibrated_sigma()
    if sigma is None:
        planned_steps = (
            cfg.num_server_rounds * cfg.local_epochs * steps_per_epoch(num_examples, cfg.batch_size)
        )
        sigma = calibrate_noise_multiplier(
            cfg.target_epsilon,
            cfg.delta,
            sample_rate_for(num_examples, cfg.batch_size),
            planned_steps,
        )
    return sigma


def _device_budget(context: Context, cfg: RunConfig) -> float:
    """The node config's ``epsilon-budget`` if the operator set one, else the run's."""
    configured = float(context.node_config.get(BUDGET_KEY, cfg.epsilon_budget))
    return effective_budget(configured, cfg.target_epsilon)


def _decline(
    msg: Message,
    request: TrainRequest,
    data: LocalData,
    reason: str,
    entry: dict[str, object] | None,
) -> Message:
    """Reply that this device trains nothing this round; the round goes on.

    Under SecAgg+ a device cannot send a plain reply in the middle of the
    protocol, so it drops out instead (the protocol tolerates that); its
    ledger still records the refusal.
    """
    log.warning("device %s declines to train: %s", data.device_id, reason)
    if request.legacy:
        raise RuntimeError(f"device {data.device_id} declines to train: {reason}")
    info: dict[str, str] = {"device-id": data.device_id, "declined": reason[:200]}
    if entry is not None:
        info[LEDGER_ENTRY_KEY] = encode_entry(entry)
    content = RecordDict(
        {
            METRICS_KEY: MetricRecord({"num-examples": 0, "declined": 1}),
            INFO_KEY: ConfigRecord(info),
        }
    )
    return Message(content, reply_to=msg)
