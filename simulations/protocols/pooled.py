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

from common.metrics import summarize_released, weighted_f1


def confusion_metrics(cm: np.ndarray) -> dict[str, Any]:
    """UF1, UAR, accuracy, weighted F1, confusion and the number of clips.

    ``cm`` may hold exact counts (centralized) or raw released ones (the
    federated modes' held-out devices); either way the metrics come from the
    unclipped sums (:func:`common.metrics.summarize_released`).
    """
    raw = np.asarray(cm, dtype=np.float64)
    return {
        **summarize_released(raw),
        "weighted_f1": weighted_f1(raw),
        "num_clips": int(round(float(raw.sum()))),
    }


def pool(matrices: Iterable[Any], num_classes: int) -> np.ndarray:
    total = np.zeros((num_classes, num_classes), dtype=np.float64)
    for cm in matrices:
        total += np.asarray(cm, dtype=np.float64)
    return total


def per_dataset_metrics(
    by_dataset: Mapping[str, Iterable[Any]], num_classes: int
) -> dict[str, dict[str, Any]]:
    """:func:`confusion_metrics` of each dataset's pooled counts (the MEGC per-dataset columns)."""
    return {
        name: confusion_metrics(pool(by_dataset[name], num_classes)) for name in sorted(by_dataset)
    }
