"""Pool held-out devices' confusion counts into one set of MER metrics.

UF1 and UAR are computed on the pooled confusion matrix, as the field does for
predictions pooled over LOSO folds, never by averaging per-device scores.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import MetricRecord

from common.metrics import summarize


def pooled_confusion(records: Iterable[MetricRecord], num_classes: int) -> np.ndarray:
    """Sum of the ``cm-i-j`` counts over devices."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for record in records:
        for i in range(num_classes):
            for j in range(num_classes):
                cm[i, j] += int(record.get(f"cm-{i}-{j}", 0))
    return cm


def held_out_metrics(records: Iterable[MetricRecord], num_classes: int) -> dict[str, object]:
    """UF1, UAR, accuracy and confusion of the pooled held-out predictions."""
    return summarize(pooled_confusion(records, num_classes))
