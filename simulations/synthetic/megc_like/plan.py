"""Plan one megc-like clip: which AUs fire, how much, when, and every nuisance.

Everything random is drawn here from the clip's own generator; rendering
(:mod:`.render`) is a pure function of the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..action_units import CLASSES, Bump
from ..clip import Blink, draw_blinks, draw_timing, eyelid_closure, movement_profile
from ..face_render import FaceLayout
from .facs import CLASS_COMBINATIONS, bumps_of, combination_aus
from .people import Person
from .spec import MegcLikeSpec


@dataclass(frozen=True)
class MegcClipPlan:
    label: str  # the annotated (self-reported) class
    action_units: str  # what the face does, e.g. "4+15"
    agrees: bool  # whether those AUs are the label's
    num_frames: int
    onset: int
    apex: int
    offset: int
    amplitude_px: float
    bumps: tuple[Bump, ...]
    blinks: tuple[Blink, ...]
    # Per frame: head translation (px), rotation (degrees) and scale, about the face centre.
    head: tuple[tuple[float, float, float, float], ...]
    flicker: tuple[float, ...]  # per-frame illumination gain
    noise_seed: int

    def profile(self) -> np.ndarray:
        t = np.arange(self.num_frames, dtype=np.float64)
        return movement_profile(t, self.onset, self.apex, self.offset)

    def eyelid_closure(self) -> np.ndarray:
        return eyelid_closure(self.blinks, self.num_frames)


def _smooth_path(rng: np.random.Generator, num: int, total: float) -> np.ndarray:
    """A smooth 1-D drift over ``num`` frames whose end-to-end excursion is ``total``."""
    knots = np.cumsum(rng.standard_normal(4))
    knots -= knots[0]
    t = np.linspace(0.0, 3.0, num)
    path = np.interp(t, np.arange(4), knots)
    span = float(np.abs(path).max()) or 1.0
    return path * (total / span)


def plan_megc_clip(
    rng: np.random.Generator,
    spec: MegcLikeSpec,
    person: Person,
    layout: FaceLayout,
    label: str,
    fps: int,
) -> MegcClipPlan:
    """Draw one clip of annotated class ``label`` for ``person`` at ``fps``."""
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; expected one of {CLASSES}")
    num, onset, apex, offset = draw_timing(rng, fps, spec.clip_seconds, spec.movement_seconds)

    agrees = bool(rng.uniform() >= spec.label_disagreement)
    shown = label
    if not agrees:
        shown = str(rng.choice([c for c in CLASSES if c != label]))
    combos = CLASS_COMBINATIONS[shown]
    pick = int(rng.choice(len(combos), p=np.array(person.combination_weights[shown])))
    combination = combos[pick][0]
    bumps = bumps_of(combination_aus(combination), layout, person.au_gains, person.asymmetry, rng)
    lo, hi = spec.apex_px
    if spec.apex_distribution == "log-uniform":
        apex_px = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        apex_px = rng.uniform(lo, hi)
    amplitude = apex_px * spec.face_width / 128.0

    blinks = draw_blinks(rng, person.blink_rate_hz, num, fps, depth=(0.6, 1.0))

    drift = rng.uniform(*spec.head_drift_px)
    angle = rng.uniform(0.0, 2 * math.pi)
    dx = _smooth_path(rng, num, drift * math.cos(angle))
    dy = _smooth_path(rng, num, drift * math.sin(angle))
    rot = _smooth_path(rng, num, rng.uniform(-1, 1) * spec.head_rotation_deg)
    scale = 1.0 + _smooth_path(rng, num, rng.uniform(-1, 1) * spec.head_scale)
    head = tuple(
        (float(a), float(b), float(c), float(d))
        for a, b, c, d in zip(dx, dy, rot, scale, strict=True)
    )

    amp = rng.uniform(*spec.flicker_amplitude)
    hz = rng.uniform(*spec.flicker_hz)
    phase = rng.uniform(0.0, 2 * math.pi)
    t = np.arange(num) / fps
    flicker = tuple(float(x) for x in 1.0 + amp * np.sin(2 * math.pi * hz * t + phase))

    return MegcClipPlan(
        label=label,
        action_units=combination,
        agrees=agrees,
        num_frames=num,
        onset=onset,
        apex=apex,
        offset=offset,
        amplitude_px=float(amplitude),
        bumps=bumps,
        blinks=blinks,
        head=head,
        flicker=flicker,
        noise_seed=int(rng.integers(0, 2**63 - 1)),
    )
