"""Facial-action-unit displacement fields, one per emotion class.

A micro-movement is a smooth *forward* displacement field ``D(x)`` (pixels):
a sum of Gaussian-weighted bumps centred on facial landmarks, each pushing
its neighbourhood in one direction.  The radius of every bump is
proportional to the face width, so the motion is local to the action unit's
region, as real micro-expressions are, and smooth enough for optical flow to
recover.  The field is normalised so its largest magnitude equals the
clip's apex amplitude.

Classes (MEGC2019 composite) and the FACS action units they use:

* ``positive`` - AU12 lip-corner puller: corners move outward and up.
* ``negative`` - AU4 brow lowerer (inner brows down and together) +
  AU15 lip-corner depressor (corners down).
* ``surprise`` - AU1+2 inner and outer brow raiser (brows up) +
  AU26 jaw drop (lower lip and chin down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .face_render import FaceLayout, Point

CLASSES: tuple[str, ...] = ("positive", "negative", "surprise")

#: FACS codes per class, in the notation of the CASME II sheets.
ACTION_UNITS: dict[str, str] = {"positive": "12", "negative": "4+15", "surprise": "1+2+26"}

#: Landmarks whose neighbourhood each class moves (the class's AU region).
AU_LANDMARKS: dict[str, tuple[str, ...]] = {
    "positive": ("mouth_l", "mouth_r"),
    "negative": ("brow_l_inner", "brow_r_inner", "mouth_l", "mouth_r"),
    "surprise": (
        "brow_l_inner",
        "brow_l_mid",
        "brow_l_outer",
        "brow_r_inner",
        "brow_r_mid",
        "brow_r_outer",
        "lower_lip",
        "chin",
    ),
}


@dataclass(frozen=True)
class Bump:
    """One Gaussian displacement bump: ``vector * exp(-|x - c|^2 / 2 sigma^2)``."""

    center: Point
    vector: Point  # direction times relative weight (normalised later)
    sigma: float


def _unit(dx: float, dy: float) -> Point:
    n = math.hypot(dx, dy)
    return (dx / n, dy / n)


def _rotate(v: Point, deg: float) -> Point:
    th = math.radians(deg)
    c, s = math.cos(th), math.sin(th)
    return (c * v[0] - s * v[1], s * v[0] + c * v[1])


def au_bumps(label: str, layout: FaceLayout, rng: np.random.Generator) -> tuple[Bump, ...]:
    """The bumps of one clip of class ``label`` on the face ``layout``.

    ``rng`` adds clip-to-clip variety (direction +-10 degrees, weights
    +-15 %, bump radius +-10 %) without changing what moves where.
    """
    if label not in AU_LANDMARKS:
        raise ValueError(f"unknown class {label!r}; expected one of {CLASSES}")
    lm = layout.landmarks
    u = layout.unit
    spec: list[tuple[str, Point, float, float]] = []  # landmark, direction, weight, sigma/U
    if label == "positive":
        lift = float(rng.uniform(25.0, 40.0))  # elevation of the pull, degrees
        c, s = math.cos(math.radians(lift)), math.sin(math.radians(lift))
        spec += [("mouth_l", (-c, -s), 1.0, 0.07), ("mouth_r", (c, -s), 1.0, 0.07)]
    elif label == "negative":
        spec += [
            ("brow_l_inner", _unit(0.45, 0.9), 1.0, 0.065),
            ("brow_r_inner", _unit(-0.45, 0.9), 1.0, 0.065),
            ("brow_l_mid", (0.0, 1.0), 0.35, 0.06),
            ("brow_r_mid", (0.0, 1.0), 0.35, 0.06),
            ("mouth_l", _unit(-0.2, 1.0), 0.8, 0.06),
            ("mouth_r", _unit(0.2, 1.0), 0.8, 0.06),
        ]
    else:  # surprise
        for side in ("l", "r"):
            spec += [
                (f"brow_{side}_inner", (0.0, -1.0), 1.0, 0.065),
                (f"brow_{side}_mid", (0.0, -1.0), 0.9, 0.065),
                (f"brow_{side}_outer", (0.0, -1.0), 0.75, 0.065),
            ]
        spec += [("lower_lip", (0.0, 1.0), 0.8, 0.07), ("chin", (0.0, 1.0), 1.0, 0.12)]
    bumps = []
    for name, direction, weight, sig in spec:
        d = _rotate(direction, float(rng.uniform(-10.0, 10.0)))
        w = weight * float(rng.uniform(0.85, 1.15))
        bumps.append(Bump(lm[name], (d[0] * w, d[1] * w), sig * u * float(rng.uniform(0.9, 1.1))))
    return tuple(bumps)


def displacement_field(bumps: tuple[Bump, ...], size: int, amplitude: float) -> np.ndarray:
    """Forward displacement (``size x size x 2``, float32, (dx, dy) in px).

    Normalised so that the largest displacement magnitude is ``amplitude``
    pixels: the apex amplitude of the clip.
    """
    coords = np.arange(size, dtype=np.float64)
    field = np.zeros((size, size, 2), np.float64)
    for b in bumps:
        gx = np.exp(-((coords - b.center[0]) ** 2) / (2 * b.sigma**2))
        gy = np.exp(-((coords - b.center[1]) ** 2) / (2 * b.sigma**2))
        g = gy[:, None] * gx[None, :]  # separable Gaussian
        field[..., 0] += b.vector[0] * g
        field[..., 1] += b.vector[1] * g
    peak = float(np.sqrt((field**2).sum(-1)).max())
    if peak > 0:
        field *= amplitude / peak
    return field.astype(np.float32)


def au_region_centers(label: str, layout: FaceLayout) -> list[Point]:
    """Landmark positions of the class's AU region (e.g. for evaluations)."""
    return [layout.landmarks[n] for n in AU_LANDMARKS[label]]
