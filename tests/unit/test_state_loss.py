"""The lost-state block on a device: it holds until restored or retired, and says why."""

from __future__ import annotations

import pytest

from client.state_loss import (
    GAP_FILE,
    RestoreError,
    gap_refusal,
    record_gap,
    restore_ledger,
    retire,
)


def test_no_gap_no_refusal(tmp_path):
    assert gap_refusal(str(tmp_path)) is None
    assert gap_refusal("") is None
    with pytest.raises(RestoreError, match="was not found lost"):
        retire(tmp_path, "x")


def test_the_first_evidence_is_kept_and_the_refusal_names_the_fix(tmp_path):
    record_gap(tmp_path, {"device_id": "d1", "head_seq": 7, "head_hash": "h"}, 0)
    record_gap(tmp_path, {"device_id": "d1", "head_seq": 9, "head_hash": "g"}, 0)  # kept: the first
    refusal = gap_refusal(str(tmp_path))
    assert refusal is not None and refusal.code == "state-lost"
    assert (
        "acknowledged seq 7" in refusal.detail
        and f"fedmer restore-ledger {tmp_path}" in refusal.detail
    )


def test_retired_stays_refused_with_the_reason(tmp_path):
    record_gap(tmp_path, {"device_id": "d1", "head_seq": 3, "head_hash": "h"}, 0)
    retire(tmp_path, "disk and key backup both lost")
    refusal = gap_refusal(str(tmp_path))
    assert refusal is not None and "retired" in refusal.detail
    assert "disk and key backup both lost" in refusal.detail
    assert (tmp_path / GAP_FILE).exists()


def test_without_the_ledger_key_no_copy_can_be_verified(tmp_path):
    record_gap(tmp_path, {"device_id": "d1", "head_seq": 3, "head_hash": "h"}, 0)
    copy = tmp_path / "copy.jsonl"
    copy.write_text("")
    with pytest.raises(RestoreError, match="the ledger key is lost too"):
        restore_ledger(tmp_path, [copy])
