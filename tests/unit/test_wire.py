"""The wire schema: each reply round-trips, and anything undeclared is refused."""

from __future__ import annotations

import pytest
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from common.models import build_model
from common.payload_guard import PayloadViolation, check_reply
from common.wire import (
    CensusReply,
    Decline,
    EvaluateReply,
    TrainMetrics,
    TrainReply,
    WireError,
    parse_reply,
    parse_train_reply,
)
from tests.ledger_fixtures import signed_entry_line

METRICS = TrainMetrics(5.3, 5.1, 1e-5, 2.0, 1 / 3, 6, 12)


@pytest.fixture()
def model_arrays() -> ArrayRecord:
    return ArrayRecord(build_model("ststnet").state_dict())


def test_every_reply_round_trips(model_arrays):
    train = TrainReply("sim-001", model_arrays, METRICS, "entry")
    back = parse_train_reply(train.to_record())
    assert isinstance(back, TrainReply) and back.metrics == METRICS
    decline = Decline("sim-002", "no-usable-clips", "")
    assert parse_train_reply(decline.to_record()) == decline
    evaluate = EvaluateReply("sim-003", ((2.3, 1.0, -0.4), (0, 3, 0), (0, 0, 1)), 1.5, "entry")
    assert EvaluateReply.from_record(evaluate.to_record(), 3) == evaluate
    assert parse_reply("evaluate", decline.to_record()) == decline
    census = CensusReply("sim-004", "heldout", 8.0, 1e-5, False)
    assert CensusReply.from_record(census.to_record()) == census


def test_nothing_derived_from_data_is_in_the_schema():
    """No loss, accuracy or count field exists in any reply the schema declares."""
    from dataclasses import fields

    names = {f.name for f in fields(TrainMetrics)}
    assert not names & {"num_examples", "train_loss", "train_accuracy"}
    census = set(CensusReply("d", "train", 8.0, 1e-5, False).to_record().config_records["info"])
    # single-person is the operator's declaration (node config), not counted from the data.
    assert census == {
        "role",
        "device-id",
        "epsilon-budget",
        "max-delta",
        "seeded-sampling",
        "single-person",
    }
    released = EvaluateReply("d", ((1.0,),), 1.0, "e").to_record().metric_records["metrics"]
    assert set(released) == {"noise-std", "cm-0-0"}  # no exact num-examples


def test_a_decline_carries_only_a_fixed_code():
    with pytest.raises(WireError, match="decline code 'clip S01_3.avi: no face'"):
        Decline("d", "clip S01_3.avi: no face")
    record = Decline("d", "budget-exhausted").to_record()
    record.config_records["info"]["declined"] = "clip S01_3.avi: no face"
    with pytest.raises(WireError, match="is not one of"):
        parse_train_reply(record)


def test_an_undeclared_metric_is_refused(model_arrays):
    record = TrainReply("sim-001", model_arrays, METRICS, "").to_record()
    record.metric_records["metrics"]["label-histogram-0"] = 12
    with pytest.raises(WireError, match="'label-histogram-0' is not declared"):
        parse_train_reply(record)
    census = CensusReply("d", "train", 8.0, 1e-5, False).to_record()
    census.config_records["info"]["clip-ids"] = "a,b,c"
    with pytest.raises(WireError, match="'clip-ids' is not declared"):
        parse_reply("query", census)


def test_a_missing_field_or_record_is_refused(model_arrays):
    record = TrainReply("sim-001", model_arrays, METRICS, "").to_record()
    del record.metric_records["metrics"]["epsilon"]
    with pytest.raises(WireError, match="'epsilon' is missing"):
        parse_train_reply(record)
    with pytest.raises(WireError, match="array record 'arrays' is missing"):
        parse_train_reply(RecordDict({"metrics": MetricRecord({"epsilon": 1.0})}))
    with pytest.raises(WireError, match="no reply is declared"):
        parse_reply("evaluation-leak", RecordDict())
    # Evaluate counts must form a square confusion matrix.
    odd = RecordDict(
        {
            "metrics": MetricRecord({"noise-std": 1.0, "cm-0-0": 1.0, "cm-0-1": 0.0}),
            "info": ConfigRecord({"device-id": "d", "ledger-entry": "e"}),
        }
    )
    with pytest.raises(WireError, match="not a square"):
        parse_reply("evaluate", odd)


def test_the_payload_guard_refuses_what_the_schema_does_not_declare(model_arrays, tmp_path):
    request = RecordDict({"arrays": model_arrays, "config": ConfigRecord({"server-round": 1})})
    entry = signed_entry_line(tmp_path, "sim-001")
    good = TrainReply("sim-001", model_arrays, METRICS, entry).to_record()
    check_reply(good, request, "train")
    # A scalar that passes every value rule still may not leave: it is not in the schema.
    good.metric_records["metrics"]["num-clips-of-subject-7"] = 3
    with pytest.raises(PayloadViolation, match="must fit the wire schema"):
        check_reply(good, request, "train")
    # An evaluate reply may not carry model arrays.
    evaluate = EvaluateReply("d", ((1, 0, 0), (0, 1, 0), (0, 0, 1)), 1.0, entry).to_record()
    evaluate.array_records["arrays"] = model_arrays
    with pytest.raises(PayloadViolation, match="must fit the wire schema"):
        check_reply(evaluate, request, "evaluate")
