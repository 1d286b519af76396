import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from common.models import build_model
from common.payload_guard import PayloadViolation, check_outgoing

_TRAIN_METRICS = {
    "epsilon": 1.0,
    "epsilon-prv": 0.9,
    "delta": 1e-5,
    "noise-multiplier": 1.1,
    "sample-rate": 0.1,
    "steps": 3,
    "total-steps": 3,
    "aggregation-weight": 1.0,
}


@pytest.fixture()
def global_arrays():
    return ArrayRecord(build_model("ststnet").state_dict())


def test_model_arrays_and_scalars_pass(global_arrays):
    reply = RecordDict(
        {
            "arrays": ArrayRecord(build_model("ststnet").state_dict()),
            "metrics": MetricRecord({"num-examples": 10, "epsilon": 1.5}),
            "info": ConfigRecord({"device-id": "dev-1"}),
        }
    )
    check_outgoing(reply, global_arrays)


def test_raw_frames_are_refused(global_arrays):
    frames = ArrayRecord({"frames": torch.zeros((60, 160, 160, 3), dtype=torch.uint8)})
    with pytest.raises(PayloadViolation, match="extra \\['frames'\\]"):
        check_outgoing(RecordDict({"arrays": frames}), global_arrays)


def test_flow_tensor_in_an_extra_record_is_refused(global_arrays):
    reply = RecordDict(
        {
            "arrays": global_arrays,
            "features": ArrayRecord({"flow": torch.zeros((3, 28, 28))}),
        }
    )
    with pytest.raises(PayloadViolation, match="'features' is not allowed"):
        check_outgoing(reply, global_arrays)


def test_wrong_shape_is_refused(global_arrays):
    state = build_model("ststnet").state_dict()
    state["fc.weight"] = state["fc.weight"].new_zeros((3, 401))
    with pytest.raises(PayloadViolation, match="fc.weight"):
        check_outgoing(RecordDict({"arrays": ArrayRecord(state)}), global_arrays)


def test_lists_in_metrics_and_long_strings_are_refused(global_arrays):
    with pytest.raises(PayloadViolation, match="only scalar numbers"):
        check_outgoing(
            RecordDict({"metrics": MetricRecord({"per-clip": [0.1, 0.2]})}), global_arrays
        )
    with pytest.raises(PayloadViolation, match="limit is 256"):
        check_outgoing(RecordDict({"info": ConfigRecord({"note": "x" * 1000})}), global_arrays)


def test_arrays_without_a_global_model_are_refused():
    with pytest.raises(PayloadViolation, match="only be sent in reply"):
        check_outgoing(
            RecordDict({"arrays": ArrayRecord(build_model("ststnet").state_dict())}), None
        )


def test_a_signed_ledger_entry_may_leave_but_not_a_lookalike(global_arrays, tmp_path):
    from tests.ledger_fixtures import signed_entry_line

    line = signed_entry_line(tmp_path)
    assert len(line) > 256  # longer than any other string may be
    check_outgoing(RecordDict({"info": ConfigRecord({"ledger-entry": line})}), global_arrays)
    smuggled = line.replace('"note":""', '"note":"","frames":[1,2,3]')
    with pytest.raises(PayloadViolation, match="not a ledger entry"):
        check_outgoing(
            RecordDict({"info": ConfigRecord({"ledger-entry": smuggled})}), global_arrays
        )


def test_resent_entries_may_precede_the_entry_but_only_entries_and_only_so_many(
    global_arrays, tmp_path
):
    from common.payload_guard import MAX_UNRECEIVED_ENTRIES
    from tests.ledger_fixtures import signed_entry_line

    line = signed_entry_line(tmp_path)

    def send(value: str) -> None:
        check_outgoing(RecordDict({"info": ConfigRecord({"ledger-entry": value})}), global_arrays)

    send("\n".join([line] * (1 + MAX_UNRECEIVED_ENTRIES)))
    with pytest.raises(PayloadViolation, match="at most 9 ledger entries may leave"):
        send("\n".join([line] * (2 + MAX_UNRECEIVED_ENTRIES)))
    with pytest.raises(PayloadViolation, match="not a ledger entry"):
        send("\n".join(["face pixels 12 34 56", line]))


def test_the_secagg_fit_reply_is_checked_against_the_received_model(tmp_path):
    import numpy as np
    from flwr.common import ndarrays_to_parameters
    from flwr.compat.common.recorddict_compat import parameters_to_arrayrecord

    from common.payload_guard import check_reply
    from tests.ledger_fixtures import signed_entry_line

    model = [t.numpy() for t in build_model("ststnet").state_dict().values()]
    request = RecordDict(
        {"fitins.parameters": parameters_to_arrayrecord(ndarrays_to_parameters(model), True)}
    )
    keys = list(request.array_records["fitins.parameters"].keys())
    entry = signed_entry_line(tmp_path)

    def reply(arrays):
        from flwr.app import Array

        return RecordDict(
            {
                "fitres.parameters": ArrayRecord({k: Array(a) for k, a in zip(keys, arrays)}),
                "fitres.num_examples": MetricRecord({"num_examples": 1}),
                "fitres.metrics": ConfigRecord(
                    {**_TRAIN_METRICS, "device-id": "dev-1", "ledger-entry": entry}
                ),
                "fitres.status": ConfigRecord({"code": 0, "message": "ok"}),
            }
        )

    check_reply(reply([np.zeros_like(a) for a in model]), request, "train")
    flow = [np.zeros((3, 28, 28), np.float32)] + [np.zeros_like(a) for a in model[1:]]
    with pytest.raises(PayloadViolation, match="has shape \\(3, 28, 28\\)"):
        check_reply(reply(flow), request, "train")


def test_a_refused_reply_never_leaves_the_device_through_the_mod(global_arrays):
    from flwr.app import Context, Message, MessageType
    from flwr.supercore.task_identity import TaskIdentity

    from client.payload_guard_mod import payload_guard_mod

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    request = Message(
        RecordDict({"arrays": global_arrays}), dst_node_id=3, message_type=MessageType.TRAIN
    )
    frames = torch.zeros((60, 160, 160, 3), dtype=torch.uint8)

    def leaky_handler(msg, context):
        return Message(RecordDict({"arrays": ArrayRecord({"frames": frames})}), reply_to=msg)

    context = Context(run_id=1, node_id=3, node_config={}, state=RecordDict(), run_config={})
    with pytest.raises(PayloadViolation, match="extra \\['frames'\\]"):
        payload_guard_mod(request, context, leaky_handler)
