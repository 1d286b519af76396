"""The run-config schema shared by the ServerApp, the ClientApp and the CLI.

Flower passes run config as a flat dict with kebab-case keys (declared in
``pyproject.toml`` under ``[tool.flwr.app.config]``). This dataclass is the one
place that names those keys, gives their types and their defaults; a test
checks that ``pyproject.toml`` declares the same defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class RunConfig:
    """Everything a federated run needs to know, on both sides."""

    num_server_rounds: int = 12
    local_epochs: int = 2
    batch_size: int = 8
    learning_rate: float = 0.5
    model: str = "ststnet"
    # DP-SGD (sample-level). When target_epsilon > 0, each client calibrates sigma
    # once, for all rounds it plans to train; otherwise noise_multiplier is used.
    target_epsilon: float = 8.0
    noise_multiplier: float = 1.1
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    # Device budget for sample-level epsilon; a device refuses a round that would
    # exceed it. 0 = the target epsilon (if set). A node config `epsilon-budget`
    # overrides this for one device.
    epsilon_budget: float = 0.0
    # Client-level DP-FedAvg (protects a whole device): updates clipped to
    # client_clipping_norm, Gaussian noise z * norm on their sum. z comes from
    # client_target_epsilon (calibrated once for all rounds) if > 0, else from
    # client_noise_multiplier; both 0 = off. The server stops the run before a
    # round that would exceed client_epsilon_budget (0 = the target, if set).
    client_target_epsilon: float = 0.0
    client_noise_multiplier: float = 0.0
    client_clipping_norm: float = 1.0
    client_epsilon_budget: float = 0.0
    # SecAgg+ (Flower's legacy workflow): the server only sees the sum of the
    # clipped updates. Tolerates devices dropping out while at least
    # secagg_reconstruction_threshold of each device's secagg_num_shares
    # neighbours stay.
    secagg: bool = False
    secagg_num_shares: int = 5
    secagg_reconstruction_threshold: int = 3
    seed: int = 0
    # Devices that must answer the census before round 1, and how long any
    # round may wait for replies.
    min_nodes: int = 16
    round_timeout: float = 600.0
    # Aggregation: fedavg, fedprox, trimmed-mean, median, krum or multikrum;
    # updates that are non-finite, misshapen or (when max_update_norm > 0)
    # too large are rejected before aggregation.
    strategy: str = "fedavg"
    trim: float = 0.2
    num_malicious: int = 1
    max_update_norm: float = 0.0
    # Robustness experiments only: the simulated device with this partition id
    # (-1 = none) sends a poisoned update (see client/poisoning_mod.py).
    poison_partition: int = -1
    poison_mode: str = "sign-flip"
    poison_scale: float = 20.0
    # Simulation: subjects held out of training and used only for evaluation.
    num_heldout_subjects: int = 4
    # Built-in synthetic cohort, used when data_manifest is empty.
    cohort_subjects: int = 16
    cohort_clips_per_class: int = 8
    data_manifest: str = ""
    cache_dir: str = ""
    out_dir: str = ""

    @classmethod
    def from_flower(cls, run_config: Mapping[str, Any]) -> RunConfig:
        """Build from Flower's kebab-case run config, ignoring unknown keys."""
        kwargs: dict[str, Any] = {}
        for field in fields(cls):
            key = field.name.replace("_", "-")
            if key in run_config:
                kwargs[field.name] = _coerce(field.type, run_config[key], key)
        return cls(**kwargs)

    def to_flower(self) -> dict[str, bool | int | float | str]:
        """Kebab-case dict, as accepted by ``flwr run --run-config`` or a ConfigRecord."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> RunConfig:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _coerce(type_name: Any, value: Any, key: str) -> Any:
    """Convert a run-config value to the field's declared type, naming the key on error."""
    target = {"int": int, "float": float, "str": str, "bool": bool}[str(type_name)]
    if target is bool and isinstance(value, str):
        return value.lower() in {"1", "true", "yes"}
    try:
        return target(value)
    except (TypeError, ValueError):
        raise ValueError(f"run config {key}={value!r} is not a valid {type_name}") from None
