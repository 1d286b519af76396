"""Held-out evaluation rides with the next round's training; a crash between them loses nothing.

A real in-process federation (4 one-subject devices, 1 held out, real
Opacus). The grid records every batch of messages the ServerApp pushes: a
round is one exchange, the train messages of round r with the evaluate
messages of round r-1's model (the model round r sends), and the last
round's model is evaluated alone after it. Then the coordinator "dies" when
it pushes round 3's exchange: round 2 is trained but not evaluated. The
resumed run evaluates round 2 first (with round 3's training), trains no
round twice, and the folder audits clean.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterable

import pytest
from flwr.app import Message, MessageType

from client.client_app import app as client_app
from common.privacy.ledger import decode_entry
from server.checkpoint import CheckpointStore
from server.server_app import app as server_app
from simulations.in_process import InProcessGrid, coordinator_context
from tests.independent_accountant import ledger_rdp_epsilon
from tests.small_federation import SmallFederation, small_federation

ROUNDS = 3
Stage = list[tuple[str, int]]  # (message type, the round its config names)


class CoordinatorDied(RuntimeError):
    """The fault: the ServerApp stops where a crash would stop it."""


def _stage(messages: Iterable[Message]) -> Stage:
    return sorted(
        (m.metadata.message_type, int(m.content.config_records["config"]["server-round"]))
        for m in messages
    )


def _run(
    fed: SmallFederation,
    dies_at: Callable[[Stage], bool] | None = None,
    queried: list[int] | None = None,
    **changes: object,
) -> list[Stage]:
    stages: list[Stage] = []

    class RecordingGrid(InProcessGrid):
        def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
            batch = list(messages)
            if queried is not None:
                queried.extend(
                    m.metadata.dst_node_id
                    for m in batch
                    if m.metadata.message_type == MessageType.QUERY
                )
            if all(m.metadata.message_type != MessageType.QUERY for m in batch):
                stages.append(_stage(batch))
                if dies_at is not None and dies_at(stages[-1]):
                    raise CoordinatorDied(f"died pushing {stages[-1]}")
            return super().push_messages(batch)

    run_config = fed.cfg.replace(census_settle=0.0, **changes).to_flower()
    grid = RecordingGrid(client_app, [d.node_config for d in fed.devices], run_config)
    try:
        server_app(grid, coordinator_context(grid.run_id, run_config))
    finally:
        grid.close()
    return stages


def _train(n: int, r: int) -> Stage:
    return [(MessageType.TRAIN, r)] * n


def _evaluate(r: int) -> Stage:
    return [(MessageType.EVALUATE, r)]


def _entries(fed: SmallFederation, device: str) -> list[dict]:
    path = fed.out / "ledger" / "devices" / f"{device}.jsonl"
    return [decode_entry(line) for line in path.read_text().splitlines()]


def _held_out(fed: SmallFederation) -> str:
    return next(d for d in fed.nodes if d not in fed.trainers)


def test_a_round_is_one_exchange(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    fed = small_federation(tmp_path_factory, mp, "rides", rounds=ROUNDS)
    # Person-level DP-SGD, so that every round's person-level ε is finite.
    queried: list[int] = []
    stages = _run(fed, queried=queried, dp_unit="subject")
    mp.undo()
    n = len(fed.trainers)
    # The census asks each device once per run, not once per round.
    assert len(queried) == len(set(queried)) == len(fed.nodes)
    assert stages == [
        _train(n, 1),
        sorted(_evaluate(1) + _train(n, 2)),
        sorted(_evaluate(2) + _train(n, 3)),
        _evaluate(3),
    ]
    results = json.loads((fed.out / "results.json").read_text())
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3]
    assert all(0.0 <= r["uf1"] <= 1.0 for r in results["rounds"])
    # Each evaluation names its own round (and that round's nonce: the audit checks it).
    assert [e["round"] for e in _entries(fed, _held_out(fed))] == [1, 2, 3]
    # A round's point on the ε curve counts what was spent through it, not the next
    # round's training, which had already happened when its evaluation came back.
    # Checked against an independent accountant over each device's entries of rounds <= r.
    chains = {device: _entries(fed, device) for device in fed.nodes}
    for entry in results["rounds"]:
        expected = max(
            ledger_rdp_epsilon([e for e in chain if e["round"] <= entry["round"]], fed.cfg.delta)
            for chain in chains.values()
        )
        assert entry["person_epsilon"] == pytest.approx(expected, abs=1e-3)
    assert results["rounds"][0]["person_epsilon"] < results["rounds"][-1]["person_epsilon"]


@pytest.fixture(scope="module")
def crashed_and_resumed(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    fed = small_federation(tmp_path_factory, mp, "rides-crash", rounds=ROUNDS)
    with pytest.raises(CoordinatorDied):
        _run(fed, dies_at=lambda stage: _evaluate(2)[0] in stage)
    crashed = CheckpointStore(fed.out).latest()
    first = json.loads((fed.out / "results.json").read_text())
    resumed_stages = _run(fed)
    mp.undo()
    return fed, crashed, first, resumed_stages


def test_the_trained_round_is_checkpointed_before_its_evaluation(crashed_and_resumed):
    _, crashed, first, _ = crashed_and_resumed
    assert crashed is not None and crashed.round == 2
    assert crashed.pending_evaluation["round"] == 2
    assert len(crashed.pending_evaluation["trained"]) > 0
    assert [r["round"] for r in first["rounds"]] == [1]  # round 2 is not complete


def test_the_resumed_run_evaluates_it_first_and_trains_no_round_twice(crashed_and_resumed):
    fed, _, _, stages = crashed_and_resumed
    n = len(fed.trainers)
    assert stages == [sorted(_evaluate(2) + _train(n, 3)), _evaluate(3)]
    results = json.loads((fed.out / "results.json").read_text())
    assert [r["round"] for r in results["rounds"]] == [1, 2, 3]
    for device in fed.trainers:
        assert [e["round"] for e in _entries(fed, device) if e["event"] == "train"] == [1, 2, 3]
    held_out = _entries(fed, _held_out(fed))
    assert [e["round"] for e in held_out] == [1, 2, 3]
    assert held_out[0]["run_id"] != held_out[1]["run_id"]  # round 2 evaluated by the new run


def test_the_resumed_folder_audits_clean(crashed_and_resumed, tmp_path):
    fed, _, _, _ = crashed_and_resumed
    operator = json.loads((fed.out / "registry.json").read_text())["signed_by"]
    proc = subprocess.run(
        [sys.executable, "-m", "fedmer.cli", "audit", str(fed.out / "ledger"), "--report",
         str(tmp_path / "report"), "--operator-key", operator],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]
