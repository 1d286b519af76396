"""Render a megc-like clip plan into the frames a lab's camera would have written.

Per frame: the neutral face at the frame's eyelid closure, moved by the
micro-movement (the AU bumps scaled by the temporal profile), placed in a frame
of the release's aspect ratio, moved rigidly with the head (translation,
in-plane rotation, scale), lit with the subject's exposure, gradient and the
clip's flicker, with sensor noise, quantised, and made grey for a greyscale
camera. Compression happens when the frames are written (:mod:`.layouts`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..action_units import displacement_field
from ..clip import base_grid, gaussian_noise, warp_face
from ..face_render import FaceRenderer, lighting_field
from .people import Person
from .plan import MegcClipPlan
from .spec import LabSpec


def frame_size(lab: LabSpec, height: int) -> tuple[int, int]:
    """(width, height) of the lab's frames: the release's aspect ratio at ``height``."""
    w, h = lab.release_frame_size
    return max(height, int(round(height * w / h / 2.0)) * 2), height


def render_megc_clip(
    renderer: FaceRenderer, person: Person, lab: LabSpec, plan: MegcClipPlan, frame_height: int
) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 BGR frames (grey in all three channels for a greyscale lab)."""
    canvas = renderer.layout.canvas
    width, height = frame_size(lab, frame_height)
    left, top = (width - canvas) // 2, (height - canvas) // 2
    apex_field = displacement_field(plan.bumps, canvas, plan.amplitude_px)
    light = lighting_field(person.identity, width, height)[..., None]
    profile = plan.profile()
    closure = plan.eyelid_closure()
    rng = np.random.default_rng(plan.noise_seed)
    grid = base_grid(canvas)
    cx, cy = renderer.layout.oval_center
    center = (cx + left, cy + top)
    out = np.empty((plan.num_frames, height, width, 3), np.uint8)
    background = None
    for t in range(plan.num_frames):
        field = apex_field * np.float32(profile[t]) if profile[t] > 0 else None
        face = warp_face(renderer.neutral(float(closure[t])), field, (0.0, 0.0), grid)
        if background is None:  # the canvas' own edge colour fills the wider frame
            background = tuple(float(v) for v in face[:, :2].reshape(-1, 3).mean(0))
        frame = cv2.copyMakeBorder(
            face,
            top,
            height - canvas - top,
            left,
            width - canvas - left,
            cv2.BORDER_CONSTANT,
            value=background,
        )
        dx, dy, rot, scale = plan.head[t]
        rigid = cv2.getRotationMatrix2D(center, rot, scale)
        rigid[:, 2] += (dx, dy)
        frame = cv2.warpAffine(
            frame, rigid, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        frame *= light * np.float32(plan.flicker[t])
        frame += (gaussian_noise(rng, frame.shape[:2]) * np.float32(person.noise_sigma))[..., None]
        pixels = cv2.add(frame, (0.0, 0.0, 0.0, 0.0), dtype=cv2.CV_8U)
        if not lab.colour:
            grey = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
            pixels = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        out[t] = pixels
    return out
