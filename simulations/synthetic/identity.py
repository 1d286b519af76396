"""Random per-subject identity for the synthetic micro-expression cohort.

An :class:`Identity` holds everything that is constant for one synthetic
subject: face geometry, colours, lighting, sensor noise, head-jitter strength
and blink rate.  Geometry is stored in *relative* units (fractions of the
face width) so that the same identity can be rendered at any face size; the
conversion to pixels lives in :mod:`simulations.synthetic.face_render`.

The ranges are chosen to stay within plausible adult human proportions
(e.g. inter-pupillary distance ~0.45 of the bizygomatic width, mouth width
~0.35, eye-to-chin ~0.8) so that OpenCV's Haar face cascade — the detector
the real-data pipeline uses — finds the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BGR = tuple[float, float, float]

# Skin tones (BGR, 0..255) spanning dark to light; an identity interpolates
# between neighbours so the cohort covers a range of tones.
_SKIN_TONES: tuple[BGR, ...] = (
    (62.0, 88.0, 128.0),
    (88.0, 120.0, 168.0),
    (112.0, 148.0, 196.0),
    (140.0, 172.0, 216.0),
    (166.0, 192.0, 232.0),
)


@dataclass(frozen=True)
class Identity:
    """Constant appearance of one synthetic subject.

    Geometry fields are fractions of the subject's face width ``U``
    (``U = face_scale * face_width`` pixels) and are measured from the
    mid-point between the two pupils, image y pointing down.
    """

    # --- overall face -----------------------------------------------------
    face_scale: float  # oval width / nominal face width
    face_aspect: float  # oval height / oval width
    oval_dy: float  # oval centre below the eye line
    offset_x: float  # face shift from the canvas centre (fraction of U)
    offset_y: float
    # --- eyes ---------------------------------------------------------------
    eye_sep: float  # inter-pupillary distance
    eye_w: float  # palpebral fissure width
    eye_h: float  # eye opening height, fraction of eye_w
    iris_r: float  # iris radius, fraction of eye_w
    # --- brows --------------------------------------------------------------
    brow_dy: float  # brow centre above the eye line
    brow_len: float
    brow_thick: float
    brow_arch: float  # arch height, fraction of brow_len
    # --- nose and mouth ------------------------------------------------------
    nose_dy: float  # nose tip below the eye line
    nose_w: float
    mouth_dy: float  # mouth line below the eye line
    mouth_w: float
    upper_lip: float  # upper-lip thickness
    lower_lip: float  # lower-lip thickness
    # --- colours (BGR, 0..255) ----------------------------------------------
    skin: BGR
    lips: BGR
    brows: BGR
    iris: BGR
    background: BGR
    # --- imaging --------------------------------------------------------------
    light_gain: float  # global exposure gain
    light_grad_x: float  # relative brightness change across the canvas width
    light_grad_y: float
    noise_sigma: float  # sensor noise std, grey levels
    jitter_px: float  # std of the per-frame global head translation (px)
    blink_rate_hz: float  # expected distractor blinks per second
    texture_seed: int  # seed of the (static) background/skin texture


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _mix(a: BGR, b: BGR, t: float) -> BGR:
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one subject's identity from ``rng`` (a ``numpy.random.Generator``).

    The number and order of draws is fixed, so the identity depends only on
    the generator's state (hence only on the seed it was built from).
    """
    u = lambda lo, hi: _uniform(rng, lo, hi)  # noqa: E731

    geometry = dict(
        face_scale=u(0.94, 1.0),
        face_aspect=u(1.28, 1.40),
        oval_dy=u(0.13, 0.16),
        offset_x=u(-0.02, 0.02),
        offset_y=u(-0.015, 0.015),
        eye_sep=u(0.42, 0.47),
        eye_w=u(0.175, 0.20),
        eye_h=u(0.40, 0.48),
        iris_r=u(0.22, 0.26),
        brow_dy=u(0.105, 0.125),
        brow_len=u(0.22, 0.26),
        brow_thick=u(0.042, 0.056),
        brow_arch=u(0.06, 0.14),
        nose_dy=u(0.29, 0.33),
        nose_w=u(0.20, 0.25),
        mouth_dy=u(0.46, 0.50),
        mouth_w=u(0.33, 0.39),
        upper_lip=u(0.030, 0.040),
        lower_lip=u(0.040, 0.055),
    )

    tone_pos = u(0.0, len(_SKIN_TONES) - 1.0)
    lo = min(int(tone_pos), len(_SKIN_TONES) - 2)
    skin = _mix(_SKIN_TONES[lo], _SKIN_TONES[lo + 1], tone_pos - lo)
    # Lips: a redder, darker version of the skin.
    lips = (skin[0] * u(0.55, 0.65), skin[1] * u(0.50, 0.60), skin[2] * u(0.70, 0.80))
    hair = u(18.0, 55.0)
    brows = (hair, hair * u(1.0, 1.15), hair * u(1.05, 1.3))
    iris_v = u(25.0, 80.0)
    iris = (iris_v * u(0.6, 1.3), iris_v * u(0.8, 1.1), iris_v * u(0.9, 1.2))
    # Background clearly darker than the face (as in lab recordings with a
    # plain backdrop); scaled with the skin so dark skin still stands out.
    bg_level = u(0.30, 0.45)
    bg_tint = (u(0.85, 1.15), u(0.85, 1.15), u(0.85, 1.15))
    background = tuple(float(skin[1] * bg_level * t) for t in bg_tint)

    imaging = dict(
        light_gain=u(0.85, 1.12),
        light_grad_x=u(-0.15, 0.15),
        light_grad_y=u(-0.10, 0.10),
        noise_sigma=u(0.8, 2.2),
        jitter_px=u(0.10, 0.35),
        blink_rate_hz=u(0.3, 1.0),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )
    return Identity(
        **geometry,
        skin=skin,
        lips=lips,
        brows=brows,
        iris=iris,
        background=background,  # type: ignore[arg-type]
        **imaging,
    )
