"""The in-process transport gives each device its own message, as the wire does."""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

from common.node_config import NodeConfig
from simulations.in_process import InProcessGrid


def test_a_device_that_pops_from_its_message_leaves_the_others_theirs(tmp_path):
    """Flower's SecAgg+ set-up sends one content object to every device and its
    mod pops the stage from what it receives; sharing the object had made every
    device after the first fail with "The required key 'stage' is missing"."""
    app = ClientApp()
    seen: list[str] = []

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        seen.append(str(msg.content.config_records["cfg"].pop("stage", "<missing>")))
        return Message(RecordDict(), reply_to=msg)

    nodes = [
        NodeConfig(data_dir=str(tmp_path / f"d{i}"), state_dir=str(tmp_path / f"s{i}"))
        for i in range(3)
    ]
    grid = InProcessGrid(app, nodes, run_config={})
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run_id, 0
    content = RecordDict({"cfg": ConfigRecord({"stage": "setup"})})
    messages = [
        grid.create_message(content, "train", node_id, group_id="1")
        for node_id in grid.get_node_ids()
    ]
    replies = list(grid.send_and_receive(messages))
    assert len(replies) == 3 and not any(r.has_error() for r in replies)
    assert seen == ["setup"] * 3
    assert content.config_records["cfg"]["stage"] == "setup"  # the sender's copy is untouched
