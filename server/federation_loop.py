"""The round loop: train on ``train`` devices, evaluate on ``heldout`` devices.

The loop, not the strategy, looks at each reply first: declined rounds (no
data, budget) are logged and left out of aggregation, failures are logged,
privacy reports are tracked and each device's signed ledger entry is kept.
The strategy then aggregates what is usable, unless client-level DP is on
(clipped, noised mean) or SecAgg+ is on (the server only sees the sum, and
any client-level noise in it was added by the devices; see
:mod:`server.secagg_round`). Before each round the client-level budget is
checked, and the run stops with ``PrivacyBudgetExhausted`` instead of
exceeding it.
Held-out evaluation of round r's model rides with round r+1's training: the
model round r+1 sends to its training devices is the one to evaluate, so its
evaluate messages go to the held-out devices in the same exchange, and a
deployed round waits for one message stage instead of two (each stage costs
Flower's polling and a ClientApp start on every device). The last round's
model is evaluated alone after it, as is every round's under SecAgg+, whose
training is Flower's multi-stage workflow. Each evaluation keeps its own
round's nonce, so every device entry still names its round.
After every stage, ``on_stage`` gets the round it completed (trained and
evaluated) and the round it trained (evaluation pending), before the next
stage starts, so a crash loses neither a trained model nor a completed round.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.exception import PrivacyBudgetExhausted
from flwr.serverapp.strategy import Strategy

from common.privacy.client_level import sum_updates
from common.wire import (
    ARRAYS,
    CONFIG,
    LEDGER_RECEIPT,
    ROUND_NONCE,
    Decline,
    EvaluateReply,
    WireError,
    arrays_digest,
    counts_digest,
    legacy_metrics,
    parse_reply,
    parse_train_reply,
)
from server.census import Census, NodeSubsetGrid, replying_node, take_census
from server.client_level_dp import ClientLevelDP
from server.entry_binding import binding_problem
from server.held_out_evaluation import held_out_metrics
from server.privacy_ledger import ServerLedger
from server.privacy_tracker import PrivacyTracker
from server.secagg_round import SECAGG_MIN_DEVICES, SecAggSettings, secure_round
from server.update_validation import ValidationPolicy, array_map, screen_updates

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
    seconds: float = 0.0
    # The round's turn, so that its evaluation (a stage later) names the same nonce.
    turn: RoundTurn | None = None

    def training_entry(self) -> dict[str, Any]:
        """What the round's training produced (all a checkpoint of it needs before
        its evaluation is back)."""
        return {
            "round": self.round,
            "epsilon": self.epsilon,
            "trained": self.trained,
            "declined": self.declined,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_training_entry(cls, entry: dict[str, Any], arrays: ArrayRecord) -> RoundOutcome:
        """A trained round read back from its checkpoint, its evaluation still to do."""
        return cls(
            round=int(entry["round"]),
            arrays=arrays,
            metrics={},
            epsilon=float(entry["epsilon"]),
            trained=list(entry["trained"]),
            declined=dict(entry["declined"]),
            failed=dict(entry["failed"]),
            seconds=float(entry["seconds"]),
        )

    def as_entry(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "uf1": self.metrics["uf1"],
            "uar": self.metrics["uar"],
            "accuracy": self.metrics["accuracy"],
            "confusion": self.metrics["confusion"],
            "released": self.metrics.get("released"),
            "heldout_devices": self.metrics.get("per_device", {}),
            "heldout_noise_std": self.metrics.get("noise_std", {}),
            "heldout_declined": self.metrics.get("declined", {}),
            "epsilon": self.epsilon,
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
    max_update_norm: float = 0.0


@dataclass(frozen=True)
class RoundTurn:
    """The run, the round and the coordinator's nonce for it."""

    run_id: str
    round: int
    nonce: str

    def config(self) -> ConfigRecord:
        return ConfigRecord({ROUND_NONCE: self.nonce})


@dataclass
class PrivacyControls:
    """Everything privacy-related the loop applies each round."""

    ledger: ServerLedger
    client_dp: ClientLevelDP
    context: Context  # the ServerApp's, needed by the SecAgg+ workflow
    secagg: SecAggSettings | None = None


# on_stage(completed, trained, census): see run_rounds.
StageHook = Callable[[RoundOutcome | None, RoundOutcome | None, Census], None]


def run_rounds(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    census: Census,
    settings: FederationSettings,
    tracker: PrivacyTracker,
    on_stage: StageHook,
    privacy: PrivacyControls,
    pending: RoundOutcome | None = None,
) -> ArrayRecord:
    """Run rounds ``start_round..num_rounds``; returns the final global arrays.

    ``on_stage(completed, trained, census)`` is called after every message
    stage: ``completed`` is the round whose evaluation just came back (or
    None), ``trained`` the round just aggregated whose evaluation is still to
    come (or None). ``pending`` is a round trained by an earlier run of this
    folder and not yet evaluated (resumed from its checkpoint).

    Raises ``PrivacyBudgetExhausted`` before a round whose client-level release
    would exceed the budget; every earlier round has been evaluated and handed
    to ``on_stage`` first.
    """
    try:
        for server_round in range(settings.start_round, settings.num_rounds + 1):
            started = time.monotonic()
            privacy.client_dp.check_budget(server_round)
            census = take_census(grid, settings.timeout, census)
            # Fresh OS entropy: a device's entry for this round cannot exist before it.
            turn = RoundTurn(str(privacy.context.run_id), server_round, secrets.token_hex(16))
            privacy.ledger.start_round(turn.run_id, server_round, turn.nonce)
            if privacy.secagg is not None:
                _evaluate_alone(pending, grid, strategy, census, settings, privacy, on_stage)
                pending = None
                outcome = _secure_train_round(grid, arrays, census, turn, tracker, privacy)
            else:
                outcome = _train_round(
                    grid, strategy, arrays, census, turn, settings, tracker, privacy, pending
                )
            outcome.turn = turn
            arrays = outcome.arrays
            outcome.epsilon = tracker.worst_epsilon()
            outcome.seconds = time.monotonic() - started
            privacy.ledger.write_manifest(turn.run_id)
            on_stage(pending, outcome, census)
            pending = outcome
            if privacy.secagg is not None:
                # Its own stage, counted in the round (no later exchange carries it).
                _evaluate_alone(pending, grid, strategy, census, settings, privacy, on_stage, True)
                pending = None
    except PrivacyBudgetExhausted:
        _evaluate_alone(pending, grid, strategy, census, settings, privacy, on_stage)
        raise
    _evaluate_alone(pending, grid, strategy, census, settings, privacy, on_stage)
    return arrays


def _evaluate_alone(
    pending: RoundOutcome | None,
    grid: Grid,
    strategy: Strategy,
    census: Census,
    settings: FederationSettings,
    privacy: PrivacyControls,
    on_stage: StageHook,
    counted: bool = False,
) -> None:
    """Evaluate a trained round in a stage of its own (no training stage to ride with).

    Its time is added to the round's ``seconds`` only when ``counted``: a round's
    seconds are its exchange (its training with the previous round's
    evaluation), so the last round's evaluation, alone after it, is logged
    instead."""
    if pending is None:
        return
    started = time.monotonic()
    turn = _evaluation_turn(pending, privacy)
    messages = _evaluation_messages(grid, strategy, pending.arrays, census, turn, privacy.ledger)
    replies = list(grid.send_and_receive(messages, timeout=settings.timeout)) if messages else []
    pending.metrics = _evaluation_metrics(replies, messages, census, turn, settings, privacy.ledger)
    took = time.monotonic() - started
    if counted:
        pending.seconds += took
    else:
        log.info("round %d evaluated alone in %.2f s", pending.round, took)
    privacy.ledger.write_manifest(turn.run_id)
    on_stage(pending, None, census)


def _evaluation_turn(pending: RoundOutcome, privacy: PrivacyControls) -> RoundTurn:
    """The turn a round's evaluation names: the round's own, or, for a round trained
    by an earlier run of this folder, a fresh one of this run."""
    if pending.turn is not None:
        return pending.turn
    turn = RoundTurn(str(privacy.context.run_id), pending.round, secrets.token_hex(16))
    privacy.ledger.start_round(turn.run_id, turn.round, turn.nonce)
    pending.turn = turn
    return turn


def evaluate_starting_model(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    census: Census,
    settings: FederationSettings,
    ledger: ServerLedger,
    run_id: str,
) -> dict[str, Any]:
    """Round 0: the held-out metrics of the model before any federated round.

    With a pretrained start this shows what federated training itself adds.
    The held-out devices account for this release like any other.
    """
    turn = RoundTurn(run_id, 0, secrets.token_hex(16))
    ledger.start_round(run_id, 0, turn.nonce)
    messages = _evaluation_messages(grid, strategy, arrays, census, turn, ledger)
    replies = list(grid.send_and_receive(messages, timeout=settings.timeout)) if messages else []
    metrics = _evaluation_metrics(replies, messages, census, turn, settings, ledger)
    ledger.write_manifest(run_id)
    return {
        "round": 0,
        **{k: metrics[k] for k in ("uf1", "uar", "accuracy", "confusion")},
        "released": metrics.get("released"),
        "heldout_noise_std": metrics.get("noise_std", {}),
    }


def _train_round(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    census: Census,
    turn: RoundTurn,
    settings: FederationSettings,
    tracker: PrivacyTracker,
    privacy: PrivacyControls,
    pending: RoundOutcome | None,
) -> RoundOutcome:
    """Train one round; ``pending`` (the round before, whose model ``arrays`` is) is
    evaluated in the same exchange, and gets its metrics."""
    server_round = turn.round
    # Under client-level sampling only this round's secret sample is asked.
    asked = privacy.client_dp.sample(census.nodes_with_role("train"))
    messages = []
    if asked:
        train_grid = NodeSubsetGrid(grid, asked)
        messages = list(strategy.configure_train(server_round, arrays, turn.config(), train_grid))
        _attach_receipts(messages, census, privacy.ledger, turn.run_id)
    evaluations: list[Message] = []
    if pending is not None:
        eval_turn = _evaluation_turn(pending, privacy)
        evaluations = _evaluation_messages(
            grid, strategy, arrays, census, eval_turn, privacy.ledger
        )
    sent = messages + evaluations
    answered = list(grid.send_and_receive(sent, timeout=settings.timeout)) if sent else []
    # Message ids exist once pushed: split the replies by the message they answer.
    evaluation_ids = {m.metadata.message_id for m in evaluations}
    replies = [r for r in answered if r.metadata.reply_to_message_id not in evaluation_ids]
    if pending is not None:
        pending.metrics = _evaluation_metrics(
            [r for r in answered if r.metadata.reply_to_message_id in evaluation_ids],
            evaluations,
            census,
            eval_turn,
            settings,
            privacy.ledger,
        )
    outcome = RoundOutcome(round=server_round, arrays=arrays, metrics={}, epsilon=0.0)
    usable: list[Message] = []
    for reply in replies:
        device = census.device_id(replying_node(reply, messages))
        if reply.has_error():
            reason = reply.error.reason
            outcome.failed[device] = (
                reason if reason is not None else f"error code {reply.error.code}"
            )
            log.warning("round %d: device %s failed: %s", server_round, device, reply.error.reason)
            continue
        try:
            answer = parse_train_reply(reply.content)
        except WireError as exc:
            outcome.failed[device] = f"reply outside the wire schema: {exc}"
            log.warning("round %d: device %s: %s", server_round, device, exc)
            continue
        payload = None if isinstance(answer, Decline) else arrays_digest(array_map(answer.arrays))
        problem = _keep_bound_entry(privacy.ledger, device, answer.ledger_entry, turn, payload)
        if problem:
            outcome.failed[device] = problem
            log.warning("round %d: device %s: %s", server_round, device, problem)
            continue
        if isinstance(answer, Decline):
            outcome.declined[device] = answer.reason
            log.warning("round %d: device %s declined: %s", server_round, device, answer.reason)
            continue
        tracker.record(device, server_round, answer.metrics)
        outcome.trained.append(device)
        usable.append(reply)
    usable = _screen(usable, arrays, census, outcome, settings.max_update_norm)
    if privacy.client_dp.enabled:
        # Released even when no one contributed: a skipped release would say so.
        clipped = privacy.client_dp.clip(
            arrays, [r.content.array_records["arrays"] for r in usable]
        )
        summed = sum_updates(clipped) if clipped else None
        outcome.arrays = privacy.client_dp.apply(arrays, summed, len(clipped), server_round)
    elif usable:
        new_arrays, _ = strategy.aggregate_train(server_round, usable)
        if new_arrays is not None:
            outcome.arrays = new_arrays
    else:
        log.warning("round %d: no device trained; the global model is unchanged", server_round)
    return outcome


def _screen(
    usable: list[Message],
    arrays: ArrayRecord,
    census: Census,
    outcome: RoundOutcome,
    max_update_norm: float,
) -> list[Message]:
    """Drop NaN/Inf, misshapen or oversized updates before any aggregation sees them."""
    screen = screen_updates(
        array_map(arrays),
        [array_map(r.content.array_records[ARRAYS]) for r in usable],
        ValidationPolicy(max_update_norm),
    )
    for index, reason in screen.rejected.items():
        device = census.device_id(usable[index].metadata.src_node_id)
        outcome.failed[device] = f"update rejected: {reason}"
        outcome.trained.remove(device)
        log.warning("round %d: update of device %s rejected: %s", outcome.round, device, reason)
    return [usable[i] for i in screen.accepted]


def _secure_train_round(
    grid: Grid,
    arrays: ArrayRecord,
    census: Census,
    turn: RoundTurn,
    tracker: PrivacyTracker,
    privacy: PrivacyControls,
) -> RoundOutcome:
    assert privacy.secagg is not None
    server_round = turn.round
    outcome = RoundOutcome(round=server_round, arrays=arrays, metrics={}, epsilon=0.0)
    sampled = privacy.client_dp.sample(census.nodes_with_role("train"))
    if len(sampled) < SECAGG_MIN_DEVICES:
        # Nothing is unmasked or released. The accounted mechanism would have
        # released a noised sum; the chance of this round is paid in δ
        # (server.client_level_dp.shortfall_delta), and kept negligible.
        log.warning(
            "round %d: %d device(s) sampled, SecAgg+ needs %d; nothing released this round",
            server_round,
            len(sampled),
            SECAGG_MIN_DEVICES,
        )
        return outcome
    result = secure_round(
        grid,
        privacy.context,
        arrays.to_numpy_ndarrays(),
        sampled,
        server_round,
        privacy.secagg,
        privacy.client_dp.noise_multiplier,
        turn.nonce,
    )
    for node_id in result.dropped:
        device = census.device_id(node_id)
        reason = result.reasons.get(node_id, "")
        outcome.failed[device] = f"dropped out of the SecAgg+ round: {reason}"
        log.warning("round %d: device %s dropped out of SecAgg+: %s", server_round, device, reason)
    for node_id, values in sorted(result.metrics.items()):
        device = census.device_id(node_id)
        try:
            _, metrics, ledger_entry = legacy_metrics(values)
        except WireError as exc:
            outcome.failed[device] = f"reply outside the wire schema: {exc}"
            continue
        # The masked update is not visible here: the entry is bound by run, round, nonce.
        problem = _keep_bound_entry(privacy.ledger, device, ledger_entry, turn, None)
        if problem:
            outcome.failed[device] = problem
            continue
        tracker.record(device, server_round, metrics)
        outcome.trained.append(device)
    if result.mean_update is None:
        log.warning(
            "round %d: SecAgg+ did not complete; the global model is unchanged", server_round
        )
        return outcome
    n = result.contributors
    outcome.arrays = privacy.client_dp.apply_secure(
        arrays,
        [m.astype(np.float64) * n for m in result.mean_update],
        n,
        server_round,
        result.share,
    )
    return outcome


def _attach_receipts(
    messages: list[Message], census: Census, ledger: ServerLedger, run_id: str
) -> None:
    """Give each device, with its instruction, the signed receipt of its chain head.

    (Not under SecAgg+, whose fit instructions are one config for every device.)
    """
    for message in messages:
        receipt = ledger.receipt_for(census.device_id(message.metadata.dst_node_id), run_id)
        shared = message.content
        if not receipt or CONFIG not in shared.config_records:
            continue
        # Flower's strategies give every message the same RecordDict: each device's
        # receipt goes into a copy of its own (the arrays are shared, not copied).
        content = RecordDict(dict(shared.items()))
        content[CONFIG] = ConfigRecord({**shared.config_records[CONFIG], LEDGER_RECEIPT: receipt})
        message.content = content


def _keep_bound_entry(
    ledger: ServerLedger, device: str, line: str, turn: RoundTurn, payload_hash: str | None
) -> str | None:
    """Keep the signed entry a device sent, verbatim, if it accounts for this reply;
    else return why not.

    Lines before the last are entries the device wrote but this coordinator
    never received (it died mid-round): each is kept, in order, while it is
    the next of the device's chain here, and the first that is not makes the
    reply fail (its predecessors stay kept: they are the device's signed
    entries). The last line is the entry of this reply, kept only if all of
    them were."""
    if not line:
        return None
    *unreceived, line = line.split("\n")
    problem = binding_problem(line, turn.run_id, turn.round, turn.nonce, payload_hash)
    if problem is not None:
        return problem
    for earlier in unreceived:
        problem = ledger.unreceived_problem(device, earlier)
        if problem is not None:
            return problem
        ledger.keep_device_entry(device, earlier)
    ledger.keep_device_entry(device, line)
    return None


def _evaluation_messages(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    census: Census,
    turn: RoundTurn,
    ledger: ServerLedger,
) -> list[Message]:
    """The evaluate messages of ``arrays`` for the held-out devices (none without any)."""
    heldout = census.nodes_with_role("heldout")
    if not heldout:
        # Nothing to ask; Flower's strategies would wait for nodes forever.
        log.warning("round %d: no held-out device; nothing evaluated", turn.round)
        return []
    eval_grid = NodeSubsetGrid(grid, heldout)
    messages = list(strategy.configure_evaluate(turn.round, arrays, turn.config(), eval_grid))
    _attach_receipts(messages, census, ledger, turn.run_id)
    return messages


def _evaluation_metrics(
    replies: list[Message],
    messages: list[Message],
    census: Census,
    turn: RoundTurn,
    settings: FederationSettings,
    ledger: ServerLedger,
) -> dict[str, Any]:
    """Pool the held-out replies to ``messages``, keeping each device's bound entry."""
    server_round = turn.round
    records, declined = [], {}
    for reply in replies:
        device = census.device_id(replying_node(reply, messages))
        if reply.has_error():
            log.warning(
                "round %d: held-out device %s failed to evaluate: %s",
                server_round,
                device,
                reply.error.reason,
            )
            continue
        try:
            answer = parse_reply("evaluate", reply.content, settings.num_classes)
        except WireError as exc:
            log.warning("round %d: held-out reply outside the wire schema: %s", server_round, exc)
            continue
        if not isinstance(answer, (Decline, EvaluateReply)):
            log.warning("round %d: held-out device %s: not an evaluate reply", server_round, device)
            continue
        payload = None if isinstance(answer, Decline) else counts_digest(answer.confusion)
        problem = _keep_bound_entry(ledger, device, answer.ledger_entry, turn, payload)
        if problem:
            log.warning("round %d: held-out device %s: %s", server_round, device, problem)
            continue
        if isinstance(answer, Decline):
            declined[device] = answer.reason
            log.warning(
                "round %d: held-out device %s declined: %s", server_round, device, answer.reason
            )
            continue
        records.append(answer)
    metrics = held_out_metrics(records, settings.num_classes)
    metrics["declined"] = declined
    return metrics
