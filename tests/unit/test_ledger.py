import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.privacy.accounting import epsilon_rdp
from common.privacy.ledger import (
    GENESIS_HASH,
    FileLines,
    Ledger,
    LedgerError,
    decode_entry,
    entry_hash,
    history_of,
    load_or_create_key,
    signature_is_valid,
)


def _append_round(ledger, server_round, sigma=1.2, q=0.1, steps=50, delta=1e-5):
    history = history_of(ledger.entries()) + [(sigma, q, steps)]
    return ledger.append(
        round=server_round,
        device_id="dev-a",
        event="train",
        mechanism="dp-sgd",
        sigma=sigma,
        q=q,
        steps=steps,
        delta=delta,
        epsilon=epsilon_rdp(history, delta),
        budget=0.0,
        accountant="rdp",
        note="",
    )


def test_entries_are_chained_signed_and_cumulative(tmp_path):
    ledger = Ledger(FileLines(tmp_path / "l.jsonl"), Ed25519PrivateKey.generate())
    first, second = _append_round(ledger, 1), _append_round(ledger, 2)
    assert first["prev_hash"] == GENESIS_HASH and first["seq"] == 0
    assert second["prev_hash"] == entry_hash(first) and second["seq"] == 1
    assert signature_is_valid(first) and signature_is_valid(second)
    assert second["epsilon"] == pytest.approx(epsilon_rdp([(1.2, 0.1, 100)], 1e-5))
    # Rounds of the same mechanism merge into one segment: the history stays one long.
    assert history_of(ledger.entries()) == [(1.2, 0.1, 100)]


def test_a_resumed_ledger_continues_the_chain_without_resetting(tmp_path):
    key_path = tmp_path / "key.pem"
    path = tmp_path / "l.jsonl"
    _append_round(Ledger(FileLines(path), load_or_create_key(key_path)), 1)
    # A restarted device: new objects, same files.
    resumed = Ledger(FileLines(path), load_or_create_key(key_path))
    entry = _append_round(resumed, 2)
    assert entry["seq"] == 1
    assert entry["public_key"] == resumed.entries()[0]["public_key"]
    assert entry["epsilon"] == pytest.approx(epsilon_rdp([(1.2, 0.1, 100)], 1e-5))
    assert (key_path.stat().st_mode & 0o777) == 0o600


def test_an_edited_field_invalidates_the_signature(tmp_path):
    ledger = Ledger(FileLines(tmp_path / "l.jsonl"), Ed25519PrivateKey.generate())
    entry = dict(_append_round(ledger, 1))
    entry["epsilon"] = 0.5
    assert not signature_is_valid(entry)


def test_lines_that_are_not_exact_entries_are_refused():
    with pytest.raises(LedgerError, match="not JSON"):
        decode_entry("{broken")
    with pytest.raises(LedgerError, match="extra \\['frames'\\]"):
        decode_entry(json.dumps({"frames": [1, 2]}))
