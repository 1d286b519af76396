"""Who is out there: each device's role, id and number of usable clips.

Before the first round the server asks every connected node (a QUERY message)
for its role. Training messages then go only to ``train`` devices and
evaluation messages only to ``heldout`` devices, so held-out subjects never
contribute a gradient. Only scalars and short strings come back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from common.wire import CensusReply, WireError
from server.grid_view import GridView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    """What a device says about itself in the census."""

    node_id: int
    device_id: str
    role: str
    epsilon_budget: float
    seeded_sampling: bool
    # The operator declares the device holds one person's data (a phone).
    single_person: bool = False


@dataclass(frozen=True)
class Census:
    devices: dict[int, DeviceInfo]

    def nodes_with_role(self, role: str) -> list[int]:
        return sorted(n for n, d in self.devices.items() if d.role == role)

    def device_id(self, node_id: int) -> str:
        info = self.devices.get(node_id)
        return info.device_id if info else f"node-{node_id}"


# flwr's own node id: the sender of the error replies the SuperLink makes itself.
SUPERLINK_NODE_ID = 1


def replying_node(reply: Message, sent: Iterable[Message]) -> int:
    """The node a reply is from.

    When a node stops heart-beating, the SuperLink answers for it with an
    error reply from itself (``Node Unavailable``), so the node is traced back
    through the message the reply answers."""
    if reply.metadata.src_node_id != SUPERLINK_NODE_ID:
        return reply.metadata.src_node_id
    for message in sent:
        if message.metadata.message_id == reply.metadata.reply_to_message_id:
            return message.metadata.dst_node_id
    return reply.metadata.src_node_id


def wait_for_nodes(grid: Grid, min_nodes: int, timeout: float, settle: float = 2.0) -> None:
    """Block until ``min_nodes`` devices are connected and the count has settled.

    Devices register one by one (in simulation too, while the ServerApp is
    already running), so after the minimum is reached the census waits until
    no new device has appeared for ``settle`` seconds; otherwise the first
    round could start with only the first few devices.
    """
    deadline = time.monotonic() + timeout
    count, stable_since = -1, time.monotonic()
    while True:
        now = time.monotonic()
        node_count = len(list(grid.get_node_ids()))
        if node_count != count:
            count, stable_since = node_count, now
        if count >= min_nodes and now - stable_since >= settle:
            return
        if now > deadline:
            if count >= min_nodes:
                return
            raise TimeoutError(
                f"only {count} of the required {min_nodes} devices connected within {timeout:.0f}s"
            )
        time.sleep(0.25)


def take_census(grid: Grid, timeout: float, known: Census | None = None) -> Census:
    """Ask every connected device not yet in ``known`` for its role.

    Called before every round, so devices that connect (or reconnect with a
    new node id) later are put to work too.
    """
    devices = dict(known.devices) if known else {}
    node_ids = [n for n in grid.get_node_ids() if n not in devices]
    if not node_ids:
        return Census(devices)
    messages = [
        Message(
            RecordDict({"config": ConfigRecord({})}),
            message_type=MessageType.QUERY,
            dst_node_id=node_id,
        )
        for node_id in node_ids
    ]
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node_id = replying_node(reply, messages)
        if reply.has_error():
            log.warning("census: node %s failed to answer: %s", node_id, reply.error.reason)
            continue
        try:
            answer = CensusReply.from_record(reply.content)
        except WireError as exc:
            log.warning("census: node %s answered outside the wire schema: %s", node_id, exc)
            continue
        devices[node_id] = DeviceInfo(
            node_id=node_id,
            device_id=answer.device_id,
            role=answer.role,
            epsilon_budget=answer.epsilon_budget,
            seeded_sampling=answer.seeded_sampling,
            single_person=answer.single_person,
        )
    return Census(devices)


class NodeSubsetGrid(GridView):
    """A view of a Grid that exposes only some nodes to a strategy's sampler.

    Flower's strategies sample from ``grid.get_node_ids()``; restricting that
    set is how training stays on ``train`` devices and evaluation on
    ``heldout`` devices without re-implementing any strategy.
    """

    def __init__(self, grid: Grid, allowed: Iterable[int]) -> None:
        super().__init__(grid)
        self._allowed = frozenset(allowed)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self._grid.get_node_ids() if n in self._allowed]
