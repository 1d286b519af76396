"""Spotting micro-expression intervals in synthetic long videos, and the IoU scoring."""

from __future__ import annotations

import numpy as np
import pytest

from client.datasets.clip_record import ClipError
from client.preprocessing.face_detection import get_detector
from client.preprocessing.interval_spotting import (
    IntervalSpottingConfig,
    _smoothed,
    robust_threshold,
    spot_in_frames,
    spot_in_video,
)
from common.interval_metrics import interval_iou, match_intervals, score_spotting
from simulations.synthetic.long_video import LongVideoSpec, write_long_video

SHORT = dict(seconds=7.0, num_expressions=3, min_gap_seconds=1.0, num_head_moves=2)


def test_iou_counts_frames_inclusively():
    assert interval_iou((10, 19), (10, 19)) == 1.0
    assert interval_iou((10, 19), (15, 24)) == pytest.approx(5 / 15)
    assert interval_iou((10, 19), (20, 29)) == 0.0
    assert interval_iou((10, 10), (10, 10)) == 1.0


def test_matching_is_one_to_one_and_needs_half_overlap():
    truth = [(100, 119), (300, 315)]
    # Two spotted intervals overlap the first truth; only the better one counts.
    spotted = [(101, 118), (104, 121), (300, 307), (500, 510)]
    # (300, 307) against (300, 315): 8/16 = 0.5 exactly, which counts.
    assert match_intervals(spotted, truth) == [(0, 0, pytest.approx(18 / 20)), (2, 1, 0.5)]
    score = score_spotting(spotted, truth)
    assert (score.true_positives, score.spotted, score.ground_truth) == (2, 4, 2)
    assert score.precision == 0.5 and score.recall == 1.0
    assert score.f1 == pytest.approx(2 * 2 / 6)
    assert score_spotting([(300, 306)], truth).true_positives == 0
    assert score_spotting([], []).f1 == 0.0


def test_temporal_smoothing_averages_neighbours():
    frames = [np.full((2, 2), 3 * i, np.uint8) for i in range(6)]
    assert [int(f[0, 0]) for f in _smoothed(iter(frames), 3)] == [2, 3, 6, 9, 12, 14]
    assert [int(f[0, 0]) for f in _smoothed(iter(frames), 1)] == [0, 3, 6, 9, 12, 15]
    assert [int(f[0, 0]) for f in _smoothed(iter(frames[:1]), 3)] == [0]


def test_robust_threshold_ignores_unscored_frames_and_outliers():
    scores = np.array([0.0, 0.0, 1.0, 1.1, 0.9, 1.0, 50.0])
    limit = robust_threshold(scores, 6.0)
    assert 1.1 < limit < 2.0


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    with_expressions = folder / "planted.avi"
    distractors_only = folder / "distractors.avi"
    planted = write_long_video(with_expressions, LongVideoSpec(seed=11, **SHORT))
    spec = LongVideoSpec(
        seed=12, seconds=5.0, num_expressions=0, blinks_per_second=1.2, num_head_moves=3
    )
    quiet = write_long_video(distractors_only, spec)
    return with_expressions, planted, distractors_only, quiet


def test_planted_intervals_are_found_at_iou_half(long_videos):
    path, plan, _, _ = long_videos
    assert len(plan.expressions) == 3 and plan.blinks and plan.head_moves
    result = spot_in_video(path, get_detector("haar"))
    truth = [(e.onset, e.offset) for e in plan.expressions]
    spotted = [(iv.onset, iv.offset) for iv in result.intervals]
    score = score_spotting(spotted, truth)
    print(f"truth {truth}, spotted {spotted}, IoU {score.matched_iou}")
    assert score.true_positives == 3 and score.spotted == 3
    for iv, e in zip(result.intervals, plan.expressions):
        assert abs(iv.apex - e.apex) <= 3
    assert result.fps == 50.0 and len(result.scores) == plan.spec.num_frames
    assert result.eyes_found


def test_blinks_and_head_moves_are_not_spotted_and_the_eye_band_is_why(long_videos):
    _, _, path, plan = long_videos
    assert len(plan.blinks) >= 3 and len(plan.head_moves) == 3
    assert spot_in_video(path, get_detector("haar")).intervals == []
    # The negative control: without the eye band, the same blinks are reported.
    no_band = IntervalSpottingConfig(eye_band_above=0.0, eye_band_below=0.0)
    reported = spot_in_video(path, get_detector("haar"), no_band).intervals
    blink_spans = [(b.start, b.start + b.close_frames + b.open_frames) for b in plan.blinks]
    assert reported and all(
        any(s - 5 <= iv.apex <= e + 5 for s, e in blink_spans) for iv in reported
    )


def test_bad_long_videos_name_the_file_and_the_problem(tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(ClipError, match=r"broken.avi.*cannot open video"):
        spot_in_video(broken, get_detector("haar"), fps=50)
    blank = [np.full((240, 320, 3), 90, np.uint8)] * 60
    with pytest.raises(ClipError, match="no face"):
        spot_in_frames(blank, 50.0, get_detector("haar"))
    short = tmp_path / "short.avi"
    write_long_video(short, LongVideoSpec(seconds=1.0, num_expressions=0, num_head_moves=0))
    with pytest.raises(ClipError, match=r"short.avi.*too short for spotting"):
        spot_in_video(short, get_detector("haar"))
    with pytest.raises(ClipError, match="frame folder has no frame rate"):
        spot_in_video(tmp_path, get_detector("haar"))
