"""The server's side of the privacy ledger.

Two kinds of file under ``<run>/ledger/``:

* ``server.jsonl``: the server's own chain, signed with the server's key:
  one ``release`` entry per client-level DP-FedAvg aggregate;
* ``devices/<device-id>.jsonl``: verbatim copies of the signed entries each
  device sent with its replies (``train`` and ``refused``), so an auditor can
  verify every device's chain and signatures without access to the device.

A resumed run (same run folder) continues all chains where they stopped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from common.privacy.ledger import FileLines, Ledger, append_verbatim, load_or_create_key

LEDGER_DIR = "ledger"
SERVER_LEDGER = "server.jsonl"
DEVICE_LEDGERS = "devices"
SERVER_KEY = "server_ed25519.pem"


class ServerLedger:
    def __init__(self, out_dir: Path) -> None:
        self.root = out_dir / LEDGER_DIR
        self.chain = Ledger(
            FileLines(self.root / SERVER_LEDGER), load_or_create_key(self.root / SERVER_KEY)
        )

    def keep_device_entry(self, device_id: str, line: str) -> dict[str, Any]:
        """Store a device's signed entry exactly as received."""
        return append_verbatim(self.device_path(device_id), line)

    def device_path(self, device_id: str) -> Path:
        # Device ids come from devices: keep them from naming paths outside the folder.
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device_id) or "unnamed"
        return self.root / DEVICE_LEDGERS / f"{safe}.jsonl"

    def paths(self) -> list[Path]:
        return [self.root / SERVER_LEDGER, *sorted((self.root / DEVICE_LEDGERS).glob("*.jsonl"))]
