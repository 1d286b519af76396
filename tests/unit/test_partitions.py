"""Partitioners: per subject, per dataset, Dirichlet label skew."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.datasets.clip_record import ClipRecord
from simulations.partitions import (
    label_skew,
    partition_by_dataset,
    partition_by_subject,
    partition_dirichlet,
    split_subjects,
)

LABELS = ("negative", "positive", "surprise")


def clips(n_per_class: int = 40) -> list[ClipRecord]:
    out = []
    for dataset in ("casme2", "samm"):
        for _c, label in enumerate(LABELS):
            for k in range(n_per_class):
                subject = f"{dataset}/s{k % 5}"
                out.append(
                    ClipRecord(
                        dataset, subject, f"{dataset}/{label}{k}", Path("x"), 0, 1, 2, label, None
                    )
                )
    return out


def assigned_once(partition, records) -> bool:
    flat = [c for device in partition.devices for c in device]
    return sorted(flat) == sorted(r.clip_id for r in records)


def test_per_subject_and_per_dataset():
    records = clips()
    by_subject = partition_by_subject(records)
    assert len(by_subject) == 10 and by_subject.names[0] == "casme2/s0"
    assert assigned_once(by_subject, records)
    by_dataset = partition_by_dataset(records)
    assert by_dataset.names == ("casme2", "samm") and assigned_once(by_dataset, records)
    assert all(c.startswith("samm/") for c in by_dataset.devices[1])


def test_dirichlet_is_deterministic_by_seed_and_assigns_every_clip_once():
    records = clips()
    a = partition_dirichlet(records, 6, alpha=0.5, seed=1)
    assert a == partition_dirichlet(list(reversed(records)), 6, alpha=0.5, seed=1)
    assert a != partition_dirichlet(records, 6, alpha=0.5, seed=2)
    assert assigned_once(a, records) and len(a) == 6


def test_skew_increases_as_alpha_decreases():
    records = clips()
    labels = {r.clip_id: r.label for r in records}
    skew = {
        alpha: sum(
            label_skew(partition_dirichlet(records, 6, alpha, seed), labels) for seed in range(5)
        )
        / 5
        for alpha in (100.0, 1.0, 0.05)
    }
    assert skew[100.0] < skew[1.0] < skew[0.05]
    assert skew[100.0] < 0.15 and skew[0.05] > 0.4


def test_bad_arguments_and_subject_split_unchanged():
    with pytest.raises(ValueError, match="alpha must be > 0"):
        partition_dirichlet(clips(1), 3, alpha=0, seed=0)
    with pytest.raises(ValueError, match="num_devices"):
        partition_dirichlet(clips(1), 0, alpha=1, seed=0)
    split = split_subjects(["a", "b", "c", "d"], 1, seed=0)
    assert len(split.train) == 3 and len(split.heldout) == 1
