"""`flwr run .` works offline against a local simulation SuperLink, which is stopped."""

from __future__ import annotations

import json

from simulations.flower_processes import local_superlink_pids
from simulations.flwr_local import materialized_flwr_run


def test_flwr_run_dot_trains_and_stops_its_superlink(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDMER_CACHE", str(tmp_path / "cache"))
    # A free port pair so a developer's own local SuperLink is never touched.
    monkeypatch.setenv("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", "39191")
    monkeypatch.setenv("FLWR_LOCAL_CONTROL_API_PORT", "39193")
    out = tmp_path / "run"
    result = materialized_flwr_run(
        [
            "num-server-rounds=2",
            "cohort-subjects=4",
            "cohort-clips-per-class=2",
            "num-heldout-subjects=1",
            f"out-dir='{out}'",
        ],
        timeout=600,
        flwr_home=tmp_path / "flwr-home",
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "[fedmer] round  2/2" in log
    results = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in results["rounds"]] == [1, 2]
    assert results["rounds"][1]["epsilon"] > results["rounds"][0]["epsilon"] > 0
    # The SuperLink really ran under this FLWR_HOME, and was stopped by its PID.
    assert (tmp_path / "flwr-home" / "local-superlink" / "superlink.log").exists()
    assert local_superlink_pids(tmp_path / "flwr-home") == []
    # Each of Flower's simulated devices read its own materialized folder.
    assert sorted(results["devices"].values()) == ["heldout", "train", "train", "train"]
    # 3 training ledgers and the held-out device's evaluation releases.
    assert len(list((out / "devices").glob("partition-*/state/privacy_ledger.jsonl"))) == 4
