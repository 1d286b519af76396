"""A deployed evaluation, in its own process as Flower runs it, loads no Opacus or training code.

Flower 1.41 starts a fresh ``flwr-clientapp`` process for every message, so
whatever the evaluate handler imports is paid on every held-out device in every
round. This runs the real handler on a real held-out device in a fresh
interpreter and lists what it loaded.
"""

import json
import subprocess
import sys

import pytest

from tests.cohort_fixtures import SMALL_COHORT, cohort_in_test_cache, small_clip_level_federation

NOT_FOR_EVALUATION = ("opacus", "client.training_round", "client.dp_training")

EVALUATE_IN_A_FRESH_PROCESS = """
import json, sys
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.client_app import app
from common.labels import COMPOSITE_CLASSES
from common.models import build_model

run_config, node_config, message_type = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[4]
TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
model = build_model(run_config["model"], num_classes=len(COMPOSITE_CLASSES))
content = RecordDict(
    {"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord({"server-round": 1})}
)
msg = Message(content, dst_node_id=9, message_type=getattr(MessageType, message_type))
context = Context(run_id=1, node_id=9, state=RecordDict(), run_config=run_config,
                  node_config=node_config)
reply = app(msg, context)
loaded = [m for m in json.loads(sys.argv[3]) if m in sys.modules]
metrics = dict(reply.content.metric_records["metrics"])
print(json.dumps({"metrics": sorted(metrics), "declined": bool(metrics.get("declined")), "loaded": loaded}))
"""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    yield from cohort_in_test_cache(tmp_path_factory, SMALL_COHORT)


def _handle_in_fresh_process(cohort, tmp_path, message_type, role):
    cfg, devices = small_clip_level_federation(cohort, tmp_path / "run")
    device = next(d for d in devices if d.node_config.role == role)
    node = {**device.node_config.to_flower(), "state-dir": str(tmp_path / role)}
    watch = json.dumps(NOT_FOR_EVALUATION)
    args = [json.dumps(cfg.to_flower()), json.dumps(node), watch, message_type]
    out = subprocess.run(
        [sys.executable, "-c", EVALUATE_IN_A_FRESH_PROCESS, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_evaluate_handler_replies_without_loading_opacus_or_training_code(cohort, tmp_path):
    result = _handle_in_fresh_process(cohort, tmp_path, "EVALUATE", "heldout")
    assert not result["declined"] and "cm-0-0" in result["metrics"]
    assert result["loaded"] == []


def test_the_same_probe_sees_opacus_and_training_code_in_a_train_handler(cohort, tmp_path):
    """The negative: a training device's train handler does load them, and the probe says so."""
    result = _handle_in_fresh_process(cohort, tmp_path, "TRAIN", "train")
    assert not result["declined"]
    assert set(result["loaded"]) == set(NOT_FOR_EVALUATION)
