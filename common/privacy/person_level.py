"""The person-level ε of a device's ledger: the headline figure of every report.

A device's person-level ε is the ε of its whole ledger history when every
spend in it protects a subject (user-level DP-SGD, subject-sensitivity
counts); a single clip-level spend makes it a group bound that fedmer does not
claim (∞), because the group size is the device's secret. The figure holds
against everyone, the coordinator included, because the device samples and
noises with its own secret randomness.

A device that trains has a second guarantee: the coordinator's client-level
DP-FedAvg releases protect the device's whole participation, so every subject
on it (one person on a phone, each of a lab's subjects). That figure is
recomputed from the coordinator's signed release entries (σ and the device
sampling rate q of each). With central noise (``dp-fedavg``) it holds against
fewer people: the coordinator sees the updates before it noises them and knows
whom it sampled. With distributed noise under SecAgg+ (``dp-fedavg-skellam``)
the coordinator unmasks only the noised sum, so the figure holds against it
too, unless devices collude with it to take their noise shares out. The
person's figure is the better of the device's own and the client-level one,
with the adversaries it holds against, and the figure against the coordinator
beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from common.privacy.distributed_noise import RELEASE_MECHANISM as DP_FEDAVG_SKELLAM
from common.privacy.distributed_noise import SkellamRelease, skellam_epsilon
from common.privacy.independent import independent_rdp_epsilon
from common.privacy.ledger import history_of
from common.privacy.units import CLIP, DP_FEDAVG, MECHANISM_UNITS, SUBJECT

AGAINST_EVERYONE = "everyone, the coordinator included (sampling and noise are the device's secret)"
AGAINST_NON_COLLUDING = (
    "everyone, the coordinator included (SecAgg+ unmasks only the sum the devices noised), "
    "unless devices collude with the coordinator to take their noise shares out"
)
AGAINST_ALL_BUT_COORDINATOR = (
    "everyone except the coordinator, which noises the updates it sees in the clear"
)
AGAINST_MODEL_OBSERVERS = (
    "those who see only the released global models (other devices, model users); "
    "not the coordinator, which draws the device sample and sees each sampled update, "
    "nor anyone who reads its results.json or ledgers, which name who took part"
)

AGAINST_MODEL_OBSERVERS_SECAGG = (
    "those who see only the released global models (other devices, model users); "
    "not the coordinator, which draws the device sample (against it the figure without "
    "the sampling's amplification holds: SecAgg+ shows it only the noised sum), nor anyone "
    "who reads its results.json or ledgers, which name who took part"
)

# Who a figure holds against, from the most people to the fewest: a headline
# over several devices holds against the fewest any of them names.
AGAINST_WIDEST_FIRST = (
    AGAINST_EVERYONE,
    AGAINST_NON_COLLUDING,
    AGAINST_ALL_BUT_COORDINATOR,
    AGAINST_MODEL_OBSERVERS_SECAGG,
    AGAINST_MODEL_OBSERVERS,
)


def narrowest(against: Sequence[str]) -> str:
    """The adversaries every one of several figures holds against."""
    return max(against, key=lambda a: AGAINST_WIDEST_FIRST.index(a), default=AGAINST_EVERYONE)


@dataclass(frozen=True)
class PersonLevel:
    """The guarantee one device's ledger gives each of its subjects."""

    epsilon: float  # math.inf when some spend protects less than a subject
    delta: float
    unit: str  # "subject" when every spend is subject-level, else the weakest unit
    mechanisms: tuple[str, ...]
    against: str
    # The figure that holds against the coordinator too (= epsilon unless the
    # headline rests on the coordinator's own client-level noise).
    against_coordinator: float | None = None

    def __post_init__(self) -> None:
        if self.against_coordinator is None:
            object.__setattr__(self, "against_coordinator", self.epsilon)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mechanisms": list(self.mechanisms)}


def person_level(entries: Sequence[Mapping[str, Any]], delta: float) -> PersonLevel:
    """Person-level (ε, δ) of a device from its own ledger entries.

    The history is recomputed from the entries' (σ, q, steps), never taken from
    their ``epsilon`` fields, so a device that misstated its ε is not believed,
    and accounted with dp-accounting's RDP, the auditor's accountant (devices
    calibrate σ so that it, too, meets their target).
    """
    spends = [e for e in entries if e["event"] in ("train", "release") and int(e["steps"]) > 0]
    mechanisms = tuple(sorted({str(e["mechanism"]) for e in spends}))
    units = {MECHANISM_UNITS.get(m, CLIP) for m in mechanisms}
    if not spends:
        return PersonLevel(0.0, delta, SUBJECT, mechanisms, AGAINST_EVERYONE)
    if units != {SUBJECT}:
        return PersonLevel(math.inf, delta, CLIP, mechanisms, AGAINST_EVERYONE)
    epsilon = independent_rdp_epsilon(history_of(spends), delta)
    return PersonLevel(epsilon, delta, SUBJECT, mechanisms, AGAINST_EVERYONE)


CLIENT_LEVEL_MECHANISMS = (DP_FEDAVG, DP_FEDAVG_SKELLAM)


def trained(entries: Sequence[Mapping[str, Any]]) -> bool:
    """Did this device's chain send an update (its subjects are in the client-level sums)?"""
    return any(e["event"] == "train" for e in entries)


@dataclass(frozen=True)
class ClientLevel:
    """What the coordinator's client-level releases guarantee each training device."""

    epsilon: float
    mechanism: str
    against: str
    against_coordinator: float


def client_level(server_entries: Sequence[Mapping[str, Any]], delta: float) -> ClientLevel | None:
    """The guarantee of the coordinator's client-level releases, recomputed from their (σ, q).

    Every release counts for every device, sampled or not: a device's own
    rounds are the coordinator's secret, and composing all of them is the bound.
    Central-noise releases are recomputed with dp-accounting; distributed-noise
    ones from the Skellam parameters their entries carry (:func:`_distributed`).
    None when the coordinator released nothing at client level.
    """
    releases = [
        e
        for e in server_entries
        if e["event"] == "release" and e["mechanism"] in CLIENT_LEVEL_MECHANISMS
    ]
    if not releases:
        return None
    central = any(e["mechanism"] == DP_FEDAVG for e in releases)
    sampled = any(float(e["q"]) < 1 for e in releases)
    if sampled:
        against = AGAINST_MODEL_OBSERVERS if central else AGAINST_MODEL_OBSERVERS_SECAGG
    else:
        against = AGAINST_ALL_BUT_COORDINATOR if central else AGAINST_NON_COLLUDING
    if central:
        epsilon = independent_rdp_epsilon(history_of(releases), delta)
        against_coordinator = math.inf  # it saw every update in the clear
    else:
        epsilon, against_coordinator = _distributed(releases, delta)
    return ClientLevel(
        epsilon=epsilon,
        mechanism=DP_FEDAVG if central else DP_FEDAVG_SKELLAM,
        against=against,
        against_coordinator=against_coordinator,
    )


def _distributed(releases: Sequence[Mapping[str, Any]], delta: float) -> tuple[float, float]:
    """(ε, ε without the sampling's amplification) of distributed-noise releases.

    Recomputed from the Skellam parameters each signed entry carries; an
    entry without them (older ledgers) is counted at its Gaussian-equivalent
    σ, or its recorded ε when that is larger (the audit checks it within 1 %).
    """
    try:
        parsed = [SkellamRelease.from_parameters(str(e["accountant"])) for e in releases]
    except ValueError:
        gaussian = independent_rdp_epsilon(history_of(releases), delta)
        unsampled = independent_rdp_epsilon(history_of([{**e, "q": 1.0} for e in releases]), delta)
        recorded = float(releases[-1]["epsilon"])
        return max(gaussian, recorded), max(unsampled, recorded)
    # Sampling amplifies nothing against the coordinator, which draws the sample.
    return (
        skellam_epsilon(parsed, delta),
        skellam_epsilon([r.unsampled() for r in parsed], delta),
    )


def device_guarantee(
    entries: Sequence[Mapping[str, Any]], client: ClientLevel | None, delta: float
) -> PersonLevel:
    """A device's person-level guarantee from its own entries, with the coordinator's
    client-level releases counted when the device trained (they hold its updates)."""
    own = person_level(entries, delta)
    return with_client_level(own, client) if trained(entries) else own


def with_client_level(device: PersonLevel, client: ClientLevel | None) -> PersonLevel:
    """A training device's guarantee, once the coordinator's releases are counted.

    The device's own figure holds against everyone; the client-level one
    against those :class:`ClientLevel` names. The better of the two leads; the
    better of those that hold against the coordinator stays beside it.
    """
    if client is None or not client.epsilon < device.epsilon:
        return device
    return PersonLevel(
        epsilon=client.epsilon,
        delta=device.delta,
        unit=SUBJECT,
        mechanisms=tuple(sorted({*device.mechanisms, client.mechanism})),
        against=client.against,
        against_coordinator=min(device.epsilon, client.against_coordinator),
    )
