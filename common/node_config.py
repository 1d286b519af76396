"""The node-config schema: what a device's operator sets, and the device alone reads.

A SuperNode gets its node config from its operator
(``flower-supernode --node-config "data-dir='/data' role='train'"``); a
simulated device gets one written for it by the simulation harness before
launch. The coordinator never sets these keys, so they are where a device's
own limits live.

Flower's Simulation Runtime gives each simulated device only ``partition-id``
and ``num-partitions``; such a device finds the rest in the node config the
harness materialized for its partition (see :func:`simulated_node_config_path`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from common.privacy.units import MECHANISM_UNITS

TRAIN, HELDOUT = "train", "heldout"
ROLES = (TRAIN, HELDOUT)
NODE_CONFIG_FILE = "node-config.json"
# Every device-side mechanism (dp-fedavg is the coordinator's).
MECHANISMS = frozenset(MECHANISM_UNITS) - {"dp-fedavg"}
# The smallest unit a device lets its ε protect: "clip" accepts clip- and
# subject-level mechanisms, "subject" refuses every clip-level one.
PRIVACY_UNITS = ("clip", "subject")


class NodeConfigError(ValueError):
    """A node-config key is missing, unknown or has a bad value; the message names it."""


@dataclass(frozen=True)
class NodeConfig:
    """A device's own settings. Every field maps to the kebab-case key of its name."""

    # Folder holding the device's manifest.csv (or name the manifest itself).
    data_dir: str = ""
    manifest: str = ""
    # Folder where the device keeps its signed privacy ledger and signing key;
    # empty = the ClientApp's context.state (simulated devices only).
    state_dir: str = ""
    cache_dir: str = ""
    role: str = TRAIN
    device_id: str = ""
    # The device's privacy policy. A run config may tighten it, never loosen
    # it; a request outside it is refused, with a signed entry in the ledger.
    # epsilon_budget: the ε this device will ever spend (0 = none set: the
    # device refuses every private mechanism until its operator sets one).
    epsilon_budget: float = 0.0
    max_delta: float = 1e-5
    min_noise_multiplier: float = 0.5
    allowed_mechanisms: str = (
        "dp-sgd,dp-sgd-subject,gaussian-counts,gaussian-counts-subject,skellam-share"
    )
    # The smallest unit this device's ε may protect: "subject" refuses any
    # clip-level mechanism (dp-sgd, gaussian-counts), whatever the run asks.
    privacy_unit: str = "clip"
    # Whether this device may train without DP-SGD (a non-private baseline).
    allow_non_private: bool = False
    # This device holds one person's data (a phone): its whole participation
    # in a round is that person's, so client-level DP-FedAvg protects the
    # person. The operator's declaration, not a statistic of the data: a
    # device declared single-person that finds several subjects refuses to train.
    single_person: bool = False
    # Non-private debugging only: Poisson batches drawn from a seed the
    # coordinator knows (run seed, round, device id), so they are reproducible
    # but give no subsampling amplification against the coordinator. A run
    # with any such device is marked not private in results.json.
    seeded_sampling: bool = False
    # Unix socket of this device's warm worker (`fedmer device-worker`): each
    # message is handled there, with torch and the data already loaded,
    # instead of in the fresh process Flower starts per message. Empty = none.
    device_worker: str = ""
    # Set by Flower's Simulation Runtime only.
    partition_id: int = -1
    num_partitions: int = 0

    @property
    def simulated_by_partition(self) -> bool:
        """Flower's Simulation Runtime gave only a partition id; the rest is on disk."""
        return self.partition_id >= 0 and not (self.data_dir or self.manifest)

    @property
    def mechanisms(self) -> frozenset[str]:
        return frozenset(m.strip() for m in self.allowed_mechanisms.split(",") if m.strip())

    @property
    def manifest_path(self) -> Path:
        return Path(self.manifest) if self.manifest else Path(self.data_dir) / "manifest.csv"

    @classmethod
    def from_flower(cls, node_config: Mapping[str, Any]) -> NodeConfig:
        """Validate a node config; the error names the key and what is wrong."""
        known = {_key(f.name): f for f in fields(cls)}
        unknown = sorted(set(node_config) - set(known))
        if unknown:
            raise NodeConfigError(
                f"node config key {unknown[0]!r} is not known; the keys are {', '.join(known)}"
            )
        kwargs = {
            known[key].name: _coerce(str(known[key].type), value, key)
            for key, value in node_config.items()
        }
        config = cls(**kwargs)
        config._check()
        return config

    def to_flower(self) -> dict[str, str | int | float | bool]:
        return {_key(f.name): getattr(self, f.name) for f in fields(self)}

    def _check(self) -> None:
        if self.role not in ROLES:
            raise NodeConfigError(f"node config role={self.role!r} must be one of {ROLES}")
        if self.epsilon_budget < 0:
            raise NodeConfigError(f"node config epsilon-budget={self.epsilon_budget} must be >= 0")
        if not 0 < self.max_delta < 1:
            raise NodeConfigError(f"node config max-delta={self.max_delta} must be in (0, 1)")
        if self.min_noise_multiplier < 0:
            raise NodeConfigError(
                f"node config min-noise-multiplier={self.min_noise_multiplier} must be >= 0"
            )
        unknown = sorted(self.mechanisms - MECHANISMS)
        if unknown:
            raise NodeConfigError(
                f"node config allowed-mechanisms names {unknown[0]!r}; known: {sorted(MECHANISMS)}"
            )
        if self.privacy_unit not in PRIVACY_UNITS:
            raise NodeConfigError(
                f"node config privacy-unit={self.privacy_unit!r} must be one of {PRIVACY_UNITS}"
            )
        if not (self.data_dir or self.manifest or self.partition_id >= 0):
            raise NodeConfigError("node config must name 'data-dir' or 'manifest'")


def simulated_node_config_path(simulation_dir: Path, partition_id: int) -> Path:
    """Where the harness writes the node config of a simulated device."""
    return Path(simulation_dir) / f"partition-{partition_id:03d}" / NODE_CONFIG_FILE


def write_node_config(path: Path, config: NodeConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_flower(), indent=2) + "\n")


def read_node_config(path: Path) -> NodeConfig:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NodeConfigError(f"{path}: no node config was materialized here") from None
    except json.JSONDecodeError as exc:
        raise NodeConfigError(f"{path}: not valid JSON ({exc})") from None
    return NodeConfig.from_flower(raw)


def _key(attribute: str) -> str:
    return attribute.replace("_", "-")


def _coerce(type_name: str, value: Any, key: str) -> Any:
    try:
        if type_name == "bool":
            if isinstance(value, str):
                if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return value.lower() in {"true", "1", "yes"}
            return bool(value)
        return {"str": str, "int": int, "float": float}[type_name](value)
    except (TypeError, ValueError):
        raise NodeConfigError(f"node config {key}={value!r} is not a valid {type_name}") from None
