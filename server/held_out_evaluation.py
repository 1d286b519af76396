"""Pool held-out devices' released confusion counts into one set of MER metrics.

Each held-out device releases its confusion counts with Gaussian noise and
accounts for the release itself. The coordinator sums the raw released counts
over devices (noise partly averages out) and computes UF1, UAR and accuracy
from the sums (:func:`common.metrics.summarize_released`): post-processing,
which costs no privacy, and no clipping, which would bias every empty cell.
UF1 and UAR are computed on the pooled matrix, as the field does for
predictions pooled over LOSO folds, never by averaging per-device scores.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from common.metrics import summarize_released
from common.wire import EvaluateReply


def pooled_confusion(replies: Iterable[EvaluateReply], num_classes: int) -> np.ndarray:
    """Sum of the devices' raw released counts."""
    total = np.zeros((num_classes, num_classes), dtype=np.float64)
    for reply in replies:
        total += np.asarray(reply.confusion, dtype=np.float64)
    return total


def held_out_metrics(replies: Iterable[EvaluateReply], num_classes: int) -> dict[str, Any]:
    """UF1, UAR, accuracy and confusion of the pooled released counts.

    ``per_device`` keeps each held-out device's raw released counts, so
    that a protocol harness can pool them by dataset; ``noise_std`` the
    standard deviation each device added to every count.
    """
    replies = list(replies)
    metrics: dict[str, Any] = dict(summarize_released(pooled_confusion(replies, num_classes)))
    metrics["per_device"] = {r.device_id: [list(row) for row in r.confusion] for r in replies}
    metrics["noise_std"] = {r.device_id: r.noise_std for r in replies}
    return metrics
