"""The device side of SecAgg+: the one place that knows Flower's SecAgg+ mod.

In SecAgg+ mode (Flower 1.41 supports it only through the legacy workflow)
the server's train message carries ``fitins.parameters`` and expects a
``fitres.*`` reply (:class:`common.wire.LegacyTrainReply`). The device then
sends its *clipped update* (new weights minus the global weights, L2 norm at
most the client clipping norm), weighted 1, so that the masked sum the server
unmasks is exactly the sum that client-level DP-FedAvg adds its noise to.
Every coordinate of a clipped update lies in [-C, C], which is why the server
sets SecAgg+'s quantization ``clipping_range`` to C: nothing is truncated.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from torch import nn

from common.privacy.client_level import clip_update
from common.wire import TrainInstruction


def secagg_when_requested_mod(
    msg: Message, context: Context, call_next: ClientAppCallable
) -> Message:
    """Run Flower's ``secaggplus_mod`` only for messages of the SecAgg+ protocol."""
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def clipped_update(
    model: nn.Module, request: TrainInstruction, clipping_norm: float
) -> tuple[np.ndarray, ...]:
    """The trained model's update from the global weights, clipped to ``clipping_norm``."""
    new = [t.detach().cpu().numpy() for t in model.state_dict().values()]
    update = [n - g for n, g in zip(new, request.global_ndarrays(), strict=True)]
    return tuple(clip_update(update, clipping_norm))
