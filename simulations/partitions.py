"""Assign subjects (or clips) to simulated devices.

Partitioners: per subject (one device per subject, the LOSO-compatible
default), per dataset (cross-silo), and Dirichlet label skew with a seed.

Simulation follows the field's subject-independent protocol: one device per
subject, and a fixed set of held-out subjects, drawn by seed, that never train
and only evaluate. The held-out set is fixed before training starts, so no
round or epoch can be chosen by looking at it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from client.datasets.clip_record import ClipRecord


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
        raise ValueError(f"need 0 < held-out subjects < {len(ordered)} subjects, got {num_heldout}")
    rng = np.random.default_rng(seed)
    heldout = set(rng.choice(ordered, size=num_heldout, replace=False).tolist())
    return SubjectSplit(
        train=tuple(s for s in ordered if s not in heldout),
        heldout=tuple(s for s in ordered if s in heldout),
    )


def assign_subjects(
    clips: Sequence[tuple[str, str, str]], partition: str, silos: int, alpha: float, seed: int
) -> list[tuple[str, ...]]:
    """The subjects of each lab device: every subject on exactly one device.

    ``clips`` are (subject, dataset, label) of the training clips.

    * ``round-robin``: sorted subjects dealt to ``silos`` labs in turn;
    * ``lab``: one device per dataset (the composite's sources as three labs);
    * ``dirichlet``: label skew at the level of people. A subject's class is
      its most frequent one; each class's subjects (shuffled by seed) are split
      over the labs in shares drawn from Dirichlet(``alpha``). Splitting clips
      instead would put one person on several devices, and their privacy would
      then add up over those devices.
    """
    subjects = sorted({subject for subject, _, _ in clips})
    if partition == "lab":
        by_dataset: dict[str, set[str]] = {}
        for subject, dataset, _ in clips:
            by_dataset.setdefault(dataset, set()).add(subject)
        return [tuple(sorted(by_dataset[d])) for d in sorted(by_dataset)]
    if not 0 < silos <= len(subjects):
        raise ValueError(
            f"silos={silos} must be between 1 and the {len(subjects)} training subjects"
        )
    if partition == "round-robin":
        return [tuple(subjects[i::silos]) for i in range(silos)]
    if partition != "dirichlet":
        raise ValueError(f"unknown partition {partition!r}; expected round-robin, lab or dirichlet")
    if not alpha > 0:
        raise ValueError(f"dirichlet alpha must be > 0, got {alpha}")
    counts: dict[str, dict[str, int]] = {}
    for subject, _, label in clips:
        per = counts.setdefault(subject, {})
        per[label] = per.get(label, 0) + 1
    major = {s: max(sorted(counts[s]), key=lambda label: counts[s][label]) for s in subjects}
    rng = np.random.default_rng(seed)
    labs: list[list[str]] = [[] for _ in range(silos)]
    for label in sorted(set(major.values())):
        members = [s for s in subjects if major[s] == label]
        members = [members[i] for i in rng.permutation(len(members))]
        shares = rng.dirichlet(np.full(silos, alpha))
        cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
        for lab, chunk in zip(labs, np.split(np.arange(len(members)), cuts), strict=True):
            lab.extend(members[i] for i in chunk)
    for empty in [i for i, lab in enumerate(labs) if not lab]:  # every lab holds someone
        donor = max(range(silos), key=lambda i: len(labs[i]))
        labs[empty].append(labs[donor].pop())
    return [tuple(sorted(lab)) for lab in labs]


# ---- partitioners over clips --------------------------------------------
#
# Each returns a Partition: device -> clip ids, with every clip on exactly one
# device, and is deterministic for a given seed.  They work on (clip id,
# subject, dataset, label) only, never on features, so they can run before any
# preprocessing.


@dataclass(frozen=True)
class Partition:
    """Clip ids held by each simulated device, in device order."""

    devices: tuple[tuple[str, ...], ...]
    names: tuple[str, ...]  # one per device: subject, dataset or "device-00"...

    def __len__(self) -> int:
        return len(self.devices)

    def device_of(self) -> dict[str, int]:
        """clip id -> device index."""
        return {clip: d for d, clips in enumerate(self.devices) for clip in clips}


def _group_by(clips: Sequence[ClipRecord], key: Callable[[ClipRecord], str]) -> Partition:
    groups: dict[str, list[str]] = {}
    for clip in sorted(clips, key=lambda c: c.clip_id):
        groups.setdefault(key(clip), []).append(clip.clip_id)
    names = tuple(sorted(groups))
    return Partition(devices=tuple(tuple(groups[n]) for n in names), names=names)


def partition_by_subject(clips: Sequence[ClipRecord]) -> Partition:
    """One device per subject (subjects are dataset-namespaced)."""
    return _group_by(clips, lambda c: c.subject)


def partition_by_dataset(clips: Sequence[ClipRecord]) -> Partition:
    """One device per dataset: the cross-silo setting, each site one release."""
    return _group_by(clips, lambda c: c.dataset)


def partition_dirichlet(
    clips: Sequence[ClipRecord], num_devices: int, alpha: float, seed: int
) -> Partition:
    """Label skew: for each class, its clips are split over devices in
    proportions drawn from Dirichlet(alpha).

    Small alpha gives each device few classes (strong skew); large alpha
    approaches an even split.  Clips are shuffled by seed within each class
    before splitting, so the result depends only on (clips, alpha, seed).
    """
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[str]] = {}
    for clip in sorted(clips, key=lambda c: c.clip_id):
        by_label.setdefault(clip.label, []).append(clip.clip_id)
    devices: list[list[str]] = [[] for _ in range(num_devices)]
    for label in sorted(by_label):
        ids = by_label[label]
        order = rng.permutation(len(ids))
        shares = rng.dirichlet(np.full(num_devices, alpha))
        cuts = np.round(np.cumsum(shares)[:-1] * len(ids)).astype(int)
        for d, chunk in enumerate(np.split(order, cuts)):
            devices[d].extend(ids[i] for i in chunk)
    names = tuple(f"device-{d:02d}" for d in range(num_devices))
    return Partition(devices=tuple(tuple(sorted(d)) for d in devices), names=names)


def label_skew(partition: Partition, labels: dict[str, str]) -> float:
    """Mean total-variation distance between each device's label distribution
    and the overall one (0 = identical everywhere, towards 1 = disjoint);
    devices weighted by their number of clips."""
    classes = sorted(set(labels.values()))
    overall = np.array([sum(1 for v in labels.values() if v == c) for c in classes], dtype=float)
    overall /= overall.sum()
    total, distance = 0, 0.0
    for clips in partition.devices:
        if not clips:
            continue
        counts = np.array(
            [sum(1 for clip in clips if labels[clip] == c) for c in classes], dtype=float
        )
        distance += len(clips) * 0.5 * np.abs(counts / counts.sum() - overall).sum()
        total += len(clips)
    return distance / total if total else 0.0
