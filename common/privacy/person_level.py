"""The person-level ε of a device's ledger: the headline figure of every report.

A device's person-level ε is the ε of its whole ledger history when every
spend in it protects a subject (user-level DP-SGD, subject-sensitivity
counts); a single clip-level spend makes it a group bound that fedmer does not
claim (∞), because the group size is the device's secret. The figure holds
against everyone, the coordinator included, because the device samples and
noises with its own secret randomness.

A device declared single-person (a phone) has a second guarantee: the
coordinator's client-level DP-FedAvg releases, which protect the device's
whole participation, that is, its one person. That figure is recomputed from
the coordinator's signed ``dp-fedavg`` release entries (σ and the device
sampling rate q of each) and holds against fewer people: the coordinator sees
the updates before it noises them and knows who it sampled. The person's
figure is the better of the two, with the adversaries it holds against, and
the figure against the coordinator beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from common.privacy.independent import independent_rdp_epsilon
from common.privacy.ledger import history_of
from common.privacy.units import CLIP, DP_FEDAVG, MECHANISM_UNITS, SUBJECT

AGAINST_EVERYONE = "everyone, the coordinator included (sampling and noise are the device's secret)"
AGAINST_ALL_BUT_COORDINATOR = (
    "everyone except the coordinator, which noises the updates it sees in the clear"
)
AGAINST_MODEL_OBSERVERS = (
    "those who see only the released global models (other devices, model users); "
    "not the coordinator, which draws the device sample and sees each sampled update, "
    "nor anyone who reads its results.json or ledgers, which name who took part"
)

# Who a figure holds against, from the most people to the fewest: a headline
# over several devices holds against the fewest any of them names.
AGAINST_WIDEST_FIRST = (AGAINST_EVERYONE, AGAINST_ALL_BUT_COORDINATOR, AGAINST_MODEL_OBSERVERS)


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


def client_level_epsilon(server_entries: Sequence[Mapping[str, Any]], delta: float) -> float:
    """ε of the coordinator's ``dp-fedavg`` releases, recomputed from their (σ, q).

    Every release counts for every device, sampled or not: a device's own
    rounds are the coordinator's secret, and composing all of them is the bound.
    """
    releases = [
        e for e in server_entries if e["event"] == "release" and e["mechanism"] == DP_FEDAVG
    ]
    return independent_rdp_epsilon(history_of(releases), delta) if releases else math.inf


def with_client_level(device: PersonLevel, client_epsilon: float, sampled: bool) -> PersonLevel:
    """A single-person device's guarantee, once the coordinator's releases are counted.

    The device's own figure holds against everyone; the client-level one only
    against those who do not see the updates (nor, when sampled, the sample).
    The better of the two leads; the one against the coordinator stays beside it.
    """
    if not client_epsilon < device.epsilon:
        return device
    return PersonLevel(
        epsilon=client_epsilon,
        delta=device.delta,
        unit=SUBJECT,
        mechanisms=tuple(sorted({*device.mechanisms, DP_FEDAVG})),
        against=AGAINST_MODEL_OBSERVERS if sampled else AGAINST_ALL_BUT_COORDINATOR,
        against_coordinator=device.epsilon,
    )
