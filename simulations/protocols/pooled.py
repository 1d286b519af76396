"""Metrics on predictions pooled over folds, overall and per dataset.

MEGC tables compute UF1 and UAR once, on all folds' predictions together,
never as a mean of per-fold scores (a one-subject fold often lacks a class).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.metrics import confusion_matrix, summarize, weighted_f1


def pooled_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    """UF1, UAR, accuracy, weighted F1, confusion and the number of clips."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    return {**summarize(cm), "weighted_f1": weighted_f1(cm), "num_clips": int(len(y_true))}


def per_dataset_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, datasets: np.ndarray, num_classes: int
) -> dict[str, dict[str, Any]]:
    """:func:`pooled_metrics` for each dataset's clips (the MEGC per-dataset columns)."""
    return {
        name: pooled_metrics(y_true[datasets == name], y_pred[datasets == name], num_classes)
        for name in sorted(set(datasets.tolist()))
    }
