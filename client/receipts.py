"""On the device: the coordinator's receipts of its ledger head, checked and kept.

With each instruction after the first, the coordinator sends a signed receipt
of the head of the device's chain as it received it (run, device, seq, hash).
The device checks the receipt against its own ledger (the entry at that seq
must have that hash) and against the coordinator key it pinned on the first
receipt (``coordinator.pub`` in its state directory), then appends it to
``receipts.jsonl``. A receipt is the device's evidence of what the coordinator
acknowledged: if the coordinator later presents a shorter or different chain,
the device's receipts contradict it. A receipt that fails a check is not kept;
the problem is logged and training goes on, since the device's own ledger is
what its accountant reads, with one exception: a receipt acknowledging more
than this ledger holds means the device's state was lost, and the device stops
(client/state_loss.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from client.state_loss import GAP_FILE, record_gap
from common.payload_guard import MAX_UNRECEIVED_ENTRIES
from common.privacy.ledger import FileLines, Ledger, encode_entry, entry_hash
from common.privacy.manifest_audit import RECEIPT_FORMAT
from common.privacy.signed_document import DocumentError, check_document

RECEIPTS_FILE = "receipts.jsonl"
COORDINATOR_KEY_FILE = "coordinator.pub"
log = logging.getLogger(__name__)


def receipt_problem(state_dir: Path, ledger: Ledger, device_id: str, receipt: str) -> str | None:
    """Why ``receipt`` is not acceptable (None when it is, and then it is kept)."""
    state_dir = Path(state_dir)
    pinned_path = state_dir / COORDINATOR_KEY_FILE
    pinned = pinned_path.read_text().strip() if pinned_path.exists() else None
    try:
        document = check_document(json.loads(receipt), RECEIPT_FORMAT, pinned, "receipt")
    except (json.JSONDecodeError, DocumentError) as exc:
        return f"coordinator receipt rejected: {str(exc).split(': ', 1)[-1]}"
    if document.get("device_id") != device_id:
        return f"coordinator receipt is for device {document.get('device_id')!r}"
    entries = ledger.entries()
    seq = int(document.get("head_seq", -1))
    if seq >= len(entries):
        record_gap(state_dir, document, len(entries))
        return (
            f"coordinator receipt acknowledges seq {seq}, but this device's ledger holds "
            f"{len(entries)} entries: its state was lost (evidence kept in {GAP_FILE})"
        )
    if seq < 0 or entry_hash(entries[seq]) != document.get("head_hash"):
        return f"coordinator receipt names a head (seq {seq}) this device's ledger does not have"
    if pinned is None:
        pinned_path.write_text(str(document["signed_by"]) + "\n")
    FileLines(state_dir / RECEIPTS_FILE).append_line(json.dumps(document, sort_keys=True))
    return None


def with_unreceived(ledger: Ledger, receipt: str, line: str) -> str:
    """The reply's ledger entry, preceded by the entries the coordinator lacks.

    A coordinator that died in the middle of a round never received the entry
    this device wrote for it; the resumed run's receipt names the head it did
    receive. The entries after that head and before ``line`` go first, one per
    line, so the coordinator's copy of the chain stays unbroken (it takes each
    only if it is the next of the chain it holds)."""
    if not line or not receipt:
        return line
    try:
        head = int(json.loads(receipt).get("head_seq", -1))
        seq = int(json.loads(line)["seq"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return line
    if seq <= head + 1:
        return line
    missing = [encode_entry(e) for e in ledger.entries() if head < int(e["seq"]) < seq]
    # The oldest first, as many as may leave with one reply (the payload guard's limit).
    return "\n".join([*missing[:MAX_UNRECEIVED_ENTRIES], line])


def keep_receipt(state_dir: str, ledger: Ledger, device_id: str, receipt: str) -> None:
    if not receipt or not state_dir:
        return
    problem = receipt_problem(Path(state_dir), ledger, device_id, receipt)
    if problem:
        log.warning("device %s: %s", device_id, problem)
