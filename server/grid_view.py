"""Views of a Flower Grid: the same SuperLink, seen through one change.

:class:`GridView` forwards everything to the grid it wraps; a subclass
overrides the one thing it changes (which nodes a strategy may sample, how
often replies are polled).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore.run import Run

# How often the ServerApp asks the SuperLink for replies. Flower's gRPC grid
# sleeps 3 s between pulls, which costs up to 3 s per message exchange however
# fast the devices answer; a pull is one small RPC. The wait starts short and
# doubles up to REPLY_POLL_SECONDS while nothing arrives (and starts short again
# after a reply), so a fast exchange (a simulated round, ~0.2 s) is not rounded
# up to the next 0.2 s, and a slow one costs a few pulls more.
FIRST_POLL_SECONDS = 0.01
REPLY_POLL_SECONDS = 0.2


class GridView(Grid):
    """A Grid that forwards every call to ``grid``."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def set_run(self, run: Run) -> None:
        return self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self._grid.create_message(*args, **kwargs)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self._grid.send_and_receive(messages, timeout=timeout)


class PromptGrid(GridView):
    """Polls for replies from every :data:`FIRST_POLL_SECONDS` up to every
    :data:`REPLY_POLL_SECONDS`, instead of Flower's 3 s.

    The same contract as Flower's ``send_and_receive``: push, then pull until
    every message has its reply or ``timeout`` seconds have passed (no
    timeout: until every reply is in).
    """

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        wait = FIRST_POLL_SECONDS
        while pending:
            arrived = list(self.pull_messages(pending))
            replies.extend(arrived)
            pending.difference_update(m.metadata.reply_to_message_id for m in arrived)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            if arrived:
                wait = FIRST_POLL_SECONDS
            time.sleep(wait)
            wait = min(2 * wait, REPLY_POLL_SECONDS)
        return replies


class ErrorRecordingGrid(GridView):
    """Forwards to ``grid`` and keeps, per node, the last error reply it saw.

    Flower's SecAgg+ workflow drops a device whose reply is an error without
    saying which device or why; this view keeps the reason for the report.
    """

    def __init__(self, grid: Grid) -> None:
        super().__init__(grid)
        self.errors: dict[int, str] = {}

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_error():
                self.errors[reply.metadata.src_node_id] = reply.error.reason or "error reply"
        return replies
