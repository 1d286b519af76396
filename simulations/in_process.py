"""The in-process transport: a Flower ``Grid`` that delivers to real ClientApps in this process.

Protocol sweeps (one federation per fold, per ε) and tests need the very
system a user deploys, without Ray start-up or a process per device. This
Grid hands each message to the real ``ClientApp`` (with all its mods: SecAgg+,
payload guard) together with that device's own persistent ``Context``, so the
same ServerApp main loop runs here, on Flower's Simulation Runtime and on the
Deployment Runtime. A ClientApp that raises becomes an error reply, exactly
as Flower's runtimes report it.
"""

from __future__ import annotations

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
    _run: Run | None = None
    _contexts: dict[int, Context] = field(default_factory=dict)
    _replies: dict[str, Message] = field(default_factory=dict)

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
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())
            self._replies[message.metadata.message_id] = self._deliver(message)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return list(self.pull_messages(list(self.push_messages(messages))))

    def _deliver(self, message: Message) -> Message:
        context = self._contexts.get(message.metadata.dst_node_id)
        if context is None:
            return Message(
                Error(ErrorCode.UNKNOWN, f"node {message.metadata.dst_node_id} is unknown"),
                reply_to=message,
            )
        try:
            reply = self.client_app(message, context)
        except Exception as exc:  # reported as Flower's runtimes do, never raised
            reason = f"{type(exc)}:<'{exc}'>"
            reply = Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason), reply_to=message)
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        return reply


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
) -> None:
    """Run ``server_app``'s main loop against one in-process device per node config."""
    grid = InProcessGrid(client_app, node_configs, run_config)
    server_app(grid, coordinator_context(grid.run_id, run_config))
