"""Pool held-out devices' confusion counts into one set of MER metrics.

UF1 and UAR are computed on the pooled confusion matrix, as the field does for
predictions pooled over LOSO folds, never by averaging per-device scores.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from common.metrics import summarize
from common.wire import EvaluateReply


def pooled_confusion(replies: Iterable[EvaluateReply], num_classes: int) -> np.ndarray:
    """Sum of the devices' confusion counts."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for reply in replies:
        cm += np.asarray(reply.confusion, dtype=np.int64)
    return cm


def held_out_metrics(replies: Iterable[EvaluateReply], num_classes: int) -> dict[str, object]:
    """UF1, UAR, accuracy and confusion of the pooled held-out predictions.

    ``per_device`` keeps each held-out device's counts, so that a protocol
    harness can pool them by dataset (MEGC2019 reports per-dataset scores).
    """
    replies = list(replies)
    metrics = summarize(pooled_confusion(replies, num_classes))
    metrics["per_device"] = {r.device_id: [list(row) for row in r.confusion] for r in replies}
    return metrics
