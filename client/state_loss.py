"""A device whose ledger is behind what the coordinator acknowledged: its state was lost.

A device whose state directory is lost (a disk failure, a reinstall, an old
backup restored) would, left to itself, open a new ledger and account ε from
0 for people it has already spent privacy on.  The coordinator's receipts are
the evidence that cannot be lost with the directory: with each instruction
after the first, the coordinator sends its signed receipt of the head of the
device's chain (seq, hash).  When a valid receipt names a seq this device's
ledger does not reach, the device writes the receipt to ``state_gap.json`` and
from then on refuses every training round and every release, whatever the
run, until an operator restores the ledger with ``fedmer restore-ledger``:

* from copies that reach the acknowledged head (the coordinator's
  ``ledger/devices/<id>.jsonl`` of each run the device took part in, or a
  backup), every entry signed by this device's own key, the chain unbroken
  from seq 0, and the entry at the receipt's seq bearing the receipt's hash.
  The restored chain continues, so ε continues; a signed ``restored`` entry
  marks the gap for auditors;
* or, when no such copy exists (or the ledger key was lost too), by retiring
  the device from private training: it keeps refusing, and says why.

The refusals write no ledger entry: the ledger here is the one that is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.accountant_state import KEY_FILE, LEDGER_FILE
from client.privacy_policy import Refusal
from common.atomic_io import write_bytes_atomic, write_json_atomic
from common.privacy.ledger import (
    GENESIS_HASH,
    LedgerError,
    decode_entry,
    encode_entry,
    entry_hash,
    load_or_create_key,
    public_key_b64,
    sign_entry,
    signature_is_valid,
)

GAP_FILE = "state_gap.json"


class RestoreError(ValueError):
    """The copies offered cannot restore this device's ledger; the message says why."""


def record_gap(state_dir: Path, receipt: dict[str, Any], ledger_entries: int) -> None:
    """Keep the evidence of a lost state (the first receipt that showed it)."""
    path = Path(state_dir) / GAP_FILE
    if path.exists():
        return
    write_json_atomic(path, {"receipt": receipt, "ledger_entries_found": ledger_entries})


def gap_refusal(state_dir: str) -> Refusal | None:
    """The refusal of a device whose state was lost and is not restored, or None."""
    path = Path(state_dir) / GAP_FILE if state_dir else None
    if path is None or not path.exists():
        return None
    gap = json.loads(path.read_text())
    receipt = gap.get("receipt", {})
    if gap.get("retired"):
        return Refusal("state-lost", f"device retired after losing its ledger: {gap['retired']}")
    return Refusal(
        "state-lost",
        f"the coordinator acknowledged seq {receipt.get('head_seq')} of this device's ledger, "
        f"which holds {gap.get('ledger_entries_found')} entries here: its state was lost; "
        f"an operator must run `fedmer restore-ledger {state_dir}`",
    )


@dataclass(frozen=True)
class Restored:
    entries: int  # entries installed from the copies
    head_seq: int
    epsilon: float  # the cumulative ε the chain had reached, which it continues from


def _merged_chain(copies: list[Path]) -> list[dict[str, Any]]:
    """The entries of all copies, one per seq, checked to agree where they overlap."""
    by_seq: dict[int, tuple[dict[str, Any], Path]] = {}
    for path in copies:
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = decode_entry(line)
            except (LedgerError, ValueError, KeyError) as exc:
                raise RestoreError(f"{path}:{number}: not a ledger entry ({exc})") from exc
            seq = int(entry["seq"])
            if seq in by_seq and entry_hash(by_seq[seq][0]) != entry_hash(entry):
                raise RestoreError(
                    f"{path}:{number}: seq {seq} differs from the same seq in {by_seq[seq][1]}"
                )
            by_seq[seq] = (entry, path)
    return [by_seq[seq][0] for seq in sorted(by_seq)]


def restore_ledger(state_dir: Path, copies: list[Path]) -> Restored:
    """Install the device's chain from `copies`, verified, and mark the gap in it."""
    state_dir = Path(state_dir)
    gap_path = state_dir / GAP_FILE
    if not gap_path.exists():
        raise RestoreError(f"{state_dir}: no {GAP_FILE}: this device's ledger was not found lost")
    receipt = json.loads(gap_path.read_text())["receipt"]
    key_path = state_dir / KEY_FILE
    if not key_path.exists():
        raise RestoreError(
            f"{key_path}: the ledger key is lost too, so no copy can be shown to be this "
            "device's; restore the key from its backup, or retire the device (--retire)"
        )
    key = load_or_create_key(key_path)
    own_key = public_key_b64(key)
    chain = _merged_chain(copies)
    if not chain:
        raise RestoreError("the copies hold no entries")
    previous_hash = GENESIS_HASH
    for expected, entry in enumerate(chain):
        where = f"seq {entry['seq']}"
        if int(entry["seq"]) != expected:
            raise RestoreError(
                f"the copies skip from seq {expected - 1} to {entry['seq']}: an earlier run's "
                "copy is missing (pass every run's ledger/devices/<id>.jsonl)"
            )
        if entry["prev_hash"] != previous_hash:
            raise RestoreError(f"{where}: prev_hash does not link to seq {expected - 1}")
        if entry["public_key"] != own_key:
            raise RestoreError(f"{where}: signed by another key than this device's")
        if not signature_is_valid(entry):
            raise RestoreError(f"{where}: signature invalid (the entry was altered)")
        if entry["device_id"] != receipt["device_id"]:
            raise RestoreError(
                f"{where}: device {entry['device_id']!r}, not {receipt['device_id']!r}"
            )
        previous_hash = entry_hash(entry)
    head = int(receipt["head_seq"])
    if len(chain) <= head:
        raise RestoreError(
            f"the copies end at seq {len(chain) - 1}, but the coordinator acknowledged seq "
            f"{head}: restoring them would forget spends (a newer copy is needed)"
        )
    if entry_hash(chain[head]) != receipt["head_hash"]:
        raise RestoreError(
            f"seq {head} of the copies is not the entry the coordinator acknowledged"
        )
    last = chain[-1]
    restored = dict(last)
    restored.update(
        seq=len(chain),
        run_id="",
        nonce="",
        event="restored",
        sigma=0.0,
        q=0.0,
        steps=0,
        update_hash="",
        note=f"ledger lost and restored from {len(copies)} copy(ies); coordinator receipt seq {head}",
        prev_hash=previous_hash,
        public_key=own_key,
        signature="",
    )
    marker = sign_entry(restored, key)
    lines = "".join(encode_entry(e) + "\n" for e in [*chain, marker])
    write_bytes_atomic(state_dir / LEDGER_FILE, lines.encode())
    gap_path.rename(state_dir / f"{GAP_FILE}.restored")
    return Restored(len(chain), head, float(last["epsilon"]))


def retire(state_dir: Path, reason: str) -> None:
    """Keep the device refusing for good (no copy can restore its ledger)."""
    path = Path(state_dir) / GAP_FILE
    if not path.exists():
        raise RestoreError(f"{state_dir}: no {GAP_FILE}: this device's ledger was not found lost")
    gap = json.loads(path.read_text())
    gap["retired"] = reason or "no copy of its ledger could be restored"
    write_json_atomic(path, gap)
