import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from common.models import build_model
from common.payload_guard import PayloadViolation, check_outgoing


@pytest.fixture()
def global_arrays():
    return ArrayRecord(build_model("ststnet").state_dict())


def test_model_arrays_and_scalars_pass(global_arrays):
    reply = RecordDict({
        "arrays": ArrayRecord(build_model("ststnet").state_dict()),
        "metrics": MetricRecord({"num-examples": 10, "epsilon": 1.5}),
        "info": ConfigRecord({"device-id": "dev-1"}),
    })
    check_outgoing(reply, global_arrays)


def test_raw_frames_are_refused(global_arrays):
    frames = ArrayRecord({"frames": torch.zeros((60, 160, 160, 3), dtype=torch.uint8)})
    with pytest.raises(PayloadViolation, match="extra \\['frames'\\]"):
        check_outgoing(RecordDict({"arrays": frames}), global_arrays)


def test_flow_tensor_in_an_extra_record_is_refused(global_arrays):
    reply = RecordDict({
        "arrays": global_arrays,
        "features": ArrayRecord({"flow": torch.zeros((3, 28, 28))}),
    })
    with pytest.raises(PayloadViolation, match="'features' is not allowed"):
        check_outgoing(reply, global_arrays)


def test_wrong_shape_is_refused(global_arrays):
    state = build_model("ststnet").state_dict()
    state["fc.weight"] = state["fc.weight"].new_zeros((3, 401))
    with pytest.raises(PayloadViolation, match="fc.weight"):
        check_outgoing(RecordDict({"arrays": ArrayRecord(state)}), global_arrays)


def test_lists_in_metrics_and_long_strings_are_refused(global_arrays):
    with pytest.raises(PayloadViolation, match="only scalar numbers"):
        check_outgoing(RecordDict({"metrics": MetricRecord({"per-clip": [0.1, 0.2]})}), global_arrays)
    with pytest.raises(PayloadViolation, match="limit is 256"):
        check_outgoing(RecordDict({"info": ConfigRecord({"note": "x" * 1000})}), global_arrays)


def test_arrays_without_a_global_model_are_refused():
    with pytest.raises(PayloadViolation, match="only be sent in reply"):
        check_outgoing(RecordDict({"arrays": ArrayRecord(build_model("ststnet").state_dict())}), None)
