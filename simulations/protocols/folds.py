"""Subject-independent splits: LOSO, grouped subjects, and cross-dataset.

Every fold is built from subject (or dataset) membership alone, before any
training, and :func:`check_fold` refuses a fold whose test subjects appear in
its training indices. Nothing here looks at labels or scores, so no epoch or
round can be chosen on a held-out subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    """Indices into the protocol's clip arrays; test subjects never train."""

    name: str
    train_idx: np.ndarray
    test_idx: np.ndarray
    test_subjects: tuple[str, ...]


def subject_folds(
    subjects: Sequence[str], num_folds: int | None = None, seed: int = 0
) -> list[Fold]:
    """LOSO (``num_folds`` None or the number of subjects), else k subject groups.

    Grouping is LOSO with several subjects left out per fold: it keeps the
    subject-independence of LOSO at a fraction of the training runs, which
    matters for federated modes on a small CPU. Groups are drawn by ``seed``.
    """
    subject_arr = np.asarray(subjects)
    ordered = sorted(set(subject_arr.tolist()))
    k = len(ordered) if num_folds is None else num_folds
    if not 2 <= k <= len(ordered):
        raise ValueError(f"need 2 <= folds <= {len(ordered)} subjects, got {k}")
    if k == len(ordered):
        groups = [[s] for s in ordered]
    else:
        shuffled = np.random.default_rng(seed).permutation(ordered).tolist()
        groups = [sorted(g) for g in np.array_split(np.array(shuffled, dtype=object), k)]
    folds = []
    for i, group in enumerate(groups):
        in_test = np.isin(subject_arr, group)
        name = group[0] if len(group) == 1 else f"group-{i + 1:02d}"
        folds.append(Fold(name, np.flatnonzero(~in_test), np.flatnonzero(in_test), tuple(group)))
    for fold in folds:
        check_fold(fold, subject_arr)
    return folds


def cross_dataset_fold(
    datasets: Sequence[str], subjects: Sequence[str], train: str, test: str
) -> Fold:
    """Train on every clip of dataset ``train``, test on every clip of ``test``."""
    dataset_arr = np.asarray(datasets)
    available = sorted(set(dataset_arr.tolist()))
    for name in (train, test):
        if name not in available:
            raise ValueError(f"dataset {name!r} not in the data; found {', '.join(available)}")
    if train == test:
        raise ValueError("cross-dataset needs two different datasets")
    test_idx = np.flatnonzero(dataset_arr == test)
    subject_arr = np.asarray(subjects)
    fold = Fold(
        f"{train}->{test}",
        np.flatnonzero(dataset_arr == train),
        test_idx,
        tuple(sorted(set(subject_arr[test_idx].tolist()))),
    )
    check_fold(fold, subject_arr)
    return fold


def check_fold(fold: Fold, subjects: np.ndarray) -> None:
    """Raise if a test subject has any clip among the fold's training indices."""
    leaked = set(subjects[fold.train_idx].tolist()) & set(fold.test_subjects)
    if leaked:
        raise ValueError(f"fold {fold.name}: test subjects {sorted(leaked)} are in training")
    if len(np.intersect1d(fold.train_idx, fold.test_idx)):
        raise ValueError(f"fold {fold.name}: a clip is both in training and test")
