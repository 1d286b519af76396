"""A Flower mod that applies the payload guard to every reply of the ClientApp."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from common.payload_guard import check_reply


def payload_guard_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run the handler, then refuse its reply if it carries anything not allowlisted.

    Raising here makes Flower send an error reply instead of the content, so the
    refused payload never leaves the device. In SecAgg+ mode this mod runs
    inside ``secaggplus_mod``: it checks the update before it is masked, and
    the protocol's own stages carry only key material that the mod creates.
    """
    reply = call_next(msg, context)
    if reply.has_content():
        check_reply(reply.content, msg.content, msg.metadata.message_type)
    return reply
