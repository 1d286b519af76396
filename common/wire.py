"""The wire schema: every message a device may send, and how it is read back.

Both sides use these types, so the format exists once: the ClientApp builds
replies with ``to_record()``, the ServerApp reads them with ``from_record()``,
and the payload guard (:mod:`common.payload_guard`) refuses any outgoing
content that does not parse as exactly one of them. A reply with a record, a
metric or an info field the schema does not declare cannot leave a device.

Replies, by the message type they answer:

* ``query``    -> :class:`CensusReply`
* ``train``    -> :class:`TrainReply`, or :class:`Decline`
* ``evaluate`` -> :class:`EvaluateReply` (held-out devices), or :class:`Decline`

Nothing derived from a device's data leaves it unless a DP mechanism that the
device accounts for in its ledger released it: a train reply carries the
model (or the clipped update), the signed ledger entry and the privacy
parameters, never a loss, an accuracy or an example count; an evaluate reply
carries Gaussian-noised confusion counts; the census carries the device's
role and policy; a decline carries a fixed reason code (details stay in the
device's own log).
* SecAgg+ fit (Flower's legacy ``fitins``/``fitres`` records) ->
  :class:`LegacyTrainReply`, carrying the clipped update instead of weights.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    MetricRecord,
    MetricRecordValues,
    RecordDict,
)

ARRAYS, METRICS, INFO, CONFIG = "arrays", "metrics", "info", "config"
DEVICE_ID, LEDGER_ENTRY, DECLINED = "device-id", "ledger-entry", "declined"
NOISE_STD = "noise-std"
SERVER_ROUND = "server-round"
# The coordinator's random per-round nonce, which the device signs into its entry.
ROUND_NONCE = "round-nonce"
# The coordinator's signed receipt of the device's chain head as of its last reply.
LEDGER_RECEIPT = "ledger-receipt"
# SecAgg+ only: the client-level noise multiplier whose share each device adds.
CLIENT_NOISE_MULTIPLIER = "client-noise-multiplier"

# Flower's legacy fit records (the only form SecAgg+ supports in flwr 1.41).
LEGACY_FIT_IN, LEGACY_FIT_CONFIG = "fitins.parameters", "fitins.config"
LEGACY_PARAMETERS, LEGACY_NUM_EXAMPLES = "fitres.parameters", "fitres.num_examples"
LEGACY_METRICS, LEGACY_STATUS = "fitres.metrics", "fitres.status"


class WireError(ValueError):
    """Content does not fit the wire schema; the message says which part."""


@dataclass(frozen=True)
class TrainInstruction:
    """A train message as the device receives it, in either form."""

    server_round: int
    arrays: ArrayRecord
    legacy: bool = False  # SecAgg+ (legacy fit records)
    client_noise_multiplier: float = 0.0  # SecAgg+: z of the devices' distributed noise
    nonce: str = ""

    @classmethod
    def from_record(cls, content: RecordDict) -> TrainInstruction:
        if LEGACY_FIT_IN in content.array_records:
            config = content.config_records[LEGACY_FIT_CONFIG]
            z = config.get(CLIENT_NOISE_MULTIPLIER, 0.0)
            return cls(
                _as_int(config[SERVER_ROUND], SERVER_ROUND),
                content.array_records[LEGACY_FIT_IN],
                True,
                _as_float(z, CLIENT_NOISE_MULTIPLIER),
                str(config.get(ROUND_NONCE, "")),
            )
        if ARRAYS not in content.array_records:
            raise WireError(f"a train message must carry {ARRAYS!r}")
        return cls(
            server_round_of(content), content.array_records[ARRAYS], nonce=round_nonce_of(content)
        )

    def global_ndarrays(self) -> list[np.ndarray]:
        return [self.arrays[key].numpy() for key in self.arrays.keys()]

    def named_arrays(self, names: list[str]) -> OrderedDict[str, np.ndarray]:
        """The global weights under ``names`` (legacy arrays carry no names)."""
        if not self.legacy:
            return OrderedDict((k, self.arrays[k].numpy()) for k in self.arrays.keys())
        return OrderedDict(zip(names, self.global_ndarrays(), strict=True))


def round_nonce_of(content: RecordDict) -> str:
    """The coordinator's nonce for the round of a Message-API instruction ("" if none)."""
    config = content.config_records.get(CONFIG)
    return str(config.get(ROUND_NONCE, "")) if config is not None else ""


def ledger_receipt_of(content: RecordDict) -> str:
    """The coordinator's receipt a Message-API instruction carries ("" if none)."""
    config = content.config_records.get(CONFIG)
    return str(config.get(LEDGER_RECEIPT, "")) if config is not None else ""


def arrays_digest(named: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of named arrays (names, dtypes, shapes, bytes, in order): what a
    device's ledger entry binds and what the coordinator recomputes on receipt."""
    digest = hashlib.sha256()
    for name, array in named.items():
        a = np.ascontiguousarray(array)
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def counts_digest(counts: Sequence[Sequence[float]]) -> str:
    """SHA-256 of released counts (floats in their shortest round-trip form)."""
    text = ";".join(",".join(repr(float(x)) for x in row) for row in counts)
    return hashlib.sha256(text.encode()).hexdigest()


def server_round_of(content: RecordDict) -> int:
    """The round a Message-API train or evaluate instruction belongs to."""
    config = content.config_records.get(CONFIG)
    if config is None or SERVER_ROUND not in config:
        raise WireError(f"the message carries no {CONFIG}.{SERVER_ROUND}")
    return _as_int(config[SERVER_ROUND], SERVER_ROUND)


@dataclass(frozen=True)
class TrainMetrics:
    """The scalars a training device reports: its accounting, nothing about its data.

    ``aggregation_weight`` is the same (1) on every device: FedAvg must not
    weight by exact local counts, which no mechanism releases.
    """

    epsilon: float
    epsilon_prv: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    total_steps: int
    aggregation_weight: float = 1.0

    def to_dict(self) -> dict[str, MetricRecordValues]:
        return {_kebab(k): v for k, v in asdict(self).items()}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainMetrics:
        kwargs: dict[str, Any] = {}  # int or float, by field
        for f in fields(cls):
            key = _kebab(f.name)
            if key not in values:
                raise WireError(f"train metrics lack {key!r}")
            kwargs[f.name] = _as_int(values[key], key) if f.type == "int" else float(values[key])
        return cls(**kwargs)


TRAIN_METRIC_NAMES = frozenset(f.name.replace("_", "-") for f in fields(TrainMetrics))


@dataclass(frozen=True)
class TrainReply:
    device_id: str
    arrays: ArrayRecord
    metrics: TrainMetrics
    ledger_entry: str

    def to_record(self) -> RecordDict:
        return RecordDict(
            {
                ARRAYS: self.arrays,
                METRICS: MetricRecord(self.metrics.to_dict()),
                INFO: ConfigRecord({DEVICE_ID: self.device_id, LEDGER_ENTRY: self.ledger_entry}),
            }
        )

    @classmethod
    def from_record(cls, content: RecordDict) -> TrainReply:
        _expect_records(content, arrays={ARRAYS}, metrics={METRICS}, configs={INFO})
        metrics = content.metric_records[METRICS]
        _expect_names("train metrics", metrics, TRAIN_METRIC_NAMES)
        info = content.config_records[INFO]
        _expect_names("train info", info, {DEVICE_ID, LEDGER_ENTRY})
        return cls(
            device_id=str(info[DEVICE_ID]),
            arrays=content.array_records[ARRAYS],
            metrics=TrainMetrics.from_mapping(metrics),
            ledger_entry=str(info[LEDGER_ENTRY]),
        )


# Why a device sits a message out. A fixed vocabulary: free text could carry
# clip ids or preprocessing errors, which are the device's business.
DECLINE_CODES = {
    "no-usable-clips": "the device has no clips it can use",
    "not-a-training-device": "the device's role is not train",
    "not-a-held-out-device": "only held-out devices evaluate",
    "non-private-not-allowed": "training without DP-SGD is outside the device's policy",
    "mechanism-not-allowed": "the mechanism is not among the device's allowed mechanisms",
    "unit-below-policy": "the run asks for a clip-level mechanism; the device protects subjects",
    "not-single-person": "the device is declared single-person but holds several subjects",
    "too-few-subjects": "user-level DP-SGD needs at least one subject on the device",
    "delta-above-policy": "the run's delta is above the device's maximum delta",
    "noise-below-policy": "the noise multiplier is below the device's minimum",
    "no-budget": "the device has no epsilon budget in its node config",
    "budget-exhausted": "the round would take the device past its epsilon budget",
    "no-state-dir": "the device has no state-dir for its ledger",
    "state-lost": "the device's ledger is behind what the coordinator acknowledged",
}


@dataclass(frozen=True)
class Decline:
    """The device sits this message out; a refusal on privacy grounds is in its ledger."""

    device_id: str
    code: str
    ledger_entry: str = ""

    def __post_init__(self) -> None:
        if self.code not in DECLINE_CODES:
            raise WireError(f"decline code {self.code!r} is not one of {sorted(DECLINE_CODES)}")

    @property
    def reason(self) -> str:
        return f"{self.code}: {DECLINE_CODES[self.code]}"

    def to_record(self) -> RecordDict:
        info: dict[str, ConfigRecordValues] = {DEVICE_ID: self.device_id, DECLINED: self.code}
        if self.ledger_entry:
            info[LEDGER_ENTRY] = self.ledger_entry
        return RecordDict({METRICS: MetricRecord({DECLINED: 1}), INFO: ConfigRecord(info)})

    @classmethod
    def from_record(cls, content: RecordDict) -> Decline:
        _expect_records(content, arrays=set(), metrics={METRICS}, configs={INFO})
        _expect_names("decline metrics", content.metric_records[METRICS], {DECLINED})
        info = content.config_records[INFO]
        _expect_names(
            "decline info", info, {DEVICE_ID, DECLINED, LEDGER_ENTRY}, frozenset({LEDGER_ENTRY})
        )
        return cls(str(info[DEVICE_ID]), str(info[DECLINED]), str(info.get(LEDGER_ENTRY, "")))

    @staticmethod
    def matches(content: RecordDict) -> bool:
        metrics = content.metric_records.get(METRICS)
        return metrics is not None and DECLINED in metrics


def parse_train_reply(content: RecordDict) -> TrainReply | Decline:
    """A Message-API train reply: trained, or declined."""
    return (
        Decline.from_record(content)
        if Decline.matches(content)
        else TrainReply.from_record(content)
    )


@dataclass(frozen=True)
class EvaluateReply:
    """Confusion counts of the global model on a held-out device, released with Gaussian noise.

    ``confusion`` holds the released (noised) counts, ``noise_std`` the
    standard deviation of the noise on each, and ``ledger_entry`` the signed
    entry that accounts for the release. No exact count leaves the device.
    """

    device_id: str
    confusion: tuple[tuple[float, ...], ...]
    noise_std: float
    ledger_entry: str

    def to_record(self) -> RecordDict:
        metrics: dict[str, MetricRecordValues] = {NOISE_STD: float(self.noise_std)}
        for i, row in enumerate(self.confusion):
            for j, count in enumerate(row):
                metrics[f"cm-{i}-{j}"] = float(count)
        info: dict[str, ConfigRecordValues] = {
            DEVICE_ID: self.device_id,
            LEDGER_ENTRY: self.ledger_entry,
        }
        return RecordDict({METRICS: MetricRecord(metrics), INFO: ConfigRecord(info)})

    @classmethod
    def from_record(cls, content: RecordDict, num_classes: int) -> EvaluateReply:
        _expect_records(content, arrays=set(), metrics={METRICS}, configs={INFO})
        metrics = content.metric_records[METRICS]
        names = {NOISE_STD} | {
            f"cm-{i}-{j}" for i in range(num_classes) for j in range(num_classes)
        }
        _expect_names("evaluate metrics", metrics, names)
        info = content.config_records[INFO]
        _expect_names("evaluate info", info, {DEVICE_ID, LEDGER_ENTRY})
        confusion = tuple(
            tuple(_as_float(metrics[f"cm-{i}-{j}"], f"cm-{i}-{j}") for j in range(num_classes))
            for i in range(num_classes)
        )
        return cls(
            str(info[DEVICE_ID]),
            confusion,
            _as_float(metrics[NOISE_STD], NOISE_STD),
            str(info[LEDGER_ENTRY]),
        )


@dataclass(frozen=True)
class CensusReply:
    """Who the device is and the policy it holds itself to; nothing derived from its data."""

    device_id: str
    role: str
    epsilon_budget: float
    max_delta: float
    seeded_sampling: bool
    single_person: bool = False

    def to_record(self) -> RecordDict:
        info: dict[str, ConfigRecordValues] = {
            "single-person": bool(self.single_person),
            "role": self.role,
            DEVICE_ID: self.device_id,
            "epsilon-budget": float(self.epsilon_budget),
            "max-delta": float(self.max_delta),
            "seeded-sampling": bool(self.seeded_sampling),
        }
        return RecordDict({INFO: ConfigRecord(info)})

    @classmethod
    def from_record(cls, content: RecordDict) -> CensusReply:
        _expect_records(content, arrays=set(), metrics=set(), configs={INFO})
        info = content.config_records[INFO]
        _expect_names(
            "census info",
            info,
            {"role", DEVICE_ID, "epsilon-budget", "max-delta", "seeded-sampling", "single-person"},
        )
        return cls(
            str(info[DEVICE_ID]),
            str(info["role"]),
            _as_float(info["epsilon-budget"], "epsilon-budget"),
            _as_float(info["max-delta"], "max-delta"),
            bool(info["seeded-sampling"]),
            bool(info["single-person"]),
        )


@dataclass(frozen=True)
class LegacyTrainReply:
    """A SecAgg+ train reply: the clipped update, weight 1, and the same scalars.

    Weight 1 because DP-FedAvg averages clipped updates uniformly; Flower's
    legacy workflow names the records ``fitres.*``.
    """

    device_id: str
    update: tuple[np.ndarray, ...]
    names: tuple[str, ...]  # the global model's record keys
    metrics: TrainMetrics
    ledger_entry: str

    def to_record(self) -> RecordDict:
        return RecordDict(
            {
                LEGACY_PARAMETERS: ArrayRecord(
                    {k: Array(u) for k, u in zip(self.names, self.update, strict=True)}
                ),
                LEGACY_NUM_EXAMPLES: MetricRecord({"num_examples": 1}),
                LEGACY_METRICS: ConfigRecord(
                    {
                        **self.metrics.to_dict(),
                        DEVICE_ID: self.device_id,
                        LEDGER_ENTRY: self.ledger_entry,
                    }
                ),
                LEGACY_STATUS: ConfigRecord({"code": 0, "message": "ok"}),
            }
        )

    @classmethod
    def check_record(cls, content: RecordDict) -> None:
        """Raise :class:`WireError` unless ``content`` is exactly a legacy train reply."""
        _expect_records(
            content,
            arrays={LEGACY_PARAMETERS},
            metrics={LEGACY_NUM_EXAMPLES},
            configs={LEGACY_METRICS, LEGACY_STATUS},
        )
        _expect_names(
            "legacy fit metrics", content.metric_records[LEGACY_NUM_EXAMPLES], {"num_examples"}
        )
        _expect_names(
            "legacy fit info",
            content.config_records[LEGACY_METRICS],
            TRAIN_METRIC_NAMES | {DEVICE_ID, LEDGER_ENTRY},
        )
        _expect_names(
            "legacy fit status", content.config_records[LEGACY_STATUS], {"code", "message"}
        )


def legacy_metrics(values: Mapping[str, Any]) -> tuple[str, TrainMetrics, str]:
    """Device id, metrics and ledger entry of a SecAgg+ reply, as the server receives them."""
    return (
        str(values.get(DEVICE_ID, "")),
        TrainMetrics.from_mapping(values),
        str(values.get(LEDGER_ENTRY, "")),
    )


def parse_reply(message_type: str, content: RecordDict, num_classes: int | None = None) -> object:
    """Parse ``content`` as the reply to ``message_type``; raise :class:`WireError` if it is not."""
    category = message_type.split(".")[0]
    if category == "query":
        return CensusReply.from_record(content)
    if category == "train":
        if LEGACY_PARAMETERS in content.array_records or LEGACY_METRICS in content.config_records:
            LegacyTrainReply.check_record(content)
            return content
        return parse_train_reply(content)
    if category == "evaluate":
        if Decline.matches(content):
            return Decline.from_record(content)
        metrics = content.metric_records.get(METRICS)
        size = num_classes if num_classes is not None else _confusion_size(metrics)
        return EvaluateReply.from_record(content, size)
    raise WireError(f"no reply is declared for message type {message_type!r}")


def _confusion_size(metrics: MetricRecord | None) -> int:
    cells = [n for n in (metrics or {}) if _is_confusion_name(n)]
    size = int(round(len(cells) ** 0.5))
    if size * size != len(cells):
        raise WireError(f"evaluate metrics hold {len(cells)} confusion cells, not a square")
    return size


def _is_confusion_name(name: str) -> bool:
    parts = name.split("-")
    return len(parts) == 3 and parts[0] == "cm" and parts[1].isdigit() and parts[2].isdigit()


def _expect_records(
    content: RecordDict, *, arrays: set[str], metrics: set[str], configs: set[str]
) -> None:
    for kind, present, allowed in (
        ("array", set(content.array_records), arrays),
        ("metric", set(content.metric_records), metrics),
        ("config", set(content.config_records), configs),
    ):
        extra = sorted(present - allowed)
        if extra:
            raise WireError(f"{kind} record {extra[0]!r} is not part of this reply")
        missing = sorted(allowed - present)
        if missing:
            raise WireError(f"{kind} record {missing[0]!r} is missing from this reply")


def _expect_names(
    what: str,
    record: Mapping[str, Any],
    allowed: set[str] | frozenset[str],
    optional: frozenset[str] = frozenset(),
) -> None:
    extra = sorted(set(record) - set(allowed))
    if extra:
        raise WireError(f"{what}: {extra[0]!r} is not declared in the wire schema")
    missing = sorted(set(allowed) - set(optional) - set(record))
    if missing:
        raise WireError(f"{what}: {missing[0]!r} is missing")


def _as_int(value: object, key: str) -> int:
    """A scalar record value as an int; :class:`WireError` if it is not a number."""
    if not isinstance(value, (int, float)):
        raise WireError(f"{key!r} must be a number, not {type(value).__name__}")
    return int(value)


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _as_float(value: object, key: str) -> float:
    """A scalar record value as a float; :class:`WireError` if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError(f"{key!r} must be a number, not {type(value).__name__}")
    return float(value)
