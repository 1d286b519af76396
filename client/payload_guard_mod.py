"""A Flower mod that applies the payload guard to every reply of the ClientApp."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from common.payload_guard import ARRAYS_KEY, check_outgoing


def payload_guard_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run the handler, then refuse its reply if it carries anything not allowlisted.

    Raising here makes Flower send an error reply instead of the content, so the
    refused payload never leaves the device.
    """
    reply = call_next(msg, context)
    if reply.has_content():
        check_outgoing(reply.content, msg.content.array_records.get(ARRAYS_KEY))
    return reply
