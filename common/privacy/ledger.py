"""The privacy ledger: an append-only, hash-chained, signed record of privacy spent.

One ledger is one chain of JSON lines, kept by one party: a device (its
sample-level DP-SGD spend, signed with the device's Ed25519 key) or the server
(its client-level DP-FedAvg releases, signed with the server's key). The server
also keeps verbatim copies of the signed entries devices send it, one file per
device, so an auditor can check them without access to the devices.

Each entry names the hash of the entry before it, so deleting, reordering or
editing a line breaks the chain; the signature covers every field except
itself, so editing a line (epsilon, sigma, ...) and re-hashing the rest of the
chain still fails verification unless the signer's private key is known.

Lines are written with flush + fsync before the call returns, so an entry that
was acknowledged (sent to the server) survives a crash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from common.privacy.accounting import Segment

GENESIS_HASH = "0" * 64

# Every entry has exactly these fields; the payload guard and the auditor rely on it.
ENTRY_FIELDS = (
    "seq",  # position in this chain, from 0: a deleted line shows as a gap
    "run_id",  # the Flower run this entry belongs to ("" when there is none)
    # The coordinator's random nonce for this round: an entry cannot be replayed
    # into another round or run, whose nonce the device could not have known.
    "nonce",
    "round",
    "device_id",  # the device (or "server") whose spend this is
    # "train", "refused" (policy or budget guard), "release", or "restored" (the
    # device's ledger was lost and restored from copies: the gap, marked)
    "event",
    # "dp-sgd" (sample-level), "gaussian-counts" (held-out evaluation counts),
    # "dp-fedavg" (client-level) or "none" (a non-private baseline: ε = ∞)
    "mechanism",
    "sigma",
    "q",
    "steps",  # steps taken in this entry's round (0 for a refusal)
    "delta",
    "epsilon",  # cumulative epsilon after this entry
    "budget",  # the epsilon budget in force (0 = none)
    "accountant",
    "note",  # short human-readable reason, e.g. why a round was refused
    # SHA-256 of what the reply carries (the model sent, the counts released):
    # "" for a refusal, and under SecAgg+, where the coordinator sees masked values only.
    "update_hash",
    "prev_hash",
    "public_key",  # base64 raw Ed25519 public key of the signer
    "signature",  # base64 Ed25519 signature of every other field
)
EVENTS = ("train", "refused", "release", "restored")


class LedgerError(ValueError):
    """A ledger line is malformed or breaks the chain."""


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    """The signed bytes: every field but the signature, in a fixed encoding."""
    body = {k: entry[k] for k in ENTRY_FIELDS if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 of the whole entry (signature included): what the next entry chains to."""
    full = {k: entry[k] for k in ENTRY_FIELDS}
    return hashlib.sha256(
        json.dumps(full, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def encode_entry(entry: Mapping[str, Any]) -> str:
    """One JSON line (no newline). Infinity is allowed: a non-private run spends ∞."""
    return json.dumps({k: entry[k] for k in ENTRY_FIELDS}, separators=(",", ":"))


def decode_entry(line: str) -> dict[str, Any]:
    """Parse one line, refusing anything that is not exactly a ledger entry."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LedgerError(f"not JSON ({exc.msg})") from None
    if not isinstance(entry, dict):
        raise LedgerError("not a JSON object")
    if set(entry) != set(ENTRY_FIELDS):
        extra = sorted(set(entry) - set(ENTRY_FIELDS))
        missing = sorted(set(ENTRY_FIELDS) - set(entry))
        raise LedgerError(f"fields differ from a ledger entry (extra {extra}, missing {missing})")
    for key, value in entry.items():
        if isinstance(value, (dict, list)) or value is None:
            raise LedgerError(f"field {key!r} is not a scalar")
    if entry["event"] not in EVENTS:
        raise LedgerError(f"unknown event {entry['event']!r}")
    return entry


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError("the signing key is not an Ed25519 key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signer's key file, created (readable by its owner only) on first use."""
    if path.exists():
        return load_private_key(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_bytes(key))
        handle.flush()
        os.fsync(handle.fileno())
    return key


def signature_is_valid(entry: Mapping[str, Any]) -> bool:
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key"]))
        public.verify(base64.b64decode(entry["signature"]), canonical_bytes(entry))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class LineStore(Protocol):
    """Where a ledger's lines live: a file on disk, or a simulated device's state."""

    def read_lines(self) -> list[str]: ...

    def append_line(self, line: str) -> None: ...


class FileLines:
    """An append-only JSONL file; every append is fsynced before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [line for line in lines if line.strip()]

    def append_line(self, line: str) -> None:
        new_file = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if new_file:
            # The directory entry of a new file must be durable too.
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


@dataclass
class Ledger:
    """A hash-chained, signed ledger over a :class:`LineStore`."""

    store: LineStore
    signer: Ed25519PrivateKey

    def entries(self) -> list[dict[str, Any]]:
        return [decode_entry(line) for line in self.store.read_lines()]

    def append(self, **fields: Any) -> dict[str, Any]:
        """Sign and append one entry; ``seq`` and ``prev_hash`` are filled in here."""
        existing = self.entries()
        entry: dict[str, Any] = {k: None for k in ENTRY_FIELDS}
        entry.update({"run_id": "", "nonce": "", "update_hash": ""})
        entry.update(fields)
        entry["seq"] = len(existing)
        entry["prev_hash"] = entry_hash(existing[-1]) if existing else GENESIS_HASH
        entry["public_key"] = public_key_b64(self.signer)
        entry["signature"] = ""
        missing = [k for k, v in entry.items() if v is None]
        if missing:
            raise LedgerError(f"ledger entry lacks {missing}")
        entry = sign_entry(entry, self.signer)
        self.store.append_line(encode_entry(entry))
        return entry


def sign_entry(entry: Mapping[str, Any], signer: Ed25519PrivateKey) -> dict[str, Any]:
    """The entry signed: its signature covers every other field."""
    signed = {**entry, "signature": ""}
    signed["signature"] = base64.b64encode(signer.sign(canonical_bytes(signed))).decode()
    return signed


def append_verbatim(path: Path, line: str) -> dict[str, Any]:
    """Keep a copy of an entry someone else signed (the server's copy of device entries).

    The line is stored exactly as received, so its signature stays checkable;
    only its form is validated here, the chain is the auditor's job.
    """
    entry = decode_entry(line)
    FileLines(path).append_line(encode_entry(entry))
    return entry


def history_of(entries: Sequence[Mapping[str, Any]]) -> list[Segment]:
    """The accountant history these entries record, one segment per distinct (σ, q).

    Composition only adds up steps of the same mechanism, so entries with the
    same σ and q are merged into one segment: the history (and the cost of
    every ε computed from it) stays the same size however many rounds pass.
    """
    steps: dict[tuple[float, float], int] = {}
    for e in entries:
        if e["event"] in ("train", "release") and int(e["steps"]) > 0:
            key = (float(e["sigma"]), float(e["q"]))
            steps[key] = steps.get(key, 0) + int(e["steps"])
    return [(sigma, q, n) for (sigma, q), n in steps.items()]
