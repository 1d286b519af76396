"""Checkpoints: persisted every round, atomic, integrity-checked, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from common.models import build_model
from server.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    arrays_from_record,
    config_fingerprint,
    record_from_arrays,
)


def _checkpoint(round_: int, fp: str = "") -> Checkpoint:
    torch.manual_seed(round_)
    arrays = arrays_from_record(ArrayRecord(build_model("ststnet", num_classes=3).state_dict()))
    return Checkpoint(
        round=round_,
        arrays=arrays,
        strategy={"name": "trimmed-mean", "trim": 0.2},
        client_accountant={"steps": [1, 2][:round_], "z": 1.1},
        ledger_position={"seq": round_ * 4, "last_hash": "ab" * 32},
        results={"rounds": [{"round": r} for r in range(1, round_ + 1)]},
        config_fingerprint=fp,
    )


def test_fresh_run_has_no_checkpoint(tmp_path):
    assert CheckpointStore(tmp_path).latest() is None


def test_round_trip_restores_everything(tmp_path):
    store = CheckpointStore(tmp_path)
    saved = _checkpoint(2, fp="x")
    store.save(_checkpoint(1, fp="x"))
    store.save(saved)
    loaded = store.latest("x")
    assert loaded.round == 2 and loaded.next_round == 3
    assert list(loaded.arrays) == list(saved.arrays)
    for name in saved.arrays:
        np.testing.assert_array_equal(loaded.arrays[name], saved.arrays[name])
    assert loaded.strategy == saved.strategy
    assert loaded.client_accountant == saved.client_accountant
    assert loaded.ledger_position == saved.ledger_position
    assert loaded.results == saved.results
    # And the arrays go back into a model unchanged.
    model = build_model("ststnet", num_classes=3)
    model.load_state_dict(record_from_arrays(loaded.arrays).to_torch_state_dict())


def test_corrupt_latest_falls_back_to_previous_intact_round(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(1))
    store.save(_checkpoint(2))
    (store.directory / "round-0002.npz").write_bytes(b"torn write")
    assert store.latest().round == 1


def test_uncommitted_round_is_ignored(tmp_path):
    """A crash after writing round 3's files but before latest.json: resume at 3, not 4."""
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(1))
    store.save(_checkpoint(2))
    pointer = json.loads((store.directory / "latest.json").read_text())
    store.save(_checkpoint(3))
    (store.directory / "latest.json").write_text(json.dumps(pointer))
    assert store.latest().round == 2


def test_different_config_refuses_to_resume(tmp_path):
    cfg = {"learning-rate": 0.5, "num-server-rounds": 3, "target-epsilon": 8.0}
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(1, fp=config_fingerprint(cfg)))
    # Extending the run is allowed ...
    assert store.latest(config_fingerprint({**cfg, "num-server-rounds": 5})).round == 1
    # ... changing the privacy or training settings is not.
    with pytest.raises(CheckpointError, match="different run config"):
        store.latest(config_fingerprint({**cfg, "target-epsilon": 4.0}))


def test_only_recent_checkpoints_are_kept_and_round_zero_refused(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for r in range(1, 5):
        store.save(_checkpoint(r))
    assert sorted(p.name for p in store.directory.glob("round-*.json")) == [
        "round-0003.json",
        "round-0004.json",
    ]
    assert not (store.directory / "round-0001.npz").exists()
    with pytest.raises(ValueError):
        store.save(_checkpoint(0))


def test_no_temporary_files_left_behind(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(1))
    assert not [p for p in store.directory.iterdir() if p.name.startswith(".")]
