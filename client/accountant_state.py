"""The device's privacy state: its signed ledger, its key, and the accountant history.

The ledger is the single source of truth for the DP-SGD accountant: the
history (sigma, q, steps per round) is read back from the device's own ledger
entries, so an entry that was written is counted exactly once, and nothing
resets on a restart. The state lives in the directory the node config names
(``state-dir``): the ledger is an fsynced JSONL file there and the Ed25519
key a 0600 file. Simulated devices get one from the harness, like any other
device. A device without one refuses every private mechanism: a ledger kept
in memory would reset its ε on every restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.privacy.accounting import Segment
from common.privacy.ledger import (
    FileLines,
    Ledger,
    history_of,
    load_or_create_key,
)

LEDGER_FILE = "privacy_ledger.jsonl"
KEY_FILE = "device_ed25519.pem"
_STATE_KEY = "fedmer-privacy-state"


@dataclass
class DevicePrivacyState:
    ledger: Ledger

    def history(self) -> list[Segment]:
        """The DP-SGD accountant history: every step this device ever took."""
        return history_of(self.ledger.entries())

    def pinned_sigma(self, run_id: str, mechanism: str) -> float | None:
        """The noise multiplier this run chose for ``mechanism``, if it released anything yet.

        σ is calibrated once per run for every step the run plans; a later run
        (another run id) calibrates its own, within what the budget has left.
        """
        for entry in self.ledger.entries():
            spent = entry["event"] in ("train", "release")
            if spent and entry["run_id"] == run_id and entry["mechanism"] == mechanism:
                return float(entry["sigma"])
        return None


def open_device_state(state_dir: str) -> DevicePrivacyState | None:
    """The device's ledger in its state dir; None when the node config names none."""
    if not state_dir:
        return None
    directory = Path(state_dir)
    return DevicePrivacyState(
        Ledger(FileLines(directory / LEDGER_FILE), load_or_create_key(directory / KEY_FILE))
    )
