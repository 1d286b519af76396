"""An entry the coordinator never received is resent, and a resumed run folder audits clean.

A real in-process federation. One device trains round 2 and signs its entry,
and the reply is lost (a fault mod: what a coordinator dying mid-round
looks like from the device). With round 3's instruction comes the receipt of
the head the coordinator holds (round 1's entry), so the device sends its
round-2 entry before its round-3 one and the coordinator's copy of its chain
stays unbroken. The run is then resumed in the same folder for a fourth round
(a new run id), and `fedmer audit` of the folder, with the operator's registry
and the coordinator's manifest, passes: every entry recomputed, every chain
whole, every nonce the manifest's for its run and round.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.privacy.ledger import decode_entry
from simulations.faults import LoseReply
from simulations.federation import run_federation
from tests.small_federation import small_federation


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    fed = small_federation(tmp_path_factory, mp, "unreceived", rounds=3)
    victim, out = fed.first_trainer, fed.out
    run_federation(fed.cfg, fed.devices, transport="in-process", extra_mods=[LoseReply(victim, 2)])
    first = json.loads((out / "results.json").read_text())
    copy_after_first = (out / "ledger" / "devices" / f"{victim}.jsonl").read_text()
    resumed = dataclasses.replace(fed.cfg, num_server_rounds=4)
    run_federation(resumed, fed.devices, transport="in-process")
    mp.undo()
    return out, victim, first, copy_after_first


def test_the_lost_round_is_resent_with_the_next_reply(resumed_run):
    _, victim, first, copy = resumed_run
    rounds = first["rounds"]
    assert victim in rounds[0]["trained"] and victim in rounds[1]["failed"]
    assert victim in rounds[2]["trained"]
    entries = [decode_entry(line) for line in copy.splitlines()]
    assert [e["seq"] for e in entries] == [0, 1, 2]
    assert [e["round"] for e in entries] == [1, 2, 3]  # round 2's entry, received late


def test_the_resumed_run_folder_audits_clean(resumed_run, tmp_path):
    out, _, _, _ = resumed_run
    results = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3, 4]
    manifest = json.loads((out / "ledger" / "manifest.json").read_text())
    assert len(manifest["run_ids"]) == 2 and manifest["run_id"] == manifest["run_ids"][-1]
    operator = json.loads((out / "registry.json").read_text())["signed_by"]
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "audit", str(out / "ledger"), "--report",
         str(tmp_path / "report"), "--operator-key", operator],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_an_entry_that_does_not_follow_the_chain_is_not_kept(resumed_run, tmp_path):
    from server.privacy_ledger import ServerLedger

    out, victim, _, _ = resumed_run
    ledger = ServerLedger(out)  # resumes the folder's chains as they are
    lines = (out / "ledger" / "devices" / f"{victim}.jsonl").read_text().splitlines()
    assert "does not follow seq" in (ledger.unreceived_problem(victim, lines[1]) or "")
    assert "device" in (ledger.unreceived_problem("someone-else", lines[-1]) or "")
    assert Path(out / "ledger" / "devices" / f"{victim}.jsonl").read_text().splitlines() == lines
