"""Facial action units as displacement bumps, and the AU combinations of each class.

The easy cohort moves one fixed set of regions per class, so a class is
recognisable from where anything moves at all. Real micro-expressions are not:
the MEGC2019 classes share action units and regions, and a class is expressed
through several AU combinations (CASME II's "disgust" is mostly AU4, its
"repression" AU14, AU15 or AU17; "happiness" is AU12 with or without AU6;
"surprise" AU1+2 with or without AU5 or AU26). This module gives each AU its
own bumps (FACS: Ekman, Friesen and Hager, 2002) so any combination can be
rendered, and lists the combinations each class is coded with.

Directions are forward displacements in image coordinates (y down); ``l`` is
the image's left. Weights are relative: a clip's field is normalised to its
apex amplitude afterwards (:func:`simulations.synthetic.action_units.displacement_field`).
"""

from __future__ import annotations

import math

import numpy as np

from ..action_units import Bump
from ..face_render import FaceLayout, Point

# (landmark, offset from it in face units (x, y), direction, weight, sigma in face units)
_Spec = tuple[str, Point, Point, float, float]


def _unit(dx: float, dy: float) -> Point:
    n = math.hypot(dx, dy)
    return (dx / n, dy / n)


def _sides(make) -> list[_Spec]:  # type: ignore[no-untyped-def]
    """The same spec on both sides; ``make(side, outward)`` with outward -1 (l) or +1 (r)."""
    return [*make("l", -1.0), *make("r", 1.0)]


#: The bumps of each action unit.
AU_SPECS: dict[str, list[_Spec]] = {
    # AU1 inner brow raiser.
    "1": _sides(lambda s, o: [(f"brow_{s}_inner", (0, 0), (0.0, -1.0), 1.0, 0.06)]),
    # AU2 outer brow raiser (drags the middle of the brow along).
    "2": _sides(
        lambda s, o: [
            (f"brow_{s}_outer", (0, 0), (0.0, -1.0), 1.0, 0.06),
            (f"brow_{s}_mid", (0, 0), (0.0, -1.0), 0.5, 0.06),
        ]
    ),
    # AU4 brow lowerer: inner brows down and together.
    "4": _sides(
        lambda s, o: [
            (f"brow_{s}_inner", (0, 0), _unit(-0.45 * o, 0.9), 1.0, 0.065),
            (f"brow_{s}_mid", (0, 0), (0.0, 1.0), 0.35, 0.06),
        ]
    ),
    # AU5 upper lid raiser: the upper lid and the skin above it move up.
    "5": _sides(lambda s, o: [(f"eye_{s}", (0, -0.04), (0.0, -1.0), 0.8, 0.04)]),
    # AU6 cheek raiser: the cheek below the eye lifts.
    "6": _sides(lambda s, o: [(f"eye_{s}", (0.04 * o, 0.17), (0.0, -1.0), 0.8, 0.09)]),
    # AU12 lip corner puller: outward and up.
    "12": _sides(lambda s, o: [(f"mouth_{s}", (0, 0), _unit(o, -0.6), 1.0, 0.07)]),
    # AU14 dimpler: corners tightened back into the cheek; seen from the front, a
    # small, flat outward pull, close to AU12's (which is why they are confused).
    "14": _sides(lambda s, o: [(f"mouth_{s}", (0, 0), _unit(o, -0.1), 0.8, 0.05)]),
    # AU15 lip corner depressor.
    "15": _sides(lambda s, o: [(f"mouth_{s}", (0, 0), _unit(0.2 * o, 1.0), 0.9, 0.06)]),
    # AU17 chin raiser: the chin boss and the lower lip push up.
    "17": [
        ("chin", (0, 0), (0.0, -1.0), 1.0, 0.10),
        ("lower_lip", (0, 0), (0.0, -1.0), 0.6, 0.06),
    ],
    # AU26 jaw drop.
    "26": [
        ("lower_lip", (0, 0), (0.0, 1.0), 0.8, 0.07),
        ("chin", (0, 0), (0.0, 1.0), 1.0, 0.12),
    ],
}

#: AU combinations each class is coded with, and how common each is across
#: people (a subject's own preferences are drawn around these).
CLASS_COMBINATIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "negative": (
        ("4", 0.34),
        ("14", 0.12),
        ("15", 0.08),
        ("17", 0.08),
        ("4+14", 0.08),
        ("4+15", 0.08),
        ("4+17", 0.08),
        ("15+17", 0.07),
        ("4+15+17", 0.07),
    ),
    "positive": (("12", 0.55), ("6+12", 0.45)),
    "surprise": (("1+2", 0.5), ("1+2+5", 0.25), ("1+2+26", 0.25)),
}


def combination_aus(combination: str) -> tuple[str, ...]:
    """``"4+15"`` -> ``("4", "15")``; unknown AUs are an error naming them."""
    aus = tuple(combination.split("+"))
    unknown = [au for au in aus if au not in AU_SPECS]
    if unknown:
        raise ValueError(f"AU combination {combination!r}: no bumps for AU {', '.join(unknown)}")
    return aus


def bumps_of(
    aus: tuple[str, ...],
    layout: FaceLayout,
    gains: dict[str, float],
    asymmetry: float,
    rng: np.random.Generator,
) -> tuple[Bump, ...]:
    """The bumps of one clip firing ``aus``.

    ``gains`` scales each AU (a subject's idiosyncrasy: some people barely move
    their brows); ``asymmetry`` > 1 makes the image's right side stronger, < 1
    the left. ``rng`` adds clip-to-clip variety (direction +-12 degrees, weight
    +-20 %, radius +-10 %).
    """
    u = layout.unit
    bumps = []
    for au in aus:
        for landmark, offset, direction, weight, sigma in AU_SPECS[au]:
            x, y = layout.landmarks[landmark]
            center = (x + offset[0] * u, y + offset[1] * u)
            side = 1.0 if center[0] >= layout.landmarks["eye_mid"][0] else -1.0
            w = weight * gains.get(au, 1.0) * asymmetry ** (0.5 * side)
            w *= float(rng.uniform(0.8, 1.2))
            th = math.radians(float(rng.uniform(-12.0, 12.0)))
            c, s = math.cos(th), math.sin(th)
            d = (c * direction[0] - s * direction[1], s * direction[0] + c * direction[1])
            r = sigma * u * float(rng.uniform(0.9, 1.1))
            bumps.append(Bump(center, (d[0] * w, d[1] * w), r))
    return tuple(bumps)
