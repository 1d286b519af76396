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
Without client-level noise the quantization ``clipping_range`` is the client
clipping norm C: a clipped update has every coordinate in [-C, C], so
quantization never truncates it. With client-level noise (z > 0) each device
adds its share of Skellam noise before masking
(:mod:`common.privacy.distributed_noise`); the range is then the power of two
that leaves room for the noise's tails, the instruction carries z, and the
server adds nothing: the sum it unmasks is already noised.
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

from common.privacy.distributed_noise import (
    QUANTIZATION_RANGE,
    SkellamShare,
    lattice_clipping_range,
)
from common.wire import CLIENT_NOISE_MULTIPLIER, ROUND_NONCE
from server.grid_view import ErrorRecordingGrid

# Shamir sharing among the round's devices needs at least three of them.
SECAGG_MIN_DEVICES = 3


@dataclass
class SecureRoundResult:
    """What one SecAgg+ round revealed to the server."""

    mean_update: list[np.ndarray] | None  # None when the round could not complete
    metrics: dict[int, dict[str, Scalar]] = field(default_factory=dict)  # by node id
    dropped: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)  # by node id, for dropped devices
    share: SkellamShare | None = None  # each device's noise share, when z > 0

    @property
    def contributors(self) -> int:
        return len(self.metrics)


class _CapturingStrategy(LegacyFedAvg):
    """Sends fit instructions to the round's devices and captures what SecAgg+ unmasks."""

    def __init__(
        self, node_ids: list[int], server_round: int, noise_multiplier: float, nonce: str
    ) -> None:
        super().__init__(fraction_evaluate=0.0, accept_failures=True)
        self._node_ids = set(node_ids)
        self._round = server_round
        self._noise_multiplier = noise_multiplier
        self._nonce = nonce
        self.result = SecureRoundResult(mean_update=None)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        config: dict[str, Scalar] = {"server-round": self._round, ROUND_NONCE: self._nonce}
        if self._noise_multiplier > 0:
            config[CLIENT_NOISE_MULTIPLIER] = self._noise_multiplier
        ins = FitIns(parameters, config)
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

    def for_devices(self, num_devices: int) -> tuple[int, int]:
        """(num_shares, threshold) for ``num_devices``: shares cannot outnumber
        devices, and reconstruction needs fewer than all shares."""
        num_shares = min(self.num_shares, num_devices)
        return num_shares, min(self.reconstruction_threshold, num_shares - 1)

    def noise_share(
        self, num_devices: int, noise_multiplier: float, dimension: int
    ) -> SkellamShare | None:
        """Each device's share of the distributed noise at z (None when z is 0)."""
        if noise_multiplier <= 0:
            return None
        _, threshold = self.for_devices(num_devices)
        return SkellamShare(
            noise_multiplier=noise_multiplier,
            clipping_norm=self.clipping_norm,
            dimension=dimension,
            clipping_range=lattice_clipping_range(self.clipping_norm, noise_multiplier, threshold),
            threshold=threshold,
        )


def secure_round(
    grid: Grid,
    context: Context,
    global_arrays: list[np.ndarray],
    node_ids: list[int],
    server_round: int,
    settings: SecAggSettings,
    noise_multiplier: float = 0.0,
    nonce: str = "",
) -> SecureRoundResult:
    """Run one SecAgg+ fit round on ``node_ids`` (at least 3 needed by the protocol).

    With ``noise_multiplier`` > 0 the devices add the noise; the result's
    ``share`` says how much each added.
    """
    if len(node_ids) < SECAGG_MIN_DEVICES:
        raise ValueError(
            f"SecAgg+ needs at least 3 training devices (Shamir shares among them), got {len(node_ids)}"
        )
    strategy = _CapturingStrategy(node_ids, server_round, noise_multiplier, nonce)
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
    num_shares, threshold = settings.for_devices(len(node_ids))
    dimension = sum(int(a.size) for a in global_arrays)
    share = settings.noise_share(len(node_ids), noise_multiplier, dimension)
    recording = ErrorRecordingGrid(grid)
    SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        clipping_range=share.clipping_range if share else settings.clipping_norm,
        quantization_range=share.quantization_range if share else QUANTIZATION_RANGE,
        max_weight=1.0,
        timeout=settings.timeout,
    )(recording, legacy)
    result = strategy.result
    result.share = share
    result.dropped = sorted(set(node_ids) - set(result.metrics))
    result.reasons = {
        n: recording.errors.get(n, "no reply within the SecAgg+ timeout") for n in result.dropped
    }
    return result
