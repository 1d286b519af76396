"""One synthetic micro-expression clip: timing, motion, blinks, jitter, noise.

A clip is planned first (:func:`plan_clip` draws every random quantity from
the clip's own generator) and then rendered (:func:`render_clip`), frame by
frame:

1. the neutral face at the frame's eyelid closure (distractor blinks);
2. warped with ``cv2.remap`` (bilinear) by the micro-movement's displacement
   field scaled by a smooth temporal profile, plus the frame's global head
   jitter;
3. lit with the subject's exposure gain and gradient;
4. corrupted with Gaussian sensor noise and quantised to uint8.

All durations are defined in seconds and converted with ``fps``; at the
default 100 fps a clip has 50-70 frames and its movement (onset to offset)
15-40 frames, i.e. at most 0.5 s as micro-expressions are defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import cv2
import numpy as np

from .action_units import Bump, au_bumps, displacement_field
from .face_render import FaceRenderer, lighting_field
from .identity import Identity

# Durations in seconds.
CLIP_SECONDS = (0.50, 0.70)
MOVEMENT_SECONDS = (0.15, 0.40)
LEAD_SECONDS = 0.05  # minimum still time before onset and after offset
BLINK_CLOSE_SECONDS = (0.03, 0.05)
BLINK_OPEN_SECONDS = (0.04, 0.09)
# Apex amplitude at a 128-px face width; scaled linearly with face width.
APEX_PX_AT_128 = (1.5, 3.0)
JITTER_LIMIT_PX = 1.0
JITTER_RHO = 0.8  # frame-to-frame correlation of the head jitter


@dataclass(frozen=True)
class Blink:
    start: int  # first frame with the lid moving
    close_frames: int
    open_frames: int
    depth: float  # maximum closure in (0, 1]

    def closure(self, t: np.ndarray) -> np.ndarray:
        """Eyelid closure at frames ``t``: fast close, slower re-opening."""
        x = t - self.start
        up = 0.5 - 0.5 * np.cos(np.pi * np.clip(x / self.close_frames, 0, 1))
        down = 0.5 + 0.5 * np.cos(np.pi * np.clip((x - self.close_frames) / self.open_frames, 0, 1))
        c = np.where(x <= self.close_frames, up, down)
        return np.where((x > 0) & (x < self.close_frames + self.open_frames), self.depth * c, 0.0)


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about one clip; rendering is a pure function of it."""

    label: str
    num_frames: int
    onset: int  # 0-based frame indices
    apex: int
    offset: int
    amplitude_px: float
    bumps: tuple[Bump, ...]
    blinks: tuple[Blink, ...]
    jitter: tuple[tuple[float, float], ...]  # per-frame global translation (px)
    noise_seed: int

    def profile(self) -> np.ndarray:
        """Movement intensity per frame: 0 until onset, raised-cosine rise to
        1 at apex, raised-cosine fall back to 0 at offset."""
        t = np.arange(self.num_frames, dtype=np.float64)
        return movement_profile(t, self.onset, self.apex, self.offset)

    def eyelid_closure(self) -> np.ndarray:
        return eyelid_closure(self.blinks, self.num_frames)


def eyelid_closure(blinks: tuple[Blink, ...], num_frames: int) -> np.ndarray:
    """Eyelid closure per frame: the deepest of the overlapping blinks."""
    t = np.arange(num_frames, dtype=np.float64)
    c = np.zeros(num_frames)
    for b in blinks:
        c = np.maximum(c, b.closure(t))
    return c


def movement_profile(t: np.ndarray, onset: int, apex: int, offset: int) -> np.ndarray:
    """Intensity at frames ``t``: 0 until onset, raised-cosine rise to 1 at apex,
    raised-cosine fall back to 0 at offset."""
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - onset) / (apex - onset), 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - apex) / (offset - apex), 0, 1))
    return np.where(t <= apex, rise, fall)


def frames_of(seconds: float, fps: int) -> int:
    """Whole frames (at least one) in ``seconds`` at ``fps``."""
    return max(int(round(seconds * fps)), 1)


def draw_timing(
    rng: np.random.Generator,
    fps: int,
    clip_seconds: tuple[float, float],
    movement_seconds: tuple[float, float],
) -> tuple[int, int, int, int]:
    """(frames, onset, apex, offset) of a clip: its length and the movement inside it,
    with at least ``LEAD_SECONDS`` of stillness on either side."""
    num = int(rng.integers(frames_of(clip_seconds[0], fps), frames_of(clip_seconds[1], fps) + 1))
    lead = frames_of(LEAD_SECONDS, fps)
    dur_hi = min(frames_of(movement_seconds[1], fps), num - 2 * lead - 1)
    dur = int(rng.integers(min(frames_of(movement_seconds[0], fps), dur_hi), dur_hi + 1))
    dur = max(dur, 2)
    rise = min(max(int(round(dur * rng.uniform(0.35, 0.6))), 1), dur - 1)
    onset = int(rng.integers(lead, max(num - dur - lead, lead + 1)))
    return num, onset, onset + rise, onset + dur


def draw_blinks(
    rng: np.random.Generator, rate_hz: float, num: int, fps: int, depth: tuple[float, float]
) -> tuple[Blink, ...]:
    """Distractor blinks (at most two) in a clip of ``num`` frames, at ``rate_hz`` on average."""
    blinks = []
    for _ in range(min(int(rng.poisson(rate_hz * num / fps)), 2)):
        close = frames_of(rng.uniform(*BLINK_CLOSE_SECONDS), fps) + 1
        opening = frames_of(rng.uniform(*BLINK_OPEN_SECONDS), fps) + 1
        start = int(rng.integers(-(close + opening) // 2, num - 1))
        blinks.append(Blink(start, close, opening, float(rng.uniform(*depth))))
    return tuple(blinks)


def plan_clip(
    rng: np.random.Generator,
    identity: Identity,
    renderer: FaceRenderer,
    label: str,
    fps: int = 100,
    face_width: int = 128,
) -> ClipPlan:
    """Draw a clip's timing, movement, blinks, jitter and noise seed.

    Blinks and jitter are drawn independently of ``label``: they are
    nuisance, not signal.
    """
    num, onset, apex, offset = draw_timing(rng, fps, CLIP_SECONDS, MOVEMENT_SECONDS)

    amplitude = float(rng.uniform(*APEX_PX_AT_128)) * face_width / 128.0
    bumps = au_bumps(label, renderer.layout, rng)

    blinks = draw_blinks(rng, identity.blink_rate_hz, num, fps, depth=(0.75, 1.0))

    # Head jitter: a stationary AR(1) process per axis, clipped to +-1 px.
    eps = rng.standard_normal((num, 2))
    jit = np.empty((num, 2))
    jit[0] = identity.jitter_px * eps[0]
    scale = identity.jitter_px * math.sqrt(1.0 - JITTER_RHO**2)
    for i in range(1, num):
        jit[i] = JITTER_RHO * jit[i - 1] + scale * eps[i]
    jit = np.clip(jit, -JITTER_LIMIT_PX, JITTER_LIMIT_PX)

    return ClipPlan(
        label=label,
        num_frames=num,
        onset=onset,
        apex=apex,
        offset=offset,
        amplitude_px=amplitude,
        bumps=bumps,
        blinks=blinks,
        jitter=tuple((float(x), float(y)) for x, y in jit),
        noise_seed=int(rng.integers(0, 2**63 - 1)),
    )


def base_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.arange(size, dtype=np.float32)
    return np.broadcast_to(g[None, :], (size, size)).copy(), np.broadcast_to(
        g[:, None], (size, size)
    ).copy()


def inverse_map(
    field: np.ndarray, shift: tuple[float, float], iterations: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Sampling maps that move content forward by ``field + shift``.

    ``cv2.remap`` pulls: ``out(q) = src(map(q))``.  For a point ``p`` to land
    at ``q = p + F(p)`` we need ``map(q) = p``, solved by the fixed-point
    iteration ``p <- q - F(p)`` (it converges because the field's gradient is
    far below 1).  Using ``q - F(q)`` alone would misplace features by up
    to ~|F| |grad F|, a sizeable fraction of a 3-px movement.
    """
    size = field.shape[0]
    gx, gy = base_grid(size)
    qx, qy = gx - np.float32(shift[0]), gy - np.float32(shift[1])
    px, py = qx - field[..., 0], qy - field[..., 1]
    for _ in range(iterations - 1):
        f = cv2.remap(field, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        px, py = qx - f[..., 0], qy - f[..., 1]
    return px, py


def _gaussian_lut() -> np.ndarray:
    """Inverse normal CDF at 65,536 equiprobable levels.

    Indexing it with uniform 16-bit integers draws (finely quantised)
    standard-normal samples about twice as fast as ``standard_normal``,
    which matters: noise is drawn for every pixel of every frame.
    """
    inv = NormalDist().inv_cdf
    return np.array([inv((i + 0.5) / 65536.0) for i in range(65536)], dtype=np.float32)


_LUT: np.ndarray | None = None


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    global _LUT
    if _LUT is None:
        _LUT = _gaussian_lut()
    idx = np.frombuffer(rng.bytes(2 * shape[0] * shape[1]), dtype="<u2")
    return _LUT[idx].reshape(shape)


def warp_face(
    neutral: np.ndarray,
    field: np.ndarray | None,
    shift: tuple[float, float],
    grid: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """The neutral face moved forward by ``field`` (None: no movement) plus the
    global head translation ``shift``, as a new float32 image."""
    if field is not None:
        mx, my = inverse_map(field, shift)
    else:
        mx, my = grid[0] - np.float32(shift[0]), grid[1] - np.float32(shift[1])
    return cv2.remap(neutral, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def expose(
    frame: np.ndarray, light: np.ndarray, rng: np.random.Generator, sigma: float
) -> np.ndarray:
    """Light a float frame (in place), add luminance sensor noise, quantise to uint8.

    Sensor noise is luminance noise (the same value in B, G and R, as after
    demosaicing), which also keeps lossless video files smaller.
    """
    frame *= light
    frame += (gaussian_noise(rng, frame.shape[:2]) * np.float32(sigma))[..., None]
    # Saturating conversion with round-half-even, like np.rint + clip.
    return cv2.add(frame, (0.0, 0.0, 0.0, 0.0), dtype=cv2.CV_8U)


def render_clip(renderer: FaceRenderer, plan: ClipPlan) -> np.ndarray:
    """Render ``plan`` as a ``(T, H, W, 3)`` uint8 BGR array."""
    size = renderer.layout.canvas
    identity = renderer.identity
    apex_field = displacement_field(plan.bumps, size, plan.amplitude_px)
    light = lighting_field(identity, size)[..., None]
    profile = plan.profile()
    closure = plan.eyelid_closure()
    rng = np.random.default_rng(plan.noise_seed)
    grid = base_grid(size)
    out = np.empty((plan.num_frames, size, size, 3), np.uint8)
    for t in range(plan.num_frames):
        field = apex_field * np.float32(profile[t]) if profile[t] > 0 else None
        frame = warp_face(renderer.neutral(float(closure[t])), field, plan.jitter[t], grid)
        out[t] = expose(frame, light, rng, identity.noise_sigma)
    return out


def apex_displacement(renderer: FaceRenderer, plan: ClipPlan) -> np.ndarray:
    """Ground-truth forward displacement from onset to apex (``H x W x 2``),
    excluding head jitter: what an optical-flow method should recover."""
    return displacement_field(plan.bumps, renderer.layout.canvas, plan.amplitude_px)
