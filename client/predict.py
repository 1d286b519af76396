"""Classify clips on the device with a run's model: class probabilities per clip, CSV out.

A clip is a video file or a folder of frames, with onset and (optionally)
apex frame numbers; without an apex, the apex is spotted as in training, and
without an onset the first frame is the onset. A manifest CSV (the generic
format ``fedmer prepare`` reads and writes) gives many clips at once. Each
clip goes through the same preprocessing as the run's training clips
(:mod:`client.run_model`); a clip that cannot be used (unreadable, too short,
no face) is reported with its file and reason, and the others go on.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from client.datasets.clip_record import ClipError, ClipRecord, SkippedClip
from client.datasets.frames import list_frame_numbers
from client.datasets.manifest import read_manifest
from client.model_inputs import model_inputs
from client.prepare import PreparedClip, process_clip
from client.run_model import RunModel


@dataclass(frozen=True)
class Prediction:
    clip_id: str
    source: Path
    probabilities: tuple[float, ...]
    classes: tuple[str, ...]
    label: str = ""  # the annotated label, when the input had one

    @property
    def predicted(self) -> str:
        return self.classes[int(np.argmax(self.probabilities))]


def clip_from_source(
    source: Path, onset: int | None = None, apex: int | None = None, offset: int | None = None
) -> ClipRecord:
    """One unlabelled clip: a video file or frame folder, onset to offset (default: all of it)."""
    source = Path(source)
    numbers = list_frame_numbers(source)
    if len(numbers) < 2:
        raise ClipError(f"{len(numbers)} frame(s); a clip needs at least 2", path=source)
    first, last = numbers[0], numbers[-1]
    return ClipRecord(
        dataset="input",
        subject="input/unknown",
        clip_id=source.stem,
        source=source,
        onset=first if onset is None else onset,
        apex=apex,
        offset=last if offset is None else offset,
        label="",
        fps=None,
    )


def clips_from_input(
    path: Path, onset: int | None = None, apex: int | None = None, offset: int | None = None
) -> tuple[list[ClipRecord], list[SkippedClip]]:
    """The clips a manifest CSV names (with its bad rows), or the one clip at ``path``
    (``onset``/``apex``/``offset`` pick its frames)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        table = read_manifest(path)
        return list(table.clips), list(table.skipped)
    try:
        return [clip_from_source(path, onset, apex, offset)], []
    except ClipError as error:
        return [], [SkippedClip(path.stem, str(error), error.category)]


def predict_clips(
    run: RunModel, records: Iterable[ClipRecord]
) -> Iterator[Prediction | SkippedClip]:
    """Preprocess and classify each clip in turn; a clip that fails is yielded as skipped."""
    for record in records:
        try:
            features, _, sequence = process_clip(record, run.preprocessing)
        except ClipError as error:
            yield SkippedClip(record.clip_id, str(error), error.category)
            continue
        kept, inputs, skipped = model_inputs(
            [PreparedClip(record, features, sequence)], run.preprocessing
        )
        if skipped:
            yield skipped[0]
            continue
        with torch.no_grad():
            logits = run.model(torch.from_numpy(np.stack(inputs)).float())
        probabilities = torch.softmax(logits, dim=1)[0].tolist()
        yield Prediction(
            record.clip_id, record.source, tuple(probabilities), tuple(run.classes), record.label
        )


def write_predictions_csv(
    path: Path, predictions: Iterable[Prediction], classes: list[str]
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip_id", "source", "predicted", *[f"p_{c}" for c in classes], "label"])
        for p in predictions:
            writer.writerow(
                [
                    p.clip_id,
                    str(p.source),
                    p.predicted,
                    *[f"{x:.6f}" for x in p.probabilities],
                    p.label,
                ]
            )
    return path
