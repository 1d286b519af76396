"""Flower's floor per round: fedmer's message stages with nothing done in them.

The ServerApp asks every device its role once (as fedmer's census does), then
runs rounds of the two stages a fedmer round has: a train message carrying the
model's arrays to every training device, which sends them back, then an
evaluate message carrying them to every held-out device, which answers with
an empty reply. It polls for replies as fedmer's ServerApp does
(``server.grid_view.PromptGrid``, every 0.2 s). The ClientApp computes nothing
and imports nothing beyond Flower, so a round here costs only what Flower
itself spends moving fedmer's messages: the SuperNodes' and the SuperExec's
polling, the reply polling, one fresh ``flwr-clientapp`` process per message,
and the transfer of each message's arrays (one object per array, fetched one
by one). Round times go to the run config's ``out`` (JSON).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from server.grid_view import PromptGrid

server_app = ServerApp()
client_app = ClientApp()


@client_app.query()
def role(msg: Message, context: Context) -> Message:
    record = ConfigRecord({"role": str(context.node_config.get("role", "train"))})
    return Message(RecordDict({"info": record}), reply_to=msg)


@client_app.train()
def send_back(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"arrays": msg.content["arrays"]}), reply_to=msg)


@client_app.evaluate()
def answer(msg: Message, context: Context) -> Message:
    return Message(RecordDict(), reply_to=msg)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    grid = PromptGrid(grid)
    wanted = int(context.run_config["min-nodes"])
    while len(list(grid.get_node_ids())) < wanted:
        time.sleep(0.2)
    roles = _roles(grid, sorted(grid.get_node_ids()))
    arrays = _model_arrays(str(context.run_config["model"]))
    seconds = []
    for server_round in range(1, int(context.run_config["num-server-rounds"]) + 1):
        start = time.perf_counter()
        for stage, role_ in ((MessageType.TRAIN, "train"), (MessageType.EVALUATE, "heldout")):
            nodes = [n for n, r in roles.items() if r == role_]
            _exchange(grid, nodes, stage, server_round, arrays)
        seconds.append(time.perf_counter() - start)
        print(f"[floor] round {server_round}: {seconds[-1]:.2f} s", flush=True)
    Path(str(context.run_config["out"])).write_text(json.dumps({"round_seconds": seconds}))


def _roles(grid: Grid, nodes: list[int]) -> dict[int, str]:
    replies = _exchange(grid, nodes, MessageType.QUERY, 0)
    return {m.metadata.src_node_id: str(m.content["info"]["role"]) for m in replies}


def _model_arrays(model: str) -> ArrayRecord:
    """The arrays fedmer sends each round: the model's, with their shapes and dtypes."""
    from common.labels import COMPOSITE_CLASSES
    from common.models import build_model

    return ArrayRecord(build_model(model, num_classes=len(COMPOSITE_CLASSES)).state_dict())


def _exchange(
    grid: Grid, nodes: list[int], stage: str, server_round: int, arrays: ArrayRecord | None = None
) -> list[Message]:
    content = RecordDict() if arrays is None else RecordDict({"arrays": arrays})
    messages = [
        Message(content, dst_node_id=n, message_type=stage, group_id=str(server_round))
        for n in nodes
    ]
    replies = list(grid.send_and_receive(messages))
    failed = [m for m in replies if m.has_error()]
    if failed or len(replies) != len(nodes):
        raise RuntimeError(f"{stage} round {server_round}: {len(replies)} replies, {failed}")
    return replies
