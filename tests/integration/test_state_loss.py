"""A device that loses its ledger never restarts its ε from 0.

A real in-process federation (ServerApp, ClientApp, ledgers, receipts): one
training device loses its ledger and receipts before round 3 (a fault mod,
keys kept as if restored from their backup). The coordinator's receipt with
round 3's instruction acknowledges more than the device now holds, so the
device refuses rounds 3 and 4 and writes nothing into a fresh ledger. Then
`fedmer restore-ledger` puts the chain back from the coordinator's copy,
verified, with the gap marked, and `fedmer audit` passes and lists it; a
truncated or altered copy is refused, naming why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from client.accountant_state import KEY_FILE, LEDGER_FILE, open_device_state
from client.state_loss import GAP_FILE
from common.privacy.ledger import encode_entry, entry_hash, load_or_create_key, sign_entry
from fedmer.cli import main
from simulations.faults import LoseState
from simulations.federation import run_federation
from tests.small_federation import small_federation


@pytest.fixture(scope="module")
def lost_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    fed = small_federation(tmp_path_factory, mp, "state-loss", rounds=4)
    victim = fed.first_trainer
    state_dir = Path(fed.nodes[victim].state_dir)
    run_federation(fed.cfg, fed.devices, transport="in-process", extra_mods=[LoseState(victim, 3)])
    mp.undo()
    return fed.out, victim, state_dir, fed.trainers


def test_the_device_refuses_after_losing_its_ledger(lost_run):
    out, victim, state_dir, train = lost_run
    rounds = json.loads((out / "results.json").read_text())["rounds"]
    assert all(victim in r["trained"] for r in rounds[:2])
    for later in rounds[2:]:
        assert victim not in later["trained"]
        assert later["declined"][victim].startswith("state-lost"), later
        assert sorted(later["trained"]) == [d for d in train if d != victim]
    # Nothing was spent into a fresh ledger: ε did not silently restart from 0.
    assert not (state_dir / LEDGER_FILE).exists() or (state_dir / LEDGER_FILE).read_text() == ""
    gap = json.loads((state_dir / GAP_FILE).read_text())
    copy = (out / "ledger" / "devices" / f"{victim}.jsonl").read_text().splitlines()
    assert gap["receipt"]["head_seq"] == len(copy) - 1 and gap["ledger_entries_found"] == 0


def test_restore_refuses_a_truncated_or_altered_copy(lost_run, tmp_path, capsys):
    out, victim, state_dir, _ = lost_run
    lines = (out / "ledger" / "devices" / f"{victim}.jsonl").read_text().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-1]) + "\n")
    assert main(["restore-ledger", str(state_dir), "--from", str(truncated)]) == 1
    assert "but the coordinator acknowledged seq" in capsys.readouterr().out
    altered = tmp_path / "altered.jsonl"
    first = json.loads(lines[0])
    first["epsilon"] = 0.01
    altered.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    assert main(["restore-ledger", str(state_dir), "--from", str(altered)]) == 1
    assert "seq 0: signature invalid" in capsys.readouterr().out
    assert (state_dir / GAP_FILE).exists()


def test_restore_continues_the_chain_and_the_audit_shows_the_gap(lost_run, tmp_path, capsys):
    out, victim, state_dir, _ = lost_run
    copy = out / "ledger" / "devices" / f"{victim}.jsonl"
    before = [json.loads(line) for line in copy.read_text().splitlines()]
    assert main(["restore-ledger", str(state_dir), "--from", str(copy)]) == 0
    assert "ε continues from" in capsys.readouterr().out
    state = open_device_state(str(state_dir))
    entries = state.ledger.entries()
    assert [entry_hash(e) for e in entries[:-1]] == [entry_hash(e) for e in before]
    mark = entries[-1]
    assert mark["event"] == "restored" and mark["epsilon"] == before[-1]["epsilon"] > 0
    assert state.history() and not (state_dir / GAP_FILE).exists()
    report = tmp_path / "report"
    registry = out / "registry.json"
    operator = json.loads(registry.read_text())["signed_by"]
    # The device's own ledger, against the operator's registry (the run manifest
    # describes the coordinator's copies, not a device's restored file).
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "audit", str(state_dir / LEDGER_FILE), "--report", str(report),
         "--registry", str(registry), "--operator-key", operator, "--partial"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (report / "audit_report.md").read_text()
    assert "## Ledger gaps" in text and "ledger lost and restored" in text


def test_a_restore_mark_that_resets_epsilon_fails_the_audit(lost_run, tmp_path):
    """The device's own key can sign anything: the audit still refuses a reset."""
    out, _, state_dir, _ = lost_run
    entries = open_device_state(str(state_dir)).ledger.entries()
    assert entries[-1]["event"] == "restored"  # after the test above
    key = load_or_create_key(state_dir / KEY_FILE)
    forged = sign_entry({**entries[-1], "epsilon": 0.0}, key)
    ledger = tmp_path / "privacy_ledger.jsonl"
    ledger.write_text("".join(encode_entry(e) + "\n" for e in [*entries[:-1], forged]))
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "audit", str(ledger), "--report", str(tmp_path / "r"),
         "--partial"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    assert "a restore mark claims epsilon 0, but" in proc.stdout
