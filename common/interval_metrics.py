"""Scoring spotted intervals the way micro-expression spotting is scored (MEGC).

A spotted interval is a true positive when its intersection over union with
a ground-truth interval is at least 0.5; each ground-truth interval matches
at most one spotted interval (the pairs of highest IoU are matched first).
Frames are inclusive: [onset, offset] holds offset - onset + 1 frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Interval = tuple[int, int]  # onset, offset (inclusive)
IOU_THRESHOLD = 0.5


def interval_iou(a: Interval, b: Interval) -> float:
    overlap = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if overlap <= 0:
        return 0.0
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - overlap
    return overlap / union


@dataclass(frozen=True)
class SpottingScore:
    true_positives: int
    spotted: int
    ground_truth: int
    matched_iou: tuple[float, ...]  # IoU of every true positive

    @property
    def precision(self) -> float:
        return self.true_positives / self.spotted if self.spotted else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.ground_truth if self.ground_truth else 0.0

    @property
    def f1(self) -> float:
        # 2TP / (spotted + ground truth): the MEGC form, defined even when TP = 0.
        total = self.spotted + self.ground_truth
        return 2 * self.true_positives / total if total else 0.0

    def __add__(self, other: SpottingScore) -> SpottingScore:
        return SpottingScore(
            self.true_positives + other.true_positives,
            self.spotted + other.spotted,
            self.ground_truth + other.ground_truth,
            self.matched_iou + other.matched_iou,
        )


def match_intervals(
    spotted: Sequence[Interval],
    truth: Sequence[Interval],
    threshold: float = IOU_THRESHOLD,
) -> list[tuple[int, int, float]]:
    """One-to-one matches (spotted index, truth index, IoU) with IoU >= threshold."""
    pairs = sorted(
        (
            (interval_iou(s, t), i, j)
            for i, s in enumerate(spotted)
            for j, t in enumerate(truth)
            if interval_iou(s, t) >= threshold
        ),
        reverse=True,
    )
    used_s: set[int] = set()
    used_t: set[int] = set()
    matches = []
    for iou, i, j in pairs:
        if i not in used_s and j not in used_t:
            used_s.add(i)
            used_t.add(j)
            matches.append((i, j, iou))
    return sorted(matches)


def score_spotting(
    spotted: Sequence[Interval], truth: Sequence[Interval], threshold: float = IOU_THRESHOLD
) -> SpottingScore:
    matches = match_intervals(spotted, truth, threshold)
    return SpottingScore(len(matches), len(spotted), len(truth), tuple(m[2] for m in matches))
