"""Person-level privacy end to end: every subject's ε is finite, ≤ the target, and
reproducible by an auditor with dp-accounting from the devices' own ledgers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.independent_accountant import ledger_rdp_epsilon

TARGET = 8.0


@pytest.fixture(scope="module")
def person_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("person-level")
    env = dict(os.environ, FEDMER_CACHE=str(root / "cache"))
    out = root / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "simulate", "--transport", "in-process",
         "--cohort-subjects", "10", "--num-heldout-subjects", "3", "--silos", "2",
         "--cohort-clips-per-class", "2", "--num-server-rounds", "2", "--batch-subjects", "2",
         "--pretrain-subjects", "1", "--out-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), proc.stdout


def test_every_subject_training_and_held_out_has_a_finite_person_level_epsilon(person_run):
    _, results, stdout = person_run
    subjects = results["privacy"]["subjects"]
    assert len(subjects) == 10
    assert {r["role"] for r in subjects} == {"train", "heldout"}
    for row in subjects:
        assert 0 < row["epsilon"] <= TARGET + 1e-6, row
        assert row["delta"] == 1e-5
        assert "coordinator included" in row["against"]
    headline = results["privacy"]["headline"]
    assert headline["epsilon"] == max(r["epsilon"] for r in subjects)
    assert results["rounds"][-1]["person_epsilon"] == pytest.approx(headline["epsilon"])
    assert "ε(person, worst)" in stdout and "every one of 10 subjects" in stdout


def test_person_level_epsilon_equals_a_dp_accounting_recomputation(person_run):
    out, results, _ = person_run
    index = json.loads((out / "devices" / "devices.json").read_text())
    for device in index:
        ledger = out / "devices" / f"partition-{device['partition_id']:03d}" / "state"
        entries = [
            json.loads(line) for line in (ledger / "privacy_ledger.jsonl").read_text().splitlines()
        ]
        mechanisms = {e["mechanism"] for e in entries}
        expected = {"train": {"dp-sgd-subject"}, "heldout": {"gaussian-counts-subject"}}
        assert mechanisms == expected[device["role"]]
        claimed = results["privacy"]["person_level"][device["device_id"]]["epsilon"]
        assert claimed == pytest.approx(ledger_rdp_epsilon(entries, 1e-5), abs=1e-3)


def test_the_starting_model_is_pretrained_on_public_subjects_and_scored_as_round_0(person_run):
    _, results, _ = person_run
    pretraining = results["pretraining"]
    assert pretraining["cohort_seed"] != results["config"]["seed"]
    assert pretraining["privacy"].startswith("none spent")
    assert len(pretraining["weights_sha256"]) == 64
    assert results["round_0"]["round"] == 0
    assert 0.0 <= results["round_0"]["uf1"] <= 1.0
    # One release of the starting model plus one per round, each at subject sensitivity.
    noise = list(results["round_0"]["heldout_noise_std"].values())
    assert len(noise) == 1 and noise[0] > 0


def test_a_broken_claim_is_caught_by_the_recomputation(person_run):
    """Negative control: a ledger claiming fewer steps than it took gives a smaller ε,
    so the recomputation above would no longer match."""
    out, results, _ = person_run
    ledger = out / "devices" / "partition-000" / "state" / "privacy_ledger.jsonl"
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    forged = [{**e, "steps": max(1, int(e["steps"]) // 2)} for e in entries]
    claimed = results["privacy"]["person_level"]["sim-000"]["epsilon"]
    assert ledger_rdp_epsilon(forged, 1e-5) < claimed - 0.5
    assert not math.isinf(claimed) and np.isfinite(claimed)
