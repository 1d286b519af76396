"""The in-process transport: a Flower ``Grid`` that delivers to real ClientApps in this process.

Protocol sweeps (one federation per fold, per ε) and tests need the very
system a user deploys, without Ray start-up or a process per device. This
Grid hands each message to the real ``ClientApp`` (with all its mods: SecAgg+,
payload guard) together with that device's own persistent ``Context``, so the
same ServerApp main loop runs here, on Flower's Simulation Runtime and on the
Deployment Runtime. A ClientApp that raises becomes an error reply, exactly
as Flower's runtimes report it.

With ``workers`` > 1 the devices are spread over that many forked worker
processes, each keeping its devices' Contexts for the whole run, so devices
train in parallel on separate cores (threads would not: the GIL serialises
the many small operations of a small model). Messages and replies cross as
pickles; the ServerApp still runs here, one loop for every transport.
"""

from __future__ import annotations

import copy
import multiprocessing
import queue
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from common.node_config import NodeConfig


@dataclass
class InProcessGrid(Grid):
    """Delivers messages synchronously to ``client_app``, one Context per node."""

    client_app: ClientApp
    node_configs: Sequence[NodeConfig]
    run_config: dict[str, bool | int | float | str]
    run_id: int = field(default_factory=lambda: secrets.randbits(63))
    workers: int = 1
    _run: Run | None = None
    _contexts: dict[int, Context] = field(default_factory=dict)
    _replies: dict[str, Message] = field(default_factory=dict)
    _pool: _DeviceWorkers | None = None

    def __post_init__(self) -> None:
        for node in self.node_configs:
            node_id = secrets.randbits(63)
            self._contexts[node_id] = Context(
                run_id=self.run_id,
                node_id=node_id,
                node_config=dict(node.to_flower()),
                state=RecordDict(),
                run_config=dict(self.run_config),
            )

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        if self._run is None:
            self._run = Run.create_empty(run_id=self.run_id)
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        batch = list(messages)
        for message in batch:
            message.metadata.__dict__["_message_id"] = str(uuid4())
        if self.workers > 1:
            if self._pool is None:
                # Started at the first message, once the ServerApp has set
                # Flower's task identity, which the workers inherit.
                self._pool = _DeviceWorkers(self.client_app, self._contexts, self.workers)
            replies = self._pool.deliver(batch)
        else:
            replies = [self._deliver(m) for m in batch]
        for message, reply in zip(batch, replies, strict=True):
            self._replies[message.metadata.message_id] = reply
        return [m.metadata.message_id for m in batch]

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return list(self.pull_messages(list(self.push_messages(messages))))

    def _deliver(self, message: Message) -> Message:
        # One message, in this process (a seam tests use to watch replies).
        # Each device gets its own copy, as it would over the wire: Flower's
        # workflows send one content object to many devices (SecAgg+'s set-up
        # does), and a device's mod pops keys from what it receives.
        return deliver(self.client_app, self._contexts, copy.deepcopy(message))

    def close(self) -> None:
        """Stop the worker processes, if any."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def deliver(client_app: ClientApp, contexts: Mapping[int, Context], message: Message) -> Message:
    """``client_app``'s reply to ``message`` with its node's Context; errors become replies."""
    context = contexts.get(message.metadata.dst_node_id)
    if context is None:
        return _unknown_node(message)
    try:
        reply = client_app(message, context)
    except Exception as exc:  # reported as Flower's runtimes do, never raised
        reason = f"{type(exc)}:<'{exc}'>"
        reply = Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason), reply_to=message)
    reply.metadata.__dict__["_message_id"] = str(uuid4())
    return reply


def _unknown_node(message: Message) -> Message:
    return Message(
        Error(ErrorCode.UNKNOWN, f"node {message.metadata.dst_node_id} is unknown"),
        reply_to=message,
    )


class _DeviceWorkers:
    """Forked processes that each hold some devices' Contexts and answer their messages."""

    def __init__(self, client_app: ClientApp, contexts: Mapping[int, Context], workers: int):
        fork = multiprocessing.get_context("fork")
        nodes = sorted(contexts)
        self._worker_of = {node: i % workers for i, node in enumerate(nodes)}
        self._outbox = fork.Queue()
        self._inboxes = [fork.Queue() for _ in range(workers)]
        self._procs = []
        for index, inbox in enumerate(self._inboxes):
            mine = {n: contexts[n] for n in nodes if self._worker_of[n] == index}
            proc = fork.Process(
                target=_serve, args=(client_app, mine, inbox, self._outbox), daemon=True
            )
            proc.start()
            self._procs.append(proc)

    def deliver(self, batch: Sequence[Message]) -> list[Message]:
        replies: dict[int, Message] = {}
        for index, message in enumerate(batch):
            worker = self._worker_of.get(message.metadata.dst_node_id)
            if worker is None:
                replies[index] = _unknown_node(message)
            else:
                self._inboxes[worker].put((index, message))
        while len(replies) < len(batch):
            try:
                index, reply = self._outbox.get(timeout=1.0)
            except queue.Empty:
                dead = [p.pid for p in self._procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"in-process device worker(s) {dead} died") from None
                continue
            replies[index] = reply
        return [replies[i] for i in range(len(batch))]

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _serve(
    client_app: ClientApp,
    contexts: dict[int, Context],
    inbox: multiprocessing.Queue,
    outbox: multiprocessing.Queue,
) -> None:
    import torch

    # One core per worker: the devices, not torch's threads, are the parallelism.
    torch.set_num_threads(1)
    while (item := inbox.get()) is not None:
        index, message = item
        outbox.put((index, deliver(client_app, contexts, message)))


def coordinator_context(run_id: int, run_config: Mapping[str, bool | int | float | str]) -> Context:
    """The ServerApp's Context for a local run, with Flower's task identity set to match.

    Messages take their run and source from the task identity, as in Flower's
    runtimes; both simulation transports start the ServerApp this way.
    """
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    return Context(
        run_id=run_id, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config)
    )


def run_in_process(
    server_app: ServerApp,
    client_app: ClientApp,
    run_config: dict[str, bool | int | float | str],
    node_configs: Sequence[NodeConfig],
    workers: int = 1,
) -> None:
    """Run ``server_app``'s main loop against one in-process device per node config.

    ``workers`` > 1 spreads the devices over that many worker processes.
    """
    grid = InProcessGrid(client_app, node_configs, run_config, workers=workers)
    try:
        server_app(grid, coordinator_context(grid.run_id, run_config))
    finally:
        grid.close()
