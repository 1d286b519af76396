"""Pool held-out devices' released confusion counts into one set of MER metrics.

Each held-out device releases its confusion counts with Gaussian noise and
accounts for the release itself. The coordinator sums the released counts
over devices (noise partly averages out), then rounds and clips at 0 before
computing UF1, UAR and accuracy: post-processing, which costs no privacy.
UF1 and UAR are computed on the pooled matrix, as the field does for
predictions pooled over LOSO folds, never by averaging per-device scores.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from common.metrics import summarize
from common.wire import EvaluateReply


def pooled_confusion(replies: Iterable[EvaluateReply], num_classes: int) -> np.ndarray:
    """Sum of the devices' released counts, rounded and clipped at 0."""
    total = np.zeros((num_classes, num_classes), dtype=np.float64)
    for reply in replies:
        total += np.asarray(reply.confusion, dtype=np.float64)
    return np.clip(np.rint(total), 0, None).astype(np.int64)


def held_out_metrics(replies: Iterable[EvaluateReply], num_classes: int) -> dict[str, Any]:
    """UF1, UAR, accuracy and confusion of the pooled released counts.

    ``per_device`` keeps each held-out device's released counts (rounded), so
    that a protocol harness can pool them by dataset; ``noise_std`` the
    standard deviation each device added to every count.
    """
    replies = list(replies)
    metrics: dict[str, Any] = dict(summarize(pooled_confusion(replies, num_classes)))
    metrics["per_device"] = {
        r.device_id: np.rint(np.asarray(r.confusion)).astype(int).tolist() for r in replies
    }
    metrics["noise_std"] = {r.device_id: r.noise_std for r in replies}
    return metrics
