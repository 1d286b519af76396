"""Strategies by name, and robust aggregation really resisting a poisoned update."""

from __future__ import annotations

import time

import numpy as np
import pytest
from flwr.app import ArrayRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, FedMedian, FedProx, FedTrimmedAvg, Krum, MultiKrum

from server.strategies import STRATEGIES, StrategySettings, build_strategy, canonical_name


@pytest.mark.parametrize(
    "name, cls",
    [
        ("fedavg", FedAvg),
        ("fedprox", FedProx),
        ("trimmed-mean", FedTrimmedAvg),
        ("median", FedMedian),
        ("krum", Krum),
        ("multikrum", MultiKrum),
    ],
)
def test_factory_builds_flower_strategies(name, cls):
    strategy = build_strategy(
        StrategySettings(name=name, min_train_nodes=3, min_available_nodes=4), num_train_nodes=5
    )
    assert type(strategy) is cls
    assert strategy.min_train_nodes == 3 and strategy.min_available_nodes == 4


def test_names_and_aliases():
    assert canonical_name("FedTrimmedAvg") == "trimmed-mean"
    assert canonical_name("FedMedian") == "median"
    assert set(STRATEGIES) >= {"fedavg", "krum", "multikrum"}
    with pytest.raises(ValueError, match="unknown strategy 'bulyan'.*fedavg"):
        canonical_name("bulyan")


def test_invalid_settings_are_clear_errors():
    with pytest.raises(ValueError, match="trim"):
        build_strategy(StrategySettings(name="trimmed-mean", trim=0.5))
    with pytest.raises(ValueError, match="more than 2f\\+2=4 training devices; the census has 3"):
        build_strategy(StrategySettings(name="krum", num_malicious=1), num_train_nodes=3)


def _reply(values: np.ndarray, node_id: int, n: int = 10) -> Message:
    """A train reply as the SuperLink hands it to the ServerApp."""
    content = RecordDict(
        {
            "arrays": ArrayRecord([values.astype(np.float32)]),
            "metrics": MetricRecord({"aggregation-weight": 1.0}),
        }
    )
    metadata = Metadata(
        run_id=1,
        message_id=f"m{node_id}",
        src_node_id=node_id,
        dst_node_id=0,
        reply_to_message_id=f"i{node_id}",
        group_id="1",
        created_at=time.time(),
        ttl=60.0,
        message_type="train",
    )
    return Message(content=content, metadata=metadata)


def _aggregate(name: str, updates: list[np.ndarray]) -> np.ndarray:
    strategy = build_strategy(
        StrategySettings(name=name, num_malicious=1, trim=0.2), num_train_nodes=len(updates)
    )
    replies = [_reply(u, node_id=i + 1) for i, u in enumerate(updates)]
    arrays, _ = strategy.aggregate_train(1, replies)
    return arrays.to_numpy_ndarrays()[0]


@pytest.mark.parametrize("name", ["trimmed-mean", "median", "krum", "multikrum"])
def test_robust_strategies_ignore_one_scaled_update(name):
    rng = np.random.default_rng(0)
    honest = [1.0 + 0.01 * rng.standard_normal(50) for _ in range(5)]
    poisoned = -100.0 * honest[0]
    robust = _aggregate(name, honest + [poisoned])
    mean = _aggregate("fedavg", honest + [poisoned])
    assert np.abs(robust - 1.0).max() < 0.1, name
    assert np.abs(mean - 1.0).max() > 10.0
