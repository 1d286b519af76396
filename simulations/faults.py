"""Misbehaving devices, for robustness experiments and fault tests only.

These are Flower mods that the experiment and test harnesses attach to a
simulated device's ClientApp (``client.client_app.build_client_app``); the
production ClientApp has none, and no run-config or node-config key can
switch one on. They run inside the payload guard, so even a poisoned update
must still fit the wire schema to leave the device.

* :class:`PoisonUpdates`: the named devices send a sign-flipped or scaled
  update instead of their honest one, and, as a malicious device holding its
  own key would, sign their ledger entry over what they send (rewriting it in
  their own ledger), so the coordinator's binding of entry to payload holds;
* :class:`DropOut`: the named devices fail in the middle of a train message,
  as a device losing power would (a SecAgg+ dropout cannot be produced any
  other way inside one simulation);
* :class:`LoseState`: a device's state directory loses its ledger and
  receipts (its keys restored from their backup) just before one round, as a
  disk failure between rounds would;
* :class:`LoseReply`: a device trains and signs its entry, and the reply never
  arrives, as when the coordinator dies in the middle of a round.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable

from client.accountant_state import KEY_FILE, LEDGER_FILE
from client.local_data import device_node_config
from client.receipts import COORDINATOR_KEY_FILE, RECEIPTS_FILE
from common.privacy.ledger import decode_entry, encode_entry, load_or_create_key, sign_entry
from common.run_config import RunConfig
from common.wire import INFO, LEDGER_ENTRY, arrays_digest, server_round_of
from simulations.device_folders import device_id_for

# mode -> (sign, default scale)
POISON_MODES = {"sign-flip": (-1.0, 1.0), "scale": (1.0, 10.0)}


def poisoned_arrays(
    global_arrays: ArrayRecord, trained: ArrayRecord, mode: str, scale: float | None
) -> ArrayRecord:
    """``g + s * (w - g)``: the honest update reversed (sign-flip) or scaled."""
    if mode not in POISON_MODES:
        raise ValueError(f"poison mode {mode!r} must be one of {sorted(POISON_MODES)}")
    sign, default = POISON_MODES[mode]
    factor = sign * (abs(scale) if scale is not None else default)
    out = ArrayRecord()
    for name, arr in trained.items():
        w = arr.numpy()
        g = global_arrays[name].numpy() if name in global_arrays else w
        if np.issubdtype(w.dtype, np.floating):
            w = (g + factor * (w - g)).astype(w.dtype)
        out[name] = Array(w)
    return out


def simulated_device_id(context: Context) -> str:
    """The device id of a simulated device, on either simulation transport."""
    node = context.node_config
    if "device-id" in node:
        return str(node["device-id"])
    return device_id_for(int(node.get("partition-id", -1)))


@dataclass(frozen=True)
class PoisonUpdates:
    """A mod: the devices in ``device_ids`` send poisoned train replies."""

    device_ids: frozenset[str]
    mode: str = "sign-flip"
    scale: float | None = None

    @classmethod
    def of(cls, device_ids: Iterable[str], mode: str, scale: float | None) -> PoisonUpdates:
        if mode not in POISON_MODES:
            raise ValueError(f"poison mode {mode!r} must be one of {sorted(POISON_MODES)}")
        return cls(frozenset(device_ids), mode, scale)

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        attacking = simulated_device_id(context) in self.device_ids
        if not attacking or not message.metadata.message_type.startswith("train"):
            return call_next(message, context)
        sent = dict(message.content.array_records.items())
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        for key, record in list(reply.content.array_records.items()):
            if key in sent:
                reply.content.array_records[key] = poisoned_arrays(
                    sent[key], record, self.mode, self.scale
                )
                _sign_what_is_sent(reply, reply.content.array_records[key], context)
        return reply


def _sign_what_is_sent(reply: Message, arrays: ArrayRecord, context: Context) -> None:
    """Re-sign the reply's ledger entry over the poisoned arrays, in the device's own ledger too."""
    info = reply.content.config_records.get(INFO)
    if info is None or not info.get(LEDGER_ENTRY):
        return
    *earlier, line = str(info[LEDGER_ENTRY]).split("\n")
    entry = decode_entry(line)
    if not entry["update_hash"]:
        return
    state = _state_dir(context)
    entry["update_hash"] = arrays_digest({k: v.numpy() for k, v in arrays.items()})
    signed = encode_entry(sign_entry(entry, load_or_create_key(state / KEY_FILE)))
    ledger = state / LEDGER_FILE
    lines = ledger.read_text().splitlines()
    assert decode_entry(lines[-1])["seq"] == entry["seq"], "the reply's entry is the ledger's last"
    ledger.write_text("\n".join([*lines[:-1], signed]) + "\n")
    info[LEDGER_ENTRY] = "\n".join([*earlier, signed])


@dataclass(frozen=True)
class DropOut:
    """A mod: the devices in ``device_ids`` fail on every train message."""

    device_ids: frozenset[str]

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        device = simulated_device_id(context)
        if device in self.device_ids and message.metadata.message_type.startswith("train"):
            raise RuntimeError(f"device {device} dropped out (injected fault)")
        return call_next(message, context)


def _state_dir(context: Context) -> Path:
    """The simulated device's state directory, from its node config."""
    cfg = RunConfig.from_flower(context.run_config)
    return Path(device_node_config(dict(context.node_config), cfg.simulation_dir).state_dir)


def _is_train_of(message: Message, context: Context, device_id: str, server_round: int) -> bool:
    """Is ``message`` the train instruction of ``server_round`` to ``device_id``?"""
    return (
        simulated_device_id(context) == device_id
        and message.metadata.message_type.startswith("train")
        and server_round_of(message.content) == server_round
    )


@dataclass(frozen=True)
class LoseState:
    """A mod: before its train message of ``at_round``, the device's ledger is lost."""

    device_id: str
    at_round: int

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if _is_train_of(message, context, self.device_id, self.at_round):
            state = _state_dir(context)
            for name in (LEDGER_FILE, RECEIPTS_FILE, COORDINATOR_KEY_FILE):
                (state / name).unlink(missing_ok=True)
        return call_next(message, context)


@dataclass(frozen=True)
class LoseReply:
    """A mod: the device trains round ``at_round`` (and signs its entry), then its reply is
    lost, as when the coordinator dies in the middle of the round."""

    device_id: str
    at_round: int

    def __call__(self, message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(message, context)
        if _is_train_of(message, context, self.device_id, self.at_round):
            raise RuntimeError(
                f"device {self.device_id}: reply of round {self.at_round} lost (injected fault)"
            )
        return reply
