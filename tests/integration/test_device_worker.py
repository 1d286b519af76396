"""A device's warm worker (``fedmer device-worker``), a real process on a real Unix socket.

The ClientApp Flower loads (``client.flower_app``) hands each message to the
worker named in the node config; the worker runs fedmer's device app on it.
These tests check that the reply is the one the app gives in the ClientApp's
own process, that the ClientApp process then loads neither torch nor the
training code, that SecAgg+'s per-device state comes back to Flower's context,
and that every way of failing says what is wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
    Key,
    Stage,
)
from flwr.supercore.task_identity import TaskIdentity

from client import worker_link
from client.client_app import app as device_app
from client.flower_app import app as flower_app
from client.worker_link import DeviceWorkerError, forward, key_path
from simulations.flower_processes import BIN
from tests.cohort_fixtures import SMALL_COHORT, cohort_in_test_cache, small_clip_level_federation

HEAVY = ("torch", "opacus", "client.client_app", "client.training_round", "client.dp_training")

THROUGH_THE_WORKER_IN_A_FRESH_PROCESS = """
import json, sys
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.flower_app import app

run_config, node_config, watch = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
msg = Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=9,
              message_type=MessageType.QUERY)
context = Context(run_id=1, node_id=9, state=RecordDict(), run_config=run_config,
                  node_config=node_config)
reply = app(msg, context)
print(json.dumps({
    "reply": {k: dict(v) for k, v in reply.content.config_records.items()},
    "loaded": [m for m in json.loads(watch) if m in sys.modules],
}))
"""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    yield from cohort_in_test_cache(tmp_path_factory, SMALL_COHORT)


@pytest.fixture(scope="module")
def federation(cohort, tmp_path_factory):
    return small_clip_level_federation(cohort, tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    # Short: a Unix socket path holds at most 107 bytes.
    socket_path = Path(tmp_path_factory.mktemp("w")) / "worker.sock"
    log = socket_path.with_name("worker.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "fedmer"), "device-worker", "--socket", str(socket_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not key_path(socket_path).exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield socket_path
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
    # A stopped worker leaves neither its socket nor its key behind.
    assert not socket_path.exists() and not key_path(socket_path).exists()


def _node(federation, role: str, state_dir: Path, **extra: object) -> dict:
    _, devices = federation
    device = next(d for d in devices if d.node_config.role == role)
    return {**device.node_config.to_flower(), "state-dir": str(state_dir), **extra}


def _context(federation, node_config: dict) -> Context:
    cfg, _ = federation
    return Context(
        run_id=1, node_id=9, state=RecordDict(), run_config=cfg.to_flower(), node_config=node_config
    )


def _query() -> Message:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    return Message(
        RecordDict({"config": ConfigRecord({})}), dst_node_id=9, message_type=MessageType.QUERY
    )


def test_the_census_through_the_worker_is_the_apps_own_and_loads_no_torch(
    federation, worker, tmp_path
):
    node = _node(federation, "train", tmp_path / "state")
    cfg, _ = federation
    here = device_app(_query(), _context(federation, node))
    args = [json.dumps(cfg.to_flower()), json.dumps({**node, "device-worker": str(worker)})]
    out = subprocess.run(
        [sys.executable, "-c", THROUGH_THE_WORKER_IN_A_FRESH_PROCESS, *args, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["reply"] == {k: dict(v) for k, v in here.content.config_records.items()}
    assert result["reply"]["info"]["role"] == "train"
    assert result["loaded"] == []


def test_the_probe_sees_torch_when_the_app_runs_in_the_clientapp_process(federation, tmp_path):
    """The negative: without a worker the same process loads torch and the device app."""
    node = _node(federation, "train", tmp_path / "state")
    cfg, _ = federation
    args = [json.dumps(cfg.to_flower()), json.dumps(node), json.dumps(HEAVY)]
    out = subprocess.run(
        [sys.executable, "-c", THROUGH_THE_WORKER_IN_A_FRESH_PROCESS, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])["loaded"]
    assert {"torch", "client.client_app"} <= set(loaded)


def test_evaluation_through_the_worker_is_released_and_accounted_on_the_device(
    federation, worker, tmp_path
):
    from flwr.app import ArrayRecord

    from client.accountant_state import LEDGER_FILE
    from common.labels import COMPOSITE_CLASSES
    from common.models import build_model
    from common.privacy.ledger import decode_entry

    cfg, _ = federation
    state = tmp_path / "state"
    node = _node(federation, "heldout", state, **{"device-worker": str(worker)})
    model = build_model(cfg.model, num_classes=len(COMPOSITE_CLASSES))
    content = RecordDict(
        {"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord({"server-round": 1})}
    )
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    msg = Message(content, dst_node_id=9, message_type=MessageType.EVALUATE)
    reply = flower_app(msg, _context(federation, node))
    metrics = dict(reply.content.metric_records["metrics"])
    n = len(COMPOSITE_CLASSES)
    assert {f"cm-{i}-{j}" for i in range(n) for j in range(n)} <= set(metrics)
    assert not metrics.get("declined")
    assert reply.metadata.reply_to_message_id == msg.metadata.message_id
    # The worker wrote the release into this device's own ledger.
    entries = [decode_entry(x) for x in (state / LEDGER_FILE).read_text().splitlines() if x]
    assert [e["event"] for e in entries][-1] == "release"


def test_secagg_state_the_worker_keeps_comes_back_to_flowers_context(federation, worker, tmp_path):
    """SecAgg+ keeps each device's keys in ``context.state`` between its stages;
    the SuperNode stores the context the ClientApp process returns."""
    node = _node(federation, "train", tmp_path / "state", **{"device-worker": str(worker)})
    setup = ConfigRecord(
        {
            Key.STAGE: Stage.SETUP,
            Key.SAMPLE_NUMBER: 3,
            Key.SHARE_NUMBER: 3,
            Key.THRESHOLD: 2,
            Key.CLIPPING_RANGE: 1.0,
            Key.TARGET_RANGE: 1 << 16,
            Key.MOD_RANGE: 1 << 24,
            Key.MAX_WEIGHT: 1.0,
        }
    )
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    msg = Message(
        RecordDict({RECORD_KEY_CONFIGS: setup}), dst_node_id=9, message_type=MessageType.TRAIN
    )
    context = _context(federation, node)
    reply = flower_app(msg, context)
    keys = reply.content.config_records[RECORD_KEY_CONFIGS]
    assert len(keys[Key.PUBLIC_KEY_1]) > 0 and len(keys[Key.PUBLIC_KEY_2]) > 0
    assert RECORD_KEY_STATE in context.state.config_records
    kept = context.state.config_records[RECORD_KEY_STATE]
    assert kept["threshold"] == 2 and kept["share_num"] == 3


def test_a_failing_handler_is_the_replys_error_and_the_worker_goes_on(federation, worker, tmp_path):
    node = _node(federation, "train", tmp_path / "state", **{"device-worker": str(worker)})
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    broken = Message(RecordDict(), dst_node_id=9, message_type=MessageType.TRAIN)  # no instruction
    with pytest.raises(DeviceWorkerError, match="the ClientApp raised"):
        flower_app(broken, _context(federation, node))
    census = flower_app(_query(), _context(federation, node))
    assert census.content.config_records["info"]["role"] == "train"


def test_a_worker_serving_other_device_code_refuses_naming_both_digests(
    federation, worker, tmp_path, monkeypatch
):
    node = _node(federation, "train", tmp_path / "state")
    monkeypatch.setattr(worker_link, "code_digest", lambda root=None: "0" * 64)
    with pytest.raises(DeviceWorkerError, match=r"the run's app ships 000000000000"):
        forward(worker, _query(), _context(federation, node))


def test_no_worker_a_wrong_key_and_a_long_path_each_say_what_is_wrong(federation, worker, tmp_path):
    node = _node(federation, "train", tmp_path / "state")
    missing = tmp_path / "none.sock"
    with pytest.raises(DeviceWorkerError, match=r"fedmer device-worker --socket .*none\.sock"):
        forward(missing, _query(), _context(federation, node))
    # A key file that is not the serving worker's: the handshake fails.
    impostor = tmp_path / "impostor.sock"
    impostor.symlink_to(worker)
    key_path(impostor).write_bytes(b"x" * 32)
    with pytest.raises(DeviceWorkerError, match="refused the key"):
        forward(impostor, _query(), _context(federation, node))
    with pytest.raises(DeviceWorkerError, match="longer than a Unix socket path"):
        forward(tmp_path / ("x" * 120), _query(), _context(federation, node))


def test_a_second_worker_on_a_served_socket_refuses_to_start(worker):
    out = subprocess.run(
        [str(BIN / "fedmer"), "device-worker", "--socket", str(worker)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert f"a device worker already serves {worker}" in out.stdout


def test_the_worker_caps_torch_threads_and_refuses_a_cap_below_one(worker):
    # One thread by default: on a busy device, idle intra-op threads spin while the
    # SuperNode's processes wait for the cores (deployment rounds ran slower with two).
    log = worker.with_name("worker.log")
    deadline = time.monotonic() + 30
    while "torch threads" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    ready = log.read_text()
    assert f"device worker ready at {worker} " in ready
    assert "torch threads 1)" in ready
    out = subprocess.run(
        [str(BIN / "fedmer"), "device-worker", "--socket", str(worker), "--torch-threads", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "--torch-threads must be at least 1, not 0" in out.stdout
