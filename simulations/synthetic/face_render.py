"""Rendering of a synthetic neutral frontal face.

The face is drawn as a stack of soft, anti-aliased layers (masks rasterised
at ``_SS`` x super-sampling and area-averaged down), so every edge has
sub-pixel precision.  That matters because micro-movements are only 1.5-3 px
at apex: a renderer with hard, pixel-snapped edges would make the motion
look like flicker rather than flow.

The layout (where the eyes, brows, nose and mouth are, in pixels) is
computed by :func:`face_layout`; :func:`render_neutral` produces the unlit
float image; :func:`apply_lighting` adds the subject's exposure and
lighting gradient; :func:`render_face` combines them into one still frame,
optionally rotated in-plane, together with its :class:`FaceGeometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .identity import Identity

_SS = 4  # super-sampling factor for rasterising masks
_SHIFT = 4  # fractional bits passed to cv2 drawing calls (1/16 px at _SS res)

Point = tuple[float, float]


@dataclass(frozen=True)
class FaceLayout:
    """Pixel geometry of one rendered face (image coordinates, y down).

    ``left``/``right`` always mean the *image's* left/right, not the
    subject's.
    """

    canvas: int  # width == height of the rendered image
    unit: float  # the subject's face width U in pixels
    oval_center: Point
    oval_axes: Point  # semi-axes (a, b)
    landmarks: dict[str, Point]
    eye_axes: Point  # semi-axes of the eye opening
    iris_radius: float

    @property
    def face_box(self) -> tuple[float, float, float, float]:
        """The ground-truth face box ``(x, y, w, h)``.

        It is the square a frontal-face detector reports for this face: it
        spans the cheeks horizontally and runs from the forehead to the
        chin, centred a little below the eye line.
        """
        lm = self.landmarks
        side = _BOX_SCALE * self.unit
        cx = 0.5 * (lm["eye_l"][0] + lm["eye_r"][0])
        cy = lm["eye_mid"][1] + _BOX_DY * self.unit
        return (cx - side / 2, cy - side / 2, side, side)


# Calibrated against haarcascade_frontalface_default (scaleFactor 1.1,
# minNeighbors 5) on 60 rendered identities: the detector's box centre sits
# 0.163 +- 0.019 U below the eye line and its side is 1.048 +- 0.030 U.
_BOX_SCALE = 1.05
_BOX_DY = 0.165


@dataclass(frozen=True)
class FaceGeometry:
    """Ground truth for one rendered still frame (after any rotation)."""

    face_box: tuple[float, float, float, float]  # x, y, w, h; axis-aligned square
    center: Point  # centre of face_box, the rotation centre
    left_eye: Point  # pupil centre of the eye on the image's left
    right_eye: Point  # pupil centre of the eye on the image's right
    angle_deg: float  # in-plane rotation applied (counter-clockwise, degrees)
    landmarks: dict[str, Point] = field(default_factory=dict)

    def face_box_int(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.face_box
        return (int(round(x)), int(round(y)), int(round(w)), int(round(h)))


def face_layout(
    identity: Identity, canvas: int = 160, face_width: int = 128, pad: int = 0
) -> FaceLayout:
    """Place the identity's facial features on a ``canvas`` x ``canvas`` image.

    ``pad`` shifts everything by ``pad`` pixels (used to render on a larger
    canvas before rotating, so rotated corners hold background, not a
    reflection of the face).
    """
    idt = identity
    u = idt.face_scale * face_width
    a = u / 2.0
    b = idt.face_aspect * a
    # Put the chin near the bottom of the canvas (forehead may be cropped, as
    # in tight lab crops); the eye line follows from the face's proportions.
    chin_y = canvas / 2.0 + 0.58 * face_width
    ax = canvas / 2.0 + idt.offset_x * u + pad
    ay = chin_y - (idt.oval_dy * u + b) + idt.offset_y * u + pad
    oval = (ax, ay + idt.oval_dy * u)

    half_sep = idt.eye_sep * u / 2.0
    eye_w = idt.eye_w * u
    eye_h = idt.eye_h * eye_w
    lm: dict[str, Point] = {}
    lm["eye_mid"] = (ax, ay)
    lm["eye_l"] = (ax - half_sep, ay)
    lm["eye_r"] = (ax + half_sep, ay)
    brow_y = ay - idt.brow_dy * u
    brow_len = idt.brow_len * u
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        cx = ax + sgn * (half_sep + 0.015 * u)
        lm[f"brow_{side}_inner"] = (
            cx - sgn * brow_len / 2.0,
            brow_y + 0.2 * idt.brow_arch * brow_len,
        )
        lm[f"brow_{side}_mid"] = (cx, brow_y - 0.5 * idt.brow_arch * brow_len)
        lm[f"brow_{side}_outer"] = (
            cx + sgn * brow_len / 2.0,
            brow_y + 0.35 * idt.brow_arch * brow_len,
        )
    nose_y = ay + idt.nose_dy * u
    lm["nose_tip"] = (ax, nose_y)
    lm["nostril_l"] = (ax - 0.28 * idt.nose_w * u, nose_y + 0.025 * u)
    lm["nostril_r"] = (ax + 0.28 * idt.nose_w * u, nose_y + 0.025 * u)
    mouth_y = ay + idt.mouth_dy * u
    half_mouth = idt.mouth_w * u / 2.0
    lm["mouth_c"] = (ax, mouth_y)
    lm["mouth_l"] = (ax - half_mouth, mouth_y)
    lm["mouth_r"] = (ax + half_mouth, mouth_y)
    lm["upper_lip"] = (ax, mouth_y - idt.upper_lip * u)
    lm["lower_lip"] = (ax, mouth_y + idt.lower_lip * u)
    lm["chin"] = (ax, oval[1] + 0.82 * b)
    return FaceLayout(
        canvas=canvas + 2 * pad,
        unit=u,
        oval_center=oval,
        oval_axes=(a, b),
        landmarks=lm,
        eye_axes=(eye_w / 2.0, eye_h / 2.0),
        iris_radius=idt.iris_r * eye_w,
    )


# ---------------------------------------------------------------------------
# rasterisation helpers
#
# Every feature is drawn into a small region of interest (ROI) around it, so
# a full face costs a few milliseconds rather than a few dozen full-canvas
# passes.


def _fx(v: float) -> int:
    """Pixel coordinate -> fixed-point integer at super-sampled resolution."""
    return int(round(v * _SS * (1 << _SHIFT)))


@dataclass
class _Mask:
    """Coverage in ``[0, 1]`` over the ROI whose top-left pixel is (x0, y0)."""

    x0: int
    y0: int
    data: np.ndarray

    def blurred(self, sigma: float) -> _Mask:
        if sigma <= 0:
            return self
        return _Mask(
            self.x0,
            self.y0,
            cv2.GaussianBlur(self.data, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT),
        )

    def region_of(self, img: np.ndarray) -> np.ndarray:
        h, w = self.data.shape
        return img[self.y0 : self.y0 + h, self.x0 : self.x0 + w]


class _Raster:
    """Rasterises anti-aliased coverage masks at ``_SS`` x resolution.

    ``margin`` (pixels) enlarges the ROI so a later blur has room to spread.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def _roi(self, lo: Point, hi: Point, margin: float) -> tuple[int, int, int, int]:
        x0 = max(int(math.floor(lo[0] - margin)) - 1, 0)
        y0 = max(int(math.floor(lo[1] - margin)) - 1, 0)
        x1 = min(int(math.ceil(hi[0] + margin)) + 2, self.size)
        y1 = min(int(math.ceil(hi[1] + margin)) + 2, self.size)
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)

    @staticmethod
    def _down(buf: np.ndarray, x0: int, y0: int) -> _Mask:
        h, w = buf.shape[0] // _SS, buf.shape[1] // _SS
        m = cv2.resize(buf, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        return _Mask(x0, y0, m)

    def _fixed(self, pts: np.ndarray, x0: int, y0: int) -> np.ndarray:
        p = (np.asarray(pts, np.float64) - (x0, y0)) * _SS * (1 << _SHIFT)
        return np.round(p).astype(np.int32).reshape(-1, 1, 2)

    def ellipse(self, center: Point, axes: Point, angle: float = 0.0, margin: float = 0.0) -> _Mask:
        r = max(axes)
        x0, y0, x1, y1 = self._roi(
            (center[0] - r, center[1] - r), (center[0] + r, center[1] + r), margin
        )
        buf = np.zeros(((y1 - y0) * _SS, (x1 - x0) * _SS), np.uint8)
        cv2.ellipse(
            buf,
            (_fx(center[0] - x0), _fx(center[1] - y0)),
            (max(_fx(axes[0]), 1), max(_fx(axes[1]), 1)),
            angle,
            0,
            360,
            255,
            -1,
            cv2.LINE_8,
            _SHIFT,
        )
        return self._down(buf, x0, y0)

    def polygon(self, pts: np.ndarray, margin: float = 0.0) -> _Mask:
        pts = np.asarray(pts, np.float64)
        x0, y0, x1, y1 = self._roi(tuple(pts.min(0)), tuple(pts.max(0)), margin)
        buf = np.zeros(((y1 - y0) * _SS, (x1 - x0) * _SS), np.uint8)
        cv2.fillPoly(buf, [self._fixed(pts, x0, y0)], 255, cv2.LINE_8, _SHIFT)
        return self._down(buf, x0, y0)

    def polyline(self, pts: np.ndarray, thickness: float, margin: float = 0.0) -> _Mask:
        pts = np.asarray(pts, np.float64)
        x0, y0, x1, y1 = self._roi(tuple(pts.min(0)), tuple(pts.max(0)), margin + thickness)
        buf = np.zeros(((y1 - y0) * _SS, (x1 - x0) * _SS), np.uint8)
        t = max(int(round(thickness * _SS)), 1)
        cv2.polylines(buf, [self._fixed(pts, x0, y0)], False, 255, t, cv2.LINE_8, _SHIFT)
        return self._down(buf, x0, y0)

    def region(self, lo: Point, hi: Point, inside) -> _Mask:
        """Mask of ``inside(x, y)`` (vectorised over super-sampled pixel centres)."""
        x0, y0, x1, y1 = self._roi(lo, hi, 0.0)
        xs = (np.arange(x0 * _SS, x1 * _SS, dtype=np.float32) + 0.5) / _SS - 0.5
        ys = (np.arange(y0 * _SS, y1 * _SS, dtype=np.float32) + 0.5) / _SS - 0.5
        buf = inside(xs[None, :], ys[:, None]).astype(np.uint8) * 255
        return self._down(buf, x0, y0)


def _paint(img: np.ndarray, mask: _Mask, color, alpha: float = 1.0) -> None:
    """Alpha-composite a flat colour (BGR, or a per-pixel-free array) over ``img``."""
    sub = mask.region_of(img)
    m = (mask.data * alpha)[..., None]
    sub *= 1.0 - m
    sub += m * np.asarray(color, np.float32)


def _shade(img: np.ndarray, mask: _Mask, gain: float) -> None:
    """Multiply by ``1 + gain * mask`` (negative gain darkens)."""
    sub = mask.region_of(img)
    sub *= (1.0 + gain * mask.data)[..., None]


def _lowpass_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Smooth zero-mean noise with features of ~``cell`` pixels, std ~1."""
    n = max(int(math.ceil(size / cell)) + 3, 4)
    coarse = rng.standard_normal((n, n)).astype(np.float32)
    big = cv2.resize(coarse, (int(n * cell), int(n * cell)), interpolation=cv2.INTER_CUBIC)
    off = (big.shape[0] - size) // 2
    out = big[off : off + size, off : off + size]
    return out / max(float(out.std()), 1e-6)


def _textures(identity: Identity, canvas: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Static background and skin textures, anchored at the canvas centre.

    They are generated on a fixed ``2 * canvas`` field and cropped, so a
    padded render (for rotation) shows the same texture as an unpadded one.
    """
    rng = np.random.default_rng(identity.texture_seed)
    full = 2 * canvas
    bg = 0.07 * _lowpass_noise(rng, full, canvas / 6.0)
    grain = rng.standard_normal((full, full)).astype(np.float32)
    bg += 0.025 * cv2.GaussianBlur(grain, (0, 0), 1.0) / 0.28
    skin_grain = rng.standard_normal((full, full)).astype(np.float32)
    skin = 0.03 * cv2.GaussianBlur(skin_grain, (0, 0), 1.2) / 0.23
    skin += 0.02 * _lowpass_noise(rng, full, canvas / 10.0)
    off = (full - size) // 2
    sl = slice(off, off + size)
    return bg[sl, sl], skin[sl, sl]


# ---------------------------------------------------------------------------
# feature painters


def _brow_polygon(inner: Point, mid: Point, outer: Point, thick: float) -> np.ndarray:
    """A tapering, arched band through three brow points."""
    t = np.linspace(0.0, 1.0, 24)
    # Quadratic Bezier through ``mid`` at t=0.5.
    ctrl = (2 * mid[0] - 0.5 * (inner[0] + outer[0]), 2 * mid[1] - 0.5 * (inner[1] + outer[1]))
    x = (1 - t) ** 2 * inner[0] + 2 * (1 - t) * t * ctrl[0] + t**2 * outer[0]
    y = (1 - t) ** 2 * inner[1] + 2 * (1 - t) * t * ctrl[1] + t**2 * outer[1]
    half = 0.5 * thick * (1.0 - 0.5 * t) * np.sqrt(np.clip(1.0 - (2 * t - 1) ** 8, 0.05, 1.0))
    top = np.stack([x, y - half], 1)
    bot = np.stack([x, y + half], 1)[::-1]
    return np.concatenate([top, bot], 0)


def _paint_eye(
    img: np.ndarray,
    base: np.ndarray,
    ras: _Raster,
    lay: FaceLayout,
    center: Point,
    skin: np.ndarray,
    iris_bgr,
    closure: float,
) -> None:
    """Sclera, iris, pupil, glint, eyelid (lowered by ``closure``) and lashes.

    ``base`` is the face without eyes: the eyelid takes its (shaded) skin
    colour, so a closed lid blends into the eye socket.
    """
    ex, ey = lay.eye_axes
    cx, cy = center
    ir = lay.iris_radius
    lo, hi = (cx - ex, cy - 1.2 * ey), (cx + ex, cy + ey)

    def lid_edges(x):
        dx = (x - cx) / ex
        prof = np.sqrt(np.clip(1.0 - dx**2, 0.0, 1.0))
        # Almond-shaped opening: the upper arc rises higher than the lower.
        top = cy - 1.1 * ey * prof
        bot = cy + 0.9 * ey * prof
        return np.abs(dx) < 1.0, top, bot, top + closure * (bot - top)

    def opening(x, y):
        inside_x, _, bot, lid = lid_edges(x)
        return inside_x & (y > lid) & (y < bot)

    def disc(x0, y0, r):
        return lambda x, y: opening(x, y) & ((x - x0) ** 2 + (y - y0) ** 2 < r * r)

    _paint(img, ras.region(lo, hi, opening), (205.0, 212.0, 218.0))
    _paint(img, ras.region(lo, hi, disc(cx, cy, ir)), iris_bgr)
    _paint(img, ras.region(lo, hi, disc(cx, cy, 0.45 * ir)), (12.0, 12.0, 14.0))
    _paint(
        img,
        ras.region(lo, hi, disc(cx - 0.35 * ir, cy - 0.35 * ir, 0.18 * ir)),
        (235.0, 238.0, 240.0),
        0.8,
    )
    if closure > 0:
        # The closed part of the eye: eyelid skin, slightly darker than the face.
        def lid_skin(x, y):
            inside_x, top, bot, lid = lid_edges(x)
            return inside_x & (y >= top - 0.3) & (y <= lid) & (y < bot)

        lid_mask = ras.region(lo, hi, lid_skin)
        _paint(img, lid_mask, lid_mask.region_of(base) * np.float32(0.92))
    # Lash line along the lid edge (thick) and the lower lid (thin, lighter).
    xs = np.linspace(cx - ex, cx + ex, 25)
    _, t_, b_, edge = lid_edges(xs)
    _paint(img, ras.polyline(np.stack([xs, edge], 1), 0.028 * lay.unit), (20.0, 20.0, 24.0), 0.9)
    _paint(img, ras.polyline(np.stack([xs, b_], 1), 0.012 * lay.unit), skin * 0.55, 0.6)


def _render_base(identity: Identity, lay: FaceLayout, canvas: int) -> np.ndarray:
    """Everything except the eyes themselves (which blinks change)."""
    size = lay.canvas
    u = lay.unit
    lm = lay.landmarks
    ras = _Raster(size)
    bg_tex, skin_tex = _textures(identity, canvas, size)

    img = np.empty((size, size, 3), np.float32)
    img[:] = np.asarray(identity.background, np.float32)
    img *= (1.0 + bg_tex)[..., None]

    skin = np.asarray(identity.skin, np.float32)
    oc, (oa, ob) = lay.oval_center, lay.oval_axes
    # Soft silhouette; skin shaded like a convex surface lit from the front.
    oval = ras.ellipse(oc, (oa, ob))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r2 = ((xx - oc[0]) / oa) ** 2 + ((yy - oc[1]) / ob) ** 2
    shade = (
        1.0 - 0.30 * np.clip(r2, 0, 1) ** 2 - 0.08 * np.clip((np.abs(xx - oc[0]) / oa), 0, 1) ** 3
    )
    face = skin[None, None, :] * (shade * (1.0 + skin_tex))[..., None]
    _paint(
        img,
        oval,
        face[oval.y0 : oval.y0 + oval.data.shape[0], oval.x0 : oval.x0 + oval.data.shape[1]],
    )

    def soft_ellipse(center: Point, axes: Point, sigma: float, angle: float = 0.0) -> _Mask:
        return ras.ellipse(center, axes, angle, margin=3 * sigma).blurred(sigma)

    for side in ("l", "r"):
        ex_, ey_ = lm[f"eye_{side}"]
        # Eye socket: broad, soft darkening from brow to below the eye.
        _shade(img, soft_ellipse((ex_, ey_ - 0.035 * u), (0.16 * u, 0.085 * u), 0.045 * u), -0.30)
        # Cheek highlight under the eye.
        _shade(img, soft_ellipse((ex_, ey_ + 0.17 * u), (0.11 * u, 0.07 * u), 0.05 * u), 0.06)

    # Nose: bright bridge, shaded sides, nostrils and the shadow under the tip.
    nx, ny = lm["nose_tip"]
    eye_y = lm["eye_mid"][1]
    _shade(
        img,
        soft_ellipse(
            (nx, 0.5 * (eye_y + ny) - 0.02 * u),
            (0.035 * u, 0.5 * (ny - eye_y) + 0.02 * u),
            0.02 * u,
        ),
        0.12,
    )
    for sgn in (-1.0, 1.0):
        side_pts = np.array(
            [[nx + sgn * 0.07 * u, eye_y + 0.08 * u], [nx + sgn * 0.09 * u, ny - 0.03 * u]]
        )
        _shade(img, ras.polyline(side_pts, 0.03 * u, margin=0.075 * u).blurred(0.025 * u), -0.16)
    _shade(img, soft_ellipse((nx, ny - 0.01 * u), (0.05 * u, 0.035 * u), 0.015 * u), 0.10)
    _shade(img, soft_ellipse((nx, ny + 0.035 * u), (0.09 * u, 0.022 * u), 0.012 * u), -0.22)
    for key, ang in (("nostril_l", 15.0), ("nostril_r", -15.0)):
        _shade(img, soft_ellipse(lm[key], (0.032 * u, 0.016 * u), 0.006 * u, ang), -0.60)

    # Eye surroundings that do not move with the lid: upper-lid crease.
    ex, ey = lay.eye_axes
    for side in ("l", "r"):
        cx, cy = lm[f"eye_{side}"]
        xs = np.linspace(cx - ex, cx + ex, 25)
        pr = np.sqrt(np.clip(1.0 - ((xs - cx) / ex) ** 2, 0.0, 1.0))
        crease = ras.polyline(
            np.stack([xs, cy - 1.9 * ey * pr - 0.2 * ey], 1), 0.014 * u, margin=2.0
        )
        _paint(img, crease.blurred(0.6), skin * 0.6, 0.5)

    # Brows.
    for side in ("l", "r"):
        poly = _brow_polygon(
            lm[f"brow_{side}_inner"],
            lm[f"brow_{side}_mid"],
            lm[f"brow_{side}_outer"],
            identity.brow_thick * u,
        )
        _paint(img, ras.polygon(poly, margin=2.0).blurred(0.4), identity.brows, 0.92)

    # Mouth: lips, the dark line between them, corner shadows, chin groove.
    mx, my = lm["mouth_c"]
    hw = identity.mouth_w * u / 2.0
    xs = np.linspace(-hw, hw, 41)
    s = np.clip(1.0 - (xs / hw) ** 2, 0.0, 1.0)
    bow = 1.0 - 0.25 * np.exp(-((xs / (0.12 * hw)) ** 2))  # cupid's bow dip
    upper = my - identity.upper_lip * u * s**0.6 * bow
    lower = my + identity.lower_lip * u * s**0.55
    line_y = my + 0.06 * identity.upper_lip * u * s
    lips = ras.polygon(
        np.concatenate([np.stack([mx + xs, upper], 1), np.stack([mx + xs, lower], 1)[::-1]]),
        margin=2.0,
    )
    _paint(img, lips.blurred(0.3), identity.lips, 0.95)
    ll = identity.lower_lip * u
    _shade(img, soft_ellipse((mx, my + 0.55 * ll), (0.45 * hw, 0.25 * ll), 0.01 * u), 0.10)
    _paint(
        img,
        ras.polyline(np.stack([mx + xs * 1.02, line_y], 1), 0.018 * u, margin=2.0).blurred(0.3),
        (25.0, 22.0, 35.0),
        0.85,
    )
    for key in ("mouth_l", "mouth_r"):
        _shade(img, soft_ellipse(lm[key], (0.02 * u, 0.015 * u), 0.01 * u), -0.35)
    _shade(img, soft_ellipse((mx, my + ll + 0.04 * u), (0.12 * u, 0.025 * u), 0.02 * u), -0.12)
    _shade(
        img,
        soft_ellipse((lm["chin"][0], lm["chin"][1] - 0.03 * u), (0.12 * u, 0.05 * u), 0.03 * u),
        0.06,
    )
    return img


class FaceRenderer:
    """Renders one identity's neutral face, caching what blinks do not change.

    A clip needs the neutral face at several eyelid closures (distractor
    blinks); only the eyes are repainted for each, so a blink costs ~1 ms
    instead of a full render.  Closures are quantised to ``1 / blink_levels``
    so repeated levels hit the cache.
    """

    def __init__(
        self,
        identity: Identity,
        canvas: int = 160,
        face_width: int = 128,
        pad: int = 0,
        blink_levels: int = 20,
    ) -> None:
        self.identity = identity
        self.layout = face_layout(identity, canvas, face_width, pad)
        self._canvas = canvas
        self._levels = blink_levels
        self._base: np.ndarray | None = None
        self._cache: dict[int, np.ndarray] = {}

    def quantize(self, closure: float) -> float:
        return round(min(max(closure, 0.0), 1.0) * self._levels) / self._levels

    def neutral(self, eyelid_closure: float = 0.0) -> np.ndarray:
        """Unlit float32 BGR image in ``[0, 255]`` (do not modify it in place)."""
        key = int(round(self.quantize(eyelid_closure) * self._levels))
        img = self._cache.get(key)
        if img is None:
            if self._base is None:
                self._base = _render_base(self.identity, self.layout, self._canvas)
            img = self._base.copy()
            ras = _Raster(self.layout.canvas)
            skin = np.asarray(self.identity.skin, np.float32)
            for side in ("l", "r"):
                _paint_eye(
                    img,
                    self._base,
                    ras,
                    self.layout,
                    self.layout.landmarks[f"eye_{side}"],
                    skin,
                    self.identity.iris,
                    key / self._levels,
                )
            img = cv2.GaussianBlur(img, (0, 0), 0.5, borderType=cv2.BORDER_REFLECT_101)
            np.clip(img, 0.0, 255.0, out=img)
            self._cache[key] = img
        return img


def render_neutral(
    identity: Identity,
    canvas: int = 160,
    face_width: int = 128,
    eyelid_closure: float = 0.0,
    pad: int = 0,
) -> tuple[np.ndarray, FaceLayout]:
    """Render the neutral face, unlit, as float32 BGR in ``[0, 255]``.

    ``eyelid_closure`` in ``[0, 1]`` lowers both upper lids (0 open, 1 shut).
    Pure function of its arguments.
    """
    r = FaceRenderer(identity, canvas, face_width, pad)
    return r.neutral(eyelid_closure).copy(), r.layout


def lighting_field(identity: Identity, size: int, height: int | None = None) -> np.ndarray:
    """Per-pixel multiplicative lighting (exposure gain x linear gradient), ``height x size``
    (square unless ``height`` is given)."""
    height = size if height is None else height
    cx = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / size
    cy = (np.arange(height, dtype=np.float32) - (height - 1) / 2.0) / height
    field_ = identity.light_gain * (
        1.0 + identity.light_grad_x * cx[None, :] + identity.light_grad_y * cy[:, None]
    )
    return field_.astype(np.float32)


def apply_lighting(img: np.ndarray, identity: Identity) -> np.ndarray:
    """Apply the subject's lighting to a float image (returns a new array)."""
    return img * lighting_field(identity, img.shape[0])[..., None]


def _rotate_point(p: Point, center: Point, angle_deg: float) -> Point:
    # Same convention as cv2.getRotationMatrix2D: positive = counter-clockwise
    # on screen (y down).
    th = math.radians(angle_deg)
    dx, dy = p[0] - center[0], p[1] - center[1]
    c, s = math.cos(th), math.sin(th)
    return (center[0] + c * dx + s * dy, center[1] - s * dx + c * dy)


def render_face(
    identity: Identity,
    angle_deg: float = 0.0,
    canvas: int = 160,
    face_width: int = 128,
    eyelid_closure: float = 0.0,
    noise_rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, FaceGeometry]:
    """Render one lit uint8 BGR still frame and its ground-truth geometry.

    The face is rotated in-plane by ``angle_deg`` (counter-clockwise, as
    ``cv2.getRotationMatrix2D``) about the centre of its face box.  To keep
    the corners filled with background rather than a reflection of the face,
    the face is rendered on a padded canvas, rotated, then cropped.  Sensor
    noise of the identity's level is added only when ``noise_rng`` is given.
    """
    pad = canvas // 4 if angle_deg else 0
    img, lay = render_neutral(identity, canvas, face_width, eyelid_closure, pad)
    x, y, w, h = lay.face_box
    center = (x + w / 2.0, y + h / 2.0)
    landmarks = dict(lay.landmarks)
    if angle_deg:
        mat = cv2.getRotationMatrix2D(center, angle_deg, 1.0)
        img = cv2.warpAffine(
            img,
            mat,
            (lay.canvas, lay.canvas),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        landmarks = {k: _rotate_point(p, center, angle_deg) for k, p in landmarks.items()}
        img = img[pad : pad + canvas, pad : pad + canvas]
        landmarks = {k: (p[0] - pad, p[1] - pad) for k, p in landmarks.items()}
        center = (center[0] - pad, center[1] - pad)
    img = apply_lighting(img, identity)
    if noise_rng is not None:
        img = img + identity.noise_sigma * noise_rng.standard_normal(img.shape, dtype=np.float32)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    geom = FaceGeometry(
        face_box=(center[0] - w / 2.0, center[1] - h / 2.0, w, h),
        center=center,
        left_eye=landmarks["eye_l"],
        right_eye=landmarks["eye_r"],
        angle_deg=float(angle_deg),
        landmarks=landmarks,
    )
    return out, geom
