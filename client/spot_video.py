"""Micro-expressions in a long video, on the device: spot the intervals, classify each.

Spotting (:mod:`client.preprocessing.interval_spotting`) gives each
interval's onset, apex and offset; each interval is then classified as a
clip of the video with exactly the run's preprocessing
(:func:`client.predict.predict_clips`). Writes a CSV of the intervals and a
PNG of the motion score over time with the intervals (and, when given, the
ground truth) marked.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from client.datasets.clip_record import ClipRecord, SkippedClip
from client.predict import Prediction, predict_clips
from client.preprocessing.interval_spotting import (
    IntervalSpottingConfig,
    SpottedInterval,
    SpottingResult,
    spot_in_video,
)
from client.run_model import RunModel

GROUND_TRUTH_COLUMNS = ("onset", "offset")


@dataclass(frozen=True)
class ClassifiedInterval:
    interval: SpottedInterval
    prediction: Prediction | None  # None when the interval could not be classified
    skipped_reason: str = ""


def interval_record(source: Path, interval: SpottedInterval, index: int) -> ClipRecord:
    return ClipRecord(
        dataset="input",
        subject="input/unknown",
        clip_id=f"{source.stem}-{index:03d}",
        source=source,
        onset=interval.onset,
        apex=interval.apex,
        offset=interval.offset,
        label="",
        fps=None,
    )


def spot_and_classify(
    run: RunModel,
    source: Path,
    config: IntervalSpottingConfig | None = None,
    fps: float | None = None,
) -> tuple[SpottingResult, list[ClassifiedInterval]]:
    """Spot with the run's flow method and detector, then classify every interval."""
    config = config or IntervalSpottingConfig()
    detector = run.preprocessing.make_detector()
    if detector is None:
        raise ValueError("spotting needs face detection; the run's frames were face crops")
    result = spot_in_video(source, detector, config, run.preprocessing.flow_method, fps)
    records = [interval_record(Path(source), iv, i) for i, iv in enumerate(result.intervals)]
    classified = []
    for interval, outcome in zip(result.intervals, predict_clips(run, records)):
        if isinstance(outcome, SkippedClip):
            classified.append(ClassifiedInterval(interval, None, outcome.reason))
        else:
            classified.append(ClassifiedInterval(interval, outcome))
    return result, classified


def write_intervals_csv(
    path: Path, classified: Sequence[ClassifiedInterval], classes: Sequence[str], fps: float
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "interval",
                "onset",
                "apex",
                "offset",
                "onset_s",
                "offset_s",
                "score",
                "predicted",
                *[f"p_{c}" for c in classes],
                "note",
            ]
        )
        for i, item in enumerate(classified):
            iv, p = item.interval, item.prediction
            writer.writerow(
                [
                    i,
                    iv.onset,
                    iv.apex,
                    iv.offset,
                    f"{iv.onset / fps:.3f}",
                    f"{iv.offset / fps:.3f}",
                    f"{iv.score:.4f}",
                    p.predicted if p else "",
                    *([f"{x:.6f}" for x in p.probabilities] if p else [""] * len(classes)),
                    item.skipped_reason,
                ]
            )
    return path


def read_ground_truth(path: Path) -> list[tuple[int, int]]:
    """(onset, offset) frame pairs from a CSV with ``onset`` and ``offset`` columns."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in GROUND_TRUTH_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no {', '.join(missing)} column (need onset, offset)")
        truth = []
        for row_number, row in enumerate(reader, start=2):
            try:
                onset, offset = int(row["onset"]), int(row["offset"])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path}, row {row_number}: onset {row['onset']!r} / offset "
                    f"{row['offset']!r} are not frame numbers"
                ) from None
            if offset < onset:
                raise ValueError(f"{path}, row {row_number}: offset {offset} before onset {onset}")
            truth.append((onset, offset))
    return truth


def plot_scores(
    path: Path,
    result: SpottingResult,
    classified: Sequence[ClassifiedInterval],
    truth: Sequence[tuple[int, int]] = (),
) -> Path:
    """PNG of the motion score over time, the threshold, the spotted intervals
    (labelled with their predicted class) and the ground truth when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    seconds = np.arange(len(result.scores)) / result.fps
    fig, ax = plt.subplots(figsize=(11, 3.4), dpi=110)
    try:
        ax.plot(seconds, result.scores, lw=0.8, color="#1f4e79", label="motion score")
        ax.plot(seconds, result.thresholds, lw=0.8, ls="--", color="#c0392b", label="threshold")
        top = float(max(result.scores.max(), 1e-6))
        for onset, offset in truth:
            ax.axvspan(onset / result.fps, offset / result.fps, color="#7f8c8d", alpha=0.25)
        for item in classified:
            iv = item.interval
            ax.axvspan(iv.onset / result.fps, iv.offset / result.fps, color="#27ae60", alpha=0.35)
            label = item.prediction.predicted if item.prediction else "?"
            ax.text(iv.apex / result.fps, top * 1.02, label, ha="center", fontsize=7)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("feature difference (px)")
        ax.set_ylim(0, top * 1.12)
        handles, labels = ax.get_legend_handles_labels()
        from matplotlib.patches import Patch

        handles.append(Patch(color="#27ae60", alpha=0.35))
        labels.append("spotted")
        if truth:
            handles.append(Patch(color="#7f8c8d", alpha=0.25))
            labels.append("ground truth")
        ax.legend(
            handles,
            labels,
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            fontsize=7,
            ncol=4,
            frameon=False,
        )
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
