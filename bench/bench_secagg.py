"""SecAgg+, with and without distributed noise, against plain aggregation: time and bytes
per round, 5 and 20 devices.

Both sides run fedmer's own code paths in one process: the server side is
``server.secagg_round.secure_round`` (Flower's SecAggPlusWorkflow) or a plain
Message API round; the device side is a ClientApp with fedmer's mods
(``secagg_when_requested_mod`` -> Flower's ``secaggplus_mod``, then the
payload guard) and the wire schema's
``TrainInstruction``/``LegacyTrainReply`` over the in-process transport. Local training is
replaced by a fixed random update, so the figures are the aggregation
protocol's own cost (the same DP-SGD time would be added to both sides).
With distributed noise (z = 1) each device also rounds its update onto
SecAgg+'s lattice and adds its Skellam share (``client.secagg_client``), and
the server sets the wider lattice range, as in a real run.
Bytes are the protobuf size of every message, both directions, as Flower
would put them on the wire.

    .venv/bin/python -m bench.bench_secagg [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.supercore.task_identity import TaskIdentity

from bench.machine import describe_machine
from client.payload_guard_mod import payload_guard_mod
from client.secagg_client import (
    clipped_update,
    noised_update,
    secagg_when_requested_mod,
    skellam_share,
)
from common.models import build_model
from common.node_config import NodeConfig
from common.privacy.ledger import FileLines, Ledger, encode_entry
from common.wire import LegacyTrainReply, TrainInstruction, TrainMetrics, TrainReply
from server.secagg_round import SecAggSettings, secure_round
from simulations.in_process import InProcessGrid

CLIP = 1.0
NOISE_MULTIPLIER = 1.0
METRICS = TrainMetrics(
    epsilon=1.0,
    epsilon_prv=1.0,
    delta=1e-5,
    noise_multiplier=1.0,
    sample_rate=0.1,
    steps=1,
    total_steps=1,
)


def _bench_client(ledger_dir: Path) -> ClientApp:
    app = ClientApp(mods=[secagg_when_requested_mod, payload_guard_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        request = TrainInstruction.from_record(msg.content)
        model = build_model("ststnet")
        names = list(model.state_dict())
        model.load_state_dict(
            {k: torch.from_numpy(v.copy()) for k, v in request.named_arrays(names).items()}
        )
        rng = np.random.default_rng(context.node_id)
        with torch.no_grad():  # stands in for local training
            for p in model.parameters():
                p.add_(torch.from_numpy(rng.normal(0, 0.01, p.shape).astype(np.float32)))
        device = f"bench-{context.node_id}"
        entry = encode_entry(_ledger(ledger_dir, device).append(
            round=1, device_id=device, event="train", mechanism="dp-sgd", sigma=1.0, q=0.1,
            steps=1, delta=1e-5, epsilon=1.0, budget=0.0, accountant="rdp", note="",
        ))  # fmt: skip
        if request.legacy:
            update = clipped_update(model, request, CLIP)
            if request.client_noise_multiplier > 0:
                share = skellam_share(
                    context, request.client_noise_multiplier, CLIP, sum(u.size for u in update)
                )
                update = noised_update(update, share, rng)
            reply = LegacyTrainReply(device, update, tuple(request.arrays.keys()), METRICS, entry)
            return Message(reply.to_record(), reply_to=msg)
        plain = TrainReply(device, ArrayRecord(model.state_dict()), METRICS, entry)
        return Message(plain.to_record(), reply_to=msg)

    return app


_KEYS: dict[str, Ed25519PrivateKey] = {}


def _ledger(directory: Path, device: str) -> Ledger:
    key = _KEYS.setdefault(device, Ed25519PrivateKey.generate())
    return Ledger(FileLines(directory / f"{device}.jsonl"), key)


class CountingGrid(InProcessGrid):
    """fedmer's in-process transport, with every message put through protobuf and counted."""

    bytes: int = 0
    messages: int = 0

    def _deliver(self, message: Message) -> Message:
        # Through protobuf and back, as on the wire: each side gets its own copy.
        down = message_to_proto(message)
        reply = message_to_proto(super()._deliver(message_from_proto(down)))
        self.bytes += down.ByteSize() + reply.ByteSize()
        self.messages += 2
        return message_from_proto(reply)


def _grid(num_nodes: int, ledger_dir: Path) -> CountingGrid:
    nodes = [NodeConfig(data_dir=str(ledger_dir)) for _ in range(num_nodes)]
    return CountingGrid(_bench_client(ledger_dir), nodes, {})


def plain_round(grid: CountingGrid, arrays: ArrayRecord) -> None:
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


def secagg_round(grid: CountingGrid, arrays: ArrayRecord, noise_multiplier: float = 0.0) -> None:
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    result = secure_round(
        grid,
        context,
        arrays.to_numpy_ndarrays(),
        list(grid.get_node_ids()),
        1,
        SecAggSettings(num_shares=5, reconstruction_threshold=3, clipping_norm=CLIP, timeout=60),
        noise_multiplier,
    )
    assert result.mean_update is not None and not result.dropped


def measure(kind: str, num_nodes: int, repeats: int) -> tuple[float, int]:
    arrays = ArrayRecord(build_model("ststnet").state_dict())
    runs = {
        "plain": plain_round,
        "secagg": secagg_round,
        "secagg-noise": lambda g, a: secagg_round(g, a, NOISE_MULTIPLIER),
    }
    run = runs[kind]
    times, sizes = [], []
    for _ in range(repeats + 1):  # the first is a warm-up
        grid = _grid(num_nodes, Path(tempfile.mkdtemp(prefix="fedmer-bench-secagg-")))
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
        "| devices | plain s/round | SecAgg+ s/round (ratio) | SecAgg+ & noise s/round (ratio) "
        "| plain KiB/round | SecAgg+ KiB/round (ratio) | SecAgg+ & noise KiB/round (ratio) |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in (5, 20):
        plain_t, plain_b = measure("plain", n, args.repeats)
        sec_t, sec_b = measure("secagg", n, args.repeats)
        noise_t, noise_b = measure("secagg-noise", n, args.repeats)
        print(
            f"| {n} | {plain_t:.3f} | {sec_t:.3f} (**{sec_t / plain_t:.1f}×**) | "
            f"{noise_t:.3f} (**{noise_t / plain_t:.1f}×**) | {plain_b / 1024:.0f} | "
            f"{sec_b / 1024:.0f} (**{sec_b / plain_b:.2f}×**) | "
            f"{noise_b / 1024:.0f} (**{noise_b / plain_b:.2f}×**) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
