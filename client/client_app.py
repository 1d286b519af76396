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
import secrets
from collections.abc import Sequence

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from client.accountant_state import open_device_state
from client.evaluation_release import release_confusion
from client.inference import predict
from client.local_data import HELDOUT, TRAIN, LocalData, device_node_config, load_local_data
from client.payload_guard_mod import payload_guard_mod
from client.privacy_policy import Refusal, noise_share_refusal
from client.receipts import keep_receipt, with_unreceived
from client.round_context import Refused, RoundContext, refuse_and_record, spent_so_far
from client.secagg_client import (
    MAX_TRUNCATION,
    clipped_update,
    noised_update,
    secagg_when_requested_mod,
    skellam_share,
)
from client.state_loss import gap_refusal
from common.labels import COMPOSITE_CLASSES
from common.models import build_model
from common.node_config import NodeConfig
from common.privacy.distributed_noise import MECHANISM as MECHANISM_SKELLAM
from common.privacy.distributed_noise import SkellamShare
from common.run_config import RunConfig
from common.wire import (
    ARRAYS,
    INFO,
    LEDGER_ENTRY,
    LEGACY_METRICS,
    CensusReply,
    Decline,
    LegacyTrainReply,
    TrainInstruction,
    TrainReply,
    ledger_receipt_of,
    round_nonce_of,
    server_round_of,
)

log = logging.getLogger(__name__)


def census(msg: Message, context: Context) -> Message:
    """The device's role, id and policy: nothing derived from its data."""
    node, data = _device(context)
    reply = CensusReply(
        data.device_id,
        data.role,
        node.epsilon_budget,
        node.max_delta,
        node.seeded_sampling,
        node.single_person,
    )
    return Message(reply.to_record(), reply_to=msg)


def train(msg: Message, context: Context) -> Message:
    """One round of local training on the device's clips, unless its limits forbid it."""
    return _resend_unreceived(_train(msg, context), msg, context)


def _train(msg: Message, context: Context) -> Message:
    cfg = RunConfig.from_flower(context.run_config)
    node, data = _device(context)
    request = TrainInstruction.from_record(msg.content)
    if data.role != TRAIN:
        return _decline(msg, request, data.device_id, Refusal("not-a-training-device", data.role))
    if len(data) == 0:
        refusal = Refusal("no-usable-clips", data.describe_emptiness())
        return _decline(msg, request, data.device_id, refusal)
    state = open_device_state(node.state_dir)
    if state is None:
        return _decline(msg, request, data.device_id, _NO_STATE_DIR)
    keep_receipt(node.state_dir, state.ledger, data.device_id, ledger_receipt_of(msg.content))
    lost = gap_refusal(node.state_dir)
    if lost is not None:
        return _decline(msg, request, data.device_id, lost)

    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    names = list(model.state_dict().keys())
    model.load_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in request.named_arrays(names).items()}
    )
    ctx = RoundContext(
        data,
        node,
        cfg,
        state,
        str(context.run_id),
        request.server_round,
        nonce=request.nonce,
        bind_update=not request.legacy,
    )
    # Imported here, not at the top: a deployed device starts a fresh process
    # for every message, and the census and evaluation need neither the
    # training code nor Opacus.
    from client.training_round import train_round

    share = None
    if request.legacy and request.client_noise_multiplier > 0:
        share_or_refused = _noise_share(context, ctx, request, model)
        if isinstance(share_or_refused, Refused):
            refused = share_or_refused
            return _decline(msg, request, data.device_id, refused.refusal, refused.ledger_entry)
        share = share_or_refused
    outcome = train_round(model, ctx)
    if isinstance(outcome, Refused):
        return _decline(msg, request, data.device_id, outcome.refusal, outcome.ledger_entry)
    metrics, entry = outcome
    if request.legacy:
        update = clipped_update(model, request, cfg.client_clipping_norm)
        if share is not None:
            # Fresh OS entropy: the coordinator must not be able to predict the noise.
            update = noised_update(update, share, np.random.default_rng(secrets.randbits(128)))
        legacy = LegacyTrainReply(
            data.device_id, update, tuple(request.arrays.keys()), metrics, entry
        )
        return Message(legacy.to_record(), reply_to=msg)
    reply = TrainReply(data.device_id, ArrayRecord(model.state_dict()), metrics, entry)
    return Message(reply.to_record(), reply_to=msg)


def _noise_share(
    context: Context, ctx: RoundContext, request: TrainInstruction, model: torch.nn.Module
) -> SkellamShare | Refused:
    """The device's share of SecAgg+'s distributed noise, or its signed refusal."""
    z = request.client_noise_multiplier
    refusal = noise_share_refusal(ctx.node, z)
    if refusal is None:
        dimension = sum(t.numel() for t in model.state_dict().values())
        share = skellam_share(context, z, ctx.cfg.client_clipping_norm, dimension)
        if share.truncation_probability(1) <= MAX_TRUNCATION:
            return share
        refusal = Refusal(
            "noise-below-policy",
            f"SecAgg+ clipping_range {share.clipping_range:g} would clip the noise share",
        )
    return refuse_and_record(ctx, refusal, MECHANISM_SKELLAM, z, 1.0, spent_so_far(ctx))


def evaluate(msg: Message, context: Context) -> Message:
    """Held-out devices only: the global model's confusion counts, released with noise."""
    return _resend_unreceived(_evaluate(msg, context), msg, context)


def _resend_unreceived(reply: Message, msg: Message, context: Context) -> Message:
    """Send the entries a crashed coordinator never received before this reply's own."""
    receipt = ledger_receipt_of(msg.content)
    if not receipt or reply.has_error():
        return reply
    node, _ = _device(context)
    state = open_device_state(node.state_dir)
    if state is None:
        return reply
    for name in (INFO, LEGACY_METRICS):
        record = reply.content.config_records.get(name)
        if record is not None and record.get(LEDGER_ENTRY):
            record[LEDGER_ENTRY] = with_unreceived(state.ledger, receipt, str(record[LEDGER_ENTRY]))
    return reply


def _evaluate(msg: Message, context: Context) -> Message:
    cfg = RunConfig.from_flower(context.run_config)
    node, data = _device(context)
    server_round = server_round_of(msg.content)
    if data.role != HELDOUT:
        # A training device's counts would be its label histogram, unaccounted.
        return _refuse_evaluation(msg, data.device_id, Refusal("not-a-held-out-device", data.role))
    if len(data) == 0:
        refusal = Refusal("no-usable-clips", data.describe_emptiness())
        return _refuse_evaluation(msg, data.device_id, refusal)
    state = open_device_state(node.state_dir)
    if state is None:
        return _refuse_evaluation(msg, data.device_id, _NO_STATE_DIR)
    keep_receipt(node.state_dir, state.ledger, data.device_id, ledger_receipt_of(msg.content))
    lost = gap_refusal(node.state_dir)
    if lost is not None:
        return _refuse_evaluation(msg, data.device_id, lost)
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(msg.content[ARRAYS].to_torch_state_dict())
    predicted = predict(model, data.features)
    ctx = RoundContext(
        data, node, cfg, state, str(context.run_id), server_round, round_nonce_of(msg.content)
    )
    released = release_confusion(data.labels, predicted, len(COMPOSITE_CLASSES), ctx)
    if isinstance(released, Refused):
        return _refuse_evaluation(msg, data.device_id, released.refusal, released.ledger_entry)
    return Message(released.to_record(), reply_to=msg)


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
    node = device_node_config(dict(context.node_config), cfg.simulation_dir)
    return node, load_local_data(node, cfg.model)


_NO_STATE_DIR = Refusal("no-state-dir", "node config names no state-dir for the ledger")


def _refuse_evaluation(
    msg: Message, device_id: str, refusal: Refusal, ledger_entry: str = ""
) -> Message:
    log.warning("device %s declines to evaluate: %s", device_id, refusal.note())
    return Message(Decline(device_id, refusal.code, ledger_entry).to_record(), reply_to=msg)


def _decline(
    msg: Message,
    request: TrainInstruction,
    device_id: str,
    refusal: Refusal,
    ledger_entry: str = "",
) -> Message:
    """Reply that this device trains nothing this round; the round goes on.

    Only the fixed code leaves; the details stay in this device's log. Under
    SecAgg+ a device cannot send a plain reply in the middle of the protocol,
    so it drops out instead (the protocol tolerates that); its ledger still
    records the refusal.
    """
    log.warning("device %s declines to train: %s", device_id, refusal.note())
    if request.legacy:
        raise RuntimeError(f"device {device_id} declines to train: {refusal.code}")
    return Message(Decline(device_id, refusal.code, ledger_entry).to_record(), reply_to=msg)
