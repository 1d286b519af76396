"""From sample-level (one clip) to subject-level (all of a subject's k clips) privacy.

DP-SGD protects one clip. A subject who contributes k clips is a group of k
records, and the group-privacy theorem for (epsilon, delta)-DP gives
(k * epsilon, k * exp((k - 1) * epsilon) * delta) for that group. The delta
term explodes quickly, so we search for the sample-level delta' (spending a
little more epsilon) that brings the subject-level delta down to the target;
when no delta' does, the subject-level guarantee is reported as vacuous
rather than as a misleading number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from common.privacy.accounting import Segment, epsilon_rdp


@dataclass(frozen=True)
class SubjectLevel:
    clips_per_subject: int
    epsilon: float  # math.inf when no finite bound at ``delta`` exists
    delta: float
    sample_delta: float  # the sample-level delta the bound was derived from

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "clips_per_subject": self.clips_per_subject,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "sample_delta": self.sample_delta,
            "method": "group privacy, (k*eps, k*exp((k-1)*eps)*delta')",
        }


def group_delta(k: int, epsilon: float, sample_delta: float) -> float:
    """Subject-level delta for a group of ``k`` records."""
    exponent = (k - 1) * epsilon
    if exponent > 700:  # exp would overflow; the bound is vacuous anyway
        return math.inf
    return k * math.exp(exponent) * sample_delta


def subject_level(history: Sequence[Segment], k: int, delta: float) -> SubjectLevel:
    """A (k * eps(delta'), delta) subject-level bound, or epsilon = inf if none exists."""
    if k < 1:
        raise ValueError(f"a subject has at least one clip, got {k}")
    # eps(delta') grows as delta' shrinks, so the first feasible delta' on a
    # decreasing grid gives the smallest k * eps (a finer grid gains < 1 %).
    sample_delta = delta
    while sample_delta > 1e-300:
        eps = epsilon_rdp(history, sample_delta)
        if group_delta(k, eps, sample_delta) <= delta:
            return SubjectLevel(k, k * eps, delta, sample_delta)
        sample_delta /= 10.0
    return SubjectLevel(k, math.inf, delta, 0.0)
