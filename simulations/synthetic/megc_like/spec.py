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
from dataclasses import dataclass, field
from typing import Any


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
    "casme2", 24, {"negative": 88, "positive": 32, "surprise": 25}, 200, (640, 480), True, 90
)
SAMM = LabSpec(
    "samm", 28, {"negative": 92, "positive": 26, "surprise": 15}, 200, (2040, 1088), False, 90
)
SMIC = LabSpec(
    "smic", 16, {"negative": 70, "positive": 51, "surprise": 43}, 100, (640, 480), True, 0
)


def _knob(default: Any, help: str) -> Any:  # noqa: A002 - argparse's word
    """A generator setting with the reason for its default (shown by ``fedmer megc-like --help``)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class MegcLikeSpec:
    """A megc-like cohort. Equal specs give byte-identical files (same OpenCV build)."""

    seed: int = _knob(0, "seed of every random quantity (people, clips, noise)")
    labs: tuple[LabSpec, ...] = (CASME2, SAMM, SMIC)
    # --- geometry ------------------------------------------------------------
    canvas: int = _knob(160, "rendered face canvas, px (square)")
    face_width: int = _knob(
        128,
        "face width, px: the apex amplitudes are defined at a 128 px face, the size most MER "
        "pipelines (and fedmer prepare's default --face-size) align to",
    )
    frame_height: int = _knob(
        240,
        "frame height, px; frames have the release's aspect ratio, and the face covers about "
        "two thirds of the height as in the releases (full-resolution frames would change "
        "nothing the features see and take 48 GB for SAMM alone)",
    )
    # --- the micro-movement --------------------------------------------------
    apex_px: tuple[float, float] = _knob(
        (0.2, 2.0),
        "apex displacement, px at a 128 px face: real apex flow at that scale is a fraction "
        "of a pixel to about two pixels",
    )
    apex_distribution: str = _knob(
        "uniform", "how apex_px is drawn: uniform, or log-uniform (more of the faintest clips)"
    )
    movement_seconds: tuple[float, float] = _knob(
        (0.2, 0.45), "onset to offset, seconds (a micro-expression lasts at most 0.5 s)"
    )
    clip_seconds: tuple[float, float] = _knob(
        (0.45, 0.65), "whole clip, seconds, for the labs that ship frames around the movement"
    )
    # --- people ------------------------------------------------------------------
    au_gain_sigma: float = _knob(
        0.2,
        "log-normal spread of a subject's gain per action unit: some people barely move "
        "their brows, others their mouth",
    )
    combination_concentration: float = _knob(
        0.6,
        "Dirichlet concentration of a subject's preference over a class's AU combinations "
        "(small: each person has a habitual way of showing it)",
    )
    asymmetry_sigma: float = _knob(0.15, "log-normal spread of the left/right strength ratio")
    clips_per_subject_shape: float = _knob(
        1.2,
        "gamma shape of clips per subject (smaller: more uneven, as in the releases, where "
        "one subject has 1 clip and another 20)",
    )
    max_clips_per_subject: int = _knob(22, "most clips one subject may have")
    # --- labels ------------------------------------------------------------------
    label_disagreement: float = _knob(
        0.04,
        "share of clips whose action units are another class's: the label is a self-report "
        "or the coders' reading of the context, which disagrees with the face in real clips",
    )
    # --- nuisance larger than the signal -----------------------------------------
    head_drift_px: tuple[float, float] = _knob(
        (0.3, 3.0), "head translation over a clip, px (uniform): larger than the expression"
    )
    head_rotation_deg: float = _knob(
        0.3,
        "largest in-plane head rotation over a clip, degrees: unlike translation, the "
        "median-flow subtraction cannot remove it",
    )
    head_scale: float = _knob(0.003, "largest relative scale change (moving towards the camera)")
    blink_rate_hz: tuple[float, float] = _knob(
        (0.2, 1.0), "blinks per second; a subject's rate is drawn in this range"
    )
    flicker_amplitude: tuple[float, float] = _knob(
        (0.0, 0.015), "relative amplitude of illumination flicker (a clip's is drawn here)"
    )
    flicker_hz: tuple[float, float] = _knob(
        (2.0, 25.0), "flicker frequency, Hz: mains-powered lights aliased by the frame rate"
    )
    noise_sigma: tuple[float, float] = _knob(
        (0.8, 2.5), "sensor noise, grey levels (a subject's is drawn here)"
    )

    def __post_init__(self) -> None:
        lo, hi = self.apex_px
        if not 0 < lo <= hi:
            raise ValueError(f"apex_px must be 0 < low <= high, got {self.apex_px}")
        if self.apex_distribution not in ("uniform", "log-uniform"):
            raise ValueError(
                f"apex_distribution must be uniform or log-uniform, got {self.apex_distribution!r}"
            )
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
