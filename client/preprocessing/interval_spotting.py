"""Spotting micro-expression intervals in a long video (onset, apex, offset).

The face is detected once, on the first frame, and every frame is cropped
with that box to ``work_size`` grey pixels and averaged over
``smooth_frames`` consecutive frames (sensor noise and compression
artefacts flicker from frame to frame; a micro-expression lasts 7 or more
frames at 50 fps). Only the face ellipse inside the crop counts: the
background stays still when the head moves, so it would turn every head
move into apparent deformation. Two passes over the crops:

1. **Where something moved briefly.** For every frame t, the dense flow from
   t to t-k and from t to t+k (k = ``window_seconds``), each minus its median
   vector over the face (the rigid head motion). Their mean cancels any motion that goes on
   steadily through t (a slow drift, a head turn under way) and keeps what
   left the face at t and came back: a micro-expression peaking at t. The
   score is a high percentile of its magnitude outside the eye band, so a
   blink, the largest brief movement a face makes, scores nothing (this is
   the classic feature-difference spotter of Moilanen et al. 2014 and the
   MEGC baseline, with flow instead of LBP histograms). Peaks more than
   ``threshold_mads`` robust deviations above the median score are kept,
   the highest first, at least ``min_separation_seconds`` apart.
2. **Where it began and ended.** Around each peak (the apex), the flow from
   the apex to every frame within ``max_duration_seconds``: frames still in
   the neutral state have moved by the full expression, frames near the apex
   by little. The onset is the last frame before the apex, the offset the
   first after it, whose motion is at least ``neutral_fraction`` of the
   neutral level on that side.

Memory is bounded: the video is processed in chunks of ``chunk_seconds``
(with enough context on both sides), the threshold taken over each chunk, so
an hour of video needs no more than a chunk of crops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from client.datasets.clip_record import ClipError
from client.datasets.frames import iter_frames
from client.preprocessing.alignment import EyePair, detect_eyes
from client.preprocessing.face_crop import CropBox, apply_crop, crop_box_for_face
from client.preprocessing.face_detection import FaceBox, FaceDetector, detect_largest_face
from client.preprocessing.optical_flow import compute_flow

SPOTTING_METHOD = "flow_feature_difference"
# Eye line in a face-box crop (margin 0.1) when the eye cascade finds no eyes:
# the Haar box centre sits ~0.16 face widths below the eye line.
DEFAULT_EYE_Y = 0.38


@dataclass(frozen=True)
class IntervalSpottingConfig:
    work_size: int = 128
    percentile: float = 99.0
    window_seconds: float = 0.16  # k: half the span of the feature difference
    smooth_frames: int = 3  # temporal box average of the crops (odd)
    max_duration_seconds: float = 0.5  # a micro-expression lasts at most 0.5 s
    threshold_mads: float = 10.0
    min_separation_seconds: float = 0.5
    neutral_fraction: float = 0.8
    # The eye band left out of the score, as fractions of the crop above and
    # below the eye line: it holds the lids (blinks), not the brows or mouth.
    eye_band_above: float = 0.06
    eye_band_below: float = 0.12
    # Semi-axes of the face ellipse, as fractions of the crop (centred).
    face_axes: tuple[float, float] = (0.32, 0.40)
    chunk_seconds: float = 30.0
    margin: float = 0.1  # face box margin, as in preprocessing

    def __post_init__(self) -> None:
        if not 32 <= self.work_size <= 512:
            raise ValueError(f"work_size {self.work_size} outside [32, 512]")
        if not 50.0 <= self.percentile <= 100.0:
            raise ValueError(f"percentile {self.percentile} outside [50, 100]")
        if not 0.0 < self.neutral_fraction < 1.0:
            raise ValueError(f"neutral_fraction {self.neutral_fraction} outside (0, 1)")
        if self.smooth_frames < 1 or self.smooth_frames % 2 == 0:
            raise ValueError(f"smooth_frames {self.smooth_frames} must be odd and >= 1")
        if self.chunk_seconds < 4 * self.max_duration_seconds:
            raise ValueError("chunk_seconds must be at least 4 x max_duration_seconds")

    def frames(self, seconds: float, fps: float) -> int:
        return max(int(round(seconds * fps)), 1)


@dataclass(frozen=True)
class SpottedInterval:
    onset: int
    apex: int
    offset: int
    score: float  # the peak's feature-difference score (px at work_size)


@dataclass(frozen=True)
class SpottingResult:
    intervals: list[SpottedInterval]
    scores: np.ndarray  # the score of every frame (0 where it has no context)
    thresholds: np.ndarray  # the threshold each frame was held to
    fps: float
    face_box: list[int]
    eye_y: float  # eye line used for the band, fraction of the crop
    eyes_found: bool

    def describe(self, config: IntervalSpottingConfig) -> dict[str, Any]:
        return {
            "method": SPOTTING_METHOD,
            "fps": self.fps,
            "frames": int(len(self.scores)),
            "face_box": self.face_box,
            "eye_y": round(self.eye_y, 4),
            "eyes_found": self.eyes_found,
            "config": asdict(config),
        }


def _face_with_eyes(frame: np.ndarray, detector: FaceDetector) -> tuple[FaceBox, EyePair | None]:
    """The largest detected face in which two eyes are found, else the largest face.

    The Haar cascade sometimes also fires on a larger box over the forehead
    and hair; a box with no eyes in it is not the face to crop.
    """
    largest = detect_largest_face(frame, detector)  # raises, naming the frame, if none
    for face in sorted(detector.detect(frame), key=lambda f: -f.area):
        eyes = detect_eyes(frame, face)
        if eyes is not None:
            return face, eyes
    return largest, None


class _FaceWindow:
    """The crop box, fixed on the first frame, and the face and eye-band masks,
    which follow the head as it moves inside the crop."""

    def __init__(
        self, first: np.ndarray, detector: FaceDetector, config: IntervalSpottingConfig
    ) -> None:
        face, eyes = _face_with_eyes(first, detector)
        self.box: CropBox = crop_box_for_face(face, config.margin)
        self.face_box = face.as_list()
        self.eyes_found = eyes is not None
        self.eye_y = (
            ((eyes.left[1] + eyes.right[1]) / 2.0 - self.box.y0) / self.box.side
            if eyes is not None
            else DEFAULT_EYE_Y
        )
        self.config = config
        self.size = config.work_size
        self._grid = (np.mgrid[0 : self.size, 0 : self.size] + 0.5) / self.size
        self._masks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def masks(self, position: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """(face, scored) masks for the head at ``position`` (work-size px from where it
        was on the first frame); scored is the face less the eye band."""
        key = (int(round(2 * position[0])), int(round(2 * position[1])))  # 0.5 px steps
        if key not in self._masks:
            dx, dy = key[0] / (2 * self.size), key[1] / (2 * self.size)
            y, x = self._grid
            ax, ay = self.config.face_axes
            face = ((x - 0.5 - dx) / ax) ** 2 + ((y - 0.5 - dy) / ay) ** 2 <= 1.0
            eye_y = self.eye_y + dy
            band = (y >= eye_y - self.config.eye_band_above) & (
                y <= eye_y + self.config.eye_band_below
            )
            self._masks[key] = (face, face & ~band)
        return self._masks[key]

    def crop(self, frame: np.ndarray) -> np.ndarray:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return apply_crop(gray, self.box, self.size)


class _Passes:
    """The two passes over a window of crops (``crops[0]`` is frame ``first``).

    The head's position in the crop is tracked along the way: the median flow
    over the face from t to t-k is how far it moved in between, so
    ``position[t] = position[t-k] - median``, which keeps the face ellipse
    and eye band on the face after a head move.
    """

    def __init__(
        self, window: _FaceWindow, config: IntervalSpottingConfig, fps: float, flow: str
    ) -> None:
        self.window, self.config, self.flow = window, config, flow
        self.k = config.frames(config.window_seconds, fps)
        self.reach = config.frames(config.max_duration_seconds, fps)
        self.positions: dict[int, tuple[float, float]] = {}

    def position(self, t: int) -> tuple[float, float]:
        return self.positions.get(t, (0.0, 0.0))

    def _motion(self, a: np.ndarray, b: np.ndarray, face: np.ndarray) -> np.ndarray:
        """Flow a -> b and its median over the face (the rigid head motion)."""
        flow = compute_flow(a, b, self.flow)
        return flow, np.median(flow[face], axis=0)

    def _level(self, flow: np.ndarray, scored: np.ndarray) -> float:
        magnitude = np.hypot(flow[..., 0], flow[..., 1])
        return float(np.percentile(magnitude[scored], self.config.percentile))

    def score(self, crops: list[np.ndarray], first: int, t: int) -> float:
        """Feature difference at frame t (needs frames t-k .. t+k)."""
        j, k = t - first, self.k
        earlier = self.position(t - k)
        back, shift = self._motion(crops[j], crops[j - k], self.window.masks(earlier)[0])
        here = (earlier[0] - float(shift[0]), earlier[1] - float(shift[1]))
        self.positions[t] = here
        self.positions.pop(t - 2 * self.reach - k, None)  # no later pass needs it
        face, scored = self.window.masks(here)
        ahead, ahead_shift = self._motion(crops[j], crops[j + k], face)
        return self._level(((back - shift) + (ahead - ahead_shift)) / 2.0, scored)

    def interval(self, crops: list[np.ndarray], first: int, apex: int) -> tuple[int, int]:
        """Onset and offset around ``apex`` from the motion of each frame relative to it."""
        j = apex - first
        face, scored = self.window.masks(self.position(apex))
        lo, hi = max(j - self.reach, 0), min(j + self.reach, len(crops) - 1)
        motion = {}
        for s in range(lo, hi + 1):
            flow, shift = self._motion(crops[j], crops[s], face)
            motion[s] = self._level(flow - shift, scored)
        onset = offset = j
        if lo < j:
            level = self.config.neutral_fraction * max(motion[s] for s in range(lo, j))
            onset = max(s for s in range(lo, j) if motion[s] >= level)
        if hi > j:
            level = self.config.neutral_fraction * max(motion[s] for s in range(j + 1, hi + 1))
            offset = min(s for s in range(j + 1, hi + 1) if motion[s] >= level)
        return first + onset, first + offset


def robust_threshold(scores: np.ndarray, mads: float) -> float:
    """Median plus ``mads`` robust standard deviations (1.4826 MAD) of the scored frames."""
    valid = scores[scores > 0]
    if valid.size == 0:
        return float("inf")
    median = float(np.median(valid))
    spread = 1.4826 * float(np.median(np.abs(valid - median)))
    return median + mads * max(spread, 1e-6)


def _peaks(scores: np.ndarray, lo: int, hi: int, threshold: float) -> list[int]:
    """Frames in [lo, hi) where the 3-frame mean score is a local maximum above threshold."""
    smooth = np.convolve(scores, np.ones(3) / 3.0, mode="same")
    return [
        t
        for t in range(max(lo, 1), min(hi, len(scores) - 1))
        if smooth[t] > threshold and smooth[t] >= smooth[t - 1] and smooth[t] > smooth[t + 1]
    ]


def _separate(peaks: list[tuple[int, float]], separation: int) -> list[tuple[int, float]]:
    """The highest peaks first, each at least ``separation`` frames from those kept."""
    kept: list[tuple[int, float]] = []
    for t, score in sorted(peaks, key=lambda p: -p[1]):
        if all(abs(t - u) >= separation for u, _ in kept):
            kept.append((t, score))
    return sorted(kept)


def _smoothed(crops: Iterator[np.ndarray], frames: int) -> Iterator[np.ndarray]:
    """Each crop averaged with its neighbours (``frames`` in all, fewer at the ends)."""
    half = frames // 2
    recent: deque[np.ndarray] = deque(maxlen=2 * half + 1)  # frames [seen - len, seen)

    def mean(center: int, seen: int) -> np.ndarray:
        lo = max(center - half - (seen - len(recent)), 0)
        hi = min(center + half + 1, seen) - (seen - len(recent))
        window = np.stack(list(recent)[lo:hi]).astype(np.float32)
        return np.rint(window.mean(axis=0)).astype(np.uint8)

    seen = 0
    for crop in crops:
        recent.append(crop)
        seen += 1
        if seen - 1 - half >= 0:  # this frame's window is complete
            yield mean(seen - 1 - half, seen)
    for center in range(max(seen - half, 0), seen):
        yield mean(center, seen)


def spot_in_frames(
    frames: Iterable[np.ndarray],
    fps: float,
    detector: FaceDetector,
    config: IntervalSpottingConfig = IntervalSpottingConfig(),
    flow_method: str = "dis",
) -> SpottingResult:
    """Spot intervals in a stream of BGR (or grey) frames at ``fps``.

    Scores are computed as frames arrive; every ``chunk_seconds`` of scores,
    that chunk's peaks are found against its own threshold and their
    intervals measured, and the crops no later chunk needs are dropped.
    """
    if fps <= 0:
        raise ClipError(f"frame rate {fps} is not positive")
    iterator = iter(frames)
    first_frame = next(iterator, None)
    if first_frame is None:
        raise ClipError("no frames to spot in")
    window = _FaceWindow(first_frame, detector, config)
    passes = _Passes(window, config, fps, flow_method)
    k, reach = passes.k, passes.reach
    chunk = config.frames(config.chunk_seconds, fps)
    raw = (window.crop(f) for f in chain([first_frame], iterator))
    smoothed = _smoothed(raw, config.smooth_frames)
    crops: list[np.ndarray] = [next(smoothed)]
    first = 0  # frame number of crops[0]
    scores: list[float] = []  # scores[t] for every frame t that has arrived minus k
    thresholds: list[float] = []
    peaks: list[tuple[int, float, int, int]] = []  # apex, score, onset, offset

    def close_chunk(end: int) -> None:
        """Find the peaks of frames [len(thresholds), end) and measure their intervals."""
        start = len(thresholds)
        array = np.asarray(scores)
        limit = robust_threshold(array[max(end - chunk, 0) : end], config.threshold_mads)
        thresholds.extend([limit] * (end - start))
        for t in _peaks(array, start, end, limit):
            onset, offset = passes.interval(crops, first, t)
            peaks.append((t, float(array[t]), onset, offset))

    def score_frame(t: int) -> None:
        has_context = t - k >= 0 and t + k < first + len(crops)
        scores.append(passes.score(crops, first, t) if has_context else 0.0)

    for crop in smoothed:
        crops.append(crop)
        newest = first + len(crops) - 1
        if newest - k >= 0:
            score_frame(newest - k)
        # A chunk closes once its last peak can see `reach` frames ahead.
        end = len(thresholds) + chunk
        if newest >= end + reach and len(scores) > end:
            close_chunk(end)
            drop = max(end - reach - first, 0)
            del crops[:drop]
            first += drop
    total = first + len(crops)
    needed = 2 * reach + 1
    if total < needed:
        raise ClipError(
            f"{total} frames ({total / fps:.2f} s at {fps:g} fps) is too short for spotting: "
            f"it needs at least {needed} ({needed / fps:.2f} s)"
        )
    while len(scores) < total:
        score_frame(len(scores))
    close_chunk(total)
    kept = {
        t
        for t, _ in _separate(
            [(p[0], p[1]) for p in peaks], config.frames(config.min_separation_seconds, fps)
        )
    }
    intervals = [
        SpottedInterval(onset=onset, apex=t, offset=offset, score=round(score, 4))
        for t, score, onset, offset in peaks
        if t in kept
    ]
    return SpottingResult(
        intervals=intervals,
        scores=np.asarray(scores),
        thresholds=np.asarray(thresholds),
        fps=float(fps),
        face_box=window.face_box,
        eye_y=window.eye_y,
        eyes_found=window.eyes_found,
    )


def spot_in_video(
    source: Path,
    detector: FaceDetector,
    config: IntervalSpottingConfig = IntervalSpottingConfig(),
    flow_method: str = "dis",
    fps: float | None = None,
) -> SpottingResult:
    """Spot intervals in a video file or frame folder; ``fps`` is required for a folder
    (and overrides a video's container rate)."""
    source = Path(source)
    rate = fps if fps is not None else container_fps(source)
    try:
        return spot_in_frames(
            (frame for _, frame in iter_frames(source)), rate, detector, config, flow_method
        )
    except ClipError as error:
        raise error.with_context(source.stem, source) from None


def container_fps(source: Path) -> float:
    """The frame rate a video's container declares; a folder has none."""
    if source.is_dir():
        raise ClipError("a frame folder has no frame rate: give it (--fps)", path=source)
    capture = cv2.VideoCapture(str(source))
    try:
        rate = float(capture.get(cv2.CAP_PROP_FPS)) if capture.isOpened() else 0.0
    finally:
        capture.release()
    if not rate > 0:
        raise ClipError("the video declares no frame rate: give it (--fps)", path=source)
    return rate
