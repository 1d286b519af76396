"""fedmer's Flower ClientApp: local (DP-)SGD training and held-out evaluation.

Three message handlers, each replying with one message of the wire schema
(:mod:`common.wire`):

* query: a :class:`~common.wire.CensusReply` (role, device id, usable clips);
* train: a :class:`~common.wire.TrainReply` with the model and the round's
  signed ledger entry, or a :class:`~common.wire.Decline` when the device has
  nothing to train on or the round would exceed its privacy budget;
* evaluate: an :class:`~common.wire.EvaluateReply` of confusion counts.

The device's own settings come from its node config
(:class:`~common.node_config.NodeConfig`), validated at the first message;
the run config is the coordinator's request. Every reply passes the payload
guard before it leaves the device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from client.accountant_state import DevicePrivacyState, open_device_state
from client.dp_training import DPSettings, device_seed, predict, train_with_dp
from client.local_data import TRAIN, LocalData, device_node_config, load_local_data
from client.payload_guard_mod import payload_guard_mod
from client.plain_training import LocalSchedule, train_plain
from client.secagg_client import clipped_update, secagg_when_requested_mod
from common.labels import COMPOSITE_CLASSES
from common.metrics import confusion_matrix
from common.models import build_model
from common.node_config import NodeConfig
from common.privacy.accounting import epsilon_prv
from common.privacy.budget import check_budget, effective_budget
from common.privacy.dp_plan import DPPlan
from common.privacy.ledger import encode_entry
from common.run_config import RunConfig
from common.wire import (
    ARRAYS,
    CensusReply,
    Decline,
    EvaluateReply,
    LegacyTrainReply,
    TrainInstruction,
    TrainMetrics,
    TrainReply,
)

log = logging.getLogger(__name__)


def census(msg: Message, context: Context) -> Message:
    """Tell the server this device's role and how many clips it can use."""
    node, data = _device(context)
    reply = CensusReply(data.device_id, data.role, len(data), len(data.skipped))
    return Message(reply.to_record(), reply_to=msg)


def train(msg: Message, context: Context) -> Message:
    """One round of local training on the device's clips, unless its limits forbid it."""
    cfg = RunConfig.from_flower(context.run_config)
    node, data = _device(context)
    request = TrainInstruction.from_record(msg.content)
    if data.role != TRAIN or len(data) == 0:
        reason = data.describe_emptiness() if len(data) == 0 else f"role is {data.role}"
        return _decline(msg, request, data.device_id, reason, "")
    if not cfg.dp_sgd and not node.allow_non_private:
        reason = (
            "the run asks for training without DP-SGD, which this device's node "
            "config does not allow (allow-non-private)"
        )
        return _decline(msg, request, data.device_id, reason, "")

    state = open_device_state(context, node.state_dir)
    plan = DPPlan.for_device(len(data), cfg.batch_size, cfg.local_epochs, cfg.num_server_rounds)
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    names = list(model.state_dict().keys())
    model.load_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in request.named_arrays(names).items()}
    )
    seed = device_seed(cfg.seed, request.server_round, data.device_id)
    if cfg.dp_sgd:
        outcome = _train_private(model, data, node, cfg, plan, state, request, seed)
        if isinstance(outcome, Decline):
            return _decline(msg, request, outcome.device_id, outcome.reason, outcome.ledger_entry)
        metrics, entry = outcome
    else:
        metrics, entry = _train_non_private(model, data, cfg, state, request, seed)

    if request.legacy:
        update = clipped_update(model, request, cfg.client_clipping_norm)
        legacy = LegacyTrainReply(
            data.device_id, update, tuple(request.arrays.keys()), metrics, entry
        )
        return Message(legacy.to_record(), reply_to=msg)
    reply = TrainReply(data.device_id, ArrayRecord(model.state_dict()), metrics, entry)
    return Message(reply.to_record(), reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    """Confusion-matrix counts of the global model on the local clips."""
    cfg = RunConfig.from_flower(context.run_config)
    _, data = _device(context)
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(msg.content[ARRAYS].to_torch_state_dict())
    cm = confusion_matrix(data.labels, predict(model, data.features), len(COMPOSITE_CLASSES))
    # Only the pooled counts leave the device, never per-clip predictions.
    reply = EvaluateReply(data.device_id, tuple(tuple(int(c) for c in row) for row in cm))
    return Message(reply.to_record(), reply_to=msg)


def build_client_app(extra_mods: Sequence[Mod] = ()) -> ClientApp:
    """The ClientApp, with experiment or test mods innermost (``extra_mods``).

    Mods run outermost first: SecAgg+ wraps the payload guard, so the guard
    checks each update before it is masked; mods given here run inside the
    guard, so even a deliberately misbehaving update (robustness experiments,
    fault injection) is checked against the wire schema before it leaves.
    Production (``app`` below) has no extra mods.
    """
    client_app = ClientApp(mods=[secagg_when_requested_mod, payload_guard_mod, *extra_mods])
    client_app.query()(census)
    client_app.train()(train)
    client_app.evaluate()(evaluate)
    return client_app


app = build_client_app()


def _device(context: Context) -> tuple[NodeConfig, LocalData]:
    cfg = RunConfig.from_flower(context.run_config)
    node = device_node_config(dict(context.node_config), _simulation_dir(cfg))
    return node, load_local_data(node, cfg.model)


def _simulation_dir(cfg: RunConfig) -> str:
    if cfg.simulation_dir:
        return cfg.simulation_dir
    return f"{cfg.out_dir}/devices" if cfg.out_dir else ""


def _train_private(
    model: torch.nn.Module,
    data: LocalData,
    node: NodeConfig,
    cfg: RunConfig,
    plan: DPPlan,
    state: DevicePrivacyState,
    request: TrainInstruction,
    seed: int,
) -> tuple[TrainMetrics, str] | Decline:
    history = state.history()
    sigma = _noise_multiplier(state, cfg, plan)
    # The node config's budget, when the operator set one, else the run's.
    budget = effective_budget(node.epsilon_budget or cfg.epsilon_budget, cfg.target_epsilon)
    decision = check_budget(
        history, (sigma, plan.sample_rate, plan.steps_per_round), cfg.delta, budget
    )
    ledger_fields = {
        "round": request.server_round,
        "device_id": data.device_id,
        "mechanism": "dp-sgd",
        "sigma": sigma,
        "q": plan.sample_rate,
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
        return Decline(data.device_id, decision.reason(), encode_entry(entry))
    result = train_with_dp(
        model,
        data.features,
        data.labels,
        epochs=cfg.local_epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        dp=DPSettings(sigma, cfg.max_grad_norm, cfg.delta),
        history=history,
        seed=seed,
    )
    # fsynced before the reply leaves: an acknowledged spend is never lost.
    entry = state.ledger.append(
        **ledger_fields, event="train", steps=result.steps, epsilon=result.epsilon, note=""
    )
    metrics = TrainMetrics(
        num_examples=result.num_examples,
        train_loss=result.loss,
        train_accuracy=result.accuracy,
        epsilon=result.epsilon,
        epsilon_prv=epsilon_prv(result.history, cfg.delta),
        delta=cfg.delta,
        noise_multiplier=sigma,
        sample_rate=result.sample_rate,
        steps=result.steps,
        total_steps=result.total_steps,
    )
    return metrics, encode_entry(entry)


def _train_non_private(
    model: torch.nn.Module,
    data: LocalData,
    cfg: RunConfig,
    state: DevicePrivacyState,
    request: TrainInstruction,
    seed: int,
) -> tuple[TrainMetrics, str]:
    """The non-private baseline: plain SGD, ε = ∞, allowed only by the device's node config.

    The round is recorded in the device's ledger like any other, as an
    unbounded spend: once a device has trained without noise, no later figure
    of its can claim a finite ε.
    """
    loss = train_plain(
        model,
        data.features,
        data.labels,
        LocalSchedule(cfg.local_epochs, cfg.batch_size, cfg.learning_rate),
        seed,
    )
    steps = cfg.local_epochs * -(-len(data) // cfg.batch_size)
    entry = state.ledger.append(
        round=request.server_round,
        device_id=data.device_id,
        mechanism="none",
        sigma=0.0,
        q=1.0,
        delta=cfg.delta,
        budget=0.0,
        accountant="none",
        event="train",
        steps=steps,
        epsilon=float("inf"),
        note="trained without DP (allow-non-private)",
    )
    metrics = TrainMetrics(
        num_examples=len(data),
        train_loss=loss,
        train_accuracy=0.0,
        epsilon=float("inf"),
        epsilon_prv=float("inf"),
        delta=cfg.delta,
        noise_multiplier=0.0,
        sample_rate=1.0,
        steps=steps,
        total_steps=steps,
    )
    return metrics, encode_entry(entry)


def _noise_multiplier(state: DevicePrivacyState, cfg: RunConfig, plan: DPPlan) -> float:
    """Sigma for this device, calibrated once for every step it plans to take."""
    if cfg.target_epsilon <= 0:
        return cfg.noise_multiplier
    sigma = state.calibrated_sigma()
    return sigma if sigma is not None else plan.noise_for(cfg.target_epsilon, cfg.delta)


def _decline(
    msg: Message, request: TrainInstruction, device_id: str, reason: str, ledger_entry: str
) -> Message:
    """Reply that this device trains nothing this round; the round goes on.

    Under SecAgg+ a device cannot send a plain reply in the middle of the
    protocol, so it drops out instead (the protocol tolerates that); its
    ledger still records the refusal.
    """
    log.warning("device %s declines to train: %s", device_id, reason)
    if request.legacy:
        raise RuntimeError(f"device {device_id} declines to train: {reason}")
    return Message(Decline(device_id, reason, ledger_entry).to_record(), reply_to=msg)
