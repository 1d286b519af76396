"""The ServerApp's reply polling: every reply, promptly, and no more than were asked for."""

import time
from collections.abc import Iterable

from flwr.app import Message

from server.grid_view import REPLY_POLL_SECONDS, PromptGrid


class _SlowGrid:
    """A grid whose replies arrive one per pull (a SuperLink with devices still busy)."""

    def __init__(self, never: int = 0) -> None:
        self.pulls = 0
        self.never = never  # the last `never` messages are never answered

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self.ids = [f"m{i}" for i, _ in enumerate(messages)]
        return list(self.ids)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self.pulls += 1
        wanted = [i for i in self.ids[: len(self.ids) - self.never] if i in set(message_ids)]
        return [_Reply(wanted[0])] if wanted else []


class _Reply:
    def __init__(self, reply_to: str) -> None:
        self.metadata = type("M", (), {"reply_to_message_id": reply_to})()


def test_every_reply_is_collected_at_the_short_interval():
    grid = PromptGrid(_SlowGrid())  # type: ignore[arg-type]
    started = time.monotonic()
    replies = grid.send_and_receive([object()] * 4, timeout=60)  # type: ignore[list-item]
    took = time.monotonic() - started
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m0", "m1", "m2", "m3"]
    # 4 pulls, 3 waits between them: far from Flower's 3 s per wait.
    assert took < 3 * REPLY_POLL_SECONDS + 1.0


def test_a_missing_reply_ends_at_the_timeout_with_the_ones_that_came():
    inner = _SlowGrid(never=1)
    grid = PromptGrid(inner)  # type: ignore[arg-type]
    started = time.monotonic()
    replies = grid.send_and_receive([object()] * 3, timeout=1.0)  # type: ignore[list-item]
    assert [r.metadata.reply_to_message_id for r in replies] == ["m0", "m1"]
    assert 1.0 <= time.monotonic() - started < 1.0 + 2 * REPLY_POLL_SECONDS


class _LateGrid(_SlowGrid):
    """One reply, ready ``after`` seconds after the push (a fast simulated round)."""

    def __init__(self, after: float) -> None:
        super().__init__()
        self.after = after

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self.ready_at = time.monotonic() + self.after
        return super().push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        if time.monotonic() < self.ready_at:
            self.pulls += 1
            return []
        return super().pull_messages(message_ids)


def test_a_fast_reply_is_not_rounded_up_to_the_long_interval():
    inner = _LateGrid(after=0.03)
    grid = PromptGrid(inner)  # type: ignore[arg-type]
    started = time.monotonic()
    replies = grid.send_and_receive([object()], timeout=60)  # type: ignore[list-item]
    took = time.monotonic() - started
    assert [r.metadata.reply_to_message_id for r in replies] == ["m0"]
    # Waits of 0.01, 0.02, 0.04 s: the reply is fetched by about 0.07 s; polling
    # at the long interval alone would fetch it at 0.2 s.
    assert took < 0.18, took
    assert inner.pulls <= 6  # and it took a handful of pulls, not one per millisecond
