"""The person-level ε of a device's ledger: the headline figure of every report.

A device's person-level ε is the ε of its whole ledger history when every
spend in it protects a subject (user-level DP-SGD, subject-sensitivity
counts); a single clip-level spend makes it a group bound that fedmer does not
claim (∞), because the group size is the device's secret. The figure holds
against everyone, the coordinator included, because the device samples and
noises with its own secret randomness.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from common.privacy.independent import independent_rdp_epsilon
from common.privacy.ledger import history_of
from common.privacy.units import CLIP, MECHANISM_UNITS, SUBJECT

AGAINST_EVERYONE = "everyone, the coordinator included (sampling and noise are the device's secret)"


@dataclass(frozen=True)
class PersonLevel:
    """The guarantee one device's ledger gives each of its subjects."""

    epsilon: float  # math.inf when some spend protects less than a subject
    delta: float
    unit: str  # "subject" when every spend is subject-level, else the weakest unit
    mechanisms: tuple[str, ...]
    against: str

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
