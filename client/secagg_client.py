"""The device side of SecAgg+: the one place that knows Flower's legacy fit format.

In SecAgg+ mode (Flower 1.41 supports it only through the legacy workflow)
the server's train message carries ``fitins.parameters`` and expects a
``fitres.*`` reply. The device then sends its *clipped update* (new weights
minus the global weights, L2 norm at most the client clipping norm), weighted
1, so that the masked sum the server unmasks is exactly the sum that
client-level DP-FedAvg adds its noise to. Every coordinate of a clipped update
lies in [-C, C], which is why the server sets SecAgg+'s quantization
``clipping_range`` to C: nothing is truncated.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from torch import nn

from common.payload_guard import ARRAYS_KEY, INFO_KEY, LEGACY_FIT, LEGACY_FIT_IN, METRICS_KEY
from common.privacy.client_level import clip_update

# Fault injection for the dropout acceptance test: a device whose id is named
# here fails in the middle of the SecAgg+ protocol, as a device losing power
# would. A dropout cannot be produced any other way inside one simulation.
DROPOUT_ENV = "FEDMER_INJECT_DROPOUT"


def secagg_when_requested_mod(
    msg: Message, context: Context, call_next: ClientAppCallable
) -> Message:
    """Run Flower's ``secaggplus_mod`` only for messages of the SecAgg+ protocol."""
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def raise_injected_dropout(device_id: str) -> None:
    if device_id and device_id in os.environ.get(DROPOUT_ENV, "").split(","):
        raise RuntimeError(f"device {device_id} dropped out (injected fault)")


@dataclass(frozen=True)
class TrainRequest:
    """A train message in either form: Message API, or legacy fit (SecAgg+)."""

    legacy: bool
    server_round: int
    arrays: ArrayRecord

    @classmethod
    def parse(cls, content: RecordDict) -> TrainRequest:
        if LEGACY_FIT_IN in content.array_records:
            config = content.config_records["fitins.config"]
            return cls(True, int(config["server-round"]), content.array_records[LEGACY_FIT_IN])
        return cls(False, int(content["config"]["server-round"]), content.array_records[ARRAYS_KEY])

    def global_ndarrays(self) -> list[np.ndarray]:
        return [self.arrays[key].numpy() for key in self.arrays.keys()]

    def state_dict(self, model: nn.Module) -> OrderedDict[str, torch.Tensor]:
        """The global weights, named like ``model``'s (legacy arrays carry no names)."""
        if not self.legacy:
            return self.arrays.to_torch_state_dict()
        names = list(model.state_dict().keys())
        return OrderedDict(
            (name, torch.from_numpy(array.copy()))
            for name, array in zip(names, self.global_ndarrays(), strict=True)
        )

    def reply(
        self,
        model: nn.Module,
        metrics: dict[str, int | float],
        info: dict[str, str],
        clipping_norm: float,
    ) -> RecordDict:
        if not self.legacy:
            return RecordDict(
                {
                    ARRAYS_KEY: ArrayRecord(model.state_dict()),
                    METRICS_KEY: MetricRecord(metrics),
                    INFO_KEY: ConfigRecord(info),
                }
            )
        new = [t.detach().cpu().numpy() for t in model.state_dict().values()]
        update = clip_update(
            [n - g for n, g in zip(new, self.global_ndarrays(), strict=True)], clipping_norm
        )
        return RecordDict(
            {
                LEGACY_FIT.arrays: ArrayRecord(
                    {key: Array(u) for key, u in zip(self.arrays.keys(), update, strict=True)}
                ),
                # Weight 1: DP-FedAvg averages clipped updates uniformly.
                LEGACY_FIT.metrics: MetricRecord({"num_examples": 1}),
                "fitres.metrics": ConfigRecord({**metrics, **info}),
                "fitres.status": ConfigRecord({"code": 0, "message": "ok"}),
            }
        )
