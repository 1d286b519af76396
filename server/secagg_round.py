"""The one seam to Flower's SecAgg+ (legacy workflow): one secure training round.

Flower 1.41 offers SecAgg+ only as a legacy workflow (``SecAggPlusWorkflow``
driving a legacy ``Strategy`` through a ``LegacyContext``).
``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` would also take over
the round loop and evaluation, so fedmer calls the same fit workflow once per
round from its own loop (census, held-out evaluation, ledger, budgets).

What the server learns: the *sum* of the surviving devices' clipped updates
(each device weights itself 1; see :mod:`client.secagg_client`) and each
device's scalar metrics and ledger entry. Devices that drop out after the key
exchange are removed by Shamir reconstruction, as long as
``reconstruction_threshold`` of each device's ``num_shares`` neighbours stay.
The quantization ``clipping_range`` is the client clipping norm C: a clipped
update has every coordinate in [-C, C], so quantization never truncates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.common import (
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common.recorddict_compat import parameters_to_arrayrecord
from flwr.server import ServerConfig
from flwr.server.client_manager import ClientManager, SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid


@dataclass
class SecureRoundResult:
    """What one SecAgg+ round revealed to the server."""

    mean_update: list[np.ndarray] | None  # None when the round could not complete
    metrics: dict[int, dict[str, Scalar]] = field(default_factory=dict)  # by node id
    dropped: list[int] = field(default_factory=list)

    @property
    def contributors(self) -> int:
        return len(self.metrics)


class _CapturingStrategy(LegacyFedAvg):
    """Sends fit instructions to the round's devices and captures what SecAgg+ unmasks."""

    def __init__(self, node_ids: list[int], server_round: int) -> None:
        super().__init__(fraction_evaluate=0.0, accept_failures=True)
        self._node_ids = set(node_ids)
        self._round = server_round
        self.result = SecureRoundResult(mean_update=None)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        ins = FitIns(parameters, {"server-round": self._round})
        proxies = client_manager.all()
        return [(proxies[str(n)], ins) for n in sorted(self._node_ids) if str(n) in proxies]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        # SecAgg+ has put the unmasked aggregate into every result; with weight 1
        # per device it is the mean of the surviving clipped updates.
        fit_results: list[tuple[ClientProxy, FitRes]] = list(results)
        if fit_results:
            self.result.mean_update = parameters_to_ndarrays(fit_results[0][1].parameters)
        self.result.metrics = {int(p.node_id): dict(r.metrics) for p, r in fit_results}
        return (fit_results[0][1].parameters if fit_results else None), {}


@dataclass(frozen=True)
class SecAggSettings:
    num_shares: int
    reconstruction_threshold: int
    clipping_norm: float
    timeout: float


def secure_round(
    grid: Grid,
    context: Context,
    global_arrays: list[np.ndarray],
    node_ids: list[int],
    server_round: int,
    settings: SecAggSettings,
) -> SecureRoundResult:
    """Run one SecAgg+ fit round on ``node_ids`` (at least 3 needed by the protocol)."""
    if len(node_ids) < 3:
        raise ValueError(
            f"SecAgg+ needs at least 3 training devices (Shamir shares among them), got {len(node_ids)}"
        )
    strategy = _CapturingStrategy(node_ids, server_round)
    manager = SimpleClientManager()
    for node_id in node_ids:
        manager.register(GridClientProxy(node_id, grid, context.run_id))
    legacy = LegacyContext(
        Context(
            run_id=context.run_id,
            node_id=context.node_id,
            node_config=context.node_config,
            state=RecordDict(),
            run_config=context.run_config,
        ),
        config=ServerConfig(num_rounds=server_round),
        strategy=strategy,
        client_manager=manager,
    )
    legacy.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {Key.CURRENT_ROUND: server_round}
    )
    legacy.state.array_records[MAIN_PARAMS_RECORD] = parameters_to_arrayrecord(
        ndarrays_to_parameters(global_arrays), keep_input=True
    )
    # Shares cannot outnumber devices, and reconstruction needs fewer than all shares.
    num_shares = min(settings.num_shares, len(node_ids))
    threshold = min(settings.reconstruction_threshold, num_shares - 1)
    SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        clipping_range=settings.clipping_norm,
        max_weight=1.0,
        timeout=settings.timeout,
    )(grid, legacy)
    result = strategy.result
    result.dropped = sorted(set(node_ids) - set(result.metrics))
    return result
