"""Turning annotated clips into cached (3, 28, 28) features, in parallel.

`prepare_clips` is the one entry point a device runs before training:

1. Each record is checked before any decoding (frame order).
2. Its cache key is computed (content hash) and a cached entry is loaded if any.
3. The rest are computed in worker processes: validate the frames on disk
   against the annotation, read onset + apex frames (or every frame from onset
   to offset when the apex must be spotted, or magnification / sequences are
   on), detect, align, crop, flow, features.  A clip without an apex label
   (SMIC) gets its apex spotted; the spotted frame is in its metadata.  Each result is written to the cache as soon as it
   arrives, so an interrupted run loses at most the clips in flight.
4. A clip that fails for any reason is skipped with the reason; the rest go on.

Worker processes are started with "spawn": forking a parent that already ran
OpenCV's (or torch's) thread pools can deadlock the child.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from client.datasets.clip_record import (
    ClipError,
    ClipRecord,
    InvalidAnnotation,
    SkippedClip,
    frame_order_problem,
)
from client.datasets.frames import check_clip_frames, iter_frames, read_frames
from client.feature_cache import FeatureCache
from client.preprocessing.features import (
    PreprocessConfig,
    compute_clip_features,
    compute_sequence_features,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedClip:
    record: ClipRecord
    features: np.ndarray  # (3, F, F) float32: u, v, strain
    sequence: np.ndarray | None = None  # (T, 2, F, F) flow, when config.sequence_length > 0


@dataclass
class PrepareResult:
    ready: list[PreparedClip] = field(default_factory=list)
    skipped: list[SkippedClip] = field(default_factory=list)
    cache_hits: int = 0  # clips loaded from the cache
    computed: int = 0  # clips whose features were computed in this run

    def summary(self) -> str:
        lines = [
            f"{len(self.ready)} clip(s) ready ({self.cache_hits} from cache, {self.computed} computed), "
            f"{len(self.skipped)} skipped"
        ]
        groups: dict[str, list[SkippedClip]] = defaultdict(list)
        for skipped in self.skipped:
            groups[skipped.category].append(skipped)
        for category, items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"  {category.replace('_', ' ')}: {len(items)}")
            lines.extend(f"    - {item.reason}" for item in items)
        return "\n".join(lines)


def check_record(record: ClipRecord) -> None:
    """Annotation checks that need no decoding; raises ClipError.

    A missing apex is fine: it is spotted."""
    problem = frame_order_problem(record.onset, record.apex, record.offset)
    if problem:
        raise InvalidAnnotation(problem, record.clip_id, record.source)


def process_clip(
    record: ClipRecord, config: PreprocessConfig
) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
    """Compute one clip's features, metadata and optional flow sequence (runs in a worker)."""
    check_record(record)
    every_frame = record.apex is None or config.needs_all_frames()
    check_clip_frames(record, every_frame=every_frame)
    try:
        if every_frame:
            frames = [frame for _, frame in iter_frames(record, record.onset, record.offset + 1)]
            apex_index = None if record.apex is None else record.apex - record.onset
            result = compute_sequence_features(frames, config, apex_index, first_frame=record.onset)
        else:
            onset_bgr, apex_bgr = read_frames(record, [record.onset, record.apex])
            result = compute_clip_features(onset_bgr, apex_bgr, config)
    except ClipError as error:
        raise error.with_context(record.clip_id, record.source) from None
    return result.features, result.metadata, result.sequence


def _worker_init() -> None:
    # One OpenCV thread per worker: the pool already uses the cores, and nested
    # thread pools only add contention.
    cv2.setNumThreads(1)


def _ping() -> bool:
    return True


def _worker(record: ClipRecord, config: PreprocessConfig) -> tuple[str, Any]:
    """Never raises for a bad clip: returns ("ok", (features, metadata, sequence)) or
    ("skip", (reason, category))."""
    try:
        return "ok", process_clip(record, config)
    except ClipError as error:
        return "skip", (str(error.with_context(record.clip_id, record.source)), error.category)
    except cv2.error as error:
        message = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
        return "skip", (
            f"clip {record.clip_id!r} {record.source}: OpenCV error: {message}",
            "opencv_error",
        )
    except Exception as error:  # noqa: BLE001 - one clip must never stop the others
        log.warning("unexpected error preparing %s:\n%s", record.clip_id, traceback.format_exc())
        return "skip", (
            f"clip {record.clip_id!r} {record.source}: unexpected {type(error).__name__}: {error}",
            "unexpected_error",
        )


def _skip(record: ClipRecord, error: ClipError) -> SkippedClip:
    return SkippedClip(
        clip_id=record.clip_id,
        reason=str(error.with_context(record.clip_id, record.source)),
        category=error.category,
    )


def prepare_clips(
    records: Sequence[ClipRecord],
    config: PreprocessConfig,
    cache: FeatureCache,
    workers: int = 2,
    progress: bool = False,
) -> PrepareResult:
    """Features for every usable clip, from the cache where possible.

    `ready` keeps the order of `records`.  `workers <= 1` computes in this
    process (no pool start-up; easier to debug).
    """
    result = PrepareResult()
    features_of: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    skipped_of: dict[int, SkippedClip] = {}
    todo: dict[int, str] = {}  # record index -> cache key

    bar = tqdm(total=len(records), desc="preparing clips", unit="clip", disable=not progress)
    try:
        for i, record in enumerate(records):
            try:
                check_record(record)
                key = cache.key(record, config)
            except ClipError as error:
                skipped_of[i] = _skip(record, error)
                bar.update()
                continue
            cached = cache.get_entry(record, config, key=key)
            if cached is not None:
                features_of[i] = (cached[0], cache.get_sequence(record, config, key=key))
                result.cache_hits += 1
                bar.update()
            else:
                todo[i] = key

        def finish(i: int, outcome: tuple[str, Any]) -> None:
            status, payload = outcome
            record = records[i]
            if status == "ok":
                features, metadata, sequence = payload
                try:
                    cache.put(record, config, features, metadata, key=todo[i], sequence=sequence)
                except (
                    OSError,
                    ClipError,
                ) as exc:  # full disk, source gone: keep the computed clip
                    log.warning("cannot cache features of %s: %s", record.clip_id, exc)
                features_of[i] = (features, sequence)
                result.computed += 1
            else:
                reason, category = payload
                skipped_of[i] = SkippedClip(record.clip_id, reason, category)
            bar.update()

        if workers <= 1 or len(todo) <= 1:
            for i in todo:
                finish(i, _worker(records[i], config))
        else:
            _run_pool(records, config, list(todo), workers, finish)
    finally:
        bar.close()

    for i, record in enumerate(records):
        if i in features_of:
            result.ready.append(PreparedClip(record, *features_of[i]))
        elif i in skipped_of:
            result.skipped.append(skipped_of[i])
    return result


def _run_pool(
    records: Sequence[ClipRecord],
    config: PreprocessConfig,
    indices: list[int],
    workers: int,
    finish: Callable[[int, tuple[str, Any]], None],
    worker: Callable[[ClipRecord, PreprocessConfig], tuple[str, Any]] = _worker,
) -> None:
    """Run `worker` over `indices` in a process pool; survive a worker dying.

    A crash (e.g. a decoder segfault on a corrupt file) breaks the whole pool and
    fails every pending future, so those clips are retried one at a time in a
    single-worker pool that is only replaced after another crash: the clip that
    really crashes is skipped, the innocent ones are still computed.
    """
    context = multiprocessing.get_context("spawn")

    def new_pool(size: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=size, mp_context=context, initializer=_worker_init)

    crashed: list[int] = []
    with new_pool(min(workers, len(indices))) as pool:
        try:
            pool.submit(_ping).result()
        except BrokenProcessPool:
            # No clip involved, so this is the environment, not the data: e.g. a
            # script fed on stdin, or one without an `if __name__ == "__main__":`
            # guard, which "spawn" workers re-run and die in.
            log.warning(
                "prepare worker processes die on start-up (script without a __main__ guard, "
                "or run from stdin?); computing %d clip(s) in this process instead",
                len(indices),
            )
            for i in indices:
                finish(i, worker(records[i], config))
            return
        futures: dict[Future, int] = {pool.submit(worker, records[i], config): i for i in indices}
        for future in as_completed(futures):
            i = futures[future]
            try:
                outcome = future.result()
            except BrokenProcessPool:
                crashed.append(i)
                continue
            finish(i, outcome)

    retry_pool: ProcessPoolExecutor | None = None
    try:
        for i in sorted(crashed):
            retry_pool = retry_pool or new_pool(1)
            try:
                outcome = retry_pool.submit(worker, records[i], config).result()
            except BrokenProcessPool:
                retry_pool.shutdown()
                retry_pool = None
                record = records[i]
                reason = f"clip {record.clip_id!r} {record.source}: worker process crashed while processing it"
                outcome = ("skip", (reason, "worker_crash"))
            finish(i, outcome)
    finally:
        if retry_pool is not None:
            retry_pool.shutdown()


def load_prepared(
    records: Sequence[ClipRecord], config: PreprocessConfig, cache: FeatureCache
) -> PrepareResult:
    """Only read the cache: clips not prepared with this config are skipped."""
    result = PrepareResult()
    for record in records:
        try:
            check_record(record)
            cached = cache.get(record, config)
        except ClipError as error:
            result.skipped.append(_skip(record, error))
            continue
        if cached is None:
            result.skipped.append(
                SkippedClip(
                    record.clip_id,
                    f"clip {record.clip_id!r} {record.source}: not prepared with config {config.fingerprint()[:12]} "
                    f"(run prepare_clips first)",
                    "not_prepared",
                )
            )
        else:
            result.ready.append(PreparedClip(record, cached))
            result.cache_hits += 1
    return result


PREPARE_REPORT = "prepare.json"


@dataclass(frozen=True)
class PreparedRun:
    """What `fedmer prepare` left next to a manifest: its settings and cache."""

    config: PreprocessConfig
    cache: FeatureCache


def prepared_run_for(manifest: Path | str) -> PreparedRun | None:
    """The settings and cache a manifest was prepared with, or None when the
    manifest was not written by `fedmer prepare`.

    Training on a prepared manifest must use exactly these settings: with any
    other config every clip misses the cache and is recomputed differently.
    """
    report_path = Path(manifest).parent / PREPARE_REPORT
    try:
        report = json.loads(report_path.read_text())
        config = PreprocessConfig(**report["config"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", report_path, exc)
        return None
    return PreparedRun(
        config=config, cache=FeatureCache(Path(report.get("cache") or report_path.parent / "cache"))
    )
