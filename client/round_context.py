"""Who and when of one message on the device, and its signed refusals.

Training and evaluation both record into the device's ledger under the same
run, round and nonce; this module holds what they share, so that the
handlers that do not train (census, evaluation) never import the training
code or Opacus (a deployed device starts a fresh process per message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from client.accountant_state import DevicePrivacyState
from client.local_data import LocalData
from client.privacy_policy import Refusal, accounting_delta
from common.node_config import NodeConfig
from common.privacy.accounting import epsilon_rdp
from common.privacy.ledger import encode_entry
from common.run_config import RunConfig
from common.wire import arrays_digest


@dataclass(frozen=True)
class RoundContext:
    """Who and when: the device's identity and state, the run and round."""

    data: LocalData
    node: NodeConfig
    cfg: RunConfig
    state: DevicePrivacyState
    run_id: str
    server_round: int
    nonce: str = ""  # the coordinator's for this round, signed into every entry
    # Whether the reply's payload is bound by its hash: not under SecAgg+, where
    # what leaves is masked and the coordinator never sees the update itself.
    bind_update: bool = True

    def record(self, **fields: Any) -> dict[str, Any]:
        """Sign and append one ledger entry for this run, round and device."""
        return self.state.ledger.append(
            run_id=self.run_id,
            nonce=self.nonce,
            round=self.server_round,
            device_id=self.data.device_id,
            **fields,
        )

    def model_digest(self, model: nn.Module) -> str:
        """The hash of the model the reply will carry ("" when it is not bound)."""
        if not self.bind_update:
            return ""
        return arrays_digest({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})


@dataclass(frozen=True)
class Refused:
    refusal: Refusal
    ledger_entry: str


def spent_so_far(ctx: RoundContext) -> float:
    """The device's cumulative ε at the δ it accounts at (for the ledger line of a refusal)."""
    history = ctx.state.history()
    return epsilon_rdp(history, accounting_delta(ctx.node, ctx.cfg)) if history else 0.0


def refuse_and_record(
    ctx: RoundContext,
    refusal: Refusal,
    mechanism: str,
    sigma: float,
    q: float,
    spent: float,
    budget: float = 0.0,
) -> Refused:
    """Sign the refusal into the ledger, then hand it back for the reply."""
    entry = ctx.record(
        mechanism=mechanism,
        sigma=sigma,
        q=q,
        # The device's δ, never a larger one the coordinator asked for.
        delta=accounting_delta(ctx.node, ctx.cfg),
        budget=budget,
        accountant="rdp",
        event="refused",
        steps=0,
        epsilon=spent,
        note=refusal.note(),
    )
    return Refused(refusal, encode_entry(entry))
