"""SecAgg+ against plain aggregation: time and bytes per round, 5 and 20 devices.

Both sides run fedmer's own code paths in one process: the server side is
``server.secagg_round.secure_round`` (Flower's SecAggPlusWorkflow) or a plain
Message API round; the device side is a ClientApp with fedmer's mods
(``secagg_when_requested_mod`` -> Flower's ``secaggplus_mod``, then the
payload guard) and ``client.secagg_client.TrainRequest``. Local training is
replaced by a fixed random update, so the figures are the aggregation
protocol's own cost (the same DP-SGD time would be added to both sides).
Bytes are the protobuf size of every message, both directions, as Flower
would put them on the wire.

    .venv/bin/python -m bench.bench_secagg [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Iterable

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from bench.machine import describe_machine
from client.payload_guard_mod import payload_guard_mod
from client.secagg_client import TrainRequest, secagg_when_requested_mod
from common.models import build_model
from server.secagg_round import SecAggSettings, secure_round

CLIP = 1.0


def _bench_client() -> ClientApp:
    app = ClientApp(mods=[secagg_when_requested_mod, payload_guard_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        request = TrainRequest.parse(msg.content)
        model = build_model("ststnet")
        model.load_state_dict(request.state_dict(model))
        rng = np.random.default_rng(context.node_id)
        with torch.no_grad():  # stands in for local training
            for p in model.parameters():
                p.add_(torch.from_numpy(rng.normal(0, 0.01, p.shape).astype(np.float32)))
        return Message(request.reply(model, {"num-examples": 10}, {}, CLIP), reply_to=msg)

    return app


class InProcessGrid(Grid):
    """Delivers messages straight to in-process ClientApps and counts their bytes."""

    def __init__(self, num_nodes: int) -> None:
        app = _bench_client()
        self._nodes = {
            n: (
                app,
                Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}),
            )
            for n in range(1, num_nodes + 1)
        }
        self.bytes = 0
        self.messages = 0

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]
        replies = []
        for msg in messages:
            # Through protobuf and back, as on the wire: each side gets its own copy.
            down = message_to_proto(msg)
            app, context = self._nodes[msg.metadata.dst_node_id]
            reply = message_to_proto(app(message_from_proto(down), context))
            self.bytes += down.ByteSize() + reply.ByteSize()
            self.messages += 2
            replies.append(message_from_proto(reply))
        return replies

    # Unused by either round; required by the Grid interface.
    def set_run(self, run_id):  # type: ignore[no-untyped-def]
        pass

    @property
    def run(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def create_message(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def push_messages(self, messages):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def pull_messages(self, message_ids):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def plain_round(grid: InProcessGrid, arrays: ArrayRecord) -> None:
    messages = [
        Message(
            RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1})}),
            dst_node_id=n,
            message_type=MessageType.TRAIN,
        )
        for n in grid.get_node_ids()
    ]
    replies = grid.send_and_receive(messages)
    stacked = [r.content.array_records["arrays"].to_numpy_ndarrays() for r in replies]
    _ = [np.mean(layer, axis=0) for layer in zip(*stacked)]


def secagg_round(grid: InProcessGrid, arrays: ArrayRecord) -> None:
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    result = secure_round(
        grid,
        context,
        arrays.to_numpy_ndarrays(),
        list(grid.get_node_ids()),
        1,
        SecAggSettings(num_shares=5, reconstruction_threshold=3, clipping_norm=CLIP, timeout=60),
    )
    assert result.mean_update is not None and not result.dropped


def measure(kind: str, num_nodes: int, repeats: int) -> tuple[float, int]:
    arrays = ArrayRecord(build_model("ststnet").state_dict())
    run = secagg_round if kind == "secagg" else plain_round
    times, sizes = [], []
    for _ in range(repeats + 1):  # the first is a warm-up
        grid = InProcessGrid(num_nodes)
        started = time.perf_counter()
        run(grid, arrays)
        times.append(time.perf_counter() - started)
        sizes.append(grid.bytes)
    return statistics.median(times[1:]), sizes[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    # Flower logs every protocol stage of every device; keep the table readable.
    logging.getLogger("flwr").setLevel(logging.WARNING)
    print(describe_machine())
    print(
        "| devices | plain s/round | SecAgg+ s/round | time ratio | plain KiB/round | SecAgg+ KiB/round | bytes ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in (5, 20):
        plain_t, plain_b = measure("plain", n, args.repeats)
        sec_t, sec_b = measure("secagg", n, args.repeats)
        print(
            f"| {n} | {plain_t:.3f} | {sec_t:.3f} | **{sec_t / plain_t:.1f}×** | "
            f"{plain_b / 1024:.0f} | {sec_b / 1024:.0f} | **{sec_b / plain_b:.2f}×** |",
            flush=True,
        )


if __name__ == "__main__":
    main()
