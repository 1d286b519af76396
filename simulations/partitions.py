"""Assign subjects to simulated devices.

Simulation follows the field's subject-independent protocol: one device per
subject, and a fixed set of held-out subjects, drawn by seed, that never train
and only evaluate. The held-out set is fixed before training starts, so no
round or epoch can be chosen by looking at it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SubjectSplit:
    """Subjects that train and subjects held out for evaluation only."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]

    @property
    def partitions(self) -> tuple[str, ...]:
        """Subject of each simulated device: training devices first."""
        return self.train + self.heldout

    def role_of(self, partition_id: int) -> str:
        """``train``, ``heldout`` or ``idle`` (more devices than subjects)."""
        if partition_id < len(self.train):
            return "train"
        if partition_id < len(self.partitions):
            return "heldout"
        return "idle"

    def subject_of(self, partition_id: int) -> str | None:
        """The subject a device holds, or None for an idle device."""
        parts = self.partitions
        return parts[partition_id] if partition_id < len(parts) else None


def split_subjects(subjects: Iterable[str], num_heldout: int, seed: int) -> SubjectSplit:
    """Draw ``num_heldout`` held-out subjects by seed; the rest train."""
    ordered = sorted(set(subjects))
    if not 0 < num_heldout < len(ordered):
        raise ValueError(
            f"need 0 < held-out subjects < {len(ordered)} subjects, got {num_heldout}"
        )
    rng = np.random.default_rng(seed)
    heldout = set(rng.choice(ordered, size=num_heldout, replace=False).tolist())
    return SubjectSplit(
        train=tuple(s for s in ordered if s not in heldout),
        heldout=tuple(s for s in ordered if s in heldout),
    )
