"""Metrics on predictions pooled over folds, overall and per dataset.

MEGC tables compute UF1 and UAR once, on all folds' predictions together,
never as a mean of per-fold scores (a one-subject fold often lacks a class).
Pooling confusion matrices is exactly pooling predictions, which is how the
federated folds are pooled: the server only ever sees held-out devices'
confusion counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from common.metrics import summarize, weighted_f1


def confusion_metrics(cm: np.ndarray) -> dict[str, Any]:
    """UF1, UAR, accuracy, weighted F1, confusion and the number of clips."""
    cm = np.asarray(cm, dtype=np.int64)
    return {**summarize(cm), "weighted_f1": weighted_f1(cm), "num_clips": int(cm.sum())}


def pool(matrices: Iterable[Any], num_classes: int) -> np.ndarray:
    total = np.zeros((num_classes, num_classes), dtype=np.int64)
    for cm in matrices:
        total += np.asarray(cm, dtype=np.int64)
    return total


def per_dataset_metrics(
    by_dataset: Mapping[str, Iterable[Any]], num_classes: int
) -> dict[str, dict[str, Any]]:
    """:func:`confusion_metrics` of each dataset's pooled counts (the MEGC per-dataset columns)."""
    return {
        name: confusion_metrics(pool(by_dataset[name], num_classes)) for name in sorted(by_dataset)
    }
