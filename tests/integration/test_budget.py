"""Device budgets: a device refuses (and records) a round that would exceed its budget."""

import json

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.accountant_state import LEDGER_FILE
from client.client_app import app
from common.labels import COMPOSITE_CLASSES
from common.models import build_model
from common.privacy.accounting import epsilon_rdp
from common.privacy.budget import check_budget, effective_budget
from common.privacy.ledger_audit import audit_chain
from common.run_config import RunConfig
from simulations.federation import prepare_federation
from simulations.synthetic import CohortSpec
from tests.cohort_fixtures import cohort_in_test_cache
from tests.scenarios import CLIP_LEVEL


def test_budget_check_predicts_epsilon_after_the_planned_steps():
    history, planned = [(1.0, 0.25, 8)], (1.0, 0.25, 8)
    decision = check_budget(history, planned, 1e-5, budget=2.0)
    assert decision.spent == pytest.approx(epsilon_rdp(history, 1e-5))
    assert decision.predicted == pytest.approx(epsilon_rdp([(1.0, 0.25, 16)], 1e-5))
    assert decision.allowed == (decision.predicted <= 2.0)
    assert check_budget(history, planned, 1e-5, budget=0.0).allowed  # no budget
    assert effective_budget(0.0, 8.0) == 8.0 and effective_budget(2.0, 8.0) == 2.0


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    yield from cohort_in_test_cache(
        tmp_path_factory, CohortSpec(num_subjects=6, clips_per_class=3, seed=0)
    )


def _train_message(arrays: ArrayRecord, server_round: int) -> Message:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})
    return Message(content, dst_node_id=7, message_type=MessageType.TRAIN)


def test_a_device_with_budget_2_refuses_once_it_would_exceed_it(cohort, tmp_path):
    cfg = RunConfig(
        **CLIP_LEVEL,
        num_server_rounds=6,
        local_epochs=1,
        batch_size=4,
        target_epsilon=0.0,
        noise_multiplier=2.5,
        cohort_subjects=6,
        cohort_clips_per_class=3,
        num_heldout_subjects=1,
        data_manifest=str(cohort),
    )
    cfg, devices = prepare_federation(cfg, cohort, tmp_path / "run")
    node_a = {**devices[0].node_config.to_flower(), "state-dir": str(tmp_path / "a")}
    node_b = {**devices[1].node_config.to_flower(), "state-dir": str(tmp_path / "b")}
    limited = Context(
        run_id=1,
        node_id=7,
        state=RecordDict(),
        run_config=cfg.to_flower(),
        node_config={**node_a, "epsilon-budget": 2.0},
    )
    unlimited = Context(
        run_id=1, node_id=8, state=RecordDict(), run_config=cfg.to_flower(), node_config=node_b
    )
    arrays = ArrayRecord(build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES)).state_dict())
    declined_in, epsilons = [], []
    for server_round in range(1, 5):
        reply = app(_train_message(arrays, server_round), limited)
        metrics = reply.content.metric_records["metrics"]
        if metrics.get("declined"):
            declined_in.append(server_round)
            # Only the fixed code leaves the device; the figures stay in its ledger.
            assert reply.content.config_records["info"]["declined"] == "budget-exhausted"
        else:
            epsilons.append(float(metrics["epsilon"]))
        other = app(_train_message(arrays, server_round), unlimited)
        assert not other.content.metric_records["metrics"].get("declined")  # the others go on
    # 9 clips, batch 4: q = 1/3, 3 steps a round; sigma 2.5 gives eps 1.305, 1.752,
    # then 2.106 > 2: rounds 3 and 4 are refused, and nothing is spent on them.
    assert epsilons == pytest.approx([1.305, 1.752], abs=1e-3)
    assert declined_in == [3, 4]
    ledger = tmp_path / "a" / LEDGER_FILE
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    refused = [e for e in entries if e["event"] == "refused"]
    assert [e["round"] for e in refused] == declined_in
    assert all(e["steps"] == 0 and e["epsilon"] == epsilons[-1] for e in refused)
    # The refusal entries verify like any other (chain, signature, arithmetic).
    assert audit_chain(ledger).ok
