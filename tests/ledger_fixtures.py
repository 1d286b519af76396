"""A real signed ledger entry, for tests of messages that carry one."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.privacy.ledger import FileLines, Ledger, encode_entry


def signed_entry_line(tmp_path: Path, device_id: str = "dev-1") -> str:
    entry = Ledger(FileLines(tmp_path / "l.jsonl"), Ed25519PrivateKey.generate()).append(
        round=1,
        device_id=device_id,
        event="train",
        mechanism="dp-sgd",
        sigma=1.0,
        q=0.1,
        steps=10,
        delta=1e-5,
        epsilon=1.2,
        budget=0.0,
        accountant="rdp",
        note="",
    )
    return encode_entry(entry)
