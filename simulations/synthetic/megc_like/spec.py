"""What a ``megc-like`` cohort is: three labs shaped like the MEGC2019 composite's sources,
and every knob that makes it hard, with its default and the reason for it.

The composite (MEGC2019, 442 clips, 68 subjects) pools CASME II, SAMM and
SMIC-HS. Each synthetic lab copies its source's subjects, per-class clip
counts, frame rate, colour and the way its release ships (the layouts of
:mod:`.layouts`), so the same readers read it. ``docs/megc-like.md`` lists the
knobs in prose.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class LabSpec:
    """One source dataset of the composite."""

    dataset: str  # reader / label-scheme name: casme2, samm, smic
    subjects: int
    # Composite class -> clips, as in MEGC2019 (CASME II 88/32/25, SAMM 92/26/15, SMIC 70/51/43).
    clips: dict[str, int]
    fps: int
    # The release's frame size; frames are written at its aspect ratio, at
    # MegcLikeSpec.frame_height, not at full resolution.
    release_frame_size: tuple[int, int]
    colour: bool
    # JPEG quality of the written frames (0 = lossless BMP, as SMIC ships).
    jpeg_quality: int

    @property
    def num_clips(self) -> int:
        return sum(self.clips.values())


CASME2 = LabSpec(
    "casme2", 24, {"negative": 88, "positive": 32, "surprise": 25}, 200, (640, 480), True, 75
)
SAMM = LabSpec(
    "samm", 28, {"negative": 92, "positive": 26, "surprise": 15}, 200, (2040, 1088), False, 85
)
SMIC = LabSpec(
    "smic", 16, {"negative": 70, "positive": 51, "surprise": 43}, 100, (640, 480), True, 0
)


@dataclass(frozen=True)
class MegcLikeSpec:
    """A megc-like cohort. Equal specs give byte-identical files (same OpenCV build)."""

    seed: int = 0
    labs: tuple[LabSpec, ...] = (CASME2, SAMM, SMIC)
    # --- geometry ----------------------------------------------------------
    # Rendered canvas (the frame's height) and face width: the apex
    # amplitudes below are defined at a 128 px face, the face size most MER
    # pipelines (and fedmer's default --face-size) align to. Full-resolution
    # frames would change nothing the features see and cost 48 GB for SAMM.
    canvas: int = 160
    face_width: int = 128
    # Frame height: the rendered face sits in a frame of the release's aspect
    # ratio this tall, covering about two thirds of its height as faces do in
    # the releases' frames (OpenCV's detector needs that margin).
    frame_height: int = 240
    # --- the micro-movement ----------------------------------------------
    # Apex displacement, log-uniform, px at a 128 px face. Real apex flow at
    # that scale is a fraction of a pixel to about two pixels.
    apex_px: tuple[float, float] = (0.2, 2.0)
    # Onset to offset, seconds (micro-expressions last at most 0.5 s).
    movement_seconds: tuple[float, float] = (0.2, 0.45)
    # Whole clip for the labs that ship frames around the movement, seconds.
    clip_seconds: tuple[float, float] = (0.45, 0.65)
    # --- people ---------------------------------------------------------------
    # Spread (log-normal sigma) of a subject's gain per action unit: some people
    # barely move their brows, others their mouth.
    au_gain_sigma: float = 0.6
    # Dirichlet concentration of a subject's preference over each class's AU
    # combinations (small = each person has a habitual way of showing it).
    combination_concentration: float = 0.6
    # Left/right strength ratio, log-normal sigma.
    asymmetry_sigma: float = 0.25
    # Spread of clips per subject (gamma shape; smaller = more uneven, as in the
    # releases, where one subject has 1 clip and another 20).
    clips_per_subject_shape: float = 1.2
    max_clips_per_subject: int = 22
    # --- labels -------------------------------------------------------------
    # Fraction of clips whose action units are those of another class: the
    # label is the self-report (or the coders' reading of the context), which
    # disagrees with the face in a share of real clips.
    label_disagreement: float = 0.12
    # --- nuisance larger than the signal -----------------------------------
    # Head translation over a clip, px (total drift, uniform): larger than the
    # micro-movement, as in the releases.
    head_drift_px: tuple[float, float] = (0.5, 4.0)
    # In-plane head rotation and scale change over a clip (max |degrees|, max
    # relative): unlike translation, the median-flow subtraction cannot remove it.
    head_rotation_deg: float = 1.2
    head_scale: float = 0.012
    # Blinks per second (a subject's rate is drawn in this range).
    blink_rate_hz: tuple[float, float] = (0.4, 1.6)
    # Illumination flicker: relative amplitude range and frequency range (Hz):
    # mains-powered lights aliased by the camera's frame rate.
    flicker_amplitude: tuple[float, float] = (0.0, 0.025)
    flicker_hz: tuple[float, float] = (2.0, 25.0)
    # Sensor noise, grey levels (per subject, uniform).
    noise_sigma: tuple[float, float] = (1.0, 3.0)

    def __post_init__(self) -> None:
        lo, hi = self.apex_px
        if not 0 < lo <= hi:
            raise ValueError(f"apex_px must be 0 < low <= high, got {self.apex_px}")
        if self.frame_height < self.canvas:
            raise ValueError(f"frame_height {self.frame_height} is below the canvas {self.canvas}")
        if not 0 <= self.label_disagreement < 1:
            raise ValueError(f"label_disagreement must be in [0, 1), got {self.label_disagreement}")
        for lab in self.labs:
            if lab.num_clips < lab.subjects:
                raise ValueError(f"{lab.dataset}: fewer clips ({lab.num_clips}) than subjects")
            if lab.num_clips > lab.subjects * self.max_clips_per_subject:
                raise ValueError(f"{lab.dataset}: more clips than max_clips_per_subject allows")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def num_clips(self) -> int:
        return sum(lab.num_clips for lab in self.labs)

    @property
    def num_subjects(self) -> int:
        return sum(lab.subjects for lab in self.labs)
