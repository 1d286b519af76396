"""Flower's floor per round: fedmer's message stages with nothing done in them.

The ServerApp asks every device its role once (as fedmer's census does), then
runs rounds of the exchange a fedmer round has: a train message carrying the
model's arrays to every training device, which sends them back, and, in the
same exchange, an evaluate message carrying them to every held-out device
(the previous round's model, whose evaluation rides with this round's
training), which answers with an empty reply; the last round's evaluation
follows alone and, as in fedmer, is not counted in any round. With ``stages = "two"`` a round
is Flower's usual pair of stages instead: train, then evaluate. It polls for
replies as fedmer's ServerApp does (``server.grid_view.PromptGrid``, every
0.2 s). The ClientApp computes nothing and imports nothing beyond Flower, so
a round here costs only what Flower itself spends moving fedmer's messages:
the SuperNodes' and the SuperExec's polling, the reply polling, one fresh
``flwr-clientapp`` process per message, and the transfer of each message's
arrays (one object per array, fetched one by one). Round times go to the run
config's ``out`` (JSON).
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
    train = [n for n, r in roles.items() if r == "train"]
    heldout = [n for n, r in roles.items() if r == "heldout"]
    last = int(context.run_config["num-server-rounds"])
    two_stages = str(context.run_config.get("stages", "riding")) == "two"
    seconds = []
    for server_round in range(1, last + 1):
        start = time.perf_counter()
        trains = [(n, MessageType.TRAIN) for n in train]
        evaluations = [(n, MessageType.EVALUATE) for n in heldout]
        if two_stages:
            _exchange(grid, trains, server_round, arrays)
            _exchange(grid, evaluations, server_round, arrays)
        else:
            _exchange(
                grid, trains + (evaluations if server_round > 1 else []), server_round, arrays
            )
        seconds.append(time.perf_counter() - start)
        print(f"[floor] round {server_round}: {seconds[-1]:.2f} s", flush=True)
    if not two_stages:
        # Alone after the last round and, as in fedmer, not counted in it.
        _exchange(grid, evaluations, last, arrays)
    Path(str(context.run_config["out"])).write_text(json.dumps({"round_seconds": seconds}))


def _roles(grid: Grid, nodes: list[int]) -> dict[int, str]:
    replies = _exchange(grid, [(n, MessageType.QUERY) for n in nodes], 0)
    return {m.metadata.src_node_id: str(m.content["info"]["role"]) for m in replies}


def _model_arrays(model: str) -> ArrayRecord:
    """The arrays fedmer sends each round: the model's, with their shapes and dtypes."""
    from common.labels import COMPOSITE_CLASSES
    from common.models import build_model

    return ArrayRecord(build_model(model, num_classes=len(COMPOSITE_CLASSES)).state_dict())


def _exchange(
    grid: Grid,
    sends: list[tuple[int, str]],
    server_round: int,
    arrays: ArrayRecord | None = None,
) -> list[Message]:
    """One exchange: a message of the given type to each node, and every reply."""
    content = RecordDict() if arrays is None else RecordDict({"arrays": arrays})
    messages = [
        Message(content, dst_node_id=n, message_type=stage, group_id=str(server_round))
        for n, stage in sends
    ]
    replies = list(grid.send_and_receive(messages))
    failed = [m for m in replies if m.has_error()]
    if failed or len(replies) != len(sends):
        raise RuntimeError(f"round {server_round}: {len(replies)} replies, {failed}")
    return replies
