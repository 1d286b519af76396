"""A Flower client mod that turns a device malicious, for robustness experiments.

Device side, test-only by intent: when the SuperNode's node config sets
``poison`` it rewrites the arrays of the device's outgoing *train* reply:

* ``poison="sign-flip"``: sends ``g - s * (w - g)`` (the update reversed and
  scaled by ``poison-scale``, default 1);
* ``poison="scale"``: sends ``g + s * (w - g)`` (the update scaled by
  ``poison-scale``, default 10).

``g`` is the global model the server sent and ``w`` the honestly trained
model. Without ``poison`` the mod passes every message through unchanged, so
registering it costs honest devices nothing. Register it in
``client/client_app.py``: ``ClientApp(mods=[..., poisoning_mod])``.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable

POISON_KEY = "poison"
SCALE_KEY = "poison-scale"
# mode -> (sign, default scale)
MODES = {"sign-flip": (-1.0, 1.0), "scale": (1.0, 10.0)}


def poisoned_arrays(
    global_arrays: ArrayRecord, trained: ArrayRecord, mode: str, scale: float | None
) -> ArrayRecord:
    if mode not in MODES:
        raise ValueError(f"node config poison={mode!r} must be one of {sorted(MODES)}")
    sign, default = MODES[mode]
    factor = sign * (abs(scale) if scale is not None else default)
    out = ArrayRecord()
    for name, arr in trained.items():
        w = arr.numpy()
        g = global_arrays[name].numpy() if name in global_arrays else w
        if np.issubdtype(w.dtype, np.floating):
            w = (g + factor * (w - g)).astype(w.dtype)
        out[name] = Array(w)
    return out


def _attack(context: Context) -> tuple[str, float | None]:
    """(mode, scale) for this device: from its node config, or in simulation
    from the run config's ``poison-partition`` (simulated devices have no
    node config of their own to set)."""
    mode = str(context.node_config.get(POISON_KEY, "") or "")
    scale = context.node_config.get(SCALE_KEY)
    partition = context.node_config.get("partition-id")
    target = int(context.run_config.get("poison-partition", -1))
    if not mode and partition is not None and int(partition) == target:
        mode = str(context.run_config.get("poison-mode", "sign-flip"))
        scale = context.run_config.get("poison-scale")
    return mode, float(scale) if scale is not None else None


def poisoning_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    mode, scale = _attack(context)
    if not mode or not message.metadata.message_type.startswith("train"):
        return call_next(message, context)
    sent = {k: v for k, v in message.content.array_records.items()}
    reply = call_next(message, context)
    if reply.has_error():
        return reply
    for key, record in list(reply.content.array_records.items()):
        if key in sent:
            reply.content.array_records[key] = poisoned_arrays(sent[key], record, mode, scale)
    return reply
