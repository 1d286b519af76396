"""The server's side of the privacy ledger, and the signed run manifest.

Under ``<run>/ledger/``:

* ``server.jsonl``: the coordinator's own chain, signed with its key: one
  ``release`` entry per client-level DP-FedAvg aggregate;
* ``devices/<device-id>.jsonl``: verbatim copies of the signed entries each
  device sent with its replies, so an auditor can verify every device's chain
  and signatures without access to the device;
* each device also gets, with its next instruction, the coordinator's signed
  receipt of its chain head, which it keeps in its own state directory;
* ``manifest.json``: rewritten, signed, when each round starts and after it:
  the run id (and the ids of the runs this run folder resumed), every round's
  nonce with its run, and for each device the head of its chain as the
  coordinator received it (seq and hash: the receipt). Against it an auditor
  detects a truncated, replaced, replayed or missing chain.

The coordinator's signing key is **not** in the run folder, which is handed to
auditors: it lives at ``$FEDMER_COORDINATOR_KEY`` or, by default,
``$XDG_CONFIG_HOME/fedmer/coordinator_ed25519.pem`` (``~/.config``), created
(0600) on first use. Its public key goes into the operator's key registry.

A resumed run (same run folder) continues all chains and the manifest where
they stopped. A device that wrote an entry the killed coordinator never
received (a crash in the middle of a round) sends it with its next reply,
before the new one, and it is kept if it is the next of the chain here
(``unreceived_problem``), so the copy stays unbroken.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from common.atomic_io import write_json_atomic
from common.paths import signing_key_path
from common.privacy.ledger import (
    FileLines,
    Ledger,
    LedgerError,
    append_verbatim,
    decode_entry,
    entry_hash,
    load_or_create_key,
    public_key_b64,
)
from common.privacy.manifest_audit import MANIFEST_FILE, MANIFEST_FORMAT, RECEIPT_FORMAT
from common.privacy.signed_document import sign_document

LEDGER_DIR = "ledger"
SERVER_LEDGER = "server.jsonl"
DEVICE_LEDGERS = "devices"
COORDINATOR_KEY_ENV = "FEDMER_COORDINATOR_KEY"


def coordinator_key_path() -> Path:
    """Where the coordinator's Ed25519 signing key lives (outside every run folder)."""
    return signing_key_path(COORDINATOR_KEY_ENV, "coordinator_ed25519.pem")


class ServerLedger:
    def __init__(self, out_dir: Path, key_path: Path | None = None) -> None:
        self.root = Path(out_dir) / LEDGER_DIR
        key_path = Path(key_path or coordinator_key_path())
        if self.root.resolve() in key_path.resolve().parents:
            raise ValueError(f"{key_path}: the coordinator's key must not live in the run folder")
        self._key = load_or_create_key(key_path)
        self.chain = Ledger(FileLines(self.root / SERVER_LEDGER), self._key)
        # (run id, round) -> nonce; the run ids in the order this folder saw them.
        self._rounds: dict[tuple[str, int], str] = {}
        self._run_ids: list[str] = []
        self._heads: dict[str, dict[str, Any]] = {}
        # Every kept entry, by device, as received (and as read back on resume):
        # the per-round person-level figures need them without re-reading files.
        self._kept: dict[str, list[dict[str, Any]]] = {}
        self._resume()

    @property
    def public_key(self) -> str:
        return public_key_b64(self._key)

    def start_round(self, run_id: str, server_round: int, nonce: str) -> None:
        """Record the round's nonce, persisted before any device can use it: entries
        of a round the coordinator dies in still name a nonce the manifest holds."""
        self._rounds[(run_id, server_round)] = nonce
        self.write_manifest(run_id)

    def keep_device_entry(self, device_id: str, line: str) -> dict[str, Any]:
        """Store a device's signed entry exactly as received, and receipt its new head."""
        path = self.device_path(device_id)
        entry = append_verbatim(path, line)
        self._receipt(device_id, path, entry)
        return entry

    def unreceived_problem(self, device_id: str, line: str) -> str | None:
        """Why an entry a device resends is not the next of its chain here (None if it is).

        Only the entry right after the receipted head is taken: the device
        signed it in an earlier round the coordinator never heard back from."""
        head = self._heads.get(device_id)
        try:
            entry = decode_entry(line)
        except (LedgerError, ValueError) as exc:
            return f"resent ledger entry unreadable: {exc}"
        if entry["device_id"] != device_id:
            return f"resent ledger entry is device {entry['device_id']!r}'s"
        if head is None:
            return "resent ledger entry, but nothing of this device was received before"
        if int(entry["seq"]) != head["head_seq"] + 1 or entry["prev_hash"] != head["head_hash"]:
            return f"resent ledger entry seq {entry['seq']} does not follow seq {head['head_seq']}"
        if (str(entry["run_id"]), int(entry["round"])) not in self._rounds:
            return f"resent ledger entry names run {entry['run_id']!r} round {entry['round']}, unknown here"
        return None

    def device_path(self, device_id: str) -> Path:
        # Device ids come from devices: keep them from naming paths outside the folder.
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device_id) or "unnamed"
        return self.root / DEVICE_LEDGERS / f"{safe}.jsonl"

    def device_entries(self) -> dict[str, list[dict[str, Any]]]:
        """Every device's kept entries of this run, by device id."""
        return {device: list(entries) for device, entries in sorted(self._kept.items())}

    def paths(self) -> list[Path]:
        return [self.root / SERVER_LEDGER, *sorted((self.root / DEVICE_LEDGERS).glob("*.jsonl"))]

    def receipt_for(self, device_id: str, run_id: str) -> str:
        """The coordinator's signed receipt of the device's chain head ("" if none yet):
        sent with the device's next instruction, kept by the device as its evidence."""
        head = self._heads.get(device_id)
        if head is None:
            return ""
        body = {
            "run_id": run_id,
            "device_id": device_id,
            "head_seq": head["head_seq"],
            "head_hash": head["head_hash"],
        }
        return json.dumps(sign_document(RECEIPT_FORMAT, body, self._key), sort_keys=True)

    def write_manifest(self, run_id: str) -> Path:
        """Sign and (atomically) write the manifest of everything received so far."""
        server_entries = self.chain.entries()
        if run_id not in self._run_ids:
            self._run_ids.append(run_id)
        body = {
            "run_id": run_id,
            # Every run this folder holds entries of: a resumed run is a new flwr run.
            "run_ids": list(self._run_ids),
            "coordinator_public_key": self.public_key,
            "rounds": [
                {"run_id": r, "round": n, "nonce": nonce}
                for (r, n), nonce in sorted(self._rounds.items(), key=lambda kv: kv[0][::-1])
            ],
            "devices": dict(sorted(self._heads.items())),
            "server_chain": {
                "file": SERVER_LEDGER,
                "entries": len(server_entries),
                "head_hash": entry_hash(server_entries[-1]) if server_entries else "",
            },
        }
        path = self.root / MANIFEST_FILE
        write_json_atomic(path, sign_document(MANIFEST_FORMAT, body, self._key))
        return path

    def _receipt(self, device_id: str, path: Path, entry: dict[str, Any]) -> None:
        head = self._heads.get(device_id)
        if head is None:
            head = self._heads[device_id] = {
                "file": f"{DEVICE_LEDGERS}/{path.name}",
                "public_key": entry["public_key"],
                "first_seq": int(entry["seq"]),
                "first_prev_hash": entry["prev_hash"],
                "entries": 0,
            }
        head["entries"] += 1
        self._kept.setdefault(device_id, []).append(entry)
        head["head_seq"] = int(entry["seq"])
        head["head_hash"] = entry_hash(entry)

    def _resume(self) -> None:
        manifest = self.root / MANIFEST_FILE
        if manifest.is_file():
            previous = json.loads(manifest.read_text())
            self._run_ids = [str(r) for r in previous.get("run_ids", [previous.get("run_id", "")])]
            for item in previous.get("rounds", []):
                run = str(item.get("run_id", previous.get("run_id", "")))
                self._rounds[(run, int(item["round"]))] = str(item["nonce"])
        folder = self.root / DEVICE_LEDGERS
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            for line in FileLines(path).read_lines():
                entry = decode_entry(line)
                self._receipt(str(entry["device_id"]), path, entry)
