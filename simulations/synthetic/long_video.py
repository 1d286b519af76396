"""Synthetic long videos for micro-expression spotting, with their ground truth.

A long video is one subject filmed for ``seconds`` at ``fps`` on a
``width x height`` frame (default 640x480, the CASME II / CAS(ME)^2 camera),
holding:

* ``num_expressions`` planted micro-expressions (the cohort's action-unit
  movements and amplitudes, 0.15-0.40 s each, at least ``min_gap_seconds``
  apart): the ground truth, written as ``<name>.intervals.csv``;
* distractors that a spotter must not report: blinks (about
  ``blinks_per_second``, full lid closures, kept clear of the expressions so
  the ground truth stays unambiguous), ``num_head_moves`` sustained head
  translations of ``head_move_px`` pixels (larger than any micro-movement),
  and the cohort's small head jitter throughout.

Every random quantity comes from ``SeedSequence(seed)``: equal specs give
identical videos. Frames are rendered and written one at a time, so a long
video never sits in memory. ``<name>.json`` records the spec and every
distractor (frame numbers are 0-based, as video frames are read).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from .action_units import CLASSES, Bump, au_bumps, displacement_field
from .clip import (
    APEX_PX_AT_128,
    JITTER_LIMIT_PX,
    JITTER_RHO,
    MOVEMENT_SECONDS,
    Blink,
    base_grid,
    expose,
    movement_profile,
    warp_face,
)
from .face_render import FaceRenderer, lighting_field
from .identity import sample_identity

INTERVAL_COLUMNS = ("onset", "apex", "offset", "label")


@dataclass(frozen=True)
class LongVideoSpec:
    seconds: float = 20.0
    fps: int = 50
    width: int = 640
    height: int = 480
    face_width: int = 160
    num_expressions: int = 5
    min_gap_seconds: float = 1.5  # between planted expressions (onset to previous offset)
    blinks_per_second: float = 0.3
    num_head_moves: int = 3
    head_move_px: tuple[float, float] = (4.0, 10.0)
    head_move_seconds: tuple[float, float] = (0.3, 0.6)
    seed: int = 0
    # Motion JPEG: every frame a JPEG, as long-video releases ship their frames,
    # and ~13 kB a frame at 640x480 where a lossless codec needs ~330 kB (the
    # sensor noise does not compress). Its artefacts are part of the test.
    video_codec: str = "MJPG"

    def __post_init__(self) -> None:
        if self.width < self.height:
            raise ValueError(f"width {self.width} must be >= height {self.height}")
        if self.face_width > 0.6 * self.height:
            raise ValueError(f"face_width {self.face_width} too large for height {self.height}")
        if self.num_frames < self.fps:
            raise ValueError("a long video needs at least one second")

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))


@dataclass(frozen=True)
class PlantedExpression:
    onset: int
    apex: int
    offset: int
    label: str
    amplitude_px: float


@dataclass(frozen=True)
class HeadMove:
    start: int
    frames: int
    dx: float
    dy: float

    def progress(self, t: np.ndarray) -> np.ndarray:
        x = np.clip((t - self.start) / self.frames, 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(np.pi * x)


@dataclass(frozen=True)
class LongVideoPlan:
    spec: LongVideoSpec
    expressions: tuple[PlantedExpression, ...]
    bumps: tuple[tuple[Bump, ...], ...]  # each expression's action-unit movement
    blinks: tuple[Blink, ...]
    head_moves: tuple[HeadMove, ...]
    shifts: np.ndarray  # (T, 2) head translation per frame: moves + jitter (px)
    noise_seed: int

    def describe(self) -> dict[str, object]:
        return {
            "format": "fedmer-synthetic-long-video",
            "spec": asdict(self.spec),
            "num_frames": self.spec.num_frames,
            "expressions": [asdict(e) for e in self.expressions],
            "blinks": [
                {"start": b.start, "end": b.start + b.close_frames + b.open_frames}
                for b in self.blinks
            ],
            "head_moves": [asdict(m) for m in self.head_moves],
        }


def _frames(seconds: float, fps: int) -> int:
    return max(int(round(seconds * fps)), 1)


def _place(
    rng: np.random.Generator, durations: list[int], total: int, gap: int
) -> list[int] | None:
    """Random non-overlapping starts for ``durations`` with ``gap`` frames between
    them and from both ends (stars and bars over the free frames)."""
    if not durations:
        return []
    free = total - sum(durations) - gap * (len(durations) + 1)
    if free < 0:
        return None
    cuts = np.sort(rng.integers(0, free + 1, len(durations)))
    starts, position = [], gap
    previous_cut = 0
    for duration, cut in zip(durations, cuts):
        position += int(cut - previous_cut)
        starts.append(position)
        position += duration + gap
        previous_cut = int(cut)
    return starts


def plan_long_video(spec: LongVideoSpec, renderer: FaceRenderer) -> LongVideoPlan:
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(1,)))
    fps, total = spec.fps, spec.num_frames
    durations = [
        int(rng.integers(_frames(MOVEMENT_SECONDS[0], fps), _frames(MOVEMENT_SECONDS[1], fps) + 1))
        for _ in range(spec.num_expressions)
    ]
    starts = _place(rng, durations, total, _frames(spec.min_gap_seconds, fps))
    if starts is None:
        raise ValueError(
            f"{spec.num_expressions} expressions {spec.min_gap_seconds} s apart do not fit "
            f"in {spec.seconds} s"
        )
    expressions, bumps = [], []
    for onset, duration in zip(starts, durations):
        rise = min(max(int(round(duration * rng.uniform(0.35, 0.6))), 1), duration - 1)
        expressions.append(
            PlantedExpression(
                onset=onset,
                apex=onset + rise,
                offset=onset + duration,
                label=str(rng.choice(CLASSES)),
                amplitude_px=float(rng.uniform(*APEX_PX_AT_128)) * spec.face_width / 128.0,
            )
        )
        bumps.append(au_bumps(expressions[-1].label, renderer.layout, rng))

    # Blinks and head moves go where no expression is (0.1 s clear of each).
    clear = _frames(0.1, fps)
    busy = np.zeros(total, bool)
    for e in expressions:
        busy[max(e.onset - clear, 0) : e.offset + clear + 1] = True

    def free_start(length: int) -> int | None:
        for _ in range(200):
            start = int(rng.integers(0, total - length))
            if not busy[start : start + length + 1].any():
                return start
        return None

    blinks = []
    for _ in range(int(rng.poisson(spec.blinks_per_second * spec.seconds))):
        close = _frames(rng.uniform(0.03, 0.05), fps) + 1
        opening = _frames(rng.uniform(0.04, 0.09), fps) + 1
        start = free_start(close + opening)
        if start is not None:
            busy[start : start + close + opening + 1] = True
            blinks.append(Blink(start, close, opening, float(rng.uniform(0.8, 1.0))))

    moves = []
    for _ in range(spec.num_head_moves):
        frames = _frames(rng.uniform(*spec.head_move_seconds), fps)
        start = free_start(frames)
        if start is None:
            continue
        busy[start : start + frames + 1] = True
        size, angle = rng.uniform(*spec.head_move_px), rng.uniform(0, 2 * math.pi)
        moves.append(HeadMove(start, frames, size * math.cos(angle), size * math.sin(angle)))

    t = np.arange(total, dtype=np.float64)
    shifts = np.zeros((total, 2))
    for m in moves:
        shifts += m.progress(t)[:, None] * np.array([m.dx, m.dy])
    # Head jitter: the cohort's AR(1) process, clipped the same way.
    sigma = renderer.identity.jitter_px
    eps = rng.standard_normal((total, 2))
    jitter = np.empty((total, 2))
    jitter[0] = sigma * eps[0]
    for i in range(1, total):
        jitter[i] = JITTER_RHO * jitter[i - 1] + sigma * math.sqrt(1 - JITTER_RHO**2) * eps[i]
    shifts += np.clip(jitter, -JITTER_LIMIT_PX, JITTER_LIMIT_PX)
    return LongVideoPlan(
        spec=spec,
        expressions=tuple(expressions),
        bumps=tuple(bumps),
        blinks=tuple(sorted(blinks, key=lambda b: b.start)),
        head_moves=tuple(sorted(moves, key=lambda m: m.start)),
        shifts=shifts,
        noise_seed=int(rng.integers(0, 2**63 - 1)),
    )


def long_video_renderer(spec: LongVideoSpec) -> FaceRenderer:
    identity = sample_identity(np.random.default_rng(np.random.SeedSequence(spec.seed)))
    return FaceRenderer(identity, canvas=spec.height, face_width=spec.face_width)


def render_long_video(renderer: FaceRenderer, plan: LongVideoPlan) -> Iterator[np.ndarray]:
    """Yield the video's frames (``height x width x 3`` uint8 BGR), one at a time.

    The face is rendered on a square ``height`` canvas and widened to
    ``width`` by reflecting the background at its sides.
    """
    spec = plan.spec
    size, pad = spec.height, (spec.width - spec.height) // 2
    extra = spec.width - spec.height - 2 * pad
    grid = base_grid(size)
    light = lighting_field(renderer.identity, spec.width)[pad : pad + size, :, None]
    light = np.ascontiguousarray(light)
    rng = np.random.default_rng(plan.noise_seed)
    t = np.arange(spec.num_frames, dtype=np.float64)
    closure = np.zeros(spec.num_frames)
    for b in plan.blinks:
        closure = np.maximum(closure, b.closure(t))
    # Expressions never overlap, so each frame moves by at most one field.
    fields = [
        displacement_field(b, size, e.amplitude_px) for e, b in zip(plan.expressions, plan.bumps)
    ]
    profiles = [movement_profile(t, e.onset, e.apex, e.offset) for e in plan.expressions]
    for i in range(spec.num_frames):
        field = None
        for apex_field, profile in zip(fields, profiles):
            if profile[i] > 0:
                field = apex_field * np.float32(profile[i])
        shift = (float(plan.shifts[i, 0]), float(plan.shifts[i, 1]))
        face = warp_face(renderer.neutral(float(closure[i])), field, shift, grid)
        frame = cv2.copyMakeBorder(face, 0, 0, pad, pad + extra, cv2.BORDER_REFLECT_101)
        yield expose(frame, light, rng, renderer.identity.noise_sigma)


def write_intervals_csv(path: Path, expressions: tuple[PlantedExpression, ...]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(INTERVAL_COLUMNS)
        for e in expressions:
            writer.writerow([e.onset, e.apex, e.offset, e.label])
    return path


def write_long_video(path: str | Path, spec: LongVideoSpec = LongVideoSpec()) -> LongVideoPlan:
    """Write the video (Motion-JPEG AVI by default) to ``path``, its ground truth beside it as
    ``<stem>.intervals.csv`` and its description as ``<stem>.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    renderer = long_video_renderer(spec)
    plan = plan_long_video(spec, renderer)
    codec = spec.video_codec
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*codec), float(spec.fps), (spec.width, spec.height)
    )
    if not writer.isOpened():
        raise OSError(f"{path}: cv2.VideoWriter could not open codec {codec!r}")
    try:
        for frame in render_long_video(renderer, plan):
            writer.write(frame)
    finally:
        writer.release()
    write_intervals_csv(path.with_suffix(".intervals.csv"), plan.expressions)
    path.with_suffix(".json").write_text(
        json.dumps({**plan.describe(), "codec": codec}, indent=2) + "\n", encoding="utf-8"
    )
    return plan
