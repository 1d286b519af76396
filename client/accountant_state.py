"""The device's privacy state: its signed ledger, its key, and the accountant history.

The ledger is the single source of truth for the DP-SGD accountant: the
history (sigma, q, steps per round) is read back from the device's own ledger
entries, so an entry that was written is counted exactly once, and nothing
resets on a restart. Where the state lives:

* a deployed SuperNode names a directory in its node config (``state-dir``):
  the ledger is an fsynced JSONL file there and the Ed25519 key a 0600 file;
* a simulated device (no ``state-dir``) keeps the same lines and key in the
  ClientApp's ``context.state``, which Flower keeps across rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context

from common.privacy.accounting import Segment
from common.privacy.ledger import (
    FileLines,
    Ledger,
    LineStore,
    history_of,
    load_or_create_key,
    load_private_key,
    private_key_bytes,
)

LEDGER_FILE = "privacy_ledger.jsonl"
KEY_FILE = "device_ed25519.pem"
_STATE_KEY = "fedmer-privacy-state"


class ContextLines:
    """Ledger lines kept in ``context.state`` (simulated devices have no disk of their own)."""

    def __init__(self, context: Context) -> None:
        self._context = context

    def _record(self) -> ConfigRecord:
        records = self._context.state.config_records
        if _STATE_KEY not in records:
            records[_STATE_KEY] = ConfigRecord({"lines": [], "key": b""})
        return records[_STATE_KEY]

    def read_lines(self) -> list[str]:
        return [str(line) for line in self._record()["lines"]]

    def append_line(self, line: str) -> None:
        record = self._record()
        record["lines"] = [*self.read_lines(), line]

    def key(self) -> Ed25519PrivateKey:
        record = self._record()
        if not record["key"]:
            record["key"] = private_key_bytes(Ed25519PrivateKey.generate())
        return load_private_key(bytes(record["key"]))


@dataclass
class DevicePrivacyState:
    ledger: Ledger

    def history(self) -> list[Segment]:
        """The DP-SGD accountant history: every step this device ever took."""
        return history_of(self.ledger.entries())

    def calibrated_sigma(self) -> float | None:
        """The noise multiplier chosen once for the run, if the device already trained."""
        trained = [e for e in self.ledger.entries() if e["event"] == "train"]
        return float(trained[0]["sigma"]) if trained else None


def open_device_state(context: Context, state_dir: str) -> DevicePrivacyState:
    """The device's ledger, on disk if its node config names a state dir."""
    if state_dir:
        directory = Path(state_dir)
        store: LineStore = FileLines(directory / LEDGER_FILE)
        key = load_or_create_key(directory / KEY_FILE)
    else:
        lines = ContextLines(context)
        store, key = lines, lines.key()
    return DevicePrivacyState(Ledger(store, key))
