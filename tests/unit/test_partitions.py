"""Partitioners: per subject, per dataset, Dirichlet label skew."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.datasets.clip_record import ClipRecord
from simulations.partitions import (
    assign_subjects,
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


def _people(n: int = 60) -> list[ClipRecord]:
    """n subjects over three datasets, each with a main class (3 clips) and one other clip."""
    out = []
    for s in range(n):
        dataset, main = ("casme2", "samm", "smic")[s % 3], LABELS[(s // 3) % 3]
        subject = f"{dataset}/p{s}"
        for k, label in enumerate([main, main, main, LABELS[(s + 1) % 3]]):
            out.append(
                ClipRecord(dataset, subject, f"{subject}/{k}", Path("x"), 0, 1, 2, label, None)
            )
    return out


def _class_skew(labs, records) -> float:
    """Mean total-variation distance of each lab's main-class mix from the overall mix."""
    main = {}
    for subject, _, label in records:
        main.setdefault(subject, []).append(label)
    major = {s: max(set(v), key=v.count) for s, v in main.items()}
    overall = [sum(major[s] == c for s in major) / len(major) for c in LABELS]
    tv = []
    for lab in labs:
        mix = [sum(major[s] == c for s in lab) / len(lab) for c in LABELS]
        tv.append(0.5 * sum(abs(a - b) for a, b in zip(mix, overall, strict=True)))
    return sum(tv) / len(tv)


def _rows(records):
    return [(r.subject, r.dataset, r.label) for r in records]


def test_lab_partition_puts_each_dataset_on_one_device():
    records = _rows(_people())
    labs = assign_subjects(records, "lab", silos=0, alpha=1.0, seed=0)
    assert [sorted({s.split("/")[0] for s in lab}) for lab in labs] == [
        ["casme2"],
        ["samm"],
        ["smic"],
    ]
    assert sorted(s for lab in labs for s in lab) == sorted({r[0] for r in records})


def test_dirichlet_keeps_each_person_on_one_device_and_skews_with_small_alpha():
    records = _rows(_people())
    everyone = sorted({r[0] for r in records})
    a = assign_subjects(records, "dirichlet", silos=4, alpha=0.3, seed=1)
    assert sorted(s for lab in a for s in lab) == everyone  # each subject exactly once
    assert all(a_lab for a_lab in a)
    assert a == assign_subjects(list(reversed(records)), "dirichlet", 4, 0.3, seed=1)
    assert a != assign_subjects(records, "dirichlet", 4, 0.3, seed=2)
    strong = sum(
        _class_skew(assign_subjects(records, "dirichlet", 4, 0.1, s), records) for s in range(6)
    )
    weak = sum(
        _class_skew(assign_subjects(records, "dirichlet", 4, 100.0, s), records) for s in range(6)
    )
    assert strong > 2 * weak
    round_robin = assign_subjects(records, "round-robin", 4, 1.0, 0)
    assert round_robin[0] == tuple(everyone[0::4])
    with pytest.raises(ValueError, match="unknown partition 'stripes'"):
        assign_subjects(records, "stripes", 4, 1.0, 0)
