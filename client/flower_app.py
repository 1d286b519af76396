"""The ClientApp Flower loads on a device (``[tool.flwr.app.components] clientapp``).

It runs fedmer's device app (:mod:`client.client_app`) on each message, here
in the ``flwr-clientapp`` process, or, when the device's node config names a
``device-worker`` socket, in the device's warm worker process
(:mod:`client.device_worker`), which has torch, the training code and the
device's data already loaded. Either way the same handlers and mods answer.

Nothing heavy is imported at the top: on the worker path this process loads
only Flower and :mod:`client.worker_link`.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from client.worker_link import NODE_CONFIG_KEY, forward


def handle(msg: Message, context: Context) -> Message:
    """Run the device app on ``msg``, in its worker when the node config names one."""
    worker = str(context.node_config.get(NODE_CONFIG_KEY, "") or "")
    if worker:
        return forward(Path(worker), msg, context)
    from client.client_app import app as device_app

    return device_app(msg, context)


app = ClientApp()
app.query()(handle)
app.train()(handle)
app.evaluate()(handle)
