"""What only the coordinator's signed run manifest can show about a run's ledgers.

A chain on its own cannot show that its tail was cut off, that it was
replaced by an older run's chain, or that a whole device's file is missing.
The run manifest (``ledger/manifest.json``, signed by the coordinator after
every round) names every round's nonce and, for every device, the head of
its chain as the coordinator received it. Checked here:

* the manifest's signature, by the coordinator key the registry names;
* every device in the manifest has its file; every file is in the manifest;
* each file holds exactly the entries the manifest receipted: the same count,
  the same first seq, and the same head (seq and hash);
* every entry names one of the manifest's runs (a resumed run folder holds
  the entries of the runs it resumed) and carries the nonce of its round in
  that run;
* the coordinator's own chain ends at the receipted head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common.privacy.key_registry import KeyRegistry
from common.privacy.ledger import LedgerError, decode_entry, entry_hash
from common.privacy.signed_document import DocumentError, read_document

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "fedmer-run-manifest"
RECEIPT_FORMAT = "fedmer-ledger-receipt"


def read_manifest(path: Path, registry: KeyRegistry | None) -> dict[str, Any]:
    """The manifest, its signature checked (against the registry's coordinator key)."""
    trusted = registry.coordinator_public_key if registry is not None else None
    return read_document(path, MANIFEST_FORMAT, trusted)


def _entries(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(decode_entry(line))
            except LedgerError:
                break  # the chain audit names the unreadable line
    return out


def manifest_problems(
    manifest: Mapping[str, Any], root: Path, chain_files: Sequence[Path]
) -> list[str]:
    """Everything about the ledgers under ``root`` that contradicts ``manifest``."""
    problems: list[str] = []
    where = f"{root / MANIFEST_FILE}"
    run_id = str(manifest.get("run_id", ""))
    run_ids = [str(r) for r in manifest.get("run_ids", [run_id])]
    nonces = {
        (str(r.get("run_id", run_id)), int(r["round"])): str(r["nonce"])
        for r in manifest.get("rounds", [])
    }
    devices: dict[str, Mapping[str, Any]] = dict(manifest.get("devices", {}))
    listed = {(root / str(d["file"])).resolve(): name for name, d in devices.items()}
    server = manifest.get("server_chain", {})
    server_path = (root / str(server.get("file", "server.jsonl"))).resolve()
    for path in chain_files:
        resolved = Path(path).resolve()
        if resolved not in listed and resolved != server_path:
            problems.append(f"{path}: not in the run manifest (no device of this run sent it)")
    for device, receipt in devices.items():
        path = root / str(receipt["file"])
        if not path.is_file():
            problems.append(
                f"{where}: device {device!r}: its ledger {receipt['file']} is missing "
                f"({receipt['entries']} entries were receipted)"
            )
            continue
        problems.extend(_receipt_problems(path, device, receipt, run_ids, nonces))
    if server_path.is_file() or int(server.get("entries", 0)):
        entries = _entries(server_path) if server_path.is_file() else []
        head = entry_hash(entries[-1]) if entries else ""
        if len(entries) != int(server.get("entries", 0)) or head != server.get("head_hash", ""):
            problems.append(
                f"{server_path}: the coordinator's chain has {len(entries)} entries, the "
                f"manifest receipted {server.get('entries', 0)} ending at another head"
            )
    return problems


def _receipt_problems(
    path: Path,
    device: str,
    receipt: Mapping[str, Any],
    run_ids: Sequence[str],
    nonces: Mapping[tuple[str, int], str],
) -> list[str]:
    problems = []
    entries = _entries(path)
    if not entries:
        return [f"{path}: device {device!r}: empty, but {receipt['entries']} entries receipted"]
    first, last = entries[0], entries[-1]
    if int(first["seq"]) != int(receipt["first_seq"]):
        problems.append(
            f"{path}: device {device!r}: starts at seq {first['seq']}, the run's first "
            f"receipted entry is seq {receipt['first_seq']}"
        )
    if len(entries) != int(receipt["entries"]) or entry_hash(last) != receipt["head_hash"]:
        problems.append(
            f"{path}: device {device!r}: {len(entries)} entries ending at seq {last['seq']}, "
            f"but the coordinator receipted {receipt['entries']} ending at seq "
            f"{receipt['head_seq']} (truncated, extended or replaced)"
        )
    for line, entry in enumerate(entries, start=1):
        at = f"{path}:{line} (seq {entry['seq']}, device {entry['device_id']}, round {entry['round']})"
        if str(entry["run_id"]) not in run_ids:
            shown = ", ".join(repr(r) for r in run_ids)
            problems.append(
                f"{at}: entry of run {entry['run_id']!r}, not of this run folder's ({shown})"
            )
        elif entry["nonce"] != nonces.get((str(entry["run_id"]), int(entry["round"]))):
            problems.append(f"{at}: nonce is not the coordinator's for round {entry['round']}")
    return problems


def missing_inputs(registry: KeyRegistry | None, manifest: Mapping[str, Any] | None) -> list[str]:
    """What this audit cannot detect for lack of a registry or a manifest."""
    gaps = []
    if registry is None:
        gaps.append(
            "no key registry (--registry and --operator-key): signatures are checked only "
            "against each chain's own first key, so a chain re-signed with a fresh key, a "
            "renamed device or a forged entry is not detected"
        )
    if manifest is None:
        gaps.append(
            "no run manifest (--manifest): a truncated chain, a missing device file or a "
            "chain replayed from another run is not detected"
        )
    return gaps


__all__ = [
    "DocumentError",
    "MANIFEST_FILE",
    "manifest_problems",
    "missing_inputs",
    "read_manifest",
]
