"""The run-config schema: the one place every run-config key is declared.

Flower passes run config as a flat dict with kebab-case keys (declared in
``pyproject.toml`` under ``[tool.flwr.app.config]``). Each field of
:class:`RunConfig` declares its type, default, help text and the side that
reads it:

* ``coordinator``: the ServerApp (rounds, strategy, client-level DP, ...);
* ``device``: the ClientApp (local training, DP-SGD); a device treats these
  as a *request*, bounded by its own node config (:mod:`common.node_config`);
* ``simulation``: only the local harness (cohort, held-out subjects, where the
  simulated devices' folders are).

The CLI generates its flags from these fields (``fedmer/run_config_flags.py``),
and a test checks that ``pyproject.toml`` declares the same defaults, so the
three can never drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from common.privacy.units import DP_UNITS

COORDINATOR, DEVICE, SIMULATION = "coordinator", "device", "simulation"
SIDES = (COORDINATOR, DEVICE, SIMULATION)


PARTITIONS = ("round-robin", "lab", "dirichlet")


def _key(default: Any, side: str, help: str) -> Any:
    """A run-config field: its default, which side reads it, and its help text."""
    return dataclasses.field(default=default, metadata={"side": side, "help": help})


@dataclass(frozen=True)
class RunConfig:
    """Everything a federated run needs to know, on both sides."""

    num_server_rounds: int = _key(6, COORDINATOR, "federated rounds")
    local_epochs: int = _key(2, DEVICE, "passes over the local clips per round")
    batch_size: int = _key(8, DEVICE, "expected batch size (Poisson sampling rate = batch / clips)")
    learning_rate: float = _key(0.5, DEVICE, "local SGD step size")
    model: str = _key(
        "ststnet", COORDINATOR, "model architecture: ststnet, off_apexnet, c3d_light or msr3d"
    )
    dp_sgd: bool = _key(
        True,
        DEVICE,
        "train with DP-SGD; false trains without noise or clipping, which a device "
        "accepts only if its node config sets allow-non-private",
    )
    dp_unit: str = _key(
        "subject",
        DEVICE,
        "the unit DP-SGD and evaluation protect: subject (user-level DP-SGD, "
        "each step clips a sampled subject's summed gradient; held-out counts at "
        "subject sensitivity) or clip",
    )
    batch_subjects: int = _key(
        4,
        DEVICE,
        "dp-unit subject: expected subjects per step (Poisson rate = this / the device's subjects)",
    )
    eval_clips_per_subject: int = _key(
        12,
        DEVICE,
        "dp-unit subject: clips of each held-out subject counted at most (the "
        "L2 sensitivity of the released counts; the rest are not counted)",
    )
    target_epsilon: float = _key(
        8.0,
        DEVICE,
        "sample-level ε each device may spend over the whole run; σ is calibrated "
        "once for it (0 = use noise-multiplier)",
    )
    noise_multiplier: float = _key(1.1, DEVICE, "DP-SGD σ when target-epsilon is 0")
    max_grad_norm: float = _key(1.0, DEVICE, "DP-SGD per-sample clipping norm C")
    delta: float = _key(1e-5, DEVICE, "δ of every reported (ε, δ)")
    evaluation_epsilon: float = _key(
        8.0,
        DEVICE,
        "ε a held-out device spends over the run on releasing its noised confusion "
        "counts (σ calibrated once for one release per round, within its budget)",
    )
    epsilon_budget: float = _key(
        0.0,
        DEVICE,
        "sample-level ε a device refuses to exceed (0 = the target); a node "
        "config epsilon-budget takes precedence",
    )
    client_target_epsilon: float = _key(
        0.0, COORDINATOR, "client-level DP-FedAvg: ε for the whole run (0 = off)"
    )
    client_noise_multiplier: float = _key(
        0.0, COORDINATOR, "client-level DP-FedAvg noise z when client-target-epsilon is 0"
    )
    client_clipping_norm: float = _key(1.0, COORDINATOR, "client-level update clipping norm")
    client_epsilon_budget: float = _key(
        0.0, COORDINATOR, "client-level ε at which the run stops (0 = the target)"
    )
    client_sampling_rate: float = _key(
        0.0,
        COORDINATOR,
        "client-level DP-FedAvg: Poisson rate at which each training device is "
        "asked per round, from the coordinator's secret random source; its "
        "amplification holds against those who see only the released models, "
        "not the coordinator (0 = every device every round, no amplification)",
    )
    server_optimizer: str = _key(
        "sgd",
        COORDINATOR,
        "client-level DP-FedAvg: server optimiser on the noised mean update "
        "(sgd, momentum or adam; post-processing, no privacy cost)",
    )
    server_learning_rate: float = _key(1.0, COORDINATOR, "server optimiser step size")
    server_momentum: float = _key(
        0.9, COORDINATOR, "server optimiser momentum (adam: its first-moment decay)"
    )
    secagg: bool = _key(False, COORDINATOR, "aggregate with SecAgg+ (the server sees only the sum)")
    secagg_num_shares: int = _key(5, COORDINATOR, "SecAgg+: neighbours each secret is shared with")
    secagg_reconstruction_threshold: int = _key(
        3, COORDINATOR, "SecAgg+: shares needed to reconstruct a secret"
    )
    seed: int = _key(
        0, COORDINATOR, "seed of the initial model, the cohort and the held-out draw (never noise)"
    )
    initial_model: str = _key(
        "",
        COORDINATOR,
        "starting weights (a saved state dict; empty = random from seed); a "
        "pretraining.json beside it says what public data made them",
    )
    min_nodes: int = _key(4, COORDINATOR, "devices that must answer the census before round 1")
    census_settle: float = _key(
        2.0, COORDINATOR, "seconds with no new device before the census is taken"
    )
    round_timeout: float = _key(600.0, COORDINATOR, "seconds a round waits for replies")
    strategy: str = _key(
        "fedavg", COORDINATOR, "fedavg, fedprox, trimmed-mean, median, krum or multikrum"
    )
    trim: float = _key(0.2, COORDINATOR, "trimmed-mean: fraction cut from each end")
    num_malicious: int = _key(1, COORDINATOR, "krum/multikrum: devices assumed malicious")
    max_update_norm: float = _key(
        0.0, COORDINATOR, "reject updates farther than this (L2) from the global model (0 = off)"
    )
    num_heldout_subjects: int = _key(
        16, SIMULATION, "subjects held out of training, evaluated every round"
    )
    silos: int = _key(
        3,
        SIMULATION,
        "0 = cross-device (one device per subject); N = cross-silo: the training "
        "subjects spread over N lab devices, the held-out subjects on one device",
    )
    partition: str = _key(
        "round-robin",
        SIMULATION,
        "cross-silo: how training subjects reach the silos lab devices: round-robin (in "
        "sorted order), lab (one device per dataset, the MEGC2019 sources as three labs; "
        "silos is then ignored), or dirichlet (label skew: each class's subjects split over "
        "the labs in Dirichlet(dirichlet-alpha) shares; a subject stays on one device). "
        "fedmer evaluate and compare keep one device per training subject unless it is "
        "lab or dirichlet",
    )
    dirichlet_alpha: float = _key(0.5, SIMULATION, "partition=dirichlet: concentration")
    pretrain_subjects: int = _key(
        2,
        SIMULATION,
        "public pretraining: synthetic subjects (from a seed no cohort uses) the "
        "starting model is trained on, at no privacy cost (0 = random start)",
    )
    pretrain_epochs: int = _key(1, SIMULATION, "public pretraining: epochs of plain SGD")
    cohort_subjects: int = _key(64, SIMULATION, "synthetic cohort: number of subjects")
    cohort_clips_per_class: int = _key(
        4, SIMULATION, "synthetic cohort: clips per class and subject"
    )
    data_manifest: str = _key("", SIMULATION, "generic manifest CSV (empty = synthetic cohort)")
    simulation_dir: str = _key(
        "",
        SIMULATION,
        "folder of the simulated devices' data folders and node configs, read only "
        "by simulated devices; fedmer simulate and the flwr-run wrapper set it",
    )
    cache_dir: str = _key("", SIMULATION, "feature cache (empty = $FEDMER_CACHE/features)")
    out_dir: str = _key("", COORDINATOR, "run folder (empty = runs/<run-id>)")

    def __post_init__(self) -> None:
        if self.dp_unit not in DP_UNITS:
            raise ValueError(f"run config dp-unit={self.dp_unit!r} must be one of {DP_UNITS}")
        if not 0 <= self.client_sampling_rate <= 1:
            raise ValueError(
                f"run config client-sampling-rate={self.client_sampling_rate} must be in [0, 1]"
            )
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(
                f"run config server-optimizer={self.server_optimizer!r} must be one of "
                f"{SERVER_OPTIMIZERS}"
            )
        if self.partition not in PARTITIONS:
            raise ValueError(f"run config partition={self.partition!r} must be one of {PARTITIONS}")
        if not self.dirichlet_alpha > 0:
            raise ValueError(f"run config dirichlet-alpha={self.dirichlet_alpha} must be > 0")
        for key in ("batch_subjects", "eval_clips_per_subject"):
            if getattr(self, key) < 1:
                raise ValueError(f"run config {flag_name(key)}={getattr(self, key)} must be >= 1")

    @classmethod
    def from_flower(cls, run_config: Mapping[str, Any]) -> RunConfig:
        """Build from Flower's kebab-case run config, ignoring unknown keys."""
        kwargs: dict[str, Any] = {}
        for field in fields(cls):
            key = flag_name(field.name)
            if key in run_config:
                kwargs[field.name] = _coerce(field.type, run_config[key], key)
        return cls(**kwargs)

    def to_flower(self) -> dict[str, bool | int | float | str]:
        """Kebab-case dict, as accepted by ``flwr run --run-config`` or a ConfigRecord."""
        return {flag_name(f.name): getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> RunConfig:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class RunConfigKey:
    """One declared key, as the CLI and the docs see it."""

    name: str  # kebab-case, as in pyproject.toml
    attribute: str
    type: type
    default: Any
    side: str
    help: str


def run_config_keys(sides: tuple[str, ...] = SIDES) -> list[RunConfigKey]:
    """Every declared key read by one of ``sides``, in declaration order."""
    return [
        RunConfigKey(
            name=flag_name(f.name),
            attribute=f.name,
            type=_TYPES[str(f.type)],
            default=f.default,
            side=f.metadata["side"],
            help=f.metadata["help"],
        )
        for f in fields(RunConfig)
        if f.metadata["side"] in sides
    ]


def flag_name(attribute: str) -> str:
    return attribute.replace("_", "-")


SERVER_OPTIMIZERS = ("sgd", "momentum", "adam")
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _coerce(type_name: Any, value: Any, key: str) -> Any:
    """Convert a run-config value to the field's declared type, naming the key on error."""
    target = _TYPES[str(type_name)]
    if target is bool:
        if isinstance(value, str):
            lowered = value.lower()
            if lowered in {"1", "true", "yes"}:
                return True
            if lowered in {"0", "false", "no", ""}:
                return False
            raise ValueError(f"run config {key}={value!r} is not a valid bool")
        return bool(value)
    try:
        return target(value)
    except (TypeError, ValueError):
        raise ValueError(f"run config {key}={value!r} is not a valid {type_name}") from None
